"""The fleet model: seeded, clock-free vehicles that drive, charge, disengage and perceive.

``Fleet(vehicles, seed, start).step(now)`` advances every vehicle by one tick (one
second of event time) and returns the messages of that tick, stamped ``now``. The
model does no I/O and never reads a clock; all randomness comes from
``random.Random`` instances derived from the seed, so a seed and a start time
reproduce the exact stream, event ids included. Each vehicle has its own generator,
so ``AV-0001`` behaves the same in a fleet of 10 and in a fleet of 10,000.

What a vehicle does, per tick:

* **Driving** along a looped route of its city: speed follows the segment's limit
  times a personal pace, slows ahead of lower limits, stops at red lights, crawls
  in stop-and-go jams, and accelerates/brakes within comfortable bounds. A few
  vehicles (``speeder``) sometimes drive 12-28 km/h over the limit for a while
  (never on a 25 mph downtown street).
* **Trips** of a few kilometres (``trip_start``/``trip_end``) with a short dwell
  between them. When the battery runs low the vehicle drives empty to its depot,
  charges (``charging_start``/``charging_end``) and goes back to work.
* **Energy**: rolling and air resistance (growing with speed), acceleration less
  70 % regeneration, and an auxiliary load (compute, climate) come to about
  18 kWh/100 km in town and 20 on highway loops, so a full pack lasts 5-15 hours
  of driving; range is the remaining energy at the vehicle's rated use.
* **Autonomy**: interventions and disengagements are rare per-kilometre hazards
  that depend on the road, the speed, the weather and the vehicle's ``quality``
  (some vehicles are clearly worse); afterwards the vehicle drives manually for a
  while and then re-engages (``engagement``). Hard brakes happen on their own, with
  some interventions and with close approaches.
* **Perception**: about one tracked object per second, with a class mix that
  depends on the road; rarely a close, fast approach (time-to-collision < 2 s).
"""

from __future__ import annotations

import math
import random
import uuid
from bisect import bisect_right
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Final, TypeVar

from fleetwatch.model import (
    DrivingEvent,
    DrivingEventType,
    Message,
    ObjectClass,
    PerceptionEvent,
    Telemetry,
    WireModel,
)
from fleetwatch.sim.roads import (
    CITIES,
    DOWNTOWN_KMH,
    METRES_PER_DEGREE_LAT,
    ROAD_CLASS_NAMES,
    RoadClass,
    Route,
    all_routes,
)

TICK: Final = timedelta(seconds=1)
"""Event time covered by one :meth:`Fleet.step`."""

# --- motion -------------------------------------------------------------------------
STOP_DECEL: Final = 2.0
"""m/s², planned braking towards a stop line or a pick-up point."""
LIMIT_DECEL: Final = 2.5
"""m/s², planned braking ahead of a lower speed limit."""
MAX_DECEL: Final = 4.0
"""m/s², the firmest ordinary braking; anything harder is a hard brake."""
RED_LIGHT_P: Final = 0.4
JAM_START_P: Final = 1 / 1500
"""Per second on arterials and highways."""
SPEEDER_SHARE: Final = 0.1
SPEEDING_START_P: Final = 1 / 2400
"""Per driving second, for speeders only."""
MAX_SPEED_MPS: Final = 249.0 / 3.6

# --- energy -------------------------------------------------------------------------
MASS_KG: Final = 2100.0
ROLLING_KWH_PER_KM: Final = 0.08
AERO_KWH_PER_KM_PER_KMH2: Final = 0.0000058
DRIVE_EFFICIENCY: Final = 0.9
REGEN_EFFICIENCY: Final = 0.7
PLANNING_KWH_PER_KM: Final = 0.25
"""Pessimistic use for deciding whether the next trip plus the way home still fit."""
RESERVE_PCT: Final = 5.0

# --- autonomy hazards, per kilometre driven autonomously, by road class -------------
INTERVENTIONS_PER_KM: Final = (1 / 220, 1 / 400, 1 / 1100)
DISENGAGEMENTS_PER_KM: Final = (1 / 160, 1 / 300, 1 / 700)
HARD_BRAKES_PER_KM: Final = (1 / 45, 1 / 80, 1 / 200)
PROBLEM_VEHICLE_SHARE: Final = 0.12
DROPOUT_START_P: Final = 1 / (4 * 3600)
"""Per second, with ``Fleet(dropouts=True)``: a vehicle loses contact."""
RAIN_START_P: Final = 1 / (4 * 3600)
RAIN_STOP_P: Final = 1 / 3600

