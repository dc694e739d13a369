"""The metrics against real databases: TimescaleDB (Apache build) and plain PostgreSQL.

A seeded simulated fleet is written through the batch writer (which merges the
rollups) in batches that split minutes at odd places. Every expected number is
computed here in Python straight from the simulated messages, never by SQL.
"""

from __future__ import annotations

import os
import uuid
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from fleetwatch.model import DrivingEvent, DrivingEventType, PerceptionEvent, Telemetry
from fleetwatch.sim.fleet import Fleet, backfill
from fleetwatch.store import migrate, queries, rollups, writer
from fleetwatch.store.capabilities import detect
from fleetwatch.store.queries import Window

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=timezone.utc)
VEHICLES = 40
DURATION = timedelta(minutes=45)
END = T0 + DURATION
TTC_THRESHOLD_S = 2.0
# Explicit window inside the data: both edges fall on samples.
WINDOW_START = T0 + timedelta(minutes=10)
WINDOW_END = T0 + timedelta(minutes=40)
EDGE_VEHICLE = "AV-0001"


@dataclass
class Dataset:
    telemetry: list[tuple[Telemetry, float]] = field(default_factory=list)
    perception: list[PerceptionEvent] = field(default_factory=list)
    driving: list[DrivingEvent] = field(default_factory=list)


def _driving(vehicle: str, time: datetime, kind: DrivingEventType, cause: str) -> DrivingEvent:
    return DrivingEvent(
        event_id=uuid.uuid4(),
        time=time,
        vehicle_id=vehicle,
        type=kind,
        cause=cause,
        lat=48.1,
        lon=11.5,
        speed_kmh=30.0,
        autopilot=True,
    )


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    data = Dataset()
    last_odometer: dict[str, float] = {}
    fleet = Fleet(VEHICLES, 11, T0)
    for messages in backfill(fleet, DURATION):
        for m in messages:
            if isinstance(m, Telemetry):
                previous = last_odometer.get(m.vehicle_id)
                step = 0.0 if previous is None else max(0.0, m.odometer_km - previous)
                last_odometer[m.vehicle_id] = m.odometer_km
                data.telemetry.append((m, step))
            elif isinstance(m, PerceptionEvent):
                data.perception.append(m)
            elif isinstance(m, DrivingEvent):
                data.driving.append(m)
    # Events exactly on the window's edges: the one at the start counts, the ones at
    # the end and just before the start do not.
    data.driving += [
        _driving(EDGE_VEHICLE, WINDOW_START, DrivingEventType.INTERVENTION, "edge-start"),
        _driving(EDGE_VEHICLE, WINDOW_START, DrivingEventType.DISENGAGEMENT, "edge-start"),
        _driving(EDGE_VEHICLE, WINDOW_END, DrivingEventType.INTERVENTION, "edge-end"),
        _driving(
            EDGE_VEHICLE,
            WINDOW_START - timedelta(microseconds=1),
            DrivingEventType.INTERVENTION,
            "edge-before",
        ),
    ]
    return data


def _load(dsn: str, data: Dataset) -> None:
    """Write the dataset through the batch writer in batches of odd sizes."""
    tel = [writer.telemetry_row(m, step) for m, step in data.telemetry]
    per = [writer.perception_row(m) for m in data.perception]
    drv = [writer.driving_row(m) for m in data.driving]
    with psycopg.connect(dsn) as conn:
        size = 7919  # prime: batches end mid-minute, and in a different place each time
        parts = max(len(tel), len(per)) // size + 1
        for i in range(parts):
            batch = writer.Batch(
                group="metrics-test",
                telemetry=tel[i * size : (i + 1) * size],
                perception=per[i * size : (i + 1) * size],
                driving=drv[i * len(drv) // parts : (i + 1) * len(drv) // parts],
            )
            writer.write_batch(conn, batch, merge=rollups.merge)


def _plain_postgres(pg_dsn: str) -> Generator[str, None, None]:
    """A database on the same server without TimescaleDB: the migration files applied
    as plain SQL, as on the embedded PostgreSQL."""
    name = f"fwtest_{os.getpid()}_plain_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = make_conninfo(pg_dsn, dbname=name)
    try:
        with psycopg.connect(dsn) as conn:
            for migration in migrate.migrations():
                conn.execute(sql.SQL(migration.text))  # a trusted file of the package
            conn.commit()
        yield dsn
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="module", params=["timescaledb", "postgres"])
def loaded(
    request: pytest.FixtureRequest, pg_dsn: str, dataset: Dataset
) -> Iterator[tuple[str, str]]:
    """(backend, dsn) of a database holding the dataset."""
    backend: str = request.param
    databases = _plain_postgres(pg_dsn) if backend == "postgres" else _timescale(pg_dsn)
    dsn = next(databases)
    with psycopg.connect(dsn) as conn:
        caps = detect(conn)
    assert caps.timescaledb == (backend == "timescaledb")
    _load(dsn, dataset)
    yield backend, dsn
    databases.close()


