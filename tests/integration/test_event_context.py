"""One driving event and what surrounded it (queries.event_context), against a real
migrated database: the event itself, the vehicle's telemetry 30 s either side, its
perception events within 5 s and its alerts open at that moment, and nothing of
another vehicle or from outside those spans."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from fleetwatch.store import queries
from fleetwatch.store.queries import Window

T = datetime(2026, 3, 2, 9, 30, 15, tzinfo=timezone.utc)
VEHICLE = "AV-0042"
OTHER = "AV-0043"
EVENT_ID = uuid.UUID("8d4e6f5a-1b2c-4d3e-9f80-112233445566")


def _at(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


def _telemetry(cur: psycopg.Cursor[Any], vehicle: str, offset: int, speed: float) -> None:
    cur.execute(
        """
        INSERT INTO telemetry (time, vehicle_id, event_id, speed_kmh, speed_limit_kmh, lat, lon,
                               heading_deg, battery_pct, range_km, odometer_km, autopilot,
                               city, route_id)
        VALUES (%s, %s, %s, %s, 50, 48.1, 11.5, 90, %s, 200, 1000, %s, 'Munich', 'r1')
        """,
        (_at(offset), vehicle, uuid.uuid4(), speed, 80 - offset / 100, offset < 0),
    )


def _perceived(
    cur: psycopg.Cursor[Any],
    vehicle: str,
    offset: float,
    object_class: str,
    distance_m: float,
    closing_mps: float,
) -> None:
    ttc = distance_m / closing_mps if closing_mps > 0 else None
    cur.execute(
        """
        INSERT INTO perception_events (time, vehicle_id, event_id, object_class, distance_m,
                                       closing_speed_mps, bearing_deg, confidence, ttc_s)
        VALUES (%s, %s, %s, %s, %s, %s, 0, 0.9, %s)
        """,
        (_at(offset), vehicle, uuid.uuid4(), object_class, distance_m, closing_mps, ttc),
    )


def _driving(
    cur: psycopg.Cursor[Any], vehicle: str, kind: str, event_id: uuid.UUID | None = None
) -> None:
    cur.execute(
        """
        INSERT INTO driving_events (time, vehicle_id, event_id, type, cause, detail, lat, lon,
                                    speed_kmh, autopilot)
        VALUES (%s, %s, %s, %s, 'pedestrian_nearby', 'driver braked', 48.137, 11.575, 23.5, true)
        """,
        (T, vehicle, event_id or uuid.uuid4(), kind),
    )


def _alert(
    cur: psycopg.Cursor[Any],
    vehicle: str,
    rule: str,
    *,
    first: float,
    fired: float | None,
    resolved: float | None,
    severity: str = "warning",
) -> None:
    state = "resolved" if resolved is not None else "firing" if fired is not None else "pending"
    cur.execute(
        """
        INSERT INTO alerts (vehicle_id, rule, state, severity, first_seen, last_seen, fired_at,
                            resolved_at, value, summary)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 1.0, %s)
        """,
        (
            vehicle,
            rule,
            state,
            severity,
            _at(first),
            _at(first + 5),
            None if fired is None else _at(fired),
            None if resolved is None else _at(resolved),
            f"{rule} summary",
        ),
    )


@pytest.fixture
def conn(db_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db_dsn) as connection:
        with connection.cursor() as cur:
            for offset in range(-60, 61):
                _telemetry(cur, VEHICLE, offset, 40 + offset / 2)
                _telemetry(cur, OTHER, offset, 99)
            cur.execute(
                """
                INSERT INTO vehicles (vehicle_id, first_seen, last_seen, speed_kmh,
                                      speed_limit_kmh, lat, lon, heading_deg, battery_pct,
                                      range_km, odometer_km, autopilot, city, route_id)
                VALUES (%s, %s, %s, 0, 50, 48.1, 11.5, 0, 80, 200, 1000, true, 'Munich', 'r1')
                """,
                (VEHICLE, _at(-60), _at(60)),
            )
            # Within 5 s: three cars, a pedestrian closing in, a truck moving away.
            _perceived(cur, VEHICLE, -5, "car", 30.0, 5.0)  # ttc 6 s; the span's first second
            _perceived(cur, VEHICLE, -2, "car", 12.0, 10.0)  # ttc 1.2 s: lowest, near miss
            _perceived(cur, VEHICLE, 0.5, "pedestrian", 4.0, 2.0)  # ttc 2 s, closest
            _perceived(cur, VEHICLE, 3, "car", 25.0, 0.0)  # not closing in
            _perceived(cur, VEHICLE, 5, "truck", 40.0, -3.0)  # the span's last second
            # Outside the span, and another vehicle: none counts.
            _perceived(cur, VEHICLE, -5.5, "cyclist", 1.0, 20.0)
            _perceived(cur, VEHICLE, 6, "cyclist", 1.0, 20.0)
            _perceived(cur, OTHER, 0, "bus", 0.5, 10.0)
            _driving(cur, VEHICLE, "intervention", EVENT_ID)
            _driving(cur, VEHICLE, "disengagement")
            _driving(cur, OTHER, "intervention")
            _alert(
                cur,
                VEHICLE,
                "collision_risk",
                first=-100,
                fired=-90,
                resolved=None,
                severity="critical",
            )
            _alert(cur, VEHICLE, "speed_violation", first=-10, fired=20, resolved=None)
            _alert(cur, VEHICLE, "low_battery", first=-300, fired=-280, resolved=30)
            _alert(cur, VEHICLE, "vehicle_silent", first=-300, fired=-290, resolved=-5)
            _alert(cur, VEHICLE, "hard_braking", first=1, fired=2, resolved=None)
            _alert(cur, OTHER, "collision_risk", first=-100, fired=-90, resolved=None)
        connection.commit()
        yield connection


def test_the_event_its_telemetry_perception_and_open_alerts(
    conn: psycopg.Connection[Any],
) -> None:
    context = queries.event_context(
        conn, VEHICLE, T, event_id=str(EVENT_ID), event_type="intervention"
    )

    assert context.event is not None
    event = context.event
    assert (event.event_id, event.type, event.vehicle_id, event.time) == (
        str(EVENT_ID),
        "intervention",
        VEHICLE,
        T,
    )
    assert (event.cause, event.detail, event.city) == (
        "pedestrian_nearby",
        "driver braked",
        "Munich",
    )
    assert (event.lat, event.lon, event.speed_kmh, event.autopilot) == (48.137, 11.575, 23.5, True)

    # 30 s either side, both ends included, oldest first, only this vehicle's.
    assert [t.time for t in context.telemetry] == [_at(s) for s in range(-30, 31)]
    assert [t.speed_kmh for t in context.telemetry] == [40 + s / 2 for s in range(-30, 31)]
    assert [t.autopilot for t in context.telemetry] == [s < 0 for s in range(-30, 31)]
    assert context.telemetry[0].speed_limit_kmh == 50

    assert [(c.object_class, c.events, c.near_misses) for c in context.perception] == [
        ("car", 3, 1),
        ("pedestrian", 1, 0),
        ("truck", 1, 0),
    ]
    assert context.perceived == 5
    assert context.closest is not None
    assert (context.closest.object_class, context.closest.distance_m) == ("pedestrian", 4.0)
    assert context.closest.time == _at(0.5)
    assert context.lowest_ttc is not None
    assert (context.lowest_ttc.object_class, context.lowest_ttc.time) == ("car", _at(-2))
    assert context.lowest_ttc.ttc_s == pytest.approx(1.2)

    # Open at T: fired before it; pending then (fired after); resolved only after it.
    assert [(a.rule, a.state) for a in context.alerts] == [
        ("collision_risk", "firing"),
        ("low_battery", "firing"),
        ("speed_violation", "pending"),
    ]
    assert context.alerts[0].severity == "critical"
    assert context.alerts[1].resolved_at == _at(30)


def test_without_an_id_the_type_picks_the_event(conn: psycopg.Connection[Any]) -> None:
    context = queries.event_context(conn, VEHICLE, T, event_type="disengagement")
    assert context.event is not None
    assert context.event.type == "disengagement"


def test_an_event_no_longer_stored_still_has_its_surroundings(
    conn: psycopg.Connection[Any],
) -> None:
    context = queries.event_context(conn, VEHICLE, _at(1), event_id=str(uuid.uuid4()))
    assert context.event is None
    assert len(context.telemetry) == 61
    # From 4 s before to 6 s after: the cyclist at +6 s is in, the first car out.
    assert context.perceived == 5


def test_a_quiet_vehicle_has_empty_surroundings(conn: psycopg.Connection[Any]) -> None:
    context = queries.event_context(conn, "AV-9999", T)
    assert context.event is None
    assert (context.telemetry, context.perception, context.alerts) == ((), (), ())
    assert context.closest is None and context.lowest_ttc is None


def test_listed_events_carry_their_id(conn: psycopg.Connection[Any]) -> None:
    window = Window.between(_at(-60), _at(60))
    listed = queries.driving_events(conn, window, VEHICLE, types=("intervention",))
    assert [e.event_id for e in listed] == [str(EVENT_ID)]
