"""Per-minute rollups and the vehicles' latest state, merged by the ingestor in the batch's
transaction, and data retention.

The writer calls :func:`merge` inside the transaction that copies a batch, so the
rollups are always exactly consistent with the raw rows, on every backend (plain
PostgreSQL, TimescaleDB Apache or community licence). Each batch is aggregated in
Python per key (:func:`aggregate`); the many ``vehicle_minute`` rows are binary
COPYed into a session-local staging table and merged with one ``INSERT … SELECT …
ON CONFLICT DO UPDATE`` (binding thousands of array elements as parameters costs
several times more), the few fleet-wide rows are sent as arrays. Every column
merges associatively (sums, minima, maxima, and "first"/"last" values chosen by
their sample time), so a batch may be split or batches applied in any order and the
result is the same.

Each staged ``vehicle_minute`` row also carries the rest of the vehicle's state at
the minute's latest sample (:data:`VEHICLE_STATE_COLUMNS`), and ``vehicles`` (one row
per vehicle: its latest state) is upserted from the same staged rows: one COPY per
batch serves both, which matters when every batch touches 10,000 vehicles.

Tables (``sql/001_core.sql`` and ``sql/002_rollups.sql``):

- ``vehicle_minute`` (vehicle, minute): samples, autopilot/moving/over-limit samples,
  odometer of the first and last reading (with their times), distance and
  autonomous distance (sums of ``step_km``), the step of the first reading (so a
  window can exclude the distance driven before it), speed sum/max, road limit max,
  battery min/max/last, last position, speed and autopilot state.
- ``fleet_minute`` (minute): the fleet's samples, autopilot and moving samples,
  distance and autonomous distance, interventions and disengagements.
- ``perception_minute`` (minute, object class): events, closing events.
- ``perception_hist_minute`` (minute, kind, bin): distance and time-to-collision
  histograms with the fixed edges :data:`DISTANCE_EDGES_M` and :data:`TTC_EDGES_S`.

Rows are merged in key order, so concurrent ingestors of one consumer group (which
share the fleet-wide minute rows) wait for each other rather than deadlock.

Backends. The same ingestor-maintained rollups serve every backend, so every backend
gives the same answers through one query path. TimescaleDB continuous aggregates are
deliberately not used even where the licence allows them: they lag behind the live
view until refreshed, real-time aggregation re-reads raw rows, and the answers would
differ per backend. What the community licence adds is compression and retention
policies (:func:`policy_statements`, applied by ``fleetwatch db migrate``); on the
Apache build and plain PostgreSQL, :func:`enforce_retention` does retention
(``drop_chunks`` or ``DELETE``). Rollups are small and are kept.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, Final, Protocol

import psycopg
from psycopg import sql

from fleetwatch.model import DrivingEventType
from fleetwatch.store.db import copy_rows

MOVING_KMH: Final = 1.0
"""A vehicle faster than this is moving."""

DISTANCE_EDGES_M: Final = (0.0, 5.0, 10.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0)
"""Lower edges of the perception distance histogram bins (the last bin is open)."""

TTC_EDGES_S: Final = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0)
"""Lower edges of the time-to-collision histogram bins (the last bin is open)."""

EVENT_TABLES: Final = ("telemetry", "perception_events", "driving_events", "alert_transitions")
"""Raw tables subject to retention (the rollups are kept)."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)


def time_to_collision_s(distance_m: float, closing_speed_mps: float) -> float | None:
    """Distance / closing speed when the object closes in, else None."""
    if closing_speed_mps <= 0:
        return None
    return distance_m / closing_speed_mps


def histogram_bin(value: float, edges: Sequence[float]) -> int:
    """Index of the bin of ``value`` (as SQL ``width_bucket(value, edges) - 1``)."""
    return bisect_right(edges, value) - 1


def _minute(moment: datetime) -> int:
    return int(moment.timestamp()) // 60


@lru_cache(maxsize=4096)
def _bucket(minute: int) -> datetime:
    return _EPOCH + timedelta(minutes=minute)


# --------------------------------------------------------------------------- SQL