def _timescale(pg_dsn: str) -> Generator[str, None, None]:
    name = f"fwtest_{os.getpid()}_tsdb_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = make_conninfo(pg_dsn, dbname=name)
    try:
        with psycopg.connect(dsn) as conn:
            migrate.apply_migrations(conn)
        yield dsn
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def conn(loaded: tuple[str, str]) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(loaded[1]) as connection:
        yield connection


# --------------------------------------------------------------------------- expectations


@dataclass
class Expected:
    distance_km: float = 0.0
    autonomous_km: float = 0.0
    samples: int = 0
    autopilot_samples: int = 0
    interventions: int = 0
    disengagements: int = 0
    per_vehicle_km: dict[str, float] = field(default_factory=dict)
    per_vehicle_autonomous_km: dict[str, float] = field(default_factory=dict)
    per_vehicle_interventions: Counter[str] = field(default_factory=Counter)
    per_vehicle_disengagements: Counter[str] = field(default_factory=Counter)
    causes: Counter[tuple[str, str]] = field(default_factory=Counter)


def expected(data: Dataset, start: datetime, end: datetime, vehicle: str | None = None) -> Expected:
    e = Expected()
    readings: dict[str, list[tuple[Telemetry, float]]] = defaultdict(list)
    for m, step in data.telemetry:
        if start <= m.time < end and vehicle in (None, m.vehicle_id):
            readings[m.vehicle_id].append((m, step))
            e.samples += 1
            e.autopilot_samples += m.autopilot
    for vid, rows in readings.items():
        rows.sort(key=lambda r: r[0].time)
        km = rows[-1][0].odometer_km - rows[0][0].odometer_km
        auto = sum(step for m, step in rows[1:] if m.autopilot)
        e.per_vehicle_km[vid] = km
        e.per_vehicle_autonomous_km[vid] = auto
        e.distance_km += km
        e.autonomous_km += auto
    for d in data.driving:
        if not (start <= d.time < end) or vehicle not in (None, d.vehicle_id):
            continue
        if d.type is DrivingEventType.INTERVENTION:
            e.interventions += 1
            e.per_vehicle_interventions[d.vehicle_id] += 1
        elif d.type is DrivingEventType.DISENGAGEMENT:
            e.disengagements += 1
            e.per_vehicle_disengagements[d.vehicle_id] += 1
        else:
            continue
        e.causes[(d.cause or "unknown", d.type.value)] += 1
    return e


WINDOW = Window.between(WINDOW_START, WINDOW_END, now=END)


# --------------------------------------------------------------------------- tests


def test_fleet_kpis_match_the_simulated_events(
    conn: psycopg.Connection[Any], dataset: Dataset
) -> None:
    e = expected(dataset, WINDOW_START, WINDOW_END)
    assert e.interventions >= 2 and e.disengagements >= 2, "the dataset must have events"
    k = queries.fleet_kpis(conn, WINDOW, ttc_threshold_s=TTC_THRESHOLD_S)
    assert k.distance_km == pytest.approx(e.distance_km, rel=1e-9)
    assert k.autonomous_km == pytest.approx(e.autonomous_km, rel=1e-9)
    assert 0 < k.autonomous_km < k.distance_km
    assert k.telemetry_samples == e.samples
    assert (k.interventions, k.disengagements) == (e.interventions, e.disengagements)
    assert k.km_per_intervention == pytest.approx(e.distance_km / e.interventions)
    assert k.km_per_disengagement == pytest.approx(e.distance_km / e.disengagements)
    assert k.interventions_per_1000km == pytest.approx(1000 * e.interventions / e.distance_km)
    assert k.disengagements_per_1000km == pytest.approx(1000 * e.disengagements / e.distance_km)
    assert k.autopilot_distance_pct == pytest.approx(100 * e.autonomous_km / e.distance_km)
    assert k.autopilot_time_pct == pytest.approx(100 * e.autopilot_samples / e.samples)
    # km per intervention is a ratio of totals, not a mean of per-vehicle ratios.
    per_vehicle = [e.per_vehicle_km[v] / n for v, n in e.per_vehicle_interventions.items() if n]
    if len(per_vehicle) > 1:
        assert k.km_per_intervention != pytest.approx(sum(per_vehicle) / len(per_vehicle))


