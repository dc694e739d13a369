"""Alert lifecycle persisted through the batch writer and resumed from the database.

A scripted stream that exercises every rule is cut into batches; each batch's alert
changes and transitions are written by ``write_batch`` together with the events. At a
restart the alert engine is rebuilt from ``alerts`` and ``vehicles`` rows only, the
way the ingestor does it, and must end with the same alerts and the same transitions
as one engine that never stopped.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from fleetwatch.config import RuleSettings
from fleetwatch.model import ObjectClass, PerceptionEvent, Telemetry, WireModel
from fleetwatch.pipeline.rules import (
    ALERT_COLUMNS,
    LOW_BATTERY,
    AlertEngine,
    alert_from_row,
)
from fleetwatch.store import writer
from fleetwatch.store.db import connect

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
RULES = RuleSettings()
GROUP = "alerts-test"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def telemetry(seconds: float, vehicle: str, speed: float, battery: float) -> Telemetry:
    return Telemetry(
        event_id=uuid.uuid4(),
        time=at(seconds),
        vehicle_id=vehicle,
        speed_kmh=speed,
        speed_limit_kmh=50.0,
        lat=52.5,
        lon=13.4,
        heading_deg=90.0,
        battery_pct=battery,
        range_km=200.0,
        odometer_km=1000.0 + seconds / 100,
        autopilot=True,
        city="Berlin",
        route_id="r1",
    )


def perception(seconds: float, vehicle: str, distance: float) -> PerceptionEvent:
    return PerceptionEvent(
        event_id=uuid.uuid4(),
        time=at(seconds),
        vehicle_id=vehicle,
        object_class=ObjectClass.PEDESTRIAN,
        distance_m=distance,
        closing_speed_mps=9.0 / 1.4,
        bearing_deg=0.0,
        confidence=0.9,
    )


@dataclass(frozen=True)
class Tick:
    seconds: float


Step = WireModel | Tick


def v1_battery(s: int) -> float:
    if s < 46:
        return 30.0 - 0.25 * s
    if s < 90:
        return 21.5 - 0.3 * (s - 46)
    return 80.0


def scenario() -> list[Step]:
    """Speed (pending, firing, escalation), battery, collision and silence on two vehicles."""
    steps: list[Step] = []
    for s in range(110):
        speed = 85.0 if s == 20 else 75.0 if 5 <= s < 25 else 40.0
        steps.append(telemetry(s, "v1", speed, v1_battery(s)))
        if s < 40 or s >= 100:
            steps.append(telemetry(s, "v2", 66.0 if s % 7 else 45.0, 50.0))
        if s in (12, 13, 30):
            steps.append(perception(s + 0.5, "v1", 5.0 if s == 13 else 9.0))
        steps.append(Tick(s + 0.9))
    return steps


def batches(steps: Sequence[Step], size: int) -> Iterator[Sequence[Step]]:
    for start in range(0, len(steps), size):
        yield steps[start : start + size]


@pytest.fixture
def conn(db_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with connect(db_dsn, autocommit=True) as connection:
        yield connection


def write(conn: psycopg.Connection[Any], engine: AlertEngine, steps: Sequence[Step]) -> None:
    """Judge one batch and write it with its alert changes, as the ingestor does."""
    batch = writer.Batch(group=GROUP)
    for step in steps:
        if isinstance(step, Tick):
            engine.tick(at(step.seconds))
            continue
        engine.observe(step)
        if isinstance(step, Telemetry):
            batch.telemetry.append(writer.telemetry_row(step, 0.0))
        elif isinstance(step, PerceptionEvent):
            batch.perception.append(writer.perception_row(step))
    batch.alerts, batch.transitions = engine.take_changes()
    writer.write_batch(conn, batch)
    assert all(alert.alert_id is not None for alert in batch.alerts)


def resume(conn: psycopg.Connection[Any], vehicle_ids: Sequence[str]) -> AlertEngine:
    """A new engine with the state of ``vehicle_ids`` loaded from the database."""
    engine = AlertEngine(RULES)
    rows = writer.load_alert_rows(conn, vehicle_ids)
    seen = writer.last_odometers(conn, vehicle_ids)
    engine.load(
        [alert_from_row(row) for row in rows],
        {v: seen[v][0] if v in seen else None for v in vehicle_ids},
    )
    return engine


def ordered(rows: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows in a fixed order, whatever time zone object their times carry."""

    def key(row: tuple[Any, ...]) -> tuple[tuple[int, Any], ...]:
        return tuple(
            (0, 0) if v is None else (1, v.timestamp()) if isinstance(v, datetime) else (1, v)
            for v in row
        )

    return sorted(rows, key=key)