VEHICLE_MINUTE_COLUMNS: Final = (
    "bucket",
    "vehicle_id",
    "samples",
    "autopilot_samples",
    "moving_samples",
    "over_limit_samples",
    "odometer_first",
    "odometer_last",
    "distance_km",
    "autonomous_km",
    "speed_sum_kmh",
    "speed_max_kmh",
    "speed_limit_max_kmh",
    "battery_min_pct",
    "battery_max_pct",
    "first_time",
    "last_time",
    "first_step_km",
    "first_autonomous_step_km",
    "battery_last_pct",
    "lat_last",
    "lon_last",
    "speed_last_kmh",
    "autopilot_last",
)
"""Columns of the rows :func:`aggregate` returns for ``vehicle_minute``, in order."""

_VEHICLE_MINUTE_TYPES: Final = (
    "timestamptz",
    "text",
    "int4",
    "int4",
    "int4",
    "int4",
    "float8",
    "float8",
    "float8",
    "float8",
    "float8",
    "float4",
    "float4",
    "float4",
    "float4",
    "timestamptz",
    "timestamptz",
    "float8",
    "float8",
    "float4",
    "float8",
    "float8",
    "float4",
    "bool",
)

VEHICLE_STATE_COLUMNS: Final = (
    "speed_limit_last_kmh",
    "heading_last_deg",
    "range_last_km",
    "city_last",
    "route_last",
    "trip_last",
)
"""Staged beside each ``vehicle_minute`` row: the rest of the vehicle's state at the
minute's latest sample, so that ``vehicles`` is upserted from the same staged rows."""

STAGE_COLUMNS: Final = VEHICLE_MINUTE_COLUMNS + VEHICLE_STATE_COLUMNS
_STAGE_TYPES: Final = (*_VEHICLE_MINUTE_TYPES, "float4", "float4", "float4", "text", "text", "text")

VEHICLE_MINUTE_STAGE: Final = "fleetwatch_vehicle_minute_stage"
"""Session-local table the batch's ``vehicle_minute`` rows are COPYed into before merging."""

VEHICLE_MINUTE_STAGE_SQL: Final = f"""
CREATE TEMP TABLE IF NOT EXISTS {VEHICLE_MINUTE_STAGE} (
    LIKE vehicle_minute INCLUDING DEFAULTS,
    speed_limit_last_kmh real,
    heading_last_deg     real,
    range_last_km        real,
    city_last            text,
    route_last           text,
    trip_last            text
) ON COMMIT DELETE ROWS
"""

VEHICLE_MINUTE_MERGE_SQL: Final = f"""
INSERT INTO vehicle_minute ({", ".join(VEHICLE_MINUTE_COLUMNS)})
SELECT {", ".join(VEHICLE_MINUTE_COLUMNS)} FROM {VEHICLE_MINUTE_STAGE}
ORDER BY 2, 1
ON CONFLICT (vehicle_id, bucket) DO UPDATE SET
    samples = vehicle_minute.samples + EXCLUDED.samples,
    autopilot_samples = vehicle_minute.autopilot_samples + EXCLUDED.autopilot_samples,
    moving_samples = vehicle_minute.moving_samples + EXCLUDED.moving_samples,
    over_limit_samples = vehicle_minute.over_limit_samples + EXCLUDED.over_limit_samples,
    distance_km = vehicle_minute.distance_km + EXCLUDED.distance_km,
    autonomous_km = vehicle_minute.autonomous_km + EXCLUDED.autonomous_km,
    speed_sum_kmh = vehicle_minute.speed_sum_kmh + EXCLUDED.speed_sum_kmh,
    speed_max_kmh = greatest(vehicle_minute.speed_max_kmh, EXCLUDED.speed_max_kmh),
    speed_limit_max_kmh = greatest(vehicle_minute.speed_limit_max_kmh,
                                   EXCLUDED.speed_limit_max_kmh),
    battery_min_pct = least(vehicle_minute.battery_min_pct, EXCLUDED.battery_min_pct),
    battery_max_pct = greatest(vehicle_minute.battery_max_pct, EXCLUDED.battery_max_pct),
    odometer_first = CASE WHEN EXCLUDED.first_time < vehicle_minute.first_time
        THEN EXCLUDED.odometer_first ELSE vehicle_minute.odometer_first END,
    first_step_km = CASE WHEN EXCLUDED.first_time < vehicle_minute.first_time
        THEN EXCLUDED.first_step_km ELSE vehicle_minute.first_step_km END,
    first_autonomous_step_km = CASE WHEN EXCLUDED.first_time < vehicle_minute.first_time
        THEN EXCLUDED.first_autonomous_step_km ELSE vehicle_minute.first_autonomous_step_km END,
    first_time = least(vehicle_minute.first_time, EXCLUDED.first_time),
    odometer_last = CASE WHEN EXCLUDED.last_time >= vehicle_minute.last_time
        THEN EXCLUDED.odometer_last ELSE vehicle_minute.odometer_last END,
    battery_last_pct = CASE WHEN EXCLUDED.last_time >= vehicle_minute.last_time
        THEN EXCLUDED.battery_last_pct ELSE vehicle_minute.battery_last_pct END,
    lat_last = CASE WHEN EXCLUDED.last_time >= vehicle_minute.last_time
        THEN EXCLUDED.lat_last ELSE vehicle_minute.lat_last END,
    lon_last = CASE WHEN EXCLUDED.last_time >= vehicle_minute.last_time
        THEN EXCLUDED.lon_last ELSE vehicle_minute.lon_last END,
    speed_last_kmh = CASE WHEN EXCLUDED.last_time >= vehicle_minute.last_time
        THEN EXCLUDED.speed_last_kmh ELSE vehicle_minute.speed_last_kmh END,
    autopilot_last = CASE WHEN EXCLUDED.last_time >= vehicle_minute.last_time
        THEN EXCLUDED.autopilot_last ELSE vehicle_minute.autopilot_last END,
    last_time = greatest(vehicle_minute.last_time, EXCLUDED.last_time)
"""