def test_window_edges_count_the_start_and_not_the_end(
    conn: psycopg.Connection[Any], dataset: Dataset
) -> None:
    e = expected(dataset, WINDOW_START, WINDOW_END, EDGE_VEHICLE)
    k = queries.fleet_kpis(conn, WINDOW, EDGE_VEHICLE)
    assert (k.interventions, k.disengagements) == (e.interventions, e.disengagements)
    causes = {c.cause: c for c in queries.events_by_cause(conn, WINDOW, EDGE_VEHICLE)}
    assert causes["edge-start"].interventions == 1
    assert causes["edge-start"].disengagements == 1
    assert "edge-end" not in causes and "edge-before" not in causes
    # The first sample of the window is its first reading: at exactly WINDOW_START.
    first = min(
        (
            m
            for m, _ in dataset.telemetry
            if m.vehicle_id == EDGE_VEHICLE and m.time >= WINDOW_START
        ),
        key=lambda m: m.time,
    )
    assert first.time == WINDOW_START
    assert k.distance_km == pytest.approx(e.distance_km, rel=1e-9)


def test_one_vehicle_matches_its_row_in_the_table(
    conn: psycopg.Connection[Any], dataset: Dataset
) -> None:
    e = expected(dataset, WINDOW_START, WINDOW_END)
    rows = {r.vehicle_id: r for r in queries.vehicle_table(conn, WINDOW, with_autonomous_km=True)}
    assert len(rows) == VEHICLES
    for vid, row in rows.items():
        assert row.distance_km == pytest.approx(e.per_vehicle_km.get(vid, 0.0), rel=1e-9, abs=1e-9)
        assert row.autonomous_km == pytest.approx(
            e.per_vehicle_autonomous_km.get(vid, 0.0), rel=1e-9, abs=1e-9
        )
        assert row.interventions == e.per_vehicle_interventions[vid]
        assert row.disengagements == e.per_vehicle_disengagements[vid]
        if row.interventions:
            assert row.km_per_intervention == pytest.approx(row.distance_km / row.interventions)
        else:
            assert row.km_per_intervention is None
    some = next(v for v, n in e.per_vehicle_interventions.items() if n)
    k = queries.fleet_kpis(conn, WINDOW, some)
    assert k.distance_km == pytest.approx(rows[some].distance_km)
    assert k.interventions == rows[some].interventions
    assert k.km_per_intervention == pytest.approx(rows[some].km_per_intervention)


def test_vehicle_table_latest_state_and_reporting(
    conn: psycopg.Connection[Any], dataset: Dataset
) -> None:
    latest: dict[str, Telemetry] = {}
    for m, _ in dataset.telemetry:
        latest[m.vehicle_id] = m
    now = END + timedelta(seconds=10)
    window = Window.last("15m", now)
    rows = queries.vehicle_table(conn, window, reporting_s=30)
    for row in rows:
        m = latest[row.vehicle_id]
        assert row.last_seen == m.time
        assert row.odometer_km == pytest.approx(m.odometer_km)
        assert row.battery_pct == pytest.approx(m.battery_pct, rel=1e-6)
        assert row.autopilot == m.autopilot
        assert row.reporting
        assert row.moving == (m.speed_kmh > rollups.MOVING_KMH)
    k = queries.fleet_kpis(conn, window, reporting_s=30)
    assert k.vehicles_total == k.vehicles_reporting == VEHICLES
    assert k.vehicles_moving == sum(1 for m in latest.values() if m.speed_kmh > 1.0)
    later = Window.last("15m", END + timedelta(minutes=5))
    assert queries.fleet_kpis(conn, later, reporting_s=30).vehicles_reporting == 0