def stored_alerts(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute("SELECT * FROM alerts").fetchall()
    return ordered(tuple(row[c] for c in ALERT_COLUMNS) for row in rows)


def stored_transitions(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    rows = conn.execute(
        "SELECT t.time, t.vehicle_id, t.rule, t.from_state, t.to_state, t.severity, t.value,"
        "       a.vehicle_id = t.vehicle_id AND a.rule = t.rule"
        " FROM alert_transitions t LEFT JOIN alerts a USING (alert_id)"
    ).fetchall()
    return ordered(tuple(row) for row in rows)


def reference() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Alerts and transitions of one engine that sees the whole stream."""
    engine = AlertEngine(RULES)
    for step in scenario():
        if isinstance(step, Tick):
            engine.tick(at(step.seconds))
        else:
            engine.observe(step)
    alerts, transitions = engine.take_changes()
    return (
        ordered(alert.values() for alert in alerts),
        ordered(
            (t.time, t.vehicle_id, t.rule, t.from_state, t.to_state, t.severity, t.value, True)
            for t in transitions
        ),
    )


@pytest.mark.parametrize(("batch_size", "restart_after"), [(7, 9), (25, 4), (60, 2), (1000, 1)])
def test_restart_from_stored_rows_continues_where_it_stopped(
    conn: psycopg.Connection[Any], batch_size: int, restart_after: int
) -> None:
    engine = AlertEngine(RULES)
    for number, steps in enumerate(batches(scenario(), batch_size), start=1):
        write(conn, engine, steps)
        if number % restart_after == 0:
            engine = resume(conn, ["v1", "v2"])
    alerts, transitions = reference()
    assert len(transitions) > 20
    assert stored_alerts(conn) == alerts
    assert stored_transitions(conn) == transitions


def test_replay_after_restart_writes_nothing_new(conn: psycopg.Connection[Any]) -> None:
    steps = scenario()
    engine = AlertEngine(RULES)
    for chunk in batches(steps, 40):
        write(conn, engine, chunk)
    before = (stored_alerts(conn), stored_transitions(conn))
    engine = resume(conn, ["v1", "v2"])
    for step in steps:
        if not isinstance(step, Tick):
            engine.observe(step)
    assert engine.take_changes() == ([], [])
    assert (stored_alerts(conn), stored_transitions(conn)) == before


def test_lifecycle_updates_leave_the_acknowledgement_alone(
    conn: psycopg.Connection[Any],
) -> None:
    engine = AlertEngine(RULES)
    write(conn, engine, [telemetry(0, "v1", 40.0, 19.0)])
    conn.execute(
        "UPDATE alerts SET acked_by = 'ops', acked_at = %s WHERE rule = %s",
        (at(1), LOW_BATTERY),
    )
    write(conn, engine, [telemetry(2, "v1", 40.0, 9.0)])  # escalates to critical
    engine = resume(conn, ["v1"])
    write(conn, engine, [telemetry(3, "v1", 40.0, 30.0)])  # resolves
    row = conn.execute(
        "SELECT state, severity, breach_count, acked_by, acked_at FROM alerts"
    ).fetchone()
    assert row == ("resolved", "critical", 2, "ops", at(1))
    states = conn.execute(
        "SELECT from_state, to_state, severity FROM alert_transitions ORDER BY time"
    ).fetchall()
    assert states == [
        (None, "firing", "warning"),
        ("firing", "firing", "critical"),
        ("firing", "resolved", "critical"),
    ]


def test_resolved_and_reopened_in_one_batch_respects_one_open_alert(
    conn: psycopg.Connection[Any],
) -> None:
    engine = AlertEngine(RULES)
    write(conn, engine, [perception(0, "v1", 9.0)])
    write(conn, engine, [perception(10, "v1", 9.0), perception(20, "v1", 9.0)])
    rows = conn.execute(
        "SELECT state, first_seen, resolved_at FROM alerts ORDER BY first_seen"
    ).fetchall()
    assert rows == [
        ("resolved", at(0), at(5)),
        ("resolved", at(10), at(15)),
        ("firing", at(20), None),
    ]