FLEET_MINUTE_MERGE_SQL: Final = """
INSERT INTO fleet_minute (
    bucket, samples, autopilot_samples, moving_samples, distance_km, autonomous_km,
    interventions, disengagements)
SELECT * FROM unnest(
    %b::timestamptz[], %b::bigint[], %b::bigint[], %b::bigint[], %b::float8[], %b::float8[],
    %b::bigint[], %b::bigint[])
ORDER BY 1
ON CONFLICT (bucket) DO UPDATE SET
    samples = fleet_minute.samples + EXCLUDED.samples,
    autopilot_samples = fleet_minute.autopilot_samples + EXCLUDED.autopilot_samples,
    moving_samples = fleet_minute.moving_samples + EXCLUDED.moving_samples,
    distance_km = fleet_minute.distance_km + EXCLUDED.distance_km,
    autonomous_km = fleet_minute.autonomous_km + EXCLUDED.autonomous_km,
    interventions = fleet_minute.interventions + EXCLUDED.interventions,
    disengagements = fleet_minute.disengagements + EXCLUDED.disengagements
"""

# The latest state of each vehicle, from its latest staged minute (an older sample never
# overwrites a newer one); first_seen is the earliest sample ever.
VEHICLES_MERGE_SQL: Final = f"""
INSERT INTO vehicles AS v (
    vehicle_id, first_seen, last_seen, speed_kmh, speed_limit_kmh, lat, lon, heading_deg,
    battery_pct, range_km, odometer_km, autopilot, city, route_id, trip_id)
SELECT DISTINCT ON (vehicle_id)
       vehicle_id, min(first_time) OVER (PARTITION BY vehicle_id), last_time, speed_last_kmh,
       speed_limit_last_kmh, lat_last, lon_last, heading_last_deg, battery_last_pct,
       range_last_km, odometer_last, autopilot_last, city_last, route_last, trip_last
FROM {VEHICLE_MINUTE_STAGE}
ORDER BY vehicle_id, last_time DESC
ON CONFLICT (vehicle_id) DO UPDATE SET
    first_seen = LEAST(v.first_seen, EXCLUDED.first_seen),
    last_seen = EXCLUDED.last_seen,
    speed_kmh = EXCLUDED.speed_kmh,
    speed_limit_kmh = EXCLUDED.speed_limit_kmh,
    lat = EXCLUDED.lat,
    lon = EXCLUDED.lon,
    heading_deg = EXCLUDED.heading_deg,
    battery_pct = EXCLUDED.battery_pct,
    range_km = EXCLUDED.range_km,
    odometer_km = EXCLUDED.odometer_km,
    autopilot = EXCLUDED.autopilot,
    city = EXCLUDED.city,
    route_id = EXCLUDED.route_id,
    trip_id = EXCLUDED.trip_id
WHERE v.last_seen <= EXCLUDED.last_seen
"""

