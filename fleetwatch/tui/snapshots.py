"""Immutable snapshots the terminal app renders: what a refresh fetched, and service status.

Data sources build these (from the metrics queries, or from fixed data in tests); widgets
only ever read them. Nothing here imports Textual or touches the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

WindowName = Literal["15m", "1h", "6h", "24h", "7d"]
WINDOWS: Final[dict[str, timedelta]] = {
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
}
WINDOW_NAMES: Final[tuple[WindowName, ...]] = ("15m", "1h", "6h", "24h", "7d")

ViewName = Literal["fleet", "vehicle", "alerts", "interventions", "perception"]
VIEW_NAMES: Final[tuple[ViewName, ...]] = (
    "fleet",
    "vehicle",
    "alerts",
    "interventions",
    "perception",
)

SEVERITIES: Final = ("critical", "warning", "info")
ALERT_STATES: Final = ("firing", "pending", "resolved")


@dataclass(frozen=True, slots=True)
class ViewRequest:
    """What one refresh should fetch: the visible view over a window ending at ``end``."""

    view: ViewName
    window: WindowName
    end: datetime
    vehicle_id: str | None = None
    """The vehicle shown on the vehicle view."""
    vehicle_end: datetime | None = None
    """When set, the vehicle view is anchored at this moment instead of ``end``."""

    @property
    def start(self) -> datetime:
        return self.end - WINDOWS[self.window]

    @property
    def vehicle_at_key(self) -> datetime | None:
        """The anchored moment when the vehicle view is anchored (it moves with ``end``
        otherwise), for telling one screen from another."""
        return (
            self.vehicle_end
            if self.vehicle_end is not None and self.vehicle_end < self.end
            else None
        )


@dataclass(frozen=True, slots=True)
class FleetKpis:
    vehicles_total: int
    vehicles_reporting: int
    vehicles_moving: int
    distance_km: float
    autonomous_km: float
    interventions: int
    disengagements: int
    alerts_critical: int
    alerts_warning: int
    alerts_info: int
    alerts_handled: int
    """Of the open alerts, those acknowledged or silenced."""

    @property
    def km_per_intervention(self) -> float | None:
        """Total distance over total interventions (None: no interventions)."""
        return self.distance_km / self.interventions if self.interventions else None

    @property
    def km_per_disengagement(self) -> float | None:
        return self.distance_km / self.disengagements if self.disengagements else None


@dataclass(frozen=True, slots=True)
class VehicleRow:
    """One line of the fleet table: a vehicle's latest state and window figures."""

    vehicle_id: str
    status: str
    """moving, stopped, charging or silent."""
    speed_kmh: float
    speed_limit_kmh: float
    battery_pct: float
    autopilot: bool
    last_seen: datetime
    open_alerts: int
    distance_km: float
    interventions: int
    city: str = ""
    lat: float = 0.0
    lon: float = 0.0
    odometer_km: float = 0.0
    range_km: float = 0.0
    heading_deg: float = 0.0

    @property
    def km_per_intervention(self) -> float | None:
        return self.distance_km / self.interventions if self.interventions else None


@dataclass(frozen=True, slots=True)
class FleetView:
    kpis: FleetKpis
    vehicles: tuple[VehicleRow, ...]


@dataclass(frozen=True, slots=True)
class TelemetryPoint:
    time: datetime
    speed_kmh: float
    speed_limit_kmh: float
    battery_pct: float
    autopilot: bool = True


@dataclass(frozen=True, slots=True)
class DrivingEventRow:
    time: datetime
    vehicle_id: str
    type: str
    cause: str
    lat: float
    lon: float
    speed_kmh: float
    autopilot: bool
    detail: str = ""
    event_id: str = ""
    """The event's unique id; empty when the source does not know it."""


@dataclass(frozen=True, slots=True)
class AlertRow:
    alert_id: int
    vehicle_id: str
    rule: str
    state: str
    severity: str
    first_seen: datetime
    last_seen: datetime
    count: int
    value: float | None = None
    summary: str = ""
    acked_by: str | None = None
    ack_until: datetime | None = None
    silenced_until: datetime | None = None

    def acknowledged(self, now: datetime) -> bool:
        return self.ack_until is not None and self.ack_until > now

    def silenced(self, now: datetime) -> bool:
        return self.silenced_until is not None and self.silenced_until > now

    def handled(self, now: datetime) -> bool:
        """Acknowledged or silenced: someone has seen to it."""
        return self.acknowledged(now) or self.silenced(now)


