"""Unit tests of the fleet model: invariants, realism of rates, determinism, wire validity."""

from __future__ import annotations

import math
import random
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest

from fleetwatch.model import (
    TOPIC_BY_MODEL,
    DrivingEvent,
    DrivingEventType,
    ObjectClass,
    PerceptionEvent,
    Telemetry,
    decode,
    encode,
)
from fleetwatch.sim import TICK, Fleet, backfill
from fleetwatch.sim.fleet import CAUSE_OBJECTS, DRIVING, _trusted, _uuid4
from fleetwatch.sim.roads import all_routes, distance_to_route_m

START = datetime(2026, 3, 2, 7, 0, tzinfo=timezone.utc)
VEHICLES = 50
HOURS = 2


@dataclass
class Summary:
    """What a 2-hour, 50-vehicle run did, gathered in one pass over the stream."""

    fleet: Fleet
    counts: Counter[str] = field(default_factory=Counter)
    events: list[DrivingEvent] = field(default_factory=list)
    event_ids: set[int] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    first_odometer: dict[str, float] = field(default_factory=dict)
    last_odometer: dict[str, float] = field(default_factory=dict)
    autonomous_km: float = 0.0
    min_battery: dict[str, float] = field(default_factory=dict)
    speeding_samples: int = 0
    speed_samples: int = 0
    stopped_while_on_trip: int = 0
    highway_fast_samples: int = 0
    route_distances_m: list[float] = field(default_factory=list)
    ttc_below_2s: int = 0
    object_classes: Counter[ObjectClass] = field(default_factory=Counter)
    drain_pct_per_driving_hour: list[float] = field(default_factory=list)


def _summarise(fleet: Fleet, duration: timedelta) -> Summary:
    s = Summary(fleet)
    routes = {r.route_id: r for r in all_routes()}
    autopilot: dict[str, bool] = {}
    on_trip: dict[str, str | None] = {}
    charging: dict[str, bool] = defaultdict(bool)
    last: dict[str, Telemetry] = {}
    driving_battery: dict[str, list[float]] = defaultdict(list)
    driving_seconds: Counter[str] = Counter()
    for tick, batch in enumerate(backfill(fleet, duration)):
        for m in batch:
            s.counts[TOPIC_BY_MODEL[type(m)]] += 1
            s.event_ids.add(m.event_id.int)
            vid = m.vehicle_id
            if isinstance(m, DrivingEvent):
                s.events.append(m)
                if m.type in (DrivingEventType.INTERVENTION, DrivingEventType.DISENGAGEMENT):
                    if not m.autopilot or autopilot.get(vid) is False:
                        s.problems.append(f"{vid}: {m.type.value} while not autonomous")
                    autopilot[vid] = False
                elif m.type is DrivingEventType.ENGAGEMENT:
                    if m.autopilot or autopilot.get(vid) is not False:
                        s.problems.append(f"{vid}: engagement while autonomous")
                    autopilot[vid] = True
                elif m.type is DrivingEventType.TRIP_START:
                    if on_trip.get(vid):
                        s.problems.append(f"{vid}: trip_start during a trip")
                    on_trip[vid] = m.detail
                elif m.type is DrivingEventType.TRIP_END:
                    if vid in on_trip and on_trip[vid] != m.detail:
                        s.problems.append(f"{vid}: trip_end {m.detail} ends {on_trip[vid]}")
                    on_trip[vid] = None
                elif m.type is DrivingEventType.CHARGING_START:
                    charging[vid] = True
                elif m.type is DrivingEventType.CHARGING_END:
                    charging[vid] = False
            elif isinstance(m, Telemetry):
                previous = last.get(vid)
                s.first_odometer.setdefault(vid, m.odometer_km)
                s.last_odometer[vid] = m.odometer_km
                s.min_battery[vid] = min(s.min_battery.get(vid, 100.0), m.battery_pct)
                if previous is not None:
                    step = m.odometer_km - previous.odometer_km
                    if step < 0:
                        s.problems.append(f"{vid}: odometer went back at {m.time}")
                    if step > 0.07:  # 250 km/h for one second
                        s.problems.append(f"{vid}: odometer jumped {step} km at {m.time}")
                    if m.autopilot:
                        s.autonomous_km += step
                    if charging[vid] and m.battery_pct < previous.battery_pct:
                        s.problems.append(f"{vid}: battery fell while charging")
                    if step > 0:
                        driving_battery[vid].append(m.battery_pct)
                        driving_seconds[vid] += 1
                if vid in autopilot and autopilot[vid] != m.autopilot:
                    s.problems.append(f"{vid}: telemetry autopilot disagrees with events")
                if on_trip.get(vid) and m.trip_id != on_trip[vid]:
                    s.problems.append(f"{vid}: trip_id {m.trip_id} during {on_trip[vid]}")
                if charging[vid] and m.speed_kmh != 0:
                    s.problems.append(f"{vid}: moving while charging")
                if not 0 <= m.battery_pct <= 100 or m.range_km < 0:
                    s.problems.append(f"{vid}: battery {m.battery_pct} range {m.range_km}")
                if m.speed_kmh > 250 or m.speed_kmh > m.speed_limit_kmh + 40:
                    s.problems.append(f"{vid}: {m.speed_kmh} km/h at limit {m.speed_limit_kmh}")
                s.speed_samples += 1
                if m.speed_kmh > m.speed_limit_kmh + 10:
                    s.speeding_samples += 1
                if m.trip_id and m.speed_kmh == 0:
                    s.stopped_while_on_trip += 1
                if m.speed_limit_kmh >= 110 and m.speed_kmh > 100:
                    s.highway_fast_samples += 1
                if tick % 97 == 0:
                    route = routes[m.route_id]
                    s.route_distances_m.append(distance_to_route_m(route, m.lat, m.lon))
                    if route.city != m.city:
                        s.problems.append(f"{vid}: city {m.city} but route {m.route_id}")
                last[vid] = m
            else:
                assert isinstance(m, PerceptionEvent)
                s.object_classes[m.object_class] += 1
                if m.closing_speed_mps > 0 and m.distance_m / m.closing_speed_mps < 2.0:
                    s.ttc_below_2s += 1
    for vid, levels in driving_battery.items():
        if driving_seconds[vid] > 1800 and levels[0] > levels[-1]:
            hours = driving_seconds[vid] / 3600
            s.drain_pct_per_driving_hour.append((levels[0] - levels[-1]) / hours)
    return s