def test_without_interventions_the_ratio_is_none(conn: psycopg.Connection[Any]) -> None:
    empty = Window.between(END + timedelta(hours=1), END + timedelta(hours=2))
    k = queries.fleet_kpis(conn, empty)
    assert k.interventions == 0 and k.distance_km == 0
    assert k.km_per_intervention is None and k.km_per_disengagement is None
    assert k.interventions_per_1000km is None and k.autopilot_time_pct is None
    assert queries.format_km_per_event(k.km_per_intervention) == "no interventions"


def test_events_over_time_by_cause_by_vehicle_and_worst(
    conn: psycopg.Connection[Any], dataset: Dataset
) -> None:
    e = expected(dataset, WINDOW_START, WINDOW_END)
    series = queries.events_over_time(conn, WINDOW, buckets=10)
    assert series.bucket_s == 180 and len(series.buckets) == 10
    assert sum(b.interventions for b in series.buckets) == e.interventions
    assert sum(b.disengagements for b in series.buckets) == e.disengagements
    for bucket in series.buckets:
        end = bucket.time + timedelta(seconds=series.bucket_s)
        assert bucket.interventions == expected(dataset, bucket.time, end).interventions
    causes = queries.events_by_cause(conn, WINDOW)
    assert {(c.cause, "intervention"): c.interventions for c in causes if c.interventions} == {
        k: n for k, n in e.causes.items() if k[1] == "intervention"
    }
    by_vehicle = queries.events_by_vehicle(conn, WINDOW)
    assert {s.vehicle_id: s.interventions for s in by_vehicle if s.interventions} == dict(
        +e.per_vehicle_interventions
    )
    worst = queries.worst_vehicles(conn, WINDOW, limit=3)
    ratios = sorted(
        e.per_vehicle_km.get(v, 0.0) / n for v, n in e.per_vehicle_interventions.items() if n
    )
    assert [w.km_per_intervention for w in worst] == pytest.approx(ratios[:3])
    listed = queries.driving_events(conn, WINDOW, limit=1000)
    assert len(listed) == e.interventions + e.disengagements
    assert [x.time for x in listed] == sorted((x.time for x in listed), reverse=True)
    cities = {m.vehicle_id: m.city for m, _ in dataset.telemetry}
    assert all(x.city == cities[x.vehicle_id] for x in listed)


def test_perception_summary_and_near_misses(
    conn: psycopg.Connection[Any], dataset: Dataset
) -> None:
    inside = [p for p in dataset.perception if WINDOW_START <= p.time < WINDOW_END]
    ttcs = [p.distance_m / p.closing_speed_mps for p in inside if p.closing_speed_mps > 0]
    near = [p for p in inside if p.closing_speed_mps > 0 and p.distance_m / p.closing_speed_mps < 2]
    s = queries.perception_summary(conn, WINDOW, ttc_threshold_s=TTC_THRESHOLD_S)
    assert s.events == len(inside)
    assert {c.object_class: c.events for c in s.classes} == dict(
        Counter(p.object_class.value for p in inside)
    )
    assert s.near_misses == len(near)
    edges = rollups.DISTANCE_EDGES_M
    assert [b.count for b in s.distance_hist_m] == [
        sum(1 for p in inside if bisect_right(edges, p.distance_m) - 1 == i)
        for i in range(len(edges))
    ]
    assert sum(b.count for b in s.ttc_hist_s) == len(ttcs)
    listed = queries.near_misses(conn, WINDOW, ttc_threshold_s=TTC_THRESHOLD_S, limit=100_000)
    assert len(listed) == len(near)
    assert all(n.ttc_s < TTC_THRESHOLD_S for n in listed)
    wide = queries.near_misses(conn, WINDOW, ttc_threshold_s=8.0, limit=100_000)
    assert len(wide) == sum(1 for t in ttcs if t < 8.0)
    # Thresholds above the partial index: from the TTC histogram (3.0 is a bin edge)
    # or from a scan (8.0 is not).
    for threshold in (3.0, 8.0):
        kpis = queries.fleet_kpis(conn, WINDOW, ttc_threshold_s=threshold)
        assert kpis.near_misses == sum(1 for t in ttcs if t < threshold)
    one = queries.perception_summary(conn, WINDOW, EDGE_VEHICLE)
    mine = [p for p in inside if p.vehicle_id == EDGE_VEHICLE]
    assert one.events == len(mine)
    assert sum(b.count for b in one.distance_hist_m) == len(mine)