PERCEPTION_MINUTE_MERGE_SQL: Final = """
INSERT INTO perception_minute (bucket, object_class, events, closing_events)
SELECT * FROM unnest(%b::timestamptz[], %b::text[], %b::bigint[], %b::bigint[])
ORDER BY 1, 2
ON CONFLICT (bucket, object_class) DO UPDATE SET
    events = perception_minute.events + EXCLUDED.events,
    closing_events = perception_minute.closing_events + EXCLUDED.closing_events
"""

PERCEPTION_HIST_MERGE_SQL: Final = """
INSERT INTO perception_hist_minute (bucket, kind, bin, events)
SELECT * FROM unnest(%b::timestamptz[], %b::text[], %b::smallint[], %b::bigint[])
ORDER BY 1, 2, 3
ON CONFLICT (bucket, kind, bin) DO UPDATE SET
    events = perception_hist_minute.events + EXCLUDED.events
"""


# --------------------------------------------------------------------------- merge


# Positions in the writer's row tuples (fleetwatch.store.writer.*_COLUMNS).
_T_TIME, _T_VEHICLE, _T_SPEED, _T_LIMIT, _T_LAT, _T_LON = 0, 1, 3, 4, 5, 6
_T_HEADING, _T_BATTERY, _T_RANGE, _T_ODOMETER, _T_AUTOPILOT = 7, 8, 9, 10, 11
_T_CITY, _T_ROUTE, _T_TRIP, _T_STEP = 12, 13, 14, 15
_P_TIME, _P_CLASS, _P_DISTANCE, _P_CLOSING = 0, 3, 4, 5
_D_TIME, _D_TYPE = 0, 3
_INTERVENTION: Final = DrivingEventType.INTERVENTION.value
_DISENGAGEMENT: Final = DrivingEventType.DISENGAGEMENT.value


class _VehicleMinute:
    __slots__ = (
        "autonomous_km",
        "autopilot_last",
        "autopilot_samples",
        "battery_last",
        "battery_max",
        "battery_min",
        "distance_km",
        "first_autonomous_step",
        "first_step",
        "first_time",
        "last_row",
        "last_time",
        "lat_last",
        "limit_max",
        "lon_last",
        "moving",
        "odometer_first",
        "odometer_last",
        "over_limit",
        "samples",
        "speed_last",
        "speed_max",
        "speed_sum",
    )

    def __init__(self, row: Sequence[Any]) -> None:
        autopilot = row[_T_AUTOPILOT]
        step = row[_T_STEP]
        self.samples = 0
        self.autopilot_samples = 0
        self.moving = 0
        self.over_limit = 0
        self.distance_km = 0.0
        self.autonomous_km = 0.0
        self.speed_sum = 0.0
        self.speed_max = row[_T_SPEED]
        self.limit_max = row[_T_LIMIT]
        self.battery_min = row[_T_BATTERY]
        self.battery_max = row[_T_BATTERY]
        self.first_time = row[_T_TIME]
        self.first_step = step
        self.first_autonomous_step = step if autopilot else 0.0
        self.odometer_first = row[_T_ODOMETER]
        self.last_time = row[_T_TIME]
        self.odometer_last = row[_T_ODOMETER]
        self.battery_last = row[_T_BATTERY]
        self.lat_last = row[_T_LAT]
        self.lon_last = row[_T_LON]
        self.speed_last = row[_T_SPEED]
        self.autopilot_last = autopilot
        self.last_row = row

    def add(self, row: Sequence[Any]) -> None:
        self.samples += 1
        speed = row[_T_SPEED]
        limit = row[_T_LIMIT]
        step = row[_T_STEP]
        autopilot = row[_T_AUTOPILOT]
        battery = row[_T_BATTERY]
        time = row[_T_TIME]
        self.speed_sum += speed
        if speed > MOVING_KMH:
            self.moving += 1
        if speed > limit:
            self.over_limit += 1
        self.distance_km += step
        if autopilot:
            self.autopilot_samples += 1
            self.autonomous_km += step
        if speed > self.speed_max:
            self.speed_max = speed
        if limit > self.limit_max:
            self.limit_max = limit
        if battery < self.battery_min:
            self.battery_min = battery
        if battery > self.battery_max:
            self.battery_max = battery
        if time < self.first_time:
            self.first_time = time
            self.first_step = step
            self.first_autonomous_step = step if autopilot else 0.0
            self.odometer_first = row[_T_ODOMETER]
        if time >= self.last_time:
            self.last_time = time
            self.odometer_last = row[_T_ODOMETER]
            self.battery_last = battery
            self.lat_last = row[_T_LAT]
            self.lon_last = row[_T_LON]
            self.speed_last = speed
            self.autopilot_last = autopilot
            self.last_row = row


