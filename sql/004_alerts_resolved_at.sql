-- "Open at a given time" includes alerts resolved after it: reports for a past moment
-- find those by this index, and in the live case the range is empty.
CREATE INDEX alerts_resolved_at ON alerts (resolved_at) WHERE state = 'resolved';
