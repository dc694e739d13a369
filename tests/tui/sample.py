"""A deterministic data source for snapshot tests, pilot tests and screenshots.

Everything is built once from ``random.Random(seed)`` and a fixed clock, so the same
arguments give the same screens on every machine.
"""

from __future__ import annotations

import itertools
import math
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from textual.worker import get_current_worker

from fleetwatch.pipeline.rules import (
    battery_summary,
    collision_summary,
    silent_summary,
    speed_summary,
)
from fleetwatch.tui.snapshots import (
    WINDOWS,
    AlertRow,
    AlertsView,
    ClassCount,
    DrivingEventRow,
    EventAlert,
    EventDetail,
    FleetKpis,
    FleetView,
    HistogramBin,
    InterventionBucket,
    InterventionsView,
    NearMiss,
    PerceivedObject,
    PerceptionView,
    ServiceStatus,
    Snapshot,
    TelemetryPoint,
    VehicleRanking,
    VehicleRow,
    VehicleView,
    ViewRequest,
)
from fleetwatch.tui.source import SourceUnavailable

FIXED_NOW = datetime(2026, 11, 27, 14, 30, 0, tzinfo=timezone.utc)
LOCAL_ZONE = timezone(timedelta(hours=-7), "MST")
"""The local time zone of the tests and screenshots, so local times draw the same
on every machine."""
CITIES = (
    ("San Francisco", 37.7749, -122.4194),
    ("Phoenix", 33.4484, -112.074),
    ("Austin", 30.2672, -97.7431),
)
CAUSES = (
    "construction zone",
    "unprotected left",
    "pedestrian nearby",
    "sensor degraded",
    "planner stall",
    "double-parked car",
)
CLASSES = ("car", "pedestrian", "cyclist", "truck", "bus", "motorcycle", "unknown")
RULES = ("speed_violation", "low_battery", "collision_risk", "vehicle_silent")
RULE_SEVERITY = {
    "speed_violation": "warning",
    "low_battery": "warning",
    "collision_risk": "critical",
    "vehicle_silent": "info",
}


def fixed_clock() -> datetime:
    return FIXED_NOW


@dataclass
class Dataset:
    now: datetime
    vehicles: list[VehicleRow]
    events: list[DrivingEventRow]
    alerts: list[AlertRow]
    near: list[NearMiss]
    classes: list[ClassCount]
    seed: int
    tracks: dict[str, list[TelemetryPoint]] = field(default_factory=dict)