INTERVENTION_CAUSES: Final = (
    # urban
    (
        ("unexpected_pedestrian", 5),
        ("cyclist_close", 3),
        ("double_parked_vehicle", 3),
        ("cut_in", 2),
        ("wrong_lane", 2),
        ("traffic_light_misread", 1),
        ("emergency_vehicle", 1),
    ),
    # arterial
    (
        ("cut_in", 4),
        ("wrong_lane", 3),
        ("unexpected_pedestrian", 2),
        ("blocked_lane", 2),
        ("emergency_vehicle", 1),
    ),
    # highway
    (("cut_in", 5), ("merge_conflict", 3), ("wrong_lane", 2), ("debris_on_road", 2)),
)
SYSTEM_DISENGAGEMENT_CAUSES: Final = (
    ("planner_timeout", 4),
    ("sensor_degraded", 3),
    ("construction_zone", 3),
    ("localization_drift", 2),
    ("map_mismatch", 1),
)
DRIVER_DISENGAGEMENT_CAUSES: Final = (("driver_override", 6), ("passenger_request", 1))
HARD_BRAKE_CAUSES: Final = (
    ("lead_vehicle_braking", 5),
    ("cut_in", 2),
    ("pedestrian_crossing", 2),
    ("yellow_light", 2),
)
SUDDEN_CAUSES: Final = frozenset({"unexpected_pedestrian", "cut_in", "cyclist_close"})
CAUSE_OBJECTS: Final = {
    "unexpected_pedestrian": ObjectClass.PEDESTRIAN,
    "cyclist_close": ObjectClass.CYCLIST,
    "cut_in": ObjectClass.CAR,
    "double_parked_vehicle": ObjectClass.CAR,
    "merge_conflict": ObjectClass.CAR,
}
"""Intervention causes that are an object: perception sees it when the driver takes over."""

# --- perception, by context: urban, arterial, highway, parked -----------------------
PARKED: Final = 3
OBJECTS_PER_SECOND: Final = (1.35, 1.0, 0.75, 0.45)
CLASS_MIX: Final = (
    (
        (ObjectClass.CAR, 40),
        (ObjectClass.PEDESTRIAN, 25),
        (ObjectClass.CYCLIST, 10),
        (ObjectClass.BUS, 5),
        (ObjectClass.TRUCK, 6),
        (ObjectClass.MOTORCYCLE, 4),
        (ObjectClass.UNKNOWN, 10),
    ),
    (
        (ObjectClass.CAR, 55),
        (ObjectClass.PEDESTRIAN, 8),
        (ObjectClass.CYCLIST, 6),
        (ObjectClass.BUS, 6),
        (ObjectClass.TRUCK, 12),
        (ObjectClass.MOTORCYCLE, 5),
        (ObjectClass.UNKNOWN, 8),
    ),
    (
        (ObjectClass.CAR, 62),
        (ObjectClass.TRUCK, 25),
        (ObjectClass.BUS, 3),
        (ObjectClass.MOTORCYCLE, 5),
        (ObjectClass.UNKNOWN, 5),
    ),
    (
        (ObjectClass.CAR, 45),
        (ObjectClass.PEDESTRIAN, 30),
        (ObjectClass.CYCLIST, 8),
        (ObjectClass.TRUCK, 7),
        (ObjectClass.UNKNOWN, 10),
    ),
)
OBJECT_RANGE_M: Final = ((2.0, 80.0), (4.0, 140.0), (8.0, 220.0), (1.5, 40.0))
CLOSING_SPREAD_MPS: Final = (1.8, 2.5, 3.0, 0.8)
CLOSE_APPROACH_P: Final = (1 / 9000, 1 / 14000, 1 / 20000, 0.0)
"""Per reported object, before the vehicle's quality factor."""
MIN_ORDINARY_TTC_S: Final = 2.5
EMERGENCY_TTC_S: Final = 0.8
"""A close approach this imminent makes a moving vehicle stop (``emergency_stop``)."""

T = TypeVar("T")

Cumulative = tuple[tuple[float, ...], tuple[Any, ...]]


def _cumulative(weighted: Sequence[tuple[T, float]]) -> Cumulative:
    total = float(sum(w for _, w in weighted))
    running = 0.0
    bounds = []
    for _, w in weighted:
        running += w
        bounds.append(running / total)
    bounds[-1] = 1.0
    return tuple(bounds), tuple(v for v, _ in weighted)


def _pick(table: Cumulative, u: float) -> Any:
    """The value whose cumulative bound is the first above ``u`` (uniform in [0, 1))."""
    bounds, values = table
    return values[bisect_right(bounds, u)]


def _poisson_bounds(mean: float, top: int = 6) -> tuple[float, ...]:
    """Cumulative probabilities of 0..top-1 events (top absorbs the tail)."""
    bounds = []
    term = math.exp(-mean)
    running = 0.0
    for k in range(top):
        running += term
        bounds.append(running)
        term *= mean / (k + 1)
    return tuple(bounds)


_INTERVENTION_TABLES: Final = tuple(_cumulative(c) for c in INTERVENTION_CAUSES)
_SYSTEM_TABLE: Final = _cumulative(SYSTEM_DISENGAGEMENT_CAUSES)
_SYSTEM_RAIN_TABLE: Final = _cumulative((*SYSTEM_DISENGAGEMENT_CAUSES, ("weather", 8)))
_DRIVER_TABLE: Final = _cumulative(DRIVER_DISENGAGEMENT_CAUSES)
_HARD_BRAKE_TABLE: Final = _cumulative(HARD_BRAKE_CAUSES)
_CLASS_TABLES: Final = tuple(_cumulative(c) for c in CLASS_MIX)
_COUNT_BOUNDS: Final = tuple(_poisson_bounds(m) for m in OBJECTS_PER_SECOND)

_object_setattr = object.__setattr__
_M = TypeVar("_M", bound=WireModel)


def _trusted(cls: type[_M], fields: frozenset[str], values: dict[str, Any]) -> _M:
    """Build a message from values the model already guarantees valid.

    What ``model_construct`` does, without its per-field loop (three times faster);
    the unit tests check that the result encodes exactly like ``model_construct``'s.
    """
    message = cls.__new__(cls)
    _object_setattr(message, "__dict__", values)
    _object_setattr(message, "__pydantic_fields_set__", set(fields))
    _object_setattr(message, "__pydantic_extra__", None)
    _object_setattr(message, "__pydantic_private__", None)
    return message


