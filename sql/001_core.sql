-- fleetwatch core schema: the three event streams, per-vehicle state, rollups,
-- alerts, rejects and the consumed offsets.
--
-- Plain PostgreSQL. Turning event tables into hypertables is done by the
-- migration runner when TimescaleDB is present (see fleetwatch/store/migrate.py),
-- so the same files work on every backend.

CREATE TABLE telemetry (
    time            timestamptz      NOT NULL,
    vehicle_id      text             NOT NULL,
    event_id        uuid             NOT NULL,
    speed_kmh       real             NOT NULL,
    speed_limit_kmh real             NOT NULL,
    lat             double precision NOT NULL,
    lon             double precision NOT NULL,
    heading_deg     real             NOT NULL,
    battery_pct     real             NOT NULL,
    range_km        real             NOT NULL,
    odometer_km     double precision NOT NULL,
    autopilot       boolean          NOT NULL,
    city            text             NOT NULL,
    route_id        text             NOT NULL,
    trip_id         text,
    -- Odometer delta since this vehicle's previous sample (0 for its first),
    -- computed by the ingestor; sums of it give distance and autonomous distance.
    step_km         double precision NOT NULL DEFAULT 0
);
CREATE INDEX telemetry_vehicle_time ON telemetry (vehicle_id, time DESC);
CREATE INDEX telemetry_time ON telemetry (time DESC);

CREATE TABLE perception_events (
    time              timestamptz NOT NULL,
    vehicle_id        text        NOT NULL,
    event_id          uuid        NOT NULL,
    object_class      text        NOT NULL,
    distance_m        real        NOT NULL,
    closing_speed_mps real        NOT NULL,
    bearing_deg       real        NOT NULL,
    confidence        real        NOT NULL,
    -- distance / closing speed when closing, else NULL
    ttc_s             real
);
CREATE INDEX perception_vehicle_time ON perception_events (vehicle_id, time DESC);
CREATE INDEX perception_time ON perception_events (time DESC);

CREATE TABLE driving_events (
    time       timestamptz      NOT NULL,
    vehicle_id text             NOT NULL,
    event_id   uuid             NOT NULL,
    type       text             NOT NULL,
    cause      text,
    detail     text,
    lat        double precision NOT NULL,
    lon        double precision NOT NULL,
    speed_kmh  real             NOT NULL,
    autopilot  boolean          NOT NULL
);
CREATE INDEX driving_vehicle_time ON driving_events (vehicle_id, time DESC);
CREATE INDEX driving_type_time ON driving_events (type, time DESC);

-- Latest known state of each vehicle, upserted by the ingestor with every batch.
CREATE TABLE vehicles (
    vehicle_id      text PRIMARY KEY,
    first_seen      timestamptz      NOT NULL,
    last_seen       timestamptz      NOT NULL,
    speed_kmh       real             NOT NULL,
    speed_limit_kmh real             NOT NULL,
    lat             double precision NOT NULL,
    lon             double precision NOT NULL,
    heading_deg     real             NOT NULL,
    battery_pct     real             NOT NULL,
    range_km        real             NOT NULL,
    odometer_km     double precision NOT NULL,
    autopilot       boolean          NOT NULL,
    city            text             NOT NULL,
    route_id        text             NOT NULL,
    trip_id         text
);

-- Per-vehicle one-minute rollup of telemetry, merged by the ingestor in the same
-- transaction as the rows (every column merges associatively, so batches can be
-- applied in any split). Distance in a window is max(odometer_last) -
-- min(odometer_first) per vehicle; autonomous distance is sum(autonomous_km).
CREATE TABLE vehicle_minute (
    bucket            timestamptz      NOT NULL,
    vehicle_id        text             NOT NULL,
    samples           integer          NOT NULL,
    autopilot_samples integer          NOT NULL,
    moving_samples    integer          NOT NULL,
    over_limit_samples integer         NOT NULL,
    odometer_first    double precision NOT NULL,
    odometer_last     double precision NOT NULL,
    distance_km       double precision NOT NULL,  -- sum(step_km)
    autonomous_km     double precision NOT NULL,  -- sum(step_km) where autopilot
    speed_sum_kmh     double precision NOT NULL,
    speed_max_kmh     real             NOT NULL,
    speed_limit_max_kmh real           NOT NULL,
    battery_min_pct   real             NOT NULL,
    battery_max_pct   real             NOT NULL,
    PRIMARY KEY (vehicle_id, bucket)
);
CREATE INDEX vehicle_minute_bucket ON vehicle_minute (bucket);

-- One row per (vehicle, rule) alert lifecycle: pending -> firing -> resolved.
-- At most one open (not resolved) alert per vehicle and rule.
CREATE TABLE alerts (
    alert_id      bigserial PRIMARY KEY,
    vehicle_id    text        NOT NULL,
    rule          text        NOT NULL,
    state         text        NOT NULL CHECK (state IN ('pending', 'firing', 'resolved')),
    severity      text        NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    first_seen    timestamptz NOT NULL,  -- first breaching sample (event time)
    last_seen     timestamptz NOT NULL,  -- last breaching sample
    fired_at      timestamptz,
    clear_since   timestamptz,           -- first non-breaching sample of the current clear run
    resolved_at   timestamptz,
    breach_count  integer     NOT NULL DEFAULT 1,
    value         double precision,      -- worst value seen (km/h over, battery %, ttc s...)
    summary       text        NOT NULL DEFAULT '',
    acked_by      text,
    acked_at      timestamptz,
    ack_until     timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX alerts_one_open ON alerts (vehicle_id, rule) WHERE state <> 'resolved';
CREATE INDEX alerts_state_seen ON alerts (state, last_seen DESC);
CREATE INDEX alerts_vehicle_seen ON alerts (vehicle_id, last_seen DESC);

-- History of alert state changes, written with the data that caused them.
CREATE TABLE alert_transitions (
    time        timestamptz NOT NULL,  -- event time of the change
    alert_id    bigint      NOT NULL,
    vehicle_id  text        NOT NULL,
    rule        text        NOT NULL,
    from_state  text,
    to_state    text        NOT NULL,
    severity    text        NOT NULL,
    value       double precision
);
CREATE INDEX alert_transitions_alert ON alert_transitions (alert_id, time);

-- A rule silenced for one vehicle (or every vehicle when vehicle_id is '*') until a time.
CREATE TABLE silences (
    silence_id  bigserial PRIMARY KEY,
    vehicle_id  text        NOT NULL,
    rule        text        NOT NULL,
    until       timestamptz NOT NULL,
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    reason      text        NOT NULL DEFAULT ''
);
CREATE INDEX silences_lookup ON silences (vehicle_id, rule, until);

-- Messages that could not be decoded or validated, kept with the reason.
CREATE TABLE rejects (
    reject_id      bigserial PRIMARY KEY,
    received_at    timestamptz NOT NULL DEFAULT now(),
    consumer_group text        NOT NULL,
    topic          text        NOT NULL,
    partition      integer     NOT NULL,
    "offset"       bigint      NOT NULL,
    key            bytea,
    raw            bytea,       -- capped at 64 KiB
    raw_size       integer     NOT NULL,
    reason         text        NOT NULL
);
CREATE INDEX rejects_received ON rejects (received_at DESC);

-- Next offset to consume per (consumer group, topic, partition), committed in the
-- same transaction as the rows read before it.
CREATE TABLE ingest_offsets (
    consumer_group text        NOT NULL,
    topic          text        NOT NULL,
    partition      integer     NOT NULL,
    next_offset    bigint      NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);