def test_vehicle_series_and_track(conn: psycopg.Connection[Any], dataset: Dataset) -> None:
    rows = sorted(
        (m for m, _ in dataset.telemetry if m.vehicle_id == EDGE_VEHICLE), key=lambda m: m.time
    )
    for buckets in (10, 600):  # from the rollup (3-minute buckets), from raw (3-second ones)
        series = queries.vehicle_series(conn, EDGE_VEHICLE, WINDOW, buckets)
        width = timedelta(seconds=series.bucket_s)
        assert len(series.points) <= buckets
        for point in series.points:
            inside = [m for m in rows if point.time <= m.time < point.time + width]
            assert point.samples == len(inside)
            assert point.speed_avg_kmh == pytest.approx(
                sum(m.speed_kmh for m in inside) / len(inside), rel=1e-5
            )
            assert point.battery_pct == pytest.approx(min(m.battery_pct for m in inside), rel=1e-6)
            assert point.speed_limit_kmh == pytest.approx(max(m.speed_limit_kmh for m in inside))
        assert sum(p.samples for p in series.points) == sum(
            1 for m in rows if WINDOW_START <= m.time < WINDOW_END
        )
    inside = [m for m in rows if WINDOW_START <= m.time < WINDOW_END]
    for max_points in (50, 5000):
        track = queries.route_track(conn, EDGE_VEHICLE, WINDOW, max_points=max_points)
        assert len(track) <= max_points + 1
        assert (track[-1].lat, track[-1].lon) == pytest.approx((inside[-1].lat, inside[-1].lon))
    long_window = Window.between(T0, END)
    track = queries.route_track(conn, EDGE_VEHICLE, long_window, max_points=20)
    assert 2 <= len(track) <= 21
    assert track[-1].time == rows[-1].time


def test_alerts_filters_acknowledge_silence_and_counts(
    conn: psycopg.Connection[Any],
) -> None:
    now = END
    with conn.transaction():
        for vid, rule, state, severity, fired in (
            ("AV-0001", queries.SPEED_RULE, "firing", "warning", WINDOW_START),
            (
                "AV-0002",
                queries.SPEED_RULE,
                "resolved",
                "warning",
                WINDOW_END - timedelta(seconds=1),
            ),
            ("AV-0003", queries.COLLISION_RULE, "firing", "critical", WINDOW_END),
            ("AV-0004", "low_battery", "pending", "info", None),
        ):
            conn.execute(
                "INSERT INTO alerts (vehicle_id, rule, state, severity, first_seen, last_seen,"
                " fired_at, resolved_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (vid, rule, state, severity, WINDOW_START, WINDOW_START, fired,
                 now if state == "resolved" else None),
            )  # fmt: skip
        conn.execute(
            'INSERT INTO rejects (received_at, consumer_group, topic, partition, "offset",'
            " raw_size, reason) VALUES (%s, 'g', 't', 0, 1, 0, 'bad json'),"
            " (%s, 'g', 't', 0, 2, 0, 'bad json')",
            (WINDOW_START, WINDOW_END),
        )
    k = queries.fleet_kpis(conn, WINDOW)
    assert (k.speed_violations, k.collision_risks) == (2, 0)
    assert (k.alerts_open_critical, k.alerts_open_warning, k.alerts_open_info) == (1, 1, 1)
    assert (k.alerts_firing, k.alerts_pending, k.rejects) == (2, 1, 1)
    assert k.alerts_handled == 0

    open_alerts = queries.alerts(conn, now)
    assert [a.severity for a in open_alerts] == ["critical", "warning", "info"]
    critical = queries.alerts(conn, now, queries.AlertFilter(severities=("critical",)))
    assert [a.vehicle_id for a in critical] == ["AV-0003"]
    speed = queries.alerts(
        conn, now, queries.AlertFilter(states=("firing", "resolved"), rule=queries.SPEED_RULE)
    )
    assert sorted(a.vehicle_id for a in speed) == ["AV-0001", "AV-0002"]

    target = next(a for a in open_alerts if a.vehicle_id == "AV-0001")
    assert queries.acknowledge(conn, target.alert_id, "ops", now + timedelta(hours=1), now=now)
    resolved = next(a for a in speed if a.state == "resolved")
    assert not queries.acknowledge(conn, resolved.alert_id, "ops", None, now=now)
    acked = queries.alerts(conn, now, queries.AlertFilter(vehicle_id="AV-0001"))[0]
    assert acked.acknowledged and acked.acked_by == "ops"
    expired = queries.alerts(
        conn, now + timedelta(hours=2), queries.AlertFilter(vehicle_id="AV-0001")
    )[0]
    assert not expired.acknowledged

    silence_id = queries.silence(
        conn, "*", queries.COLLISION_RULE, now + timedelta(minutes=30), "ops", "road works", now=now
    )
    assert silence_id > 0
    silenced = queries.alerts(conn, now, queries.AlertFilter(vehicle_id="AV-0003"))[0]
    assert silenced.silenced and silenced.silence_reason == "road works"
    assert not queries.alerts(conn, now, queries.AlertFilter(vehicle_id="AV-0001"))[0].silenced
    assert [s.silence_id for s in queries.active_silences(conn, now)] == [silence_id]
    later = now + timedelta(hours=1)
    assert not queries.alerts(conn, later, queries.AlertFilter(vehicle_id="AV-0003"))[0].silenced
    # AV-0001 acknowledged and AV-0003 silenced; both have run out an hour on.
    assert queries.fleet_kpis(conn, WINDOW).alerts_handled == 2
    an_hour_on = Window.between(WINDOW_START, WINDOW_END, now=later)
    assert queries.fleet_kpis(conn, an_hour_on).alerts_handled == 0
    with pytest.raises(ValueError):
        queries.silence(conn, "AV-0001", "x", now, "ops", now=now)
    conn.rollback()