_UUID_CLEAR: Final = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_V4: Final = (4 << 76) | (0x8000 << 48)
_SAFE_UNKNOWN: Final = uuid.SafeUUID.unknown


def _uuid4(bits: int) -> uuid.UUID:
    """``uuid.UUID(int=bits, version=4)``, in half the time (the unit tests compare them)."""
    value = uuid.UUID.__new__(uuid.UUID)
    _object_setattr(value, "int", (bits & _UUID_CLEAR) | _UUID_V4)
    _object_setattr(value, "is_safe", _SAFE_UNKNOWN)
    return value


_TELEMETRY_FIELDS: Final = frozenset(Telemetry.model_fields)
_PERCEPTION_FIELDS: Final = frozenset(PerceptionEvent.model_fields)
_DRIVING_FIELDS: Final = frozenset(DrivingEvent.model_fields)

# Vehicle states.
DRIVING: Final = 0
DWELL: Final = 1
CHARGING: Final = 2
STATE_NAMES: Final = ("driving", "dwell", "charging")


def vehicle_id_of(index: int) -> str:
    """The id of a fleet's vehicle number ``index`` (from 0): ``AV-0001``..."""
    return f"AV-{index + 1:04d}"


@dataclass(frozen=True, slots=True)
class VehicleState:
    """A vehicle's last known state (its last telemetry, or its row in ``vehicles``).

    A restarted simulator resumes each vehicle from it: same city and route, the
    point of the route nearest ``lat``/``lon``, the same battery and odometer, the
    trip it was on (if any) and its autopilot state.
    """

    route_id: str
    lat: float
    lon: float
    battery_pct: float
    odometer_km: float
    autopilot: bool = True
    trip_id: str | None = None
    speed_kmh: float = 0.0
    time: datetime | None = None
    """Event time of the state: a vehicle whose state is newer than the fleet's start
    waits (produces nothing) until the first tick after it, so vehicles stored up to
    different times each continue from their own."""


def nearest_position(route: Route, lat: float, lon: float) -> tuple[int, float]:
    """Segment index and offset (m) of the point of ``route`` nearest ``lat``/``lon``."""
    best = (0, 0.0)
    best_d2 = math.inf
    for index, seg in enumerate(route.segments):
        m_lon = seg.metres_per_degree_lon
        dx = (lon - seg.start_lon) * m_lon
        dy = (lat - seg.start_lat) * METRES_PER_DEGREE_LAT
        ux = seg.lon_per_m * m_lon
        uy = seg.lat_per_m * METRES_PER_DEGREE_LAT
        along = dx * ux + dy * uy
        along = min(max(along, 0.0), seg.length_m * 0.999)
        ex = dx - ux * along
        ey = dy - uy * along
        d2 = ex * ex + ey * ey
        if d2 < best_d2:
            best_d2 = d2
            best = (index, along)
    return best