def _state(row: Sequence[Any]) -> tuple[Any, ...]:
    """The vehicle-state columns of :data:`STAGE_COLUMNS` beyond the rollup's own, from
    the minute's latest telemetry row."""
    return (
        float(row[_T_LIMIT]),
        float(row[_T_HEADING]),
        float(row[_T_RANGE]),
        row[_T_CITY],
        row[_T_ROUTE],
        row[_T_TRIP],
    )


def _vehicle_minute_rows(
    groups: dict[tuple[str, int], _VehicleMinute | Sequence[Any]],
) -> list[tuple[Any, ...]]:
    """Staged ``vehicle_minute`` rows in key order, columns as :data:`STAGE_COLUMNS`.

    A key with one sample holds that telemetry row itself (the usual case for a large
    fleet and a batch shorter than a minute): its rollup row is built directly.
    """
    rows = []
    for (vehicle_id, minute), m in sorted(groups.items()):
        if not isinstance(m, _VehicleMinute):
            speed = float(m[_T_SPEED])
            limit = float(m[_T_LIMIT])
            step = float(m[_T_STEP])
            autopilot = bool(m[_T_AUTOPILOT])
            odometer = float(m[_T_ODOMETER])
            battery = float(m[_T_BATTERY])
            time = m[_T_TIME]
            rows.append(
                (
                    _bucket(minute),
                    vehicle_id,
                    1,
                    1 if autopilot else 0,
                    1 if speed > MOVING_KMH else 0,
                    1 if speed > limit else 0,
                    odometer,
                    odometer,
                    step,
                    step if autopilot else 0.0,
                    speed,
                    speed,
                    limit,
                    battery,
                    battery,
                    time,
                    time,
                    step,
                    step if autopilot else 0.0,
                    battery,
                    float(m[_T_LAT]),
                    float(m[_T_LON]),
                    speed,
                    autopilot,
                    *_state(m),
                )
            )
            continue
        rows.append(
            (
                _bucket(minute),
                vehicle_id,
                m.samples,
                m.autopilot_samples,
                m.moving,
                m.over_limit,
                float(m.odometer_first),
                float(m.odometer_last),
                float(m.distance_km),
                float(m.autonomous_km),
                float(m.speed_sum),
                float(m.speed_max),
                float(m.limit_max),
                float(m.battery_min),
                float(m.battery_max),
                m.first_time,
                m.last_time,
                float(m.first_step),
                float(m.first_autonomous_step),
                float(m.battery_last),
                float(m.lat_last),
                float(m.lon_last),
                float(m.speed_last),
                bool(m.autopilot_last),
                *_state(m.last_row),
            )
        )
    return rows


@dataclass(frozen=True, slots=True)
class Rollups:
    """One batch aggregated per rollup key, each list in key order.

    ``vehicle_minute`` rows follow :data:`STAGE_COLUMNS`; ``fleet_minute`` rows
    are (bucket, samples, autopilot, moving, distance, autonomous, interventions,
    disengagements); ``perception_minute`` rows (bucket, object class, events, closing
    events); ``perception_hist`` rows (bucket, kind, bin, events).
    """

    vehicle_minute: list[tuple[Any, ...]]
    fleet_minute: list[tuple[Any, ...]]
    perception_minute: list[tuple[Any, ...]]
    perception_hist: list[tuple[Any, ...]]


