-- The partition number a vehicle's messages arrive on (one key maps to the same number
-- in every topic). A consumer that is assigned a partition loads the vehicles stored
-- with its number, so a vehicle that went silent before the assignment is watched for
-- silence although it sends nothing more. Null until an ingestor has recorded it.
ALTER TABLE vehicles ADD COLUMN kafka_partition integer;