@dataclass(frozen=True, slots=True)
class ClassCount:
    object_class: str
    count: int
    near_misses: int = 0
    min_ttc_s: float | None = None


@dataclass(frozen=True, slots=True)
class VehicleView:
    vehicle: VehicleRow | None
    """None when the vehicle has never reported."""
    start: datetime
    end: datetime
    series: tuple[TelemetryPoint, ...]
    events: tuple[DrivingEventRow, ...]
    alerts: tuple[AlertRow, ...]
    perception: tuple[ClassCount, ...]
    track: tuple[tuple[float, float], ...] = ()
    """The route in the window as (lat, lon), oldest first."""


@dataclass(frozen=True, slots=True)
class AlertsView:
    alerts: tuple[AlertRow, ...]


@dataclass(frozen=True, slots=True)
class InterventionBucket:
    start: datetime
    interventions: int
    disengagements: int


@dataclass(frozen=True, slots=True)
class VehicleRanking:
    vehicle_id: str
    distance_km: float
    interventions: int

    @property
    def km_per_intervention(self) -> float | None:
        return self.distance_km / self.interventions if self.interventions else None


@dataclass(frozen=True, slots=True)
class InterventionsView:
    buckets: tuple[InterventionBucket, ...]
    bucket_width: timedelta
    ranking: tuple[VehicleRanking, ...]
    events: tuple[DrivingEventRow, ...]


@dataclass(frozen=True, slots=True)
class HistogramBin:
    low: float
    high: float | None
    """None for the open last bin."""
    count: int


@dataclass(frozen=True, slots=True)
class NearMiss:
    time: datetime
    vehicle_id: str
    object_class: str
    distance_m: float
    closing_speed_mps: float
    ttc_s: float


@dataclass(frozen=True, slots=True)
class PerceptionView:
    by_class: tuple[ClassCount, ...]
    distance_bins: tuple[HistogramBin, ...]
    ttc_bins: tuple[HistogramBin, ...]
    near_misses: tuple[NearMiss, ...]


@dataclass(frozen=True, slots=True)
class PerceivedObject:
    """One object the vehicle's perception saw."""

    time: datetime
    object_class: str
    distance_m: float
    closing_speed_mps: float
    ttc_s: float | None
    """None when the object was not closing in."""


@dataclass(frozen=True, slots=True)
class EventAlert:
    """An alert of the vehicle open at the moment of an event, in its state then."""

    rule: str
    severity: str
    state: str
    first_seen: datetime
    summary: str = ""


@dataclass(frozen=True, slots=True)
class EventDetail:
    """One driving event and what surrounded it (the event detail view's data)."""

    event: DrivingEventRow
    found: bool
    """False when the event is no longer stored; ``event`` is then the row as listed."""
    telemetry_s: float
    telemetry: tuple[TelemetryPoint, ...]
    """The vehicle's readings from ``telemetry_s`` before to ``telemetry_s`` after,
    oldest first."""
    perception_s: float
    ttc_threshold_s: float
    perception: tuple[ClassCount, ...]
    """Objects seen within ``perception_s`` either side, by class, most frequent first."""
    closest: PerceivedObject | None
    lowest_ttc: PerceivedObject | None
    alerts: tuple[EventAlert, ...]
    city: str = ""


DatabaseState = Literal["starting", "up", "down"]
BrokerState = Literal["in-process", "up", "down", "none"]


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """What the status bar shows about the services behind the app."""

    mode: Literal["embedded", "connected"]
    database: DatabaseState
    broker: BrokerState
    database_detail: str = ""
    broker_detail: str = ""
    ingest_rate_per_s: float | None = None
    """Messages written per second, when the ingestor runs in the app."""
    consumer_lag: int | None = None
    rejects: int | None = None
    backfill_pct: float | None = None
    """Progress of the first-run history backfill, None when not backfilling."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The result of one refresh: the requested view's data (others None)."""

    request: ViewRequest
    taken_at: datetime
    fleet: FleetView | None = None
    vehicle: VehicleView | None = None
    alerts: AlertsView | None = None
    interventions: InterventionsView | None = None
    perception: PerceptionView | None = None
