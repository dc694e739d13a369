"""The app's services stopped partway through the first-run backfill and started again:
the history continues without a hole, every vehicle stays in its city, no vehicle is
reported silent, and no event id is stored twice."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import partial

import psycopg

from fleetwatch.config import Settings
from fleetwatch.sim import VehicleState
from fleetwatch.tui.runtime import AppServices, resume_point, simulation_start
from tests import polling

wait_until = partial(polling.wait_until, timeout_s=180.0)

VEHICLES = 5
BACKFILL_HOURS = 1.0


def _count(dsn: str, query: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query).fetchone()
    return 0 if row is None or row[0] is None else int(row[0])


def _cities(dsn: str) -> dict[str, str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT vehicle_id, city FROM vehicles").fetchall()
    return {str(v): str(c) for v, c in rows}


def test_a_restart_during_the_backfill_continues_it_without_a_hole(db_dsn: str) -> None:
    settings = Settings.model_validate(
        {
            "database": {"dsn": db_dsn},
            "simulator": {"vehicles": VEHICLES, "backfill_hours": BACKFILL_HOURS},
            # Small batches, so that the first run can be stopped partway through.
            "ingest": {"batch_max": 500},
        }
    )
    first = AppServices(settings)
    began = datetime.now(timezone.utc)
    source, status = first.start(lambda _step, _fraction: None)
    try:
        # Stop once part of the history is stored, well before all of it is.
        wait_until(lambda: _count(db_dsn, "SELECT count(*) FROM telemetry") > 0)
        pct = status.status().backfill_pct
        assert pct is not None and pct < 100
    finally:
        source.close()
        first.stop()
    stored = _count(db_dsn, "SELECT count(*) FROM telemetry")
    assert stored < VEHICLES * BACKFILL_HOURS * 3600 * 0.9  # really stopped partway
    cities_before = _cities(db_dsn)
    assert len(cities_before) == VEHICLES

    second = AppServices(settings)
    source, status = second.start(lambda _step, _fraction: None)
    try:
        assert status.status().backfill_pct is not None  # the catch-up is shown
        wait_until(lambda: status.status().backfill_pct is None)
        now = datetime.now(timezone.utc)
        wait_until(
            lambda: _count(
                db_dsn,
                "SELECT count(*) FROM vehicles WHERE last_seen >= "
                f"'{(now - timedelta(seconds=1)).isoformat()}'::timestamptz",
            )
            == VEHICLES
        )
    finally:
        source.close()
        second.stop()

    with psycopg.connect(db_dsn) as conn:
        gaps = conn.execute(
            "SELECT vehicle_id, max(gap), min(first), count(DISTINCT city) FROM ("
            " SELECT vehicle_id, city, time - lag(time) OVER w AS gap,"
            "  min(time) OVER (PARTITION BY vehicle_id) AS first"
            " FROM telemetry WINDOW w AS (PARTITION BY vehicle_id ORDER BY time)) t"
            " GROUP BY vehicle_id"
        ).fetchall()
        silent = conn.execute(
            "SELECT count(*) FROM alerts WHERE rule = 'vehicle_silent'"
        ).fetchone()
        ids = conn.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM ("
            " SELECT event_id FROM telemetry UNION ALL SELECT event_id FROM perception_events"
            " UNION ALL SELECT event_id FROM driving_events) e"
        ).fetchone()
    assert len(gaps) == VEHICLES
    history_start = began - timedelta(hours=BACKFILL_HOURS)
    for vehicle_id, gap, first_time, cities in gaps:
        assert gap <= timedelta(seconds=2), f"{vehicle_id} has a {gap} gap"
        assert first_time <= history_start + timedelta(seconds=5)
        assert cities == 1
    assert silent == (0,)
    assert ids is not None and ids[0] == ids[1]
    assert _cities(db_dsn) == cities_before


def test_the_simulation_starts_after_the_latest_stored_event_within_the_backfill() -> None:
    now = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
    span = timedelta(hours=3)
    assert simulation_start(now, None, span) == now - span
    fraction = now - timedelta(minutes=2) + timedelta(microseconds=250_000)
    assert simulation_start(now, fraction, span) == now - timedelta(minutes=2, seconds=-1)
    assert simulation_start(now, now - timedelta(minutes=2), span) == now - timedelta(
        minutes=2, seconds=-1
    )
    assert simulation_start(now, now - timedelta(hours=5), span) == now - span
    assert simulation_start(now, now - span + timedelta(seconds=1), span) == now - span + (
        timedelta(seconds=2)
    )


def test_the_fleet_resumes_after_its_own_earliest_last_reading() -> None:
    seen = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)

    def state(minutes_ago: int) -> VehicleState:
        return VehicleState(
            "sf-grid", 0.0, 0.0, 50.0, 1.0, time=seen - timedelta(minutes=minutes_ago)
        )

    states = {"AV-0001": state(1), "AV-0002": state(3), "AV-0009": state(60)}
    assert resume_point(states, 2) == seen - timedelta(minutes=3)
    assert resume_point(states, 9) == seen - timedelta(minutes=60)
    assert resume_point({}, 2) is None