def aggregate(
    telemetry_rows: Sequence[Sequence[Any]],
    perception_rows: Sequence[Sequence[Any]],
    driving_rows: Sequence[Sequence[Any]],
) -> Rollups:
    """Aggregate one batch of the writer's row tuples per rollup key (no I/O)."""
    # (vehicle, minute) -> its only telemetry row so far, or the running aggregate
    vehicle_minutes: dict[tuple[str, int], _VehicleMinute | Sequence[Any]] = {}
    # fleet minute -> [samples, autopilot, moving, distance, autonomous, interv., diseng.]
    fleet: dict[int, list[Any]] = {}
    # One datetime -> minute conversion per distinct time: a batch has few of them.
    minute_of: dict[datetime, int] = {}
    for row in telemetry_rows:
        time = row[_T_TIME]
        minute = minute_of.get(time)
        if minute is None:
            minute = minute_of[time] = _minute(time)
        key = (row[_T_VEHICLE], minute)
        group = vehicle_minutes.get(key)
        if group is None:
            vehicle_minutes[key] = row
        elif isinstance(group, _VehicleMinute):
            group.add(row)
        else:
            vm = vehicle_minutes[key] = _VehicleMinute(group)
            vm.add(group)
            vm.add(row)
        f = fleet.get(minute)
        if f is None:
            f = fleet[minute] = [0, 0, 0, 0.0, 0.0, 0, 0]
        step = row[_T_STEP]
        f[0] += 1
        f[3] += step
        if row[_T_AUTOPILOT]:
            f[1] += 1
            f[4] += step
        if row[_T_SPEED] > MOVING_KMH:
            f[2] += 1
    for row in driving_rows:
        kind = row[_D_TYPE]
        if kind == _INTERVENTION:
            index = 5
        elif kind == _DISENGAGEMENT:
            index = 6
        else:
            continue
        minute = _minute(row[_D_TIME])
        f = fleet.get(minute)
        if f is None:
            f = fleet[minute] = [0, 0, 0, 0.0, 0.0, 0, 0]
        f[index] += 1

    classes: dict[tuple[int, str], list[int]] = {}
    hist: dict[tuple[int, str, int], int] = {}
    for row in perception_rows:
        time = row[_P_TIME]
        minute = minute_of.get(time)
        if minute is None:
            minute = minute_of[time] = _minute(time)
        class_key = (minute, row[_P_CLASS])
        counts = classes.get(class_key)
        if counts is None:
            counts = classes[class_key] = [0, 0]
        counts[0] += 1
        distance = row[_P_DISTANCE]
        dist_key = (minute, "distance", bisect_right(DISTANCE_EDGES_M, distance) - 1)
        hist[dist_key] = hist.get(dist_key, 0) + 1
        closing = row[_P_CLOSING]
        if closing > 0:
            counts[1] += 1
            ttc_key = (minute, "ttc", bisect_right(TTC_EDGES_S, distance / closing) - 1)
            hist[ttc_key] = hist.get(ttc_key, 0) + 1

    return Rollups(
        vehicle_minute=_vehicle_minute_rows(vehicle_minutes),
        fleet_minute=[
            (_bucket(k), f[0], f[1], f[2], float(f[3]), float(f[4]), f[5], f[6])
            for k, f in sorted(fleet.items())
        ],
        perception_minute=[(_bucket(m), c, n[0], n[1]) for (m, c), n in sorted(classes.items())],
        perception_hist=[(_bucket(m), k, b, n) for (m, k, b), n in sorted(hist.items())],
    )


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    return [[row[i] for row in rows] for i in range(width)]