@pytest.fixture(scope="module")
def summary() -> Summary:
    return _summarise(Fleet(VEHICLES, seed=11, start=START), timedelta(hours=HOURS))


def _count(summary: Summary, kind: DrivingEventType) -> int:
    return sum(1 for e in summary.events if e.type is kind)


def _distance_km(summary: Summary) -> float:
    return sum(summary.last_odometer[v] - summary.first_odometer[v] for v in summary.last_odometer)


def test_stream_invariants_hold(summary: Summary) -> None:
    assert summary.problems[:10] == []


def test_every_vehicle_reports_every_second(summary: Summary) -> None:
    assert summary.counts["vehicle_telemetry"] == VEHICLES * HOURS * 3600


def test_event_ids_are_unique(summary: Summary) -> None:
    assert len(summary.event_ids) == sum(summary.counts.values())


def test_vehicles_cover_plausible_distances(summary: Summary) -> None:
    km_per_vehicle_hour = _distance_km(summary) / VEHICLES / HOURS
    assert 15 < km_per_vehicle_hour < 70
    # Every vehicle that was not charging the whole time moved.
    moved = [
        v for v in summary.last_odometer if summary.last_odometer[v] > summary.first_odometer[v]
    ]
    assert len(moved) >= VEHICLES - 2
    assert 0.8 < summary.autonomous_km / _distance_km(summary) <= 1.0


def test_speed_follows_limits_stops_and_highways(summary: Summary) -> None:
    # Speeders exist but speeding is rare, vehicles stop in traffic, highways are fast.
    assert 0 < summary.speeding_samples < summary.speed_samples * 0.02
    assert summary.stopped_while_on_trip > summary.speed_samples * 0.02
    assert summary.highway_fast_samples > summary.speed_samples * 0.02


def test_positions_follow_the_routes(summary: Summary) -> None:
    assert summary.route_distances_m
    assert max(summary.route_distances_m) < 1.0


