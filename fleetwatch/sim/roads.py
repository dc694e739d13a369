"""Road networks of the simulated cities: looped routes with per-segment speed limits.

Every city has a depot near its centre and a handful of routes that start and end
there: a downtown grid loop (25/30 mph, a traffic light at every block), an arterial
loop (30/45 mph, lights at the larger crossings) and one or two loops that leave
town on a highway (65/70 mph). The cities are American, so their limits are whole
miles per hour (kept in km/h like every speed). The layout is fixed (it depends on
nothing but the city), so routes are the same in every run; only the fleet's
behaviour is seeded. Each city's depot and highway direction keep its routes on land.

Geometry is precomputed once: each :class:`Segment` carries its start point, the
degrees of latitude/longitude per metre along it, its heading and its length, so a
vehicle's position is two multiply-adds per tick.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import IntEnum
from functools import cache
from typing import Final

from fleetwatch.model import KM_PER_MILE

METRES_PER_DEGREE_LAT: Final = 111_320.0


def _mph(limit: float) -> float:
    return limit * KM_PER_MILE


DOWNTOWN_KMH: Final = _mph(25)
CITY_KMH: Final = _mph(30)
ARTERIAL_KMH: Final = _mph(45)
HIGHWAY_KMH: Final = _mph(65)
OPEN_HIGHWAY_KMH: Final = _mph(70)
SPEED_LIMITS_KMH: Final = (DOWNTOWN_KMH, CITY_KMH, ARTERIAL_KMH, HIGHWAY_KMH, OPEN_HIGHWAY_KMH)
"""Every limit a simulated road has."""


class RoadClass(IntEnum):
    URBAN = 0
    ARTERIAL = 1
    HIGHWAY = 2


ROAD_CLASS_NAMES: Final = ("urban", "arterial", "highway")


@dataclass(frozen=True, slots=True)
class Segment:
    """A straight piece of road between two intersections (or ramps)."""

    start_lat: float
    start_lon: float
    lat_per_m: float
    lon_per_m: float
    heading_deg: float
    """Compass heading of travel, 0 = north, 90 = east, in [0, 360)."""
    length_m: float
    limit_kmh: float
    road: RoadClass
    light_at_end: bool
    """Whether a traffic light (which may be red) stands at the end of the segment."""
    start_m: float
    """Distance from the start of the route to the start of this segment."""
    metres_per_degree_lon: float
    """The local projection the segment was laid out with (at the city's latitude)."""

    def point(self, offset_m: float) -> tuple[float, float]:
        return (
            self.start_lat + self.lat_per_m * offset_m,
            self.start_lon + self.lon_per_m * offset_m,
        )


@dataclass(frozen=True, slots=True)
class Route:
    route_id: str
    city: str
    kind: str
    segments: tuple[Segment, ...]
    length_m: float

    @property
    def depot(self) -> tuple[float, float]:
        """Where the route starts and ends: the city's depot with its chargers."""
        first = self.segments[0]
        return first.start_lat, first.start_lon


@dataclass(frozen=True, slots=True)
class City:
    name: str
    code: str
    lat: float
    lon: float
    grid_rotation_deg: float
    """How far the street grid is turned from north (San Francisco's is not square)."""
    highway_out_deg: float | None = None
    """The direction the highway loop leaves town in (None: one of the four, fixed per
    city); the loop turns clockwise, or counter-clockwise with ``highway_turn`` -1."""
    highway_turn: int = 1


CITIES: Final = (
    # South of the centre, with the highway loop heading south and turning east: the
    # grid loops reach east and north, so from the Civic Center they ended in the bay.
    City("San Francisco", "sf", 37.7200, -122.4500, 8.0, highway_out_deg=180.0, highway_turn=-1),
    City("Phoenix", "phx", 33.4484, -112.0740, 0.0),
    City("Austin", "aus", 30.2672, -97.7431, 17.0),
    City("Pittsburgh", "pgh", 40.4406, -79.9959, -12.0),
)

# A leg is (direction in grid degrees, length in metres, block length in metres,
# road class, limit km/h). Blocks become segments; urban and arterial block ends
# carry traffic lights.
Leg = tuple[float, float, float, RoadClass, float]


def _rectangle(
    width_m: float, height_m: float, block_m: float, road: RoadClass, limits: tuple[float, float]
) -> list[Leg]:
    return [
        (90.0, width_m, block_m, road, limits[0]),
        (0.0, height_m, block_m, road, limits[1]),
        (270.0, width_m, block_m, road, limits[0]),
        (180.0, height_m, block_m, road, limits[1]),
    ]


def _highway_loop(rng: random.Random, direction: float, turn: int = 1) -> list[Leg]:
    """Out of town on arterials, round a highway ring (clockwise, or counter-clockwise
    with ``turn`` -1), and back the same way."""
    out = direction
    side = (direction + 90.0 * turn) % 360.0
    back = (direction + 180.0) % 360.0
    other = (direction - 90.0 * turn) % 360.0
    urban = rng.uniform(800, 1400)
    arterial = rng.uniform(1500, 2500)
    ring_long = rng.uniform(8000, 12000)
    ring_short = rng.uniform(4000, 6000)
    return [
        (out, urban, 200.0, RoadClass.URBAN, CITY_KMH),
        (out, arterial, 500.0, RoadClass.ARTERIAL, ARTERIAL_KMH),
        (out, ring_long, 2000.0, RoadClass.HIGHWAY, HIGHWAY_KMH),
        (side, ring_short, 2000.0, RoadClass.HIGHWAY, OPEN_HIGHWAY_KMH),
        (back, ring_long, 2000.0, RoadClass.HIGHWAY, OPEN_HIGHWAY_KMH),
        (other, ring_short, 2000.0, RoadClass.HIGHWAY, HIGHWAY_KMH),
        (back, arterial, 500.0, RoadClass.ARTERIAL, ARTERIAL_KMH),
        (back, urban, 200.0, RoadClass.URBAN, CITY_KMH),
    ]


def _legs_to_segments(city: City, legs: list[Leg], origin: tuple[float, float]) -> list[Segment]:
    lat, lon = origin
    metres_per_degree_lon = METRES_PER_DEGREE_LAT * math.cos(math.radians(city.lat))
    segments: list[Segment] = []
    start_m = 0.0
    for direction, length_m, block_m, road, limit in legs:
        heading = (direction + city.grid_rotation_deg) % 360.0
        north = math.cos(math.radians(heading))
        east = math.sin(math.radians(heading))
        lat_per_m = north / METRES_PER_DEGREE_LAT
        lon_per_m = east / metres_per_degree_lon
        blocks = max(1, round(length_m / block_m))
        piece = length_m / blocks
        for _ in range(blocks):
            segments.append(
                Segment(
                    start_lat=lat,
                    start_lon=lon,
                    lat_per_m=lat_per_m,
                    lon_per_m=lon_per_m,
                    heading_deg=heading,
                    length_m=piece,
                    limit_kmh=limit,
                    road=road,
                    light_at_end=road != RoadClass.HIGHWAY,
                    start_m=start_m,
                    metres_per_degree_lon=metres_per_degree_lon,
                )
            )
            lat += lat_per_m * piece
            lon += lon_per_m * piece
            start_m += piece
    return segments


def _city_routes(city: City) -> tuple[Route, ...]:
    rng = random.Random(f"fleetwatch-roads:{city.code}")
    depot = (city.lat + rng.uniform(-0.004, 0.004), city.lon + rng.uniform(-0.004, 0.004))
    plans: list[tuple[str, list[Leg]]] = [
        (
            "downtown",
            _rectangle(
                rng.uniform(1400, 2000),
                rng.uniform(900, 1400),
                rng.uniform(160, 220),
                RoadClass.URBAN,
                (DOWNTOWN_KMH, CITY_KMH),
            ),
        ),
        (
            "midtown",
            _rectangle(
                rng.uniform(2500, 3500),
                rng.uniform(1800, 2600),
                rng.uniform(200, 260),
                RoadClass.URBAN,
                (CITY_KMH, CITY_KMH),
            ),
        ),
        (
            "arterial",
            _rectangle(
                rng.uniform(4000, 5500),
                rng.uniform(3000, 4000),
                rng.uniform(450, 650),
                RoadClass.ARTERIAL,
                (ARTERIAL_KMH, CITY_KMH),
            ),
        ),
        (
            "highway",
            _highway_loop(
                rng,
                rng.choice((0.0, 90.0, 180.0, 270.0))
                if city.highway_out_deg is None
                else city.highway_out_deg,
                city.highway_turn,
            ),
        ),
    ]
    routes = []
    for kind, legs in plans:
        segments = _legs_to_segments(city, legs, depot)
        routes.append(
            Route(
                route_id=f"{city.code}-{kind}",
                city=city.name,
                kind=kind,
                segments=tuple(segments),
                length_m=sum(s.length_m for s in segments),
            )
        )
    return tuple(routes)


@cache
def all_routes() -> tuple[Route, ...]:
    """Every route of every city, in a fixed order."""
    return tuple(route for city in CITIES for route in _city_routes(city))


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Approximate ground distance (equirectangular; fine within a city)."""
    mean_lat = math.radians((lat1 + lat2) / 2.0)
    dy = (lat2 - lat1) * METRES_PER_DEGREE_LAT
    dx = (lon2 - lon1) * METRES_PER_DEGREE_LAT * math.cos(mean_lat)
    return math.hypot(dx, dy)


def distance_to_route_m(route: Route, lat: float, lon: float) -> float:
    """Shortest distance from a point to the route's polyline."""
    best = math.inf
    for seg in route.segments:
        # Project onto the segment in local metres.
        metres_per_degree_lon = seg.metres_per_degree_lon
        px = (lon - seg.start_lon) * metres_per_degree_lon
        py = (lat - seg.start_lat) * METRES_PER_DEGREE_LAT
        ux = seg.lon_per_m * metres_per_degree_lon
        uy = seg.lat_per_m * METRES_PER_DEGREE_LAT
        along = min(max(px * ux + py * uy, 0.0), seg.length_m)
        best = min(best, math.hypot(px - ux * along, py - uy * along))
    return best