class Vehicle:
    """One simulated vehicle. Attributes are public for reading (tests, the TUI)."""

    __slots__ = (
        "autopilot",
        "aux_kw",
        "capacity_kwh",
        "charge_kw",
        "charge_target_pct",
        "charge_threshold_pct",
        "city",
        "city_index",
        "dwell_s",
        "energy_kwh",
        "hold_s",
        "jam_s",
        "jam_target_mps",
        "manual_s",
        "n_segments",
        "odometer_km",
        "offset_m",
        "pace",
        "quality",
        "rated_kwh_per_km",
        "red_ahead",
        "rng",
        "route",
        "route_id",
        "seg",
        "seg_index",
        "segments",
        "silent_s",
        "speed_mps",
        "speeder",
        "speeding_excess_kmh",
        "speeding_s",
        "state",
        "trip_id",
        "trip_left_m",
        "trip_number",
        "trip_prefix",
        "vehicle_id",
    )

    def __init__(self, index: int, seed: int, start: datetime, routes: Sequence[Route]) -> None:
        rng = random.Random(f"fleetwatch-sim:{seed}:{start.isoformat()}:{index}")
        self.rng = rng
        self.vehicle_id = vehicle_id_of(index)
        route = routes[rng.randrange(len(routes))]
        self._take_route(route)

        self.quality = math.exp(rng.gauss(0.0, 0.45))
        """Multiplies the vehicle's intervention and disengagement hazards."""
        if rng.random() < PROBLEM_VEHICLE_SHARE:
            self.quality *= rng.uniform(2.5, 4.0)
        self.speeder = rng.random() < SPEEDER_SHARE
        self.speeding_s = 0
        self.speeding_excess_kmh = 0.0
        self.jam_s = 0
        self.jam_target_mps = 0.0
        self.hold_s = 0
        self.silent_s = 0
        """Seconds the vehicle stays out of contact (only with ``Fleet(dropouts=True)``)."""

        self.capacity_kwh = rng.uniform(60.0, 82.0)
        self.rated_kwh_per_km = rng.uniform(0.16, 0.19)
        self.aux_kw = rng.uniform(0.6, 1.4)
        self.charge_kw = rng.uniform(60.0, 150.0)
        self.charge_threshold_pct = rng.uniform(14.0, 32.0)
        self.charge_target_pct = rng.uniform(80.0, 95.0)
        self.odometer_km = rng.uniform(4_000.0, 60_000.0)
        self.autopilot = True
        self.manual_s = 0
        self.trip_number = 0
        # Trip ids carry a tag of this run, so a restarted simulator never reuses one.
        self.trip_prefix = f"{self.vehicle_id}-{rng.getrandbits(24):06x}"
        self.trip_id: str | None = None
        self.trip_left_m = math.inf
        self.dwell_s = 0

        # Start somewhere along the route, mostly mid-trip.
        position_m = rng.uniform(0.0, route.length_m * 0.999)
        self.seg_index = 0
        for i, seg in enumerate(route.segments):
            if seg.start_m <= position_m < seg.start_m + seg.length_m:
                self.seg_index = i
                break
        self.seg = route.segments[self.seg_index]
        self.offset_m = position_m - self.seg.start_m
        self.pace = self._draw_pace()
        self.red_ahead = False
        self.speed_mps = 0.0
        roll = rng.random()
        if roll < 0.08:
            self.state = CHARGING
            self.energy_kwh = self.capacity_kwh * rng.uniform(0.2, 0.6)
            self._park_at_depot()
        elif roll < 0.2:
            self.state = DWELL
            self.energy_kwh = self.capacity_kwh * rng.uniform(0.3, 0.95)
            self.dwell_s = rng.randrange(1, 120)
        else:
            self.state = DRIVING
            self.energy_kwh = self.capacity_kwh * rng.uniform(0.22, 0.95)
            self.speed_mps = self.seg.limit_kmh / 3.6 * rng.uniform(0.3, 0.95)
            self.trip_number = 1
            self.trip_id = f"{self.trip_prefix}-{self.trip_number:04d}"
            self.trip_left_m = rng.uniform(500.0, min(8000.0, route.length_m * 0.7))

    def _take_route(self, route: Route) -> None:
        self.route = route
        self.route_id = route.route_id
        self.city = route.city
        self.city_index = next(i for i, c in enumerate(CITIES) if c.name == route.city)
        self.segments = route.segments
        self.n_segments = len(route.segments)

    def resume(self, state: VehicleState, routes: Mapping[str, Route]) -> None:
        """Continue from ``state`` instead of the drawn start (see :class:`VehicleState`).

        Only what the state does not say (personality, trip length left, dwell time) is
        drawn, from this vehicle's generator, so the result stays deterministic.
        """
        rng = self.rng
        route = routes.get(state.route_id)
        if route is not None:
            self._take_route(route)
            self.seg_index, self.offset_m = nearest_position(route, state.lat, state.lon)
            self.seg = self.segments[self.seg_index]
        if math.isfinite(state.odometer_km) and state.odometer_km >= 0:
            self.odometer_km = float(state.odometer_km)
        if math.isfinite(state.battery_pct):
            pct = min(max(state.battery_pct, 0.0), 100.0)
            self.energy_kwh = self.capacity_kwh * pct / 100.0
        self.autopilot = state.autopilot
        self.manual_s = 0 if state.autopilot else rng.randrange(20, 300)
        self.pace = self._draw_pace()
        self.red_ahead = False
        self.hold_s = 0
        at_depot = self.seg_index == 0 and self.offset_m < 1.0
        if state.trip_id is not None:
            self.state = DRIVING
            self.trip_id = state.trip_id
            self.speed_mps = min(max(state.speed_kmh, 0.0) / 3.6, self.seg.limit_kmh / 3.6)
            self.trip_left_m = rng.uniform(300.0, min(6000.0, self.route.length_m * 0.5))
        elif at_depot and self.battery_pct < self.charge_target_pct:
            self.state = CHARGING
            self.trip_id = None
            self.trip_left_m = math.inf
            self.speed_mps = 0.0
        else:
            # Between trips (or driving empty to the depot): a short dwell, after which
            # the usual rules pick the next trip or the way to the charger.
            self.state = DWELL
            self.trip_id = None
            self.trip_left_m = math.inf
            self.speed_mps = 0.0
            self.dwell_s = rng.randrange(1, 60)

    # --- helpers ------------------------------------------------------------------

    @property
    def battery_pct(self) -> float:
        return 100.0 * self.energy_kwh / self.capacity_kwh

    @property
    def range_km(self) -> float:
        return self.energy_kwh / self.rated_kwh_per_km

    @property
    def position(self) -> tuple[float, float]:
        return self.seg.point(self.offset_m)

    @property
    def state_name(self) -> str:
        return STATE_NAMES[self.state]

    def _draw_pace(self) -> float:
        return min(1.04, max(0.88, self.rng.gauss(0.97, 0.025)))

    def _park_at_depot(self) -> None:
        self.seg_index = 0
        self.seg = self.segments[0]
        self.offset_m = 0.0
        self.speed_mps = 0.0
        self.trip_id = None
        self.trip_left_m = math.inf
        self.red_ahead = False

    def _new_id(self) -> uuid.UUID:
        return _uuid4(self.rng.getrandbits(128))

    def _event(
        self,
        out: list[Message],
        now: datetime,
        kind: DrivingEventType,
        cause: str | None,
        detail: str | None,
        autopilot: bool,
    ) -> None:
        lat, lon = self.seg.point(self.offset_m)
        out.append(
            _trusted(
                DrivingEvent,
                _DRIVING_FIELDS,
                {
                    "schema_version": 1,
                    "event_id": self._new_id(),
                    "time": now,
                    "vehicle_id": self.vehicle_id,
                    "type": kind,
                    "cause": cause,
                    "detail": detail,
                    "lat": int(lat * 1e6) / 1e6,
                    "lon": int(lon * 1e6) / 1e6,
                    "speed_kmh": int(self.speed_mps * 360.0 + 0.5) / 100.0,
                    "autopilot": autopilot,
                },
            )
        )

    # --- one tick -----------------------------------------------------------------

    def tick(self, now: datetime, raining: bool, out: list[Message]) -> None:
        """Advance one second and append this tick's messages to ``out``."""
        state = self.state
        if state == DRIVING:
            self._drive(now, raining, out)
        elif state == DWELL:
            self.energy_kwh -= self.aux_kw / 3600.0
            self.dwell_s -= 1
            if self.dwell_s <= 0:
                self._leave(now, out)
        else:
            self._charge(now, out)

        lat, lon = self.seg.point(self.offset_m)
        energy = self.energy_kwh
        if energy < 0.0:
            energy = self.energy_kwh = 0.0
        out.append(
            _trusted(
                Telemetry,
                _TELEMETRY_FIELDS,
                {
                    "schema_version": 1,
                    "event_id": _uuid4(self.rng.getrandbits(128)),
                    "time": now,
                    "vehicle_id": self.vehicle_id,
                    "speed_kmh": int(self.speed_mps * 360.0 + 0.5) / 100.0,
                    "speed_limit_kmh": self.seg.limit_kmh,
                    "lat": int(lat * 1e6) / 1e6,
                    "lon": int(lon * 1e6) / 1e6,
                    "heading_deg": self.seg.heading_deg,
                    "battery_pct": int(10_000.0 * energy / self.capacity_kwh + 0.5) / 100.0,
                    "range_km": int(10.0 * energy / self.rated_kwh_per_km + 0.5) / 10.0,
                    "odometer_km": int(self.odometer_km * 1000.0 + 0.5) / 1000.0,
                    "autopilot": self.autopilot,
                    "city": self.city,
                    "route_id": self.route_id,
                    "trip_id": self.trip_id,
                },
            )
        )
        self._perceive(now, out)

    def _drive(self, now: datetime, raining: bool, out: list[Message]) -> None:
        rng = self.rng
        seg = self.seg
        v0 = self.speed_mps
        road = seg.road

        if self.hold_s > 0:
            # Waiting at a red light.
            self.hold_s -= 1
            self.speed_mps = 0.0
            self.energy_kwh -= self.aux_kw / 3600.0
            if not self.autopilot:
                self._count_down_manual(now, out)
            return

        limit_kmh = seg.limit_kmh
        if self.speeding_s > 0:
            self.speeding_s -= 1
            target = (limit_kmh + self.speeding_excess_kmh) / 3.6
        else:
            target = limit_kmh * self.pace / 3.6
            if self.speeder and limit_kmh > DOWNTOWN_KMH and rng.random() < SPEEDING_START_P:
                self.speeding_s = rng.randrange(30, 240)
                self.speeding_excess_kmh = rng.uniform(12.0, 28.0)

        if self.jam_s > 0:
            self.jam_s -= 1
            if rng.random() < 0.1:  # stop-and-go
                self.jam_target_mps = 0.0 if self.jam_target_mps > 1.0 else rng.uniform(4.0, 10.0)
            if self.jam_target_mps < target:
                target = self.jam_target_mps
        elif road != RoadClass.URBAN and rng.random() < JAM_START_P:
            self.jam_s = rng.randrange(60, 600)
            self.jam_target_mps = rng.uniform(3.0, 10.0)

        to_end = seg.length_m - self.offset_m
        following = self.segments[(self.seg_index + 1) % self.n_segments]
        if following.limit_kmh < limit_kmh:
            v_next = following.limit_kmh * self.pace / 3.6
            # Measured from where this tick ends, so the vehicle enters at the new limit.
            room = to_end - v0 if to_end > v0 else 0.0
            ahead = math.sqrt(v_next * v_next + 2.0 * LIMIT_DECEL * room)
            if ahead < target:
                target = ahead
        stop_m = to_end if self.red_ahead else math.inf
        if self.trip_left_m < stop_m:
            stop_m = self.trip_left_m
        if stop_m != math.inf:
            approach = math.sqrt(2.0 * STOP_DECEL * stop_m)
            if approach < target:
                target = approach

        if target > v0:
            accel = 2.6 - 0.05 * v0
            v1 = v0 + (accel if accel > 0.8 else 0.8)
            if v1 > target:
                v1 = target
        else:
            v1 = v0 - MAX_DECEL
            if v1 < target:
                v1 = target
        if v1 > 1.0 and target - v1 < 0.5:
            v1 += (rng.random() - 0.5) * 0.3  # cruising wobble

        # Rare events, one draw per tick: hazards scale with distance this tick.
        travel = (v0 + v1) * 0.5
        if travel > 0.0:
            km = travel / 1000.0
            u = rng.random()
            p_hard = HARD_BRAKES_PER_KM[road] * km
            if self.autopilot:
                v_kmh = v1 * 3.6
                if road == RoadClass.HIGHWAY:
                    speed_factor = 1.0 + max(0.0, v_kmh - 110.0) / 40.0
                else:
                    speed_factor = 1.0 + max(0.0, v_kmh - 40.0) / 40.0
                scale = km * self.quality * speed_factor
                p_int = INTERVENTIONS_PER_KM[road] * scale * (1.4 if raining else 1.0)
                p_dis = DISENGAGEMENTS_PER_KM[road] * scale * (2.0 if raining else 1.0)
                if u < p_int:
                    v1 = self._intervene(now, out, road, v1)
                elif u < p_int + p_dis:
                    self._disengage(now, out, raining, road)
                elif u < p_int + p_dis + p_hard and v0 > 5.0:
                    v1 = self._hard_brake(now, out, v0, None)
            else:
                self._count_down_manual(now, out)
                if u < p_hard and v0 > 5.0:
                    v1 = self._hard_brake(now, out, v0, None)

        if v1 < 0.0:
            v1 = 0.0
        elif v1 > MAX_SPEED_MPS:
            v1 = MAX_SPEED_MPS
        travel = (v0 + v1) * 0.5
        arrived_at_stop = travel >= stop_m
        if arrived_at_stop:
            travel = stop_m
            v1 = 0.0
        self.speed_mps = v1

        # Energy: motion at this speed, change of kinetic energy, auxiliary load.
        v_kmh = (v0 + v1) * 1.8
        used = self.aux_kw / 3600.0 + travel / 1000.0 * (
            ROLLING_KWH_PER_KM + AERO_KWH_PER_KM_PER_KMH2 * v_kmh * v_kmh
        )
        dv = v1 - v0
        if dv > 0.2 or dv < -0.2:  # not the cruising wobble, which a real car does not have
            kinetic = 0.5 * MASS_KG * (v1 * v1 - v0 * v0) / 3_600_000.0
            used += kinetic / DRIVE_EFFICIENCY if kinetic > 0.0 else kinetic * REGEN_EFFICIENCY
        self.energy_kwh -= used

        self.odometer_km += travel / 1000.0
        self.trip_left_m -= travel
        offset = self.offset_m + travel
        if arrived_at_stop and self.red_ahead and stop_m == to_end:
            self.red_ahead = False
            self.hold_s = rng.randrange(3, 45)
        while offset >= seg.length_m:
            offset -= seg.length_m
            self.seg_index = (self.seg_index + 1) % self.n_segments
            seg = self.seg = self.segments[self.seg_index]
            self.pace = self._draw_pace()
            self.red_ahead = seg.light_at_end and rng.random() < RED_LIGHT_P
        self.offset_m = offset

        if self.trip_left_m <= 1e-6:
            self._arrive(now, out)

    def _count_down_manual(self, now: datetime, out: list[Message]) -> None:
        self.manual_s -= 1
        if self.manual_s <= 0:
            self._event(out, now, DrivingEventType.ENGAGEMENT, None, "autonomous mode", False)
            self.autopilot = True

    def _intervene(self, now: datetime, out: list[Message], road: int, v1: float) -> float:
        """The safety driver takes over; returns the speed at the end of the tick."""
        rng = self.rng
        cause = _pick(_INTERVENTION_TABLES[road], rng.random())
        detail = f"safety driver took over on {ROAD_CLASS_NAMES[road]} road"
        self._event(out, now, DrivingEventType.INTERVENTION, cause, detail, True)
        seen = CAUSE_OBJECTS.get(cause)
        if seen is not None:
            # What the driver took over for, as perception saw it: close and ahead.
            distance = rng.uniform(6.0, 30.0)
            closing = max(self.speed_mps, 1.0) * rng.uniform(0.5, 1.0)
            self._seen(
                now, out, seen, distance, closing, rng.uniform(-25.0, 25.0), rng.uniform(0.7, 0.98)
            )
        if cause in SUDDEN_CAUSES and self.speed_mps > 5.0 and rng.random() < 0.5:
            v1 = self._hard_brake(now, out, self.speed_mps, cause)
        self.autopilot = False
        self.manual_s = rng.randrange(30, 420)
        return v1

    def _disengage(self, now: datetime, out: list[Message], raining: bool, road: int) -> None:
        rng = self.rng
        if rng.random() < 0.7:
            table = _SYSTEM_RAIN_TABLE if raining else _SYSTEM_TABLE
            initiator = "system"
        else:
            table = _DRIVER_TABLE
            initiator = "driver"
        cause = _pick(table, rng.random())
        detail = f"{initiator}-initiated on {ROAD_CLASS_NAMES[road]} road"
        self._event(out, now, DrivingEventType.DISENGAGEMENT, cause, detail, True)
        self.autopilot = False
        self.manual_s = rng.randrange(20, 300)

    def _hard_brake(self, now: datetime, out: list[Message], v0: float, cause: str | None) -> float:
        rng = self.rng
        if cause is None:
            cause = _pick(_HARD_BRAKE_TABLE, rng.random())
        decel = rng.uniform(5.5, 8.5)
        self._event(
            out, now, DrivingEventType.HARD_BRAKE, cause, f"{decel:.1f} m/s²", self.autopilot
        )
        v1 = v0 - decel
        return v1 if v1 > 0.0 else 0.0

    def _emergency_stop(self, now: datetime, out: list[Message]) -> None:
        """Full braking for an imminent collision; the vehicle is stopped next tick."""
        self._event(
            out,
            now,
            DrivingEventType.EMERGENCY_STOP,
            "collision_avoidance",
            f"from {self.speed_mps * 3.6:.0f} km/h",
            self.autopilot,
        )
        v1 = self.speed_mps - 9.0
        self.speed_mps = v1 if v1 > 0.0 else 0.0

    def _arrive(self, now: datetime, out: list[Message]) -> None:
        """Reached the end of a trip, or the depot when driving empty to charge."""
        self.speed_mps = 0.0
        self.trip_left_m = math.inf
        if self.trip_id is not None:
            self._event(out, now, DrivingEventType.TRIP_END, None, self.trip_id, self.autopilot)
            self.trip_id = None
            self.state = DWELL
            self.dwell_s = self.rng.randrange(20, 180)
        else:
            self._park_at_depot()
            self._start_charging(now, out)

    def _start_charging(self, now: datetime, out: list[Message]) -> None:
        self.state = CHARGING
        self._event(
            out,
            now,
            DrivingEventType.CHARGING_START,
            None,
            f"battery {self.battery_pct:.0f}%",
            self.autopilot,
        )

    def _charge(self, now: datetime, out: list[Message]) -> None:
        pct = self.battery_pct
        taper = 1.0 if pct < 80.0 else 0.2 + 0.8 * (100.0 - pct) / 20.0
        self.energy_kwh += (self.charge_kw * taper - self.aux_kw) / 3600.0
        if self.energy_kwh > self.capacity_kwh:
            self.energy_kwh = self.capacity_kwh
        if self.battery_pct >= self.charge_target_pct:
            self._event(
                out,
                now,
                DrivingEventType.CHARGING_END,
                None,
                f"battery {self.battery_pct:.0f}%",
                self.autopilot,
            )
            rng = self.rng
            self.charge_threshold_pct = rng.uniform(14.0, 32.0)
            self.charge_target_pct = rng.uniform(80.0, 95.0)
            self.state = DWELL
            self.dwell_s = rng.randrange(30, 240)

    def _leave(self, now: datetime, out: list[Message]) -> None:
        """End of a dwell: start the next trip, or head to the depot to charge."""
        rng = self.rng
        route = self.route
        longest_trip_m = min(12_000.0, route.length_m * 0.7)
        worst_case_kwh = (longest_trip_m + route.length_m) / 1000.0 * PLANNING_KWH_PER_KM
        worst_case_pct = 100.0 * worst_case_kwh / self.capacity_kwh
        pct = self.battery_pct
        self.state = DRIVING
        self.pace = self._draw_pace()
        if pct < self.charge_threshold_pct or pct - worst_case_pct < RESERVE_PCT:
            to_depot = route.length_m - (self.seg.start_m + self.offset_m)
            if to_depot < 1.0 or to_depot > route.length_m - 1.0:
                self._park_at_depot()
                self._start_charging(now, out)
                return
            self.trip_id = None
            self.trip_left_m = to_depot
            return
        self.trip_number += 1
        self.trip_id = f"{self.trip_prefix}-{self.trip_number:04d}"
        self.trip_left_m = rng.uniform(min(1500.0, longest_trip_m / 2), longest_trip_m)
        self._event(out, now, DrivingEventType.TRIP_START, None, self.trip_id, self.autopilot)

    def _perceive(self, now: datetime, out: list[Message]) -> None:
        rng = self.rng
        context = self.seg.road if self.state == DRIVING else PARKED
        u = rng.random()
        count = 0
        for bound in _COUNT_BOUNDS[context]:
            if u < bound:
                break
            count += 1
        if not count:
            return
        classes = _CLASS_TABLES[context]
        low, high = OBJECT_RANGE_M[context]
        spread = CLOSING_SPREAD_MPS[context]
        close_p = CLOSE_APPROACH_P[context] * self.quality
        for _ in range(count):
            object_class = _pick(classes, rng.random())
            if rng.random() < close_p and object_class is not ObjectClass.UNKNOWN:
                distance = rng.uniform(4.0, 25.0)
                ttc = rng.uniform(0.6, 1.9)
                closing = distance / ttc
                bearing = rng.uniform(-30.0, 30.0)
                confidence = rng.uniform(0.75, 0.99)
                if self.speed_mps > 5.0:
                    if ttc < EMERGENCY_TTC_S:
                        self._emergency_stop(now, out)
                    elif rng.random() < 0.5:
                        self.speed_mps = self._hard_brake(
                            now, out, self.speed_mps, "close_approach"
                        )
            else:
                r = rng.random()
                distance = low + (high - low) * r * r
                # Triangular noise: cheaper than gauss() and bounded.
                closing = (rng.random() - rng.random()) * spread * 2.0
                if closing * MIN_ORDINARY_TTC_S > distance:
                    closing = distance / MIN_ORDINARY_TTC_S
                bearing = (rng.random() - rng.random()) * 180.0
                if object_class is ObjectClass.UNKNOWN:
                    confidence = rng.uniform(0.3, 0.7)
                else:
                    confidence = 0.99 - 0.45 * rng.random() ** 2
            self._seen(now, out, object_class, distance, closing, bearing, confidence)

    def _seen(
        self,
        now: datetime,
        out: list[Message],
        object_class: ObjectClass,
        distance: float,
        closing: float,
        bearing: float,
        confidence: float,
    ) -> None:
        """One perception event: an object at ``distance`` m closing at ``closing`` m/s."""
        out.append(
            _trusted(
                PerceptionEvent,
                _PERCEPTION_FIELDS,
                {
                    "schema_version": 1,
                    "event_id": _uuid4(self.rng.getrandbits(128)),
                    "time": now,
                    "vehicle_id": self.vehicle_id,
                    "object_class": object_class,
                    "distance_m": int(distance * 100.0 + 0.5) / 100.0,
                    "closing_speed_mps": int(closing * 100.0) / 100.0,
                    "bearing_deg": int(bearing * 10.0) / 10.0,
                    "confidence": int(confidence * 1000.0 + 0.5) / 1000.0,
                },
            )
        )