def test_interventions_are_rare_and_km_per_intervention_plausible(summary: Summary) -> None:
    interventions = _count(summary, DrivingEventType.INTERVENTION)
    disengagements = _count(summary, DrivingEventType.DISENGAGEMENT)
    assert interventions >= 3
    assert disengagements >= 3
    assert 50 <= _distance_km(summary) / interventions <= 2000
    assert 50 <= _distance_km(summary) / disengagements <= 2000
    engagements = _count(summary, DrivingEventType.ENGAGEMENT)
    # Each one is followed by a manual stretch and an engagement (some still manual at the end).
    assert interventions + disengagements - 10 <= engagements <= interventions + disengagements
    causes = {e.cause for e in summary.events if e.type is DrivingEventType.INTERVENTION}
    assert len(causes) >= 2 and None not in causes


def test_vehicles_differ_in_quality_and_worse_ones_intervene_more(summary: Summary) -> None:
    qualities = sorted(v.quality for v in summary.fleet.vehicles)
    assert qualities[-1] > 3 * qualities[0]
    # Same routes and seed, only the quality factor differs between the two halves.
    fleet = Fleet(40, seed=3, start=START)
    for i, vehicle in enumerate(fleet.vehicles):
        vehicle.quality = 4.0 if i % 2 else 0.5
    worse = {v.vehicle_id for i, v in enumerate(fleet.vehicles) if i % 2}
    first = {v.vehicle_id: v.odometer_km for v in fleet.vehicles}
    takeovers: Counter[bool] = Counter()
    for batch in backfill(fleet, timedelta(hours=1)):
        for m in batch:
            if isinstance(m, DrivingEvent) and m.type in (
                DrivingEventType.INTERVENTION,
                DrivingEventType.DISENGAGEMENT,
            ):
                takeovers[m.vehicle_id in worse] += 1
    km: dict[bool, float] = {True: 0.0, False: 0.0}
    for v in fleet.vehicles:
        km[v.vehicle_id in worse] += v.odometer_km - first[v.vehicle_id]
    assert takeovers[True] / km[True] > 3 * takeovers[False] / km[False]


def test_other_driving_events_occur(summary: Summary) -> None:
    for kind in (
        DrivingEventType.HARD_BRAKE,
        DrivingEventType.TRIP_START,
        DrivingEventType.TRIP_END,
        DrivingEventType.CHARGING_START,
        DrivingEventType.CHARGING_END,
        DrivingEventType.EMERGENCY_STOP,
    ):
        assert _count(summary, kind) > 0, kind
    assert _count(summary, DrivingEventType.EMERGENCY_STOP) < _count(
        summary, DrivingEventType.HARD_BRAKE
    )


