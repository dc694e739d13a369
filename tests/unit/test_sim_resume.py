"""A fleet resumed from stored per-vehicle state continues where each vehicle was."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

from fleetwatch.model import Telemetry, encode
from fleetwatch.sim import Fleet, VehicleState, backfill
from fleetwatch.sim.fleet import nearest_position

START = datetime(2026, 3, 2, 7, 0, tzinfo=timezone.utc)
LATER = START + timedelta(hours=2)


def _last_states(fleet: Fleet, minutes: int) -> dict[str, Telemetry]:
    last: dict[str, Telemetry] = {}
    for tick in backfill(fleet, timedelta(minutes=minutes)):
        for message in tick:
            if isinstance(message, Telemetry):
                last[message.vehicle_id] = message
    return last


def _state(t: Telemetry) -> VehicleState:
    return VehicleState(
        route_id=t.route_id,
        lat=t.lat,
        lon=t.lon,
        battery_pct=t.battery_pct,
        odometer_km=t.odometer_km,
        autopilot=t.autopilot,
        trip_id=t.trip_id,
        speed_kmh=t.speed_kmh,
    )


def _metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    dy = (a[0] - b[0]) * 111_320.0
    dx = (a[1] - b[1]) * 111_320.0 * math.cos(math.radians(a[0]))
    return math.hypot(dx, dy)


def test_a_resumed_fleet_continues_city_route_battery_position_and_odometer() -> None:
    before = _last_states(Fleet(12, seed=3, start=START), minutes=5)
    resume = {vehicle_id: _state(t) for vehicle_id, t in before.items()}
    fresh = Fleet(12, seed=3, start=LATER)
    resumed = Fleet(12, seed=3, start=LATER, resume=resume)
    first = {m.vehicle_id: m for m in resumed.step(LATER) if isinstance(m, Telemetry)}
    moved = 0
    for vehicle_id, old in before.items():
        new = first[vehicle_id]
        assert (new.city, new.route_id) == (old.city, old.route_id)
        assert abs(new.battery_pct - old.battery_pct) < 0.1
        assert old.odometer_km <= new.odometer_km < old.odometer_km + 0.05
        assert _metres((new.lat, new.lon), (old.lat, old.lon)) < 50.0
        if old.trip_id is not None:
            assert new.trip_id == old.trip_id
    # Without resume state the same seed and start give other cities and batteries.
    for plain, vehicle in zip(fresh.vehicles, resumed.vehicles, strict=True):
        if (plain.route_id, round(plain.battery_pct)) != (
            vehicle.route_id,
            round(vehicle.battery_pct),
        ):
            moved += 1
    assert moved >= 6


def test_resuming_is_deterministic_and_draws_new_event_ids() -> None:
    before = _last_states(Fleet(5, seed=9, start=START), minutes=2)
    resume = {vehicle_id: _state(t) for vehicle_id, t in before.items()}

    def stream(start: datetime) -> list[bytes]:
        fleet = Fleet(5, seed=9, start=start, resume=resume)
        return [encode(m) for tick in backfill(fleet, timedelta(minutes=3)) for m in tick]

    assert stream(LATER) == stream(LATER)
    one = Fleet(5, seed=9, start=LATER, resume=resume)
    other = Fleet(5, seed=9, start=LATER + timedelta(seconds=1), resume=resume)
    ids = {m.event_id for m in one.step(LATER)}
    assert ids.isdisjoint(m.event_id for m in other.step(other.next_time))


def test_unknown_routes_and_missing_vehicles_start_as_usual() -> None:
    plain = Fleet(3, seed=1, start=START)
    state = VehicleState(route_id="nowhere", lat=0.0, lon=0.0, battery_pct=42.0, odometer_km=1234.5)
    resumed = Fleet(3, seed=1, start=START, resume={"AV-0002": state, "AV-0099": state})
    assert resumed.vehicles[1].route_id == plain.vehicles[1].route_id
    assert abs(resumed.vehicles[1].battery_pct - 42.0) < 1e-9
    assert resumed.vehicles[1].odometer_km == 1234.5
    assert resumed.vehicles[0].battery_pct == plain.vehicles[0].battery_pct


def test_nearest_position_finds_the_point_on_the_route() -> None:
    fleet = Fleet(1, seed=1, start=START)
    route = fleet.vehicles[0].route
    seg_index = len(route.segments) // 2
    segment = route.segments[seg_index]
    lat, lon = segment.point(segment.length_m / 3)
    index, offset = nearest_position(route, lat + 0.00001, lon)
    assert index == seg_index
    assert abs(offset - segment.length_m / 3) < 3.0


def test_a_vehicle_stored_later_than_the_start_waits_for_its_own_time() -> None:
    ahead = VehicleState(
        route_id=Fleet(1, seed=2, start=START).vehicles[0].route_id,
        lat=0.0,
        lon=0.0,
        battery_pct=50.0,
        odometer_km=10.0,
        time=START + timedelta(seconds=2),
    )
    fleet = Fleet(2, seed=2, start=START, resume={"AV-0001": ahead})
    reporting = [
        {m.vehicle_id for m in tick if isinstance(m, Telemetry)}
        for tick in backfill(fleet, timedelta(seconds=5))
    ]
    assert reporting[:3] == [{"AV-0002"}] * 3
    assert reporting[3:] == [{"AV-0001", "AV-0002"}] * 2
