-- Rollups for the fleet metrics (fleetwatch/store/rollups.py merges them in the
-- ingestor's transaction; fleetwatch/store/queries.py reads them) and indexes for
-- the TUI's refresh queries. Plain PostgreSQL, like every migration.

-- vehicle_minute: the first and last reading of each minute, so a window's distance
-- is the odometer of its first reading to its last (two index probes per vehicle),
-- and autonomous distance can leave out the step driven before the window.
ALTER TABLE vehicle_minute
    ADD COLUMN first_time               timestamptz      NOT NULL DEFAULT '-infinity',
    ADD COLUMN last_time                timestamptz      NOT NULL DEFAULT '-infinity',
    ADD COLUMN first_step_km            double precision NOT NULL DEFAULT 0,
    ADD COLUMN first_autonomous_step_km double precision NOT NULL DEFAULT 0,
    ADD COLUMN battery_last_pct         real             NOT NULL DEFAULT 0,
    ADD COLUMN lat_last                 double precision NOT NULL DEFAULT 0,
    ADD COLUMN lon_last                 double precision NOT NULL DEFAULT 0,
    ADD COLUMN speed_last_kmh           real             NOT NULL DEFAULT 0,
    ADD COLUMN autopilot_last           boolean          NOT NULL DEFAULT false;

-- The whole fleet per minute: KPIs over any window read one row per minute.
CREATE TABLE fleet_minute (
    bucket            timestamptz      PRIMARY KEY,
    samples           bigint           NOT NULL DEFAULT 0,
    autopilot_samples bigint           NOT NULL DEFAULT 0,
    moving_samples    bigint           NOT NULL DEFAULT 0,
    distance_km       double precision NOT NULL DEFAULT 0,  -- sum(step_km)
    autonomous_km     double precision NOT NULL DEFAULT 0,  -- sum(step_km) where autopilot
    interventions     bigint           NOT NULL DEFAULT 0,
    disengagements    bigint           NOT NULL DEFAULT 0
);

-- Perception events per minute and object class.
CREATE TABLE perception_minute (
    bucket         timestamptz NOT NULL,
    object_class   text        NOT NULL,
    events         bigint      NOT NULL DEFAULT 0,
    closing_events bigint      NOT NULL DEFAULT 0,  -- closing speed > 0 (a TTC exists)
    PRIMARY KEY (bucket, object_class)
);

-- Histograms per minute: kind 'distance' (metres) or 'ttc' (seconds); bin is the
-- index into rollups.DISTANCE_EDGES_M / TTC_EDGES_S (width_bucket(value, edges) - 1).
CREATE TABLE perception_hist_minute (
    bucket timestamptz NOT NULL,
    kind   text        NOT NULL CHECK (kind IN ('distance', 'ttc')),
    bin    smallint    NOT NULL,
    events bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket, kind, bin)
);

-- Near misses: only close calls are indexed, up to the default collision-risk
-- threshold (queries.NEAR_MISS_INDEX_S); a higher configured threshold still works,
-- from the TTC histogram or a wider scan.
CREATE INDEX perception_near_miss ON perception_events (time DESC)
    INCLUDE (vehicle_id, object_class, ttc_s)
    WHERE ttc_s < 2.0;

-- The latest-state row of every vehicle and the current minute's rollup rows are
-- updated by every batch: leave room on each page so updates stay HOT (no index
-- churn, less bloat between autovacuum runs).
ALTER TABLE vehicles SET (fillfactor = 50);
ALTER TABLE vehicle_minute SET (fillfactor = 80);
ALTER TABLE fleet_minute SET (fillfactor = 50);
ALTER TABLE perception_minute SET (fillfactor = 70);
ALTER TABLE perception_hist_minute SET (fillfactor = 70);

-- Alerts that started firing in a window (speed violations, collision risks).
CREATE INDEX alerts_fired ON alerts (fired_at) WHERE fired_at IS NOT NULL;