def test_retention_drops_old_raw_rows_and_keeps_rollups(
    loaded: tuple[str, str], dataset: Dataset
) -> None:
    # A copy of the schema with a little old data, so the shared dataset stays intact.
    backend, dsn = loaded
    with psycopg.connect(dsn) as conn:
        caps = detect(conn)
        before = queries.fleet_kpis(conn, Window.between(T0, END))
        count = conn.execute("SELECT count(*) FROM telemetry").fetchone()
        assert count is not None and count[0] == len(dataset.telemetry)
        # Nothing is older than 30 days before the end of the data: nothing goes.
        done = rollups.enforce_retention(conn, caps, 30, END)
        assert sum(done.values()) == 0
        # Everything is older than one day after the data: every raw row goes.
        rollups.enforce_retention(conn, caps, 1, END + timedelta(days=2))
        for table in ("telemetry", "perception_events", "driving_events"):
            left = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
            row = left.fetchone()
            assert row is not None and row[0] == 0, f"{table} kept rows on {backend}"
        after = queries.fleet_kpis(conn, Window.between(T0, END))
        assert after.distance_km == pytest.approx(before.distance_km)
        assert after.interventions == before.interventions
        conn.rollback()  # retention ran inside this transaction: the data is back
        count = conn.execute("SELECT count(*) FROM telemetry").fetchone()
        assert count is not None and count[0] == len(dataset.telemetry)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (T0 - timedelta(minutes=5), T0 + timedelta(minutes=20)),  # starts before the data
        (T0 + timedelta(minutes=30), END + timedelta(minutes=10)),  # ends after it
        (T0 + timedelta(minutes=7), T0 + timedelta(minutes=8)),  # one minute
    ],
)
def test_distance_paths_at_the_edges_of_the_data(
    conn: psycopg.Connection[Any], dataset: Dataset, start: datetime, end: datetime
) -> None:
    window = Window.between(start, end)
    e = expected(dataset, start, end)
    k = queries.fleet_kpis(conn, window)
    assert k.distance_km == pytest.approx(e.distance_km, rel=1e-9)
    assert k.autonomous_km == pytest.approx(e.autonomous_km, rel=1e-9)
    rows = queries.vehicle_table(conn, window, with_autonomous_km=True)
    for row in rows:
        assert row.distance_km == pytest.approx(
            e.per_vehicle_km.get(row.vehicle_id, 0.0), rel=1e-9, abs=1e-9
        )