def test_battery_drains_like_an_electric_car_and_sometimes_runs_low(summary: Summary) -> None:
    # A full pack lasts hours of driving: 5-20 % per driving hour.
    drains = sorted(summary.drain_pct_per_driving_hour)
    assert len(drains) > VEHICLES // 2
    assert 5 < drains[len(drains) // 2] < 20
    low = [v for v, pct in summary.min_battery.items() if pct < 20]
    assert 0 < len(low) < VEHICLES // 2
    assert min(summary.min_battery.values()) > 2


def test_energy_use_is_that_of_an_electric_car() -> None:
    # 14-22 kWh per 100 km while driving, motion, stops and auxiliary load included.
    fleet = Fleet(30, seed=8, start=START)
    used_kwh = driven_km = 0.0
    for _ in range(1800):
        before = [(v.energy_kwh, v.odometer_km, v.state) for v in fleet.vehicles]
        fleet.step(fleet.next_time)
        for (energy, odometer, state), v in zip(before, fleet.vehicles, strict=True):
            if state == v.state == DRIVING:
                used_kwh += energy - v.energy_kwh
                driven_km += v.odometer_km - odometer
    assert driven_km > 300
    assert 14 < 100 * used_kwh / driven_km < 22


def test_perception_rate_and_mix(summary: Summary) -> None:
    per_vehicle_second = summary.counts["perception_events"] / (VEHICLES * HOURS * 3600)
    assert 0.7 < per_vehicle_second < 1.3
    assert set(summary.object_classes) == set(ObjectClass)
    perceived = summary.counts["perception_events"]
    # Close, fast approaches: present but rare.
    assert 0 < summary.ttc_below_2s < perceived * 0.001


def test_same_seed_same_stream_and_different_seed_differs() -> None:
    def stream(seed: int, start: datetime = START) -> list[bytes]:
        fleet = Fleet(20, seed=seed, start=start)
        return [encode(m) for batch in backfill(fleet, timedelta(minutes=3)) for m in batch]

    first = stream(5)
    assert first == stream(5)
    assert first != stream(6)
    # A new run at another time gets new event ids even with the same seed.
    later = stream(5, START + timedelta(days=1))
    assert {m[:70] for m in first}.isdisjoint(m[:70] for m in later)


def test_trip_ids_are_unique_within_and_across_runs(summary: Summary) -> None:
    started = [e.detail for e in summary.events if e.type is DrivingEventType.TRIP_START]
    assert len(started) == len(set(started))

    # A restart names its trips differently, though trips are numbered from 1 again.
    def first_trips(start: datetime) -> set[str]:
        fleet = Fleet(VEHICLES, seed=11, start=start)
        batch = fleet.step(fleet.next_time)
        return {m.trip_id for m in batch if isinstance(m, Telemetry) and m.trip_id}

    before, after = first_trips(START), first_trips(START + timedelta(hours=HOURS))
    assert before and after and before.isdisjoint(after)
    assert all(t.startswith("AV-") and t.endswith("-0001") for t in before | after)


def test_a_vehicle_does_not_depend_on_the_fleet_size() -> None:
    def first_vehicle(size: int) -> list[bytes]:
        fleet = Fleet(size, seed=9, start=START)
        return [
            encode(m)
            for batch in backfill(fleet, timedelta(minutes=2))
            for m in batch
            if m.vehicle_id == "AV-0001"
        ]

    assert first_vehicle(1) == first_vehicle(30)


def test_every_message_survives_the_wire() -> None:
    fleet = Fleet(40, seed=2, start=START)
    kinds: Counter[type] = Counter()
    for batch in backfill(fleet, timedelta(minutes=10)):
        for m in batch:
            topic = TOPIC_BY_MODEL[type(m)]
            value = encode(m)
            decoded = decode(topic, value, m.vehicle_id.encode(), now=m.time)
            assert decoded == m
            assert encode(decoded) == value
            kinds[type(m)] += 1
    assert set(kinds) == {Telemetry, PerceptionEvent, DrivingEvent}


def test_trusted_construction_matches_model_construct() -> None:
    fleet = Fleet(5, seed=4, start=START)
    for m in fleet.step(fleet.next_time):
        values = dict(m.__dict__)
        rebuilt = type(m).model_construct(**values)
        fields = frozenset(type(m).model_fields)
        assert encode(_trusted(type(m), fields, dict(values))) == encode(rebuilt)
        assert m.model_fields_set == rebuilt.model_fields_set
        assert m.model_copy(update={"vehicle_id": "AV-9999"}).vehicle_id == "AV-9999"


def test_step_stamps_messages_with_the_given_time_and_advances_one_second() -> None:
    fleet = Fleet(3, seed=1, start=START)
    assert fleet.vehicle_ids == ("AV-0001", "AV-0002", "AV-0003")
    batch = fleet.step(START)
    assert {m.time for m in batch} == {START}
    assert sum(isinstance(m, Telemetry) for m in batch) == 3
    assert fleet.next_time == START + TICK
    with pytest.raises(ValueError, match="before the next tick"):
        fleet.step(START)
    with pytest.raises(ValueError, match="timezone-aware"):
        fleet.step(datetime(2026, 3, 2, 8, 0))
    # Another time zone is converted to UTC.
    later = (START + TICK).astimezone(timezone(timedelta(hours=2)))
    assert {m.time.utcoffset() for m in fleet.step(later)} == {timedelta(0)}


def test_backfill_yields_one_batch_per_second() -> None:
    fleet = Fleet(2, seed=1, start=START)
    batches = list(backfill(fleet, timedelta(seconds=90)))
    assert len(batches) == 90
    assert batches[-1][0].time == START + timedelta(seconds=89)
    assert fleet.next_time == START + timedelta(seconds=90)


def test_dropouts_make_vehicles_go_silent_for_a_while() -> None:
    fleet = Fleet(60, seed=5, start=START, dropouts=True)
    last_seen: dict[str, tuple[datetime, float]] = {}
    gaps: list[tuple[float, float]] = []  # (seconds, km driven meanwhile)
    for batch in backfill(fleet, timedelta(hours=1)):
        for m in batch:
            if isinstance(m, Telemetry):
                seen = last_seen.get(m.vehicle_id)
                if seen is not None and m.time - seen[0] > TICK:
                    gaps.append(((m.time - seen[0]).total_seconds(), m.odometer_km - seen[1]))
                last_seen[m.vehicle_id] = (m.time, m.odometer_km)
    assert 3 <= len(gaps) <= 60
    assert all(40 <= seconds <= 181 for seconds, _ in gaps)
    assert any(km > 0.1 for _, km in gaps)  # they kept driving while out of contact
    assert len(last_seen) == 60


def test_odometers_continue_from_given_readings() -> None:
    plain = Fleet(3, seed=1, start=START)
    resumed = Fleet(3, seed=1, start=START, odometers={"AV-0002": 123_456.7, "AV-0009": 1.0})
    assert resumed.vehicles[1].odometer_km == 123_456.7
    assert resumed.vehicles[0].odometer_km == plain.vehicles[0].odometer_km
    batch = resumed.step(START)
    second = next(m for m in batch if isinstance(m, Telemetry) and m.vehicle_id == "AV-0002")
    assert second.odometer_km >= 123_456.7


def test_a_fleet_needs_vehicles_and_an_aware_start() -> None:
    with pytest.raises(ValueError):
        Fleet(0, seed=1, start=START)
    with pytest.raises(ValueError):
        Fleet(1, seed=1, start=datetime(2026, 1, 1))


def test_routes_are_closed_loops_with_realistic_limits() -> None:
    routes = all_routes()
    assert len({r.city for r in routes}) >= 3
    for route in routes:
        last = route.segments[-1]
        end = last.point(last.length_m)
        assert math.isclose(end[0], route.depot[0], abs_tol=1e-6)
        assert math.isclose(end[1], route.depot[1], abs_tol=1e-6)
        assert 3_000 < route.length_m < 60_000
    # American cities: whole miles per hour, 25 mph downtown to 70 mph on a highway.
    limits = {s.limit_kmh for r in routes for s in r.segments}
    assert sorted(round(limit / 1.609344, 6) for limit in limits) == [25, 30, 45, 65, 70]


# A box around the land of each city's routes (water lies beyond these edges: the bay and
# the ocean in San Francisco); every point of every route must fall inside its box.
LAND: dict[str, tuple[float, float, float, float]] = {
    "San Francisco": (37.60, 37.80, -122.49, -122.38),
}


def test_san_francisco_routes_stay_on_land() -> None:
    for route in all_routes():
        box = LAND.get(route.city)
        if box is None:
            continue
        south, north, west, east = box
        for seg in route.segments:
            for lat, lon in (seg.point(0.0), seg.point(seg.length_m)):
                assert south <= lat <= north and west <= lon <= east, (route.route_id, lat, lon)


def test_fast_uuid4_matches_the_standard_constructor() -> None:
    rng = random.Random(1)
    for _ in range(2000):
        bits = rng.getrandbits(128)
        fast, standard = _uuid4(bits), uuid.UUID(int=bits, version=4)
        assert fast == standard
        assert str(fast) == str(standard)
        assert fast.version == 4 and fast.variant == uuid.RFC_4122
        assert hash(fast) == hash(standard)


def test_an_intervention_for_an_object_comes_with_perception_of_it() -> None:
    fleet = Fleet(60, seed=5, start=START)
    seen: set[tuple[str, datetime, ObjectClass]] = set()
    interventions: list[DrivingEvent] = []
    for tick in backfill(fleet, timedelta(hours=2)):
        for m in tick:
            if isinstance(m, PerceptionEvent):
                seen.add((m.vehicle_id, m.time, m.object_class))
            elif isinstance(m, DrivingEvent) and m.type is DrivingEventType.INTERVENTION:
                interventions.append(m)
    about_objects = [e for e in interventions if e.cause in CAUSE_OBJECTS]
    assert len(about_objects) >= 5, len(interventions)
    for event in about_objects:
        assert event.cause is not None
        assert (event.vehicle_id, event.time, CAUSE_OBJECTS[event.cause]) in seen, event