class Fleet:
    """A seeded fleet of vehicles ``AV-0001``... spread over the cities' routes.

    ``start`` is the event time of the first tick. Call :meth:`step` with
    ``next_time`` (or any later UTC time) to advance one second of event time.

    ``odometers`` (vehicle id -> km, e.g. the last readings stored) makes a restarted
    simulator continue those odometers instead of drawing new ones, so a vehicle's
    odometer never goes back across restarts; nothing else changes.

    ``resume`` (vehicle id -> :class:`VehicleState`) makes a restarted simulator
    continue each listed vehicle where it was: same city, route, position, battery,
    odometer, trip and autopilot. Vehicles not listed start as usual. The stream is
    still determined by (seed, start, resume); event ids come from generators seeded
    with ``start``, so a run resumed at a later start never repeats an earlier id.

    ``dropouts=True`` makes vehicles lose contact now and then (about once in
    four hours, for 40-180 s): they keep driving, but nothing they produce in that
    time arrives, so "vehicle silent" alerts happen. Off by default, so every
    vehicle reports every second.
    """

    def __init__(
        self,
        vehicles: int,
        seed: int,
        start: datetime,
        *,
        odometers: Mapping[str, float] | None = None,
        resume: Mapping[str, VehicleState] | None = None,
        dropouts: bool = False,
    ) -> None:
        if vehicles < 1:
            raise ValueError("a fleet needs at least one vehicle")
        if start.tzinfo is None:
            raise ValueError("start must be a timezone-aware time")
        start = start.astimezone(timezone.utc)
        self.seed = seed
        self.start = start
        self.dropouts = dropouts
        routes = all_routes()
        self.routes: dict[str, Route] = {r.route_id: r for r in routes}
        self.vehicles: tuple[Vehicle, ...] = tuple(
            Vehicle(i, seed, start, routes) for i in range(vehicles)
        )
        self.vehicle_ids: tuple[str, ...] = tuple(v.vehicle_id for v in self.vehicles)
        self._waiting: list[tuple[Vehicle, datetime]] = []
        for vehicle in self.vehicles:
            reading = (odometers or {}).get(vehicle.vehicle_id)
            if reading is not None and math.isfinite(reading) and reading >= 0:
                vehicle.odometer_km = float(reading)
            state = (resume or {}).get(vehicle.vehicle_id)
            if state is not None:
                vehicle.resume(state, self.routes)
                if state.time is not None and state.time >= start:
                    self._waiting.append((vehicle, state.time))
        self._weather_rng = random.Random(f"fleetwatch-weather:{seed}:{start.isoformat()}")
        self.raining: list[bool] = [self._weather_rng.random() < 0.2 for _ in CITIES]
        self.next_time = start
        """Event time of the next tick."""
        self.ticks = 0

    def step(self, now: datetime) -> list[Message]:
        """Advance every vehicle by one second; return the messages stamped ``now``.

        ``now`` must be timezone-aware and not before :attr:`next_time`; the tick is one
        second of simulated driving whatever the gap, so pass ``next_time`` to keep event
        time and distance consistent.
        """
        if now.tzinfo is None:
            raise ValueError("event times must be timezone-aware")
        if now < self.next_time:
            raise ValueError(
                f"event time {now.isoformat()} is before the next tick "
                f"{self.next_time.isoformat()}"
            )
        now = now.astimezone(timezone.utc)
        rng = self._weather_rng
        raining = self.raining
        for i in range(len(raining)):
            if rng.random() < (RAIN_STOP_P if raining[i] else RAIN_START_P):
                raining[i] = not raining[i]
        out: list[Message] = []
        vehicles: Sequence[Vehicle] = self.vehicles
        if self._waiting:
            self._waiting = [(v, until) for v, until in self._waiting if now <= until]
            held = {v for v, _ in self._waiting}
            vehicles = [v for v in vehicles if v not in held]
        if not self.dropouts:
            for vehicle in vehicles:
                vehicle.tick(now, raining[vehicle.city_index], out)
        else:
            lost: list[Message] = []
            for vehicle in vehicles:
                if vehicle.silent_s <= 0 and vehicle.rng.random() < DROPOUT_START_P:
                    vehicle.silent_s = vehicle.rng.randrange(40, 180)
                if vehicle.silent_s > 0:
                    vehicle.silent_s -= 1
                    vehicle.tick(now, raining[vehicle.city_index], lost)
                    lost.clear()
                else:
                    vehicle.tick(now, raining[vehicle.city_index], out)
        self.next_time = now + TICK
        self.ticks += 1
        return out


def backfill(fleet: Fleet, duration: timedelta) -> Iterator[list[Message]]:
    """Yield one tick's messages per second of ``duration``, from ``fleet.next_time`` on."""
    for _ in range(int(duration.total_seconds())):
        yield fleet.step(fleet.next_time)