def build_dataset(seed: int = 7, vehicles: int = 25, now: datetime = FIXED_NOW) -> Dataset:
    rng = random.Random(seed)
    rows: list[VehicleRow] = []
    for i in range(1, vehicles + 1):
        city, lat0, lon0 = CITIES[i % len(CITIES)]
        roll = rng.random()
        status = (
            "moving"
            if roll < 0.7
            else "stopped"
            if roll < 0.85
            else "charging"
            if roll < 0.95
            else "silent"
        )
        limit = rng.choice((40.0, 50.0, 60.0, 80.0, 100.0))
        speed = 0.0 if status != "moving" else max(5.0, limit + rng.uniform(-25, 14))
        last_seen = now - timedelta(
            seconds=rng.randint(0, 3) if status != "silent" else rng.randint(90, 900)
        )
        distance = rng.uniform(8, 70) if status != "charging" else rng.uniform(0, 5)
        rows.append(
            VehicleRow(
                vehicle_id=f"AV-{i:03d}",
                status=status,
                speed_kmh=round(speed, 1),
                speed_limit_kmh=limit,
                battery_pct=round(rng.uniform(8, 98), 1),
                autopilot=status == "moving" and rng.random() < 0.85,
                last_seen=last_seen,
                open_alerts=0,
                distance_km=round(distance, 2),
                interventions=0,
                city=city,
                lat=lat0 + rng.uniform(-0.05, 0.05),
                lon=lon0 + rng.uniform(-0.05, 0.05),
                odometer_km=round(rng.uniform(2000, 60000), 1),
                range_km=round(rng.uniform(40, 400), 0),
                heading_deg=rng.uniform(0, 359),
            )
        )
    events: list[DrivingEventRow] = []
    for _ in range(vehicles * 2):
        vehicle = rng.choice(rows)
        kind = "intervention" if rng.random() < 0.45 else "disengagement"
        events.append(
            DrivingEventRow(
                time=now
                - timedelta(
                    seconds=rng.randint(30, 7 * 86400 - 60)
                    if rng.random() < 0.3
                    else rng.randint(30, 3500)
                ),
                vehicle_id=vehicle.vehicle_id,
                type=kind,
                cause=rng.choice(CAUSES),
                lat=vehicle.lat + rng.uniform(-0.01, 0.01),
                lon=vehicle.lon + rng.uniform(-0.01, 0.01),
                speed_kmh=round(rng.uniform(0, 70), 1),
                autopilot=kind == "disengagement" or rng.random() < 0.8,
            )
        )
    events.sort(key=lambda e: (e.time, e.vehicle_id))
    alerts: list[AlertRow] = []
    for alert_id in range(1, max(4, vehicles // 2) + 1):
        vehicle = rng.choice(rows)
        rule = rng.choice(RULES)
        state = rng.choice(("firing", "firing", "pending", "resolved"))
        first = now - timedelta(seconds=rng.randint(120, 3000))
        last = min(now, first + timedelta(seconds=rng.randint(10, 900)))
        alerts.append(
            AlertRow(
                alert_id=alert_id,
                vehicle_id=vehicle.vehicle_id,
                rule=rule,
                state=state,
                severity=RULE_SEVERITY[rule],
                first_seen=first,
                last_seen=last,
                count=rng.randint(1, 400),
                value=round(rng.uniform(0.5, 30), 1),
                summary=_summary(rule, rng),
            )
        )
    open_by_vehicle: dict[str, int] = {}
    for alert in alerts:
        if alert.state != "resolved":
            open_by_vehicle[alert.vehicle_id] = open_by_vehicle.get(alert.vehicle_id, 0) + 1
    hour_ago = now - timedelta(hours=1)
    interventions: dict[str, int] = {}
    for event in events:
        if event.type == "intervention" and event.time >= hour_ago:
            interventions[event.vehicle_id] = interventions.get(event.vehicle_id, 0) + 1
    rows = [
        replace(
            r,
            open_alerts=open_by_vehicle.get(r.vehicle_id, 0),
            interventions=interventions.get(r.vehicle_id, 0),
        )
        for r in rows
    ]
    near = []
    for _ in range(max(5, vehicles // 2)):
        vehicle = rng.choice(rows)
        distance = rng.uniform(2, 30)
        closing = rng.uniform(2, 20)
        near.append(
            NearMiss(
                time=now - timedelta(seconds=rng.randint(10, 3500)),
                vehicle_id=vehicle.vehicle_id,
                object_class=rng.choice(CLASSES[:4]),
                distance_m=round(distance, 1),
                closing_speed_mps=round(closing, 1),
                ttc_s=round(min(1.99, distance / closing), 2),
            )
        )
    classes = [
        ClassCount(c, int(vehicles * 400 * w), sum(1 for n in near if n.object_class == c))
        for c, w in zip(CLASSES, (5.0, 2.2, 0.9, 0.8, 0.3, 0.2, 0.1), strict=True)
    ]
    return Dataset(now, rows, events, alerts, near, classes, seed)


def _summary(rule: str, rng: random.Random) -> str:
    """A summary as the rules write it (one draw per number, in the order of the data)."""
    if rule == "speed_violation":
        return speed_summary(50 + rng.randint(11, 30), 50)
    if rule == "low_battery":
        return battery_summary(rng.randint(5, 19))
    if rule == "collision_risk":
        ttc_s = rng.uniform(0.4, 1.9)
        return collision_summary(rng.choice(CLASSES[:4]), ttc_s, ttc_s * 8.0)
    return silent_summary(rng.randint(31, 600))


def _series(
    vehicle: VehicleRow, start: datetime, end: datetime, seed: int
) -> tuple[TelemetryPoint, ...]:
    rng = random.Random(f"{seed}/{vehicle.vehicle_id}")
    points = []
    count = 120
    speed = vehicle.speed_limit_kmh * 0.8
    battery = min(100.0, vehicle.battery_pct + 15)
    step = (end - start) / count
    for i in range(count):
        limit = (
            vehicle.speed_limit_kmh
            if (i // 30) % 2 == 0
            else max(30.0, vehicle.speed_limit_kmh - 20)
        )
        speed = max(0.0, min(limit + 18, speed + rng.uniform(-6, 6)))
        battery = max(0.0, battery - rng.uniform(0, 0.25))
        points.append(
            TelemetryPoint(
                time=start + step * i,
                speed_kmh=round(speed, 1),
                speed_limit_kmh=limit,
                battery_pct=round(battery, 1),
            )
        )
    return tuple(points)


class FixedSource:
    """A :class:`fleetwatch.tui.source.DataSource` over a :class:`Dataset`.

    ``down`` makes every call fail like an unreachable database; acknowledgements and
    silences change the dataset in memory so the UI flow can be exercised without a server.
    """

    def __init__(self, dataset: Dataset | None = None, *, empty: bool = False) -> None:
        self.dataset = dataset or build_dataset()
        self.empty = empty
        self.down = False
        self.requests: list[ViewRequest] = []
        self.event_requests: list[DrivingEventRow] = []
        self.acks: list[tuple[int, datetime, str]] = []
        self.silences: list[tuple[str, str, datetime, str]] = []

    def fetch(self, request: ViewRequest) -> Snapshot:
        self.requests.append(request)
        if self.down:
            raise SourceUnavailable(
                "cannot connect to the database at localhost:5432: connection refused."
            )
        data = self.dataset
        start = request.start
        if self.empty:
            return _empty_snapshot(request, data.now)
        if request.view == "fleet":
            kpis = _kpis(data, start)
            return Snapshot(request, data.now, fleet=FleetView(kpis, tuple(data.vehicles)))
        if request.view == "vehicle":
            return Snapshot(request, data.now, vehicle=self._vehicle(request))
        if request.view == "alerts":
            return Snapshot(request, data.now, alerts=AlertsView(tuple(data.alerts)))
        if request.view == "interventions":
            return Snapshot(request, data.now, interventions=_interventions(data, request))
        return Snapshot(request, data.now, perception=_perception(data, request))

    def _vehicle(self, request: ViewRequest) -> VehicleView | None:
        if request.vehicle_id is None:
            return None
        data = self.dataset
        end = request.vehicle_end or request.end
        start = end - WINDOWS[request.window]
        vehicle = next((v for v in data.vehicles if v.vehicle_id == request.vehicle_id), None)
        if vehicle is None:
            return VehicleView(None, start, end, (), (), (), ())
        events = tuple(
            e for e in data.events if e.vehicle_id == vehicle.vehicle_id and start <= e.time <= end
        )
        alerts = tuple(a for a in data.alerts if a.vehicle_id == vehicle.vehicle_id)
        rng = random.Random(f"{data.seed}/{vehicle.vehicle_id}/perception")
        perception = tuple(
            ClassCount(
                c.object_class,
                rng.randint(0, 400),
                sum(
                    1
                    for n in data.near
                    if n.vehicle_id == vehicle.vehicle_id and n.object_class == c.object_class
                ),
            )
            for c in data.classes[:5]
        )
        track = tuple(
            (
                vehicle.lat + 0.01 * math.sin(a) + 0.002 * math.sin(3 * a),
                vehicle.lon + 0.015 * math.cos(a),
            )
            for a in (i / 120 * 2 * math.pi for i in range(120))
        )
        series = _series(vehicle, start, end, data.seed)
        return VehicleView(vehicle, start, end, series, events, alerts, perception, track)

    def event_detail(self, event: DrivingEventRow) -> EventDetail:
        self.event_requests.append(event)
        if self.down:
            raise SourceUnavailable("the database is unavailable.")
        return event_detail(self.dataset, event)

    def acknowledge(self, alert_id: int, until: datetime, by: str) -> None:
        if self.down:
            raise SourceUnavailable("the database is unavailable.")
        self.acks.append((alert_id, until, by))
        self.dataset.alerts = [
            replace(a, acked_by=by, ack_until=until) if a.alert_id == alert_id else a
            for a in self.dataset.alerts
        ]

    def silence(self, vehicle_id: str, rule: str, until: datetime, by: str) -> None:
        if self.down:
            raise SourceUnavailable("the database is unavailable.")
        self.silences.append((vehicle_id, rule, until, by))
        self.dataset.alerts = [
            replace(a, silenced_until=until) if (a.vehicle_id, a.rule) == (vehicle_id, rule) else a
            for a in self.dataset.alerts
        ]

    def close(self) -> None:
        pass


EVENT_DETAILS = {
    "construction zone": "lane closed ahead, no route around it",
    "unprotected left": "oncoming traffic, gap too short",
    "pedestrian nearby": "pedestrian stepped off the kerb",
    "sensor degraded": "front lidar returns dropped",
    "planner stall": "no plan for 2.5 s",
    "double-parked car": "blocked lane, oncoming traffic",
}


def event_detail(data: Dataset, event: DrivingEventRow) -> EventDetail:
    """What surrounded ``event``, made up from a generator seeded by the event, as the
    database source would read it: the vehicle slowing down to the event, perception
    within 5 s and the dataset's alerts of the vehicle open at that moment."""
    key = f"{data.seed}/{event.vehicle_id}/{event.time.isoformat()}/{event.type}"
    rng = random.Random(key)
    event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    limit = rng.choice((40.0, 50.0, 60.0))
    speed = limit + rng.uniform(-5, 12)
    battery = rng.uniform(20, 90)
    telemetry = []
    for offset in range(-30, 31):
        if -8 <= offset <= 0:
            # Down to the event's speed over the last seconds before it.
            speed += (event.speed_kmh - speed) / (1 - offset)
        elif offset > 0:
            speed = max(0.0, speed - rng.uniform(0, 4))
        else:
            speed = max(0.0, speed + rng.uniform(-3, 3))
        telemetry.append(
            TelemetryPoint(
                time=event.time + timedelta(seconds=offset, milliseconds=120),
                speed_kmh=round(speed, 1),
                speed_limit_kmh=limit if offset < 10 else limit - 20,
                battery_pct=round(battery - (offset + 30) * 0.01, 1),
                autopilot=event.autopilot if offset < 0 else False,
            )
        )
    objects = []
    for _ in range(rng.randint(6, 14)):
        distance = rng.uniform(1.5, 60)
        closing = rng.uniform(-3, 12)
        objects.append(
            PerceivedObject(
                time=event.time + timedelta(seconds=rng.randint(-5, 5)),
                object_class=rng.choice(CLASSES[:4]),
                distance_m=round(distance, 1),
                closing_speed_mps=round(closing, 1),
                ttc_s=round(distance / closing, 2) if closing > 0 else None,
            )
        )
    by_class: dict[str, list[PerceivedObject]] = {}
    for item in objects:
        by_class.setdefault(item.object_class, []).append(item)
    classes = sorted(
        (
            ClassCount(
                name,
                len(items),
                sum(1 for i in items if i.ttc_s is not None and i.ttc_s < 2.0),
            )
            for name, items in by_class.items()
        ),
        key=lambda c: (-c.count, c.object_class),
    )
    closing_in = [o for o in objects if o.ttc_s is not None]
    # A resolved alert of the dataset resolved when it was last seen.
    alerts = tuple(
        EventAlert(
            a.rule,
            a.severity,
            "pending" if a.state == "pending" else "firing",
            a.first_seen,
            a.summary,
        )
        for a in data.alerts
        if a.vehicle_id == event.vehicle_id
        and a.first_seen <= event.time
        and (a.state != "resolved" or a.last_seen > event.time)
    )
    city = next((v.city for v in data.vehicles if v.vehicle_id == event.vehicle_id), "")
    return EventDetail(
        event=replace(event, event_id=event_id, detail=EVENT_DETAILS.get(event.cause, "")),
        found=True,
        telemetry_s=30.0,
        telemetry=tuple(telemetry),
        perception_s=5.0,
        ttc_threshold_s=2.0,
        perception=tuple(classes),
        closest=min(objects, key=lambda o: (o.distance_m, o.time)),
        lowest_ttc=min(closing_in, key=lambda o: (o.ttc_s or 0.0, o.time)) if closing_in else None,
        alerts=alerts,
        city=city,
    )


def _kpis(data: Dataset, start: datetime) -> FleetKpis:
    events = [e for e in data.events if e.time >= start]
    open_alerts = [a for a in data.alerts if a.state != "resolved"]
    distance = sum(v.distance_km for v in data.vehicles)
    return FleetKpis(
        vehicles_total=len(data.vehicles),
        vehicles_reporting=sum(1 for v in data.vehicles if v.status != "silent"),
        vehicles_moving=sum(1 for v in data.vehicles if v.status == "moving"),
        distance_km=distance,
        autonomous_km=distance * 0.87,
        interventions=sum(1 for e in events if e.type == "intervention"),
        disengagements=sum(1 for e in events if e.type == "disengagement"),
        alerts_critical=sum(1 for a in open_alerts if a.severity == "critical"),
        alerts_warning=sum(1 for a in open_alerts if a.severity == "warning"),
        alerts_info=sum(1 for a in open_alerts if a.severity == "info"),
        alerts_handled=sum(1 for a in open_alerts if a.handled(data.now)),
    )


def _interventions(data: Dataset, request: ViewRequest) -> InterventionsView:
    start = request.start
    buckets = 12
    width = WINDOWS[request.window] / buckets
    rows = []
    for i in range(buckets):
        low = start + width * i
        high = low + width
        inside = [e for e in data.events if low <= e.time < high]
        rows.append(
            InterventionBucket(
                low,
                sum(1 for e in inside if e.type == "intervention"),
                sum(1 for e in inside if e.type == "disengagement"),
            )
        )
    ranking = tuple(
        VehicleRanking(v.vehicle_id, v.distance_km, v.interventions) for v in data.vehicles
    )
    events = tuple(e for e in data.events if e.time >= start)
    return InterventionsView(tuple(rows), width, ranking, events)


def _perception(data: Dataset, request: ViewRequest) -> PerceptionView:
    rng = random.Random(f"{data.seed}/hist")
    distance_edges = (0, 5, 10, 20, 40, 80, 150)
    ttc_edges = (0, 1, 2, 3, 5, 10)
    distance_bins = tuple(
        HistogramBin(float(lo), float(hi), int(rng.uniform(200, 4000)))
        for lo, hi in itertools.pairwise(distance_edges)
    )
    ttc_bins = tuple(
        HistogramBin(float(lo), float(hi), int(rng.uniform(10, 900) * (i + 1)))
        for i, (lo, hi) in enumerate(itertools.pairwise(ttc_edges))
    )
    near = tuple(n for n in data.near if n.time >= request.start)
    return PerceptionView(tuple(data.classes), distance_bins, ttc_bins, near)


def _empty_snapshot(request: ViewRequest, now: datetime) -> Snapshot:
    empty_kpis = FleetKpis(0, 0, 0, 0.0, 0.0, 0, 0, 0, 0, 0, 0)
    return Snapshot(
        request,
        now,
        fleet=FleetView(empty_kpis, ()) if request.view == "fleet" else None,
        vehicle=None,
        alerts=AlertsView(()) if request.view == "alerts" else None,
        interventions=InterventionsView((), timedelta(minutes=5), (), ())
        if request.view == "interventions"
        else None,
        perception=PerceptionView((), (), (), ()) if request.view == "perception" else None,
    )


class FixedStatus:
    """A fixed :class:`fleetwatch.tui.source.StatusSource`."""

    def __init__(self, status: ServiceStatus | None = None) -> None:
        self.value = status or ServiceStatus(
            mode="embedded",
            database="up",
            broker="in-process",
            ingest_rate_per_s=1312.0,
            consumer_lag=0,
            rejects=0,
        )

    def status(self) -> ServiceStatus:
        return self.value


class GatedServices:
    """Services that report start-up steps and wait for the test to let them finish."""

    HOLD_S = 30.0
    """The longest start-up waits for ``release``, so a test that forgets it still ends."""

    POLL_S = 0.05

    def __init__(self, source: FixedSource, fail: str | None = None) -> None:
        self.source = source
        self.fail = fail
        self.release = threading.Event()
        self.stopped = False

    def start(self, progress: Callable[[str, float | None], None]) -> tuple[FixedSource, Any]:
        progress("starting the embedded database", None)
        progress("migrating the schema", 0.5)
        # Held until the test releases it or the app exits (which cancels the worker):
        # the app's event loop waits for this thread before it finishes exiting.
        worker = get_current_worker()
        deadline = time.monotonic() + self.HOLD_S
        while not self.release.wait(self.POLL_S):
            if worker.is_cancelled or time.monotonic() > deadline:
                break
        if self.fail:
            raise SourceUnavailable(self.fail)
        return self.source, FixedStatus()

    def stop(self) -> None:
        self.stopped = True