def merge(
    cur: psycopg.Cursor[Any],
    telemetry_rows: Sequence[Sequence[Any]],
    perception_rows: Sequence[Sequence[Any]],
    driving_rows: Sequence[Sequence[Any]],
) -> None:
    """Merge one batch into the rollups and the vehicles' latest state, inside the
    caller's transaction.

    Rows are the writer's tuples, in the column order of
    ``fleetwatch.store.writer.TELEMETRY_COLUMNS`` (whose last column, ``step_km``, is
    the odometer delta since the vehicle's previous sample), ``PERCEPTION_COLUMNS``
    and ``DRIVING_COLUMNS``. The ``vehicle_minute`` rows (the many) go through a
    session-local staging table by binary COPY, with the rest of each vehicle's state
    beside them, and ``vehicles`` is upserted from there; the few fleet-wide rows go
    as arrays.
    """
    r = aggregate(telemetry_rows, perception_rows, driving_rows)
    if r.vehicle_minute:
        cur.execute(VEHICLE_MINUTE_STAGE_SQL)
        copy_rows(cur, VEHICLE_MINUTE_STAGE, STAGE_COLUMNS, _STAGE_TYPES, r.vehicle_minute)
        cur.execute(VEHICLE_MINUTE_MERGE_SQL)
        cur.execute(VEHICLES_MERGE_SQL)
    if r.fleet_minute:
        cur.execute(FLEET_MINUTE_MERGE_SQL, _columns(r.fleet_minute, 8))
    if r.perception_minute:
        cur.execute(PERCEPTION_MINUTE_MERGE_SQL, _columns(r.perception_minute, 4))
    if r.perception_hist:
        cur.execute(PERCEPTION_HIST_MERGE_SQL, _columns(r.perception_hist, 4))


# --------------------------------------------------------------------------- retention


class BackendFlags(Protocol):
    """The part of ``fleetwatch.store.capabilities.Capabilities`` used here."""

    @property
    def timescaledb(self) -> bool: ...


def enforce_retention(
    conn: psycopg.Connection[Any],
    capabilities: BackendFlags,
    retention_days: int,
    now: datetime,
) -> dict[str, int]:
    """Delete raw events older than ``retention_days`` (rollups are kept).

    With TimescaleDB whole chunks are dropped (``drop_chunks``); on plain PostgreSQL
    rows are deleted. Returns, per table, the chunks dropped or rows deleted. Where
    the community licence runs retention policies (:func:`policy_statements`) this
    is a no-op in effect but harmless.
    """
    cutoff = now - timedelta(days=retention_days)
    done: dict[str, int] = {}
    with conn.transaction(), conn.cursor() as cur:
        for table in EVENT_TABLES:
            if capabilities.timescaledb and _is_hypertable(cur, table):
                cur.execute(
                    "SELECT count(*) FROM drop_chunks(%s::regclass, older_than => %s)",
                    (table, cutoff),
                )
                row = cur.fetchone()
                done[table] = int(row[0]) if row else 0
            else:
                cur.execute(
                    sql.SQL("DELETE FROM {} WHERE time < %s").format(sql.Identifier(table)),
                    (cutoff,),
                )
                done[table] = cur.rowcount
    return done


def _is_hypertable(cur: psycopg.Cursor[Any], table: str) -> bool:
    cur.execute(
        "SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables"
        " WHERE hypertable_name = %s)",
        (table,),
    )
    row = cur.fetchone()
    return bool(row and row[0])


def policy_statements(retention_days: int, compress_after_days: int) -> list[sql.Composed]:
    """Compression and retention policies for the TimescaleDB community licence only.

    The Apache build and plain PostgreSQL have neither; there, :func:`enforce_retention`
    runs from the ingestor instead. Rollups are the ingestor's tables on every backend
    (one query path, exact answers at once); continuous aggregates are not used
    because they would lag behind the live view and answer differently per backend.
    """
    statements: list[sql.Composed] = []
    for table, segment_by in (
        ("telemetry", "vehicle_id"),
        ("perception_events", "vehicle_id"),
        ("driving_events", "vehicle_id"),
    ):
        ident = sql.Identifier(table)
        statements.append(
            sql.SQL(
                "ALTER TABLE {} SET (timescaledb.compress, timescaledb.compress_segmentby = {},"
                " timescaledb.compress_orderby = 'time DESC')"
            ).format(ident, sql.Literal(segment_by))
        )
        statements.append(
            sql.SQL(
                "SELECT add_compression_policy({}, {}::interval, if_not_exists => true)"
            ).format(sql.Literal(table), sql.Literal(f"{compress_after_days} days"))
        )
    for table in EVENT_TABLES:
        statements.append(
            sql.SQL("SELECT add_retention_policy({}, {}::interval, if_not_exists => true)").format(
                sql.Literal(table), sql.Literal(f"{retention_days} days")
            )
        )
    return statements
