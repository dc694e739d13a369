"""Fleet metrics: every number the TUI and ``fleetwatch report`` show, from one place.

All functions take an open psycopg connection and a :class:`Window`; most take an
optional ``vehicle_id``. They return frozen dataclasses (immutable snapshots the TUI
can hand between threads). Units are in the field names: ``_km``, ``_kmh``, ``_pct``,
``_s``, ``_m``, ``_mps``. Conversion to miles happens only at display time
(:class:`Units`, :func:`format_distance`, :func:`format_km_per_event`).

Definitions (DESIGN.md, "Self-driving metrics"):

- **Window**: a half-open interval ``[start, end)`` of whole UTC minutes, because
  the rollups are per minute. ``Window.last("1h", now)`` ends at the end of the
  minute containing ``now`` and starts one hour earlier. An event at exactly
  ``start`` counts; an event at exactly ``end`` does not.
- **Distance** (``distance_km``): per vehicle, the odometer of its last reading in
  the window minus the odometer of its first reading in the window, summed over
  vehicles. A vehicle with one reading has driven 0 km.
- **Autonomous distance** (``autonomous_km``): the part of that distance driven with
  autopilot engaged: the sum of ``step_km`` (odometer delta since the vehicle's
  previous sample) over samples with autopilot on, excluding each vehicle's first
  sample in the window (its step lies before the window). So
  ``autonomous_km <= distance_km``.
- **Interventions / disengagements**: ``driving_events`` of that type in the window.
- **km per intervention** = total distance / total interventions (a ratio of totals
  as in the California DMV disengagement reports, not a mean of per-vehicle
  ratios); ``None`` when there were no interventions, displayed as
  "no interventions" (never infinity or zero). Same for disengagements.
- **Interventions per 1,000 km** = 1000 * interventions / distance; ``None`` with no
  distance.
- **Autopilot share by distance** = autonomous_km / distance_km; **by time** = the
  share of telemetry samples (1 Hz) with autopilot engaged. ``None`` when there is
  nothing to divide.
- **Reporting**: the vehicle's latest telemetry is at most ``reporting_s`` seconds
  before ``now``. **Moving**: reporting and faster than
  :data:`fleetwatch.store.rollups.MOVING_KMH`.
- **Speed violations** / **collision risks**: alerts of the speed / collision-risk
  rule that started firing in the window (the rule holds the margin, the sustained
  duration and the TTC threshold). **Near misses**: perception events whose
  time-to-collision (distance / closing speed) is below a threshold.
- **Open alerts**: alerts not resolved (pending or firing), counted by severity.
- **Rejects**: messages the ingestor could not decode, received in the window.

Fleet-wide numbers read the per-minute rollups maintained by the ingestor
(:mod:`fleetwatch.store.rollups`) plus index lookups, never scans of raw telemetry,
so each call stays well under 50 ms at 10 million telemetry rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any, Final

import psycopg
from psycopg.rows import class_row, dict_row

from fleetwatch import durations
from fleetwatch.model import KM_PER_MILE
from fleetwatch.store.rollups import DISTANCE_EDGES_M, MOVING_KMH, TTC_EDGES_S

Connection = psycopg.Connection[Any]

SPEED_RULE: Final = "speed_violation"
"""Alert rule name of a sustained speed violation."""
COLLISION_RULE: Final = "collision_risk"
"""Alert rule name of a time-to-collision breach."""
SEVERITIES: Final = ("critical", "warning", "info")
OPEN_STATES: Final = ("pending", "firing")
MINUTE: Final = timedelta(minutes=1)

WINDOWS: Final[dict[str, timedelta]] = {
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
}
"""The windows the TUI offers; :func:`parse_window` accepts any ``<n>m|h|d``."""


class WindowError(ValueError):
    """A window the user asked for cannot be understood; the message is one sentence."""


# --------------------------------------------------------------------------- windows


def floor_minute(moment: datetime) -> datetime:
    moment = _utc(moment)
    return moment.replace(second=0, microsecond=0)


def ceil_minute(moment: datetime) -> datetime:
    floored = floor_minute(moment)
    return floored if floored == _utc(moment) else floored + MINUTE


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return moment.astimezone(timezone.utc)


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open time interval ``[start, end)`` of whole UTC minutes.

    ``now`` is the moment the window was taken (used for "reporting" and ages);
    ``label`` is how it is shown ("1h", or "start - end" for explicit windows).
    """

    start: datetime
    end: datetime
    now: datetime
    label: str

    @classmethod
    def last(cls, span: str | timedelta, now: datetime) -> Window:
        """The last ``span`` (``"15m"``, ``"1h"``, ``"6h"``, ``"24h"``, ``"7d"`` or a
        timedelta) up to the end of the minute containing ``now``."""
        if isinstance(span, str):
            duration = parse_duration(span)
            label = span
        else:
            duration = span
            label = _describe_duration(span)
        if duration <= timedelta(0):
            raise WindowError("the window must be longer than zero")
        end = floor_minute(now) + MINUTE
        start = end - timedelta(minutes=math.ceil(duration.total_seconds() / 60))
        return cls(start=start, end=end, now=_utc(now), label=label)

    @classmethod
    def until(cls, span: str, at: datetime) -> Window:
        """The last ``span`` before ``at``, in whole minutes: like :meth:`last`, but a
        moment on a minute boundary ends the window there, so nothing after ``at`` is
        counted but the rest of the minute it falls in (the rollups are per minute)."""
        window = cls.last(span, at)
        shift = window.end - ceil_minute(at)
        return cls(window.start - shift, window.end - shift, window.now, window.label)

    @classmethod
    def between(cls, start: datetime, end: datetime, now: datetime | None = None) -> Window:
        """An explicit window, widened to whole minutes (start floored, end ceiled)."""
        start_floor, end_ceil = floor_minute(start), ceil_minute(end)
        if end_ceil <= start_floor:
            raise WindowError("the window must end after it starts")
        label = f"{start_floor:%Y-%m-%d %H:%M} - {end_ceil:%Y-%m-%d %H:%M} UTC"
        return cls(start_floor, end_ceil, _utc(now) if now else end_ceil, label)

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    @property
    def duration_s(self) -> float:
        return self.duration.total_seconds()

    @property
    def minutes(self) -> int:
        return int(self.duration_s // 60)

    def params(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "now": self.now}


def parse_duration(text: str) -> timedelta:
    """``"90m"``, ``"6h"``, ``"7d"`` -> timedelta; raises :class:`WindowError`."""
    try:
        return durations.parse_duration(text, what="window", minimum=MINUTE)
    except durations.DurationError as error:
        raise WindowError(str(error)) from None


def parse_window(text: str, now: datetime) -> Window:
    return Window.last(text, now)


def _describe_duration(duration: timedelta) -> str:
    seconds = int(duration.total_seconds())
    if seconds % 86400 == 0:
        return f"{seconds // 86400}d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    return f"{math.ceil(seconds / 60)}m"


# --------------------------------------------------------------------------- units


class Units(str, Enum):
    """Display units; every number is stored and computed in kilometres."""

    KM = "km"
    MI = "mi"

    @property
    def distance_label(self) -> str:
        return "km" if self is Units.KM else "mi"

    @property
    def speed_label(self) -> str:
        return "km/h" if self is Units.KM else "mph"

    def distance(self, km: float) -> float:
        return km if self is Units.KM else km / KM_PER_MILE

    def speed(self, kmh: float) -> float:
        return kmh if self is Units.KM else kmh / KM_PER_MILE

    def per_1000(self, per_1000_km: float) -> float:
        """Convert a rate per 1,000 km to a rate per 1,000 of these units."""
        return per_1000_km if self is Units.KM else per_1000_km * KM_PER_MILE


def _units(units: Units | str) -> Units:
    return units if isinstance(units, Units) else Units(units)


def format_distance(km: float | None, units: Units | str = Units.KM, decimals: int = 1) -> str:
    """``12.3 km`` / ``7.6 mi``; ``-`` for no value."""
    if km is None:
        return "-"
    chosen = _units(units)
    return f"{chosen.distance(km):,.{decimals}f} {chosen.distance_label}"


def format_speed(kmh: float | None, units: Units | str = Units.KM) -> str:
    if kmh is None:
        return "-"
    chosen = _units(units)
    return f"{chosen.speed(kmh):.0f} {chosen.speed_label}"


def _singular(what: str) -> str:
    return what[:-1] if what.endswith("s") else what


def per_event_label(units: Units | str = Units.KM, what: str = "interventions") -> str:
    """``km per intervention`` / ``mi per disengagement``."""
    return f"{_units(units).distance_label} per {_singular(what)}"


def format_km_per_event(
    value: float | None, units: Units | str = Units.KM, what: str = "interventions"
) -> str:
    """``1,234.5 km`` per event, or ``no interventions`` when ``value`` is None."""
    if value is None:
        return f"no {what}"
    return format_distance(value, units)


def format_rate_per_1000(
    per_1000_km: float | None, units: Units | str = Units.KM, what: str = "interventions"
) -> str:
    """``0.52 interventions per 1,000 km``; ``-`` without distance."""
    if per_1000_km is None:
        return "-"
    chosen = _units(units)
    return f"{chosen.per_1000(per_1000_km):.2f} {what} per 1,000 {chosen.distance_label}"


def format_pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator``; None when the denominator is zero."""
    return None if denominator <= 0 else numerator / denominator


def km_per_event(distance_km: float, events: int) -> float | None:
    """Distance per event as a ratio of totals; None with zero events."""
    return None if events <= 0 else distance_km / events


def per_1000_km(events: int, distance_km: float) -> float | None:
    return None if distance_km <= 0 else 1000.0 * events / distance_km


def _pct(numerator: float, denominator: float) -> float | None:
    value = ratio(numerator, denominator)
    return None if value is None else 100.0 * min(value, 1.0)


# --------------------------------------------------------------------------- result types


@dataclass(frozen=True, slots=True)
class FleetKpis:
    """Fleet (or one vehicle's) key figures over a window; see the module docstring."""

    window: Window
    vehicle_id: str | None
    vehicles_total: int
    """Vehicles ever seen (or 1/0 for one vehicle)."""
    vehicles_reporting: int
    vehicles_moving: int
    vehicles_autonomous: int
    """Reporting with autopilot engaged in their latest sample."""
    distance_km: float
    autonomous_km: float
    interventions: int
    disengagements: int
    km_per_intervention: float | None
    km_per_disengagement: float | None
    interventions_per_1000km: float | None
    disengagements_per_1000km: float | None
    autopilot_distance_pct: float | None
    autopilot_time_pct: float | None
    telemetry_samples: int
    speed_violations: int
    collision_risks: int
    near_misses: int
    """Perception events with TTC below the threshold passed to :func:`fleet_kpis`."""
    alerts_open_critical: int
    alerts_open_warning: int
    alerts_open_info: int
    alerts_firing: int
    alerts_pending: int
    alerts_handled: int
    """Open alerts acknowledged or silenced: the rest need someone's attention."""
    rejects: int

    @property
    def alerts_open(self) -> int:
        return self.alerts_open_critical + self.alerts_open_warning + self.alerts_open_info


@dataclass(frozen=True, slots=True)
class VehicleRow:
    """One line of the vehicle table: latest state plus figures over the window."""

    vehicle_id: str
    last_seen: datetime
    age_s: float
    """Seconds between the latest telemetry and the window's ``now``."""
    reporting: bool
    moving: bool
    speed_kmh: float
    speed_limit_kmh: float
    battery_pct: float
    range_km: float
    odometer_km: float
    autopilot: bool
    lat: float
    lon: float
    heading_deg: float
    city: str
    route_id: str
    trip_id: str | None
    alerts_open: int
    worst_severity: str | None
    """Highest severity among open alerts, None without any."""
    distance_km: float
    autonomous_km: float
    interventions: int
    disengagements: int
    km_per_intervention: float | None


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """One chart bucket of one vehicle's telemetry, starting at ``time``."""

    time: datetime
    samples: int
    speed_avg_kmh: float
    speed_max_kmh: float
    speed_limit_kmh: float
    """Highest road limit in the bucket."""
    battery_pct: float
    """Lowest state of charge in the bucket."""
    autopilot_pct: float
    """Share of samples with autopilot engaged."""


@dataclass(frozen=True, slots=True)
class VehicleSeries:
    vehicle_id: str
    window: Window
    bucket_s: int
    points: tuple[SeriesPoint, ...]
    """Only buckets with data, oldest first."""


@dataclass(frozen=True, slots=True)
class TrackPoint:
    time: datetime
    lat: float
    lon: float
    speed_kmh: float
    autopilot: bool


@dataclass(frozen=True, slots=True)
class EventBucket:
    time: datetime
    interventions: int
    disengagements: int


@dataclass(frozen=True, slots=True)
class EventSeries:
    window: Window
    vehicle_id: str | None
    bucket_s: int
    buckets: tuple[EventBucket, ...]
    """Every bucket of the window (zeros included), oldest first."""


@dataclass(frozen=True, slots=True)
class CauseCount:
    cause: str
    """The event's cause, or ``"unknown"`` when it had none."""
    interventions: int
    disengagements: int


@dataclass(frozen=True, slots=True)
class VehicleEventStats:
    vehicle_id: str
    distance_km: float
    interventions: int
    disengagements: int
    km_per_intervention: float | None
    km_per_disengagement: float | None


@dataclass(frozen=True, slots=True)
class DrivingEventRow:
    time: datetime
    vehicle_id: str
    type: str
    cause: str | None
    detail: str | None
    lat: float
    lon: float
    speed_kmh: float
    autopilot: bool
    city: str = ""
    """The vehicle's city (from its latest state); lat/lon give the exact place."""
    event_id: str = ""
    """The event's unique id (a UUID, as text)."""


@dataclass(frozen=True, slots=True)
class ClassCount:
    object_class: str
    events: int
    near_misses: int


@dataclass(frozen=True, slots=True)
class HistogramBin:
    lower: float
    upper: float | None
    """None for the open last bin."""
    count: int


@dataclass(frozen=True, slots=True)
class PerceptionSummary:
    window: Window
    vehicle_id: str | None
    ttc_threshold_s: float
    events: int
    near_misses: int
    classes: tuple[ClassCount, ...]
    """Most frequent class first."""
    distance_hist_m: tuple[HistogramBin, ...]
    ttc_hist_s: tuple[HistogramBin, ...]
    """Only events closing in (a TTC exists)."""


@dataclass(frozen=True, slots=True)
class NearMiss:
    time: datetime
    vehicle_id: str
    object_class: str
    distance_m: float
    closing_speed_mps: float
    ttc_s: float
    confidence: float


@dataclass(frozen=True, slots=True)
class AlertRow:
    alert_id: int
    vehicle_id: str
    rule: str
    state: str
    severity: str
    first_seen: datetime
    last_seen: datetime
    fired_at: datetime | None
    resolved_at: datetime | None
    breach_count: int
    value: float | None
    summary: str
    acked_by: str | None
    acked_at: datetime | None
    ack_until: datetime | None
    silenced_until: datetime | None
    """End of the longest silence covering this vehicle and rule at ``now``."""
    silenced_by: str | None
    silence_reason: str | None
    acknowledged: bool
    """Acknowledged and the acknowledgement has not expired at ``now``."""
    silenced: bool


@dataclass(frozen=True, slots=True)
class AlertFilter:
    states: tuple[str, ...] = OPEN_STATES
    severities: tuple[str, ...] = ()
    """Empty means every severity."""
    rule: str | None = None
    vehicle_id: str | None = None
    window: Window | None = None
    """When set, only alerts last seen in the window."""
    limit: int = 200


@dataclass(frozen=True, slots=True)
class Silence:
    silence_id: int
    vehicle_id: str
    rule: str
    until: datetime
    created_by: str
    created_at: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class TelemetrySample:
    """One raw telemetry reading (1 Hz), as the vehicle sent it."""

    time: datetime
    speed_kmh: float
    speed_limit_kmh: float
    battery_pct: float
    autopilot: bool


@dataclass(frozen=True, slots=True)
class PerceivedObject:
    """One perception event: an object the vehicle saw, and how fast it was closing in."""

    time: datetime
    object_class: str
    distance_m: float
    closing_speed_mps: float
    ttc_s: float | None
    """Distance / closing speed when closing in, else None."""
    confidence: float


@dataclass(frozen=True, slots=True)
class AlertAtMoment:
    """An alert of the vehicle that was open (pending or firing) at a given moment."""

    alert_id: int
    rule: str
    severity: str
    state: str
    """Its state at that moment: ``firing`` if it had fired by then, else ``pending``."""
    first_seen: datetime
    fired_at: datetime | None
    last_seen: datetime
    resolved_at: datetime | None
    """When it resolved, if it has since (after the moment)."""
    value: float | None
    summary: str


@dataclass(frozen=True, slots=True)
class EventContext:
    """One driving event and what surrounded it: the vehicle's telemetry from
    ``telemetry_s`` before to ``telemetry_s`` after, its perception events within
    ``perception_s`` either side, and its alerts open at that moment."""

    vehicle_id: str
    at: datetime
    event: DrivingEventRow | None
    """None when no such event is stored (any more)."""
    telemetry_s: float
    telemetry: tuple[TelemetrySample, ...]
    """Oldest first."""
    perception_s: float
    ttc_threshold_s: float
    perception: tuple[ClassCount, ...]
    """Objects seen by class, most frequent first; near misses below ``ttc_threshold_s``."""
    closest: PerceivedObject | None
    """The nearest object seen in the perception span."""
    lowest_ttc: PerceivedObject | None
    """The object with the lowest time-to-collision in the span (None: nothing closing in)."""
    alerts: tuple[AlertAtMoment, ...]
    """Most severe first, then oldest first."""

    @property
    def perceived(self) -> int:
        return sum(c.events for c in self.perception)


# --------------------------------------------------------------------------- SQL

FLEET_MINUTE_TOTALS_SQL: Final = """
SELECT coalesce(sum(samples), 0)::bigint           AS samples,
       coalesce(sum(autopilot_samples), 0)::bigint AS autopilot_samples,
       coalesce(sum(autonomous_km), 0)::float8     AS autonomous_km,
       coalesce(sum(interventions), 0)::bigint     AS interventions,
       coalesce(sum(disengagements), 0)::bigint    AS disengagements
FROM fleet_minute
WHERE bucket >= %(start)s AND bucket < %(end)s
"""

VEHICLE_MINUTE_TOTALS_SQL: Final = """
SELECT coalesce(sum(samples), 0)::bigint           AS samples,
       coalesce(sum(autopilot_samples), 0)::bigint AS autopilot_samples,
       coalesce(sum(autonomous_km), 0)::float8     AS autonomous_km
FROM vehicle_minute
WHERE vehicle_id = %(vehicle_id)s AND bucket >= %(start)s AND bucket < %(end)s
"""

# Per vehicle: the odometer of its first reading in the window and of its last one.
# Vehicles reporting when the window starts have a vehicle_minute row at its first
# minute (one index range scan for all of them); the others get an index probe for
# their first minute, and only if they were seen since the window started. The last
# reading is the latest state when that is inside the window (the live case), else a
# probe. The cost grows with the number of vehicles, never with rows.
VEHICLE_DISTANCE_SQL: Final = """
SELECT v.vehicle_id,
       greatest(
           coalesce(CASE WHEN v.last_seen < %(end)s THEN v.odometer_km END, l.odometer_last)
           - coalesce(s.odometer_first, f.odometer_first),
           0)::float8 AS distance_km,
       coalesce(s.first_autonomous_step_km, f.first_autonomous_step_km)::float8
           AS first_autonomous_step_km
FROM vehicles v
LEFT JOIN vehicle_minute s ON s.bucket = %(start)s AND s.vehicle_id = v.vehicle_id
LEFT JOIN LATERAL (
    SELECT m.odometer_first, m.first_autonomous_step_km
    FROM vehicle_minute m
    WHERE s.vehicle_id IS NULL AND v.last_seen >= %(start)s
      AND m.vehicle_id = v.vehicle_id AND m.bucket >= %(start)s AND m.bucket < %(end)s
    ORDER BY m.bucket
    LIMIT 1
) f ON true
LEFT JOIN LATERAL (
    SELECT m.odometer_last
    FROM vehicle_minute m
    WHERE v.last_seen >= %(end)s
      AND m.vehicle_id = v.vehicle_id AND m.bucket >= %(start)s AND m.bucket < %(end)s
    ORDER BY m.bucket DESC
    LIMIT 1
) l ON true
WHERE (%(vehicle_id)s::text IS NULL OR v.vehicle_id = %(vehicle_id)s::text)
  AND (s.vehicle_id IS NOT NULL OR f.odometer_first IS NOT NULL)
"""

VEHICLES_DISTANCE_SQL: Final = VEHICLE_DISTANCE_SQL.replace(
    "WHERE (%(vehicle_id)s::text IS NULL OR v.vehicle_id = %(vehicle_id)s::text)",
    "WHERE v.vehicle_id = ANY(%(vehicle_ids)s::text[])",
)

FLEET_DISTANCE_SQL: Final = f"""
SELECT coalesce(sum(distance_km), 0)::float8              AS distance_km,
       coalesce(sum(first_autonomous_step_km), 0)::float8 AS first_autonomous_step_km
FROM ({VEHICLE_DISTANCE_SQL}) d
"""

# Each vehicle's state at the window's "now", the first of: the stored latest state
# when it is not later (the live case, where the other two are skipped by their first
# condition); the last telemetry sample up to "now"; with the raw rows gone (retention),
# the last values of its last whole minute before then, heading, range, city, route and
# trip taken from the latest state. Vehicles first seen after "now" are left out.
VEHICLE_STATE_SQL: Final = """
SELECT s.*
FROM vehicles v
CROSS JOIN LATERAL (
    SELECT vehicle_id, last_seen, speed_kmh, speed_limit_kmh, battery_pct, range_km,
           odometer_km, autopilot, lat, lon, heading_deg, city, route_id, trip_id
    FROM (
        SELECT 1 AS preference, v.vehicle_id, v.last_seen, v.speed_kmh, v.speed_limit_kmh,
               v.battery_pct, v.range_km, v.odometer_km, v.autopilot, v.lat, v.lon,
               v.heading_deg, v.city, v.route_id, v.trip_id
        WHERE v.last_seen <= %(now)s
        UNION ALL
        (SELECT 2, t.vehicle_id, t.time, t.speed_kmh, t.speed_limit_kmh, t.battery_pct,
                t.range_km, t.odometer_km, t.autopilot, t.lat, t.lon, t.heading_deg, t.city,
                t.route_id, t.trip_id
         FROM telemetry t
         WHERE v.last_seen > %(now)s AND t.vehicle_id = v.vehicle_id AND t.time <= %(now)s
         ORDER BY t.time DESC
         LIMIT 1)
        UNION ALL
        (SELECT 3, m.vehicle_id, m.last_time, m.speed_last_kmh, m.speed_limit_max_kmh,
                m.battery_last_pct, v.range_km, m.odometer_last, m.autopilot_last, m.lat_last,
                m.lon_last, v.heading_deg, v.city, v.route_id, v.trip_id
         FROM vehicle_minute m
         WHERE v.last_seen > %(now)s
           AND m.vehicle_id = v.vehicle_id AND m.bucket <= %(now)s - interval '1 minute'
         ORDER BY m.bucket DESC
         LIMIT 1)
    ) candidates
    ORDER BY preference
    LIMIT 1
) s
WHERE v.first_seen <= %(now)s
  AND (%(vehicle_id)s::text IS NULL OR v.vehicle_id = %(vehicle_id)s::text)
"""

VEHICLE_STATE_COUNTS_SQL: Final = f"""
SELECT count(*)::bigint AS total,
       count(*) FILTER (WHERE last_seen >= %(since)s)::bigint AS reporting,
       count(*) FILTER (WHERE last_seen >= %(since)s AND speed_kmh > %(moving_kmh)s)::bigint
           AS moving,
       count(*) FILTER (WHERE last_seen >= %(since)s AND autopilot)::bigint AS autonomous
FROM ({VEHICLE_STATE_SQL}) v
"""

# Alerts open at the window's "now": not resolved yet, or resolved after it (an index
# range that is empty in the live case). An alert not fired by "now" was pending then.
OPEN_ALERTS_SQL: Final = """
SELECT vehicle_id, rule, severity, acked_at, ack_until,
       CASE WHEN fired_at <= %(now)s THEN 'firing' ELSE 'pending' END AS state
FROM alerts
WHERE state <> 'resolved' AND first_seen <= %(now)s
  AND (%(vehicle_id)s::text IS NULL OR vehicle_id = %(vehicle_id)s::text)
UNION ALL
SELECT vehicle_id, rule, severity, acked_at, ack_until,
       CASE WHEN fired_at <= %(now)s THEN 'firing' ELSE 'pending' END AS state
FROM alerts
WHERE state = 'resolved' AND resolved_at > %(now)s AND first_seen <= %(now)s
  AND (%(vehicle_id)s::text IS NULL OR vehicle_id = %(vehicle_id)s::text)
"""

# What makes an alert ``a`` acknowledged or silenced at %(now)s, for the alert counts and
# the alerts list alike.
ACKNOWLEDGED_SQL: Final = (
    "(a.acked_at IS NOT NULL AND (a.ack_until IS NULL OR a.ack_until > %(now)s))"
)
SILENCE_OF_ALERT_SQL: Final = """
    FROM silences s
    WHERE s.vehicle_id IN (a.vehicle_id, '*') AND s.rule IN (a.rule, '*')
      AND s.until > %(now)s"""

ALERT_COUNTS_SQL: Final = f"""
SELECT count(*) FILTER (WHERE severity = 'critical')::bigint AS critical,
       count(*) FILTER (WHERE severity = 'warning')::bigint  AS warning,
       count(*) FILTER (WHERE severity = 'info')::bigint     AS info,
       count(*) FILTER (WHERE state = 'firing')::bigint      AS firing,
       count(*) FILTER (WHERE state = 'pending')::bigint     AS pending,
       count(*) FILTER (
           WHERE {ACKNOWLEDGED_SQL} OR EXISTS (SELECT 1 {SILENCE_OF_ALERT_SQL})
       )::bigint AS handled
FROM ({OPEN_ALERTS_SQL}) a
"""

FIRED_BY_RULE_SQL: Final = """
SELECT count(*) FILTER (WHERE rule = %(speed_rule)s)::bigint     AS speed_violations,
       count(*) FILTER (WHERE rule = %(collision_rule)s)::bigint AS collision_risks
FROM alerts
WHERE fired_at >= %(start)s AND fired_at < %(end)s
  AND rule IN (%(speed_rule)s, %(collision_rule)s)
  AND (%(vehicle_id)s::text IS NULL OR vehicle_id = %(vehicle_id)s::text)
"""

# The partial index perception_near_miss (sql/002) covers ttc_s < NEAR_MISS_INDEX_S.
NEAR_MISS_INDEX_S: Final = 2.0

NEAR_MISS_COUNT_SQL: Final = """
SELECT object_class, count(*)::bigint AS near_misses
FROM perception_events
WHERE ttc_s < %(ttc)s AND ttc_s < 2.0
  AND time >= %(start)s AND time < %(end)s
  AND (%(vehicle_id)s::text IS NULL OR vehicle_id = %(vehicle_id)s::text)
GROUP BY object_class
"""

NEAR_MISS_COUNT_WIDE_SQL: Final = NEAR_MISS_COUNT_SQL.replace("AND ttc_s < 2.0", "")

NEAR_MISS_FROM_HISTOGRAM_SQL: Final = """
SELECT coalesce(sum(events), 0)::bigint AS near_misses
FROM perception_hist_minute
WHERE kind = 'ttc' AND bin < %(bins_below)s AND bucket >= %(start)s AND bucket < %(end)s
"""

REJECTS_SQL: Final = """
SELECT count(*)::bigint AS rejects
FROM rejects
WHERE received_at >= %(start)s AND received_at < %(end)s
"""

DRIVING_COUNTS_BY_VEHICLE_SQL: Final = """
SELECT vehicle_id,
       count(*) FILTER (WHERE type = 'intervention')::bigint  AS interventions,
       count(*) FILTER (WHERE type = 'disengagement')::bigint AS disengagements
FROM driving_events
WHERE type IN ('intervention', 'disengagement')
  AND time >= %(start)s AND time < %(end)s
  AND (%(vehicle_id)s::text IS NULL OR vehicle_id = %(vehicle_id)s::text)
GROUP BY vehicle_id
"""

VEHICLE_TABLE_SQL: Final = f"""
WITH dist AS ({VEHICLE_DISTANCE_SQL}),
auto AS (
    SELECT vehicle_id, sum(autonomous_km)::float8 AS autonomous_km
    FROM vehicle_minute
    WHERE bucket >= %(start)s AND bucket < %(end)s
      AND (%(vehicle_id)s::text IS NULL OR vehicle_id = %(vehicle_id)s::text)
      AND %(with_autonomous)s
    GROUP BY vehicle_id
),
ev AS ({DRIVING_COUNTS_BY_VEHICLE_SQL}),
al AS (
    SELECT vehicle_id, count(*)::bigint AS alerts_open,
           min(CASE severity WHEN 'critical' THEN 1 WHEN 'warning' THEN 2 ELSE 3 END) AS worst
    FROM ({OPEN_ALERTS_SQL}) a
    GROUP BY vehicle_id
)
SELECT v.vehicle_id, v.last_seen, v.speed_kmh, v.speed_limit_kmh, v.battery_pct, v.range_km,
       v.odometer_km, v.autopilot, v.lat, v.lon, v.heading_deg, v.city, v.route_id, v.trip_id,
       coalesce(al.alerts_open, 0) AS alerts_open, al.worst,
       coalesce(dist.distance_km, 0) AS distance_km,
       greatest(coalesce(auto.autonomous_km, 0) - coalesce(dist.first_autonomous_step_km, 0), 0)
           AS autonomous_km,
       coalesce(ev.interventions, 0) AS interventions,
       coalesce(ev.disengagements, 0) AS disengagements
FROM ({VEHICLE_STATE_SQL}) v
LEFT JOIN dist ON dist.vehicle_id = v.vehicle_id
LEFT JOIN auto ON auto.vehicle_id = v.vehicle_id
LEFT JOIN ev ON ev.vehicle_id = v.vehicle_id
LEFT JOIN al ON al.vehicle_id = v.vehicle_id
ORDER BY v.vehicle_id
"""

SERIES_ROLLUP_SQL: Final = """
SELECT %(start)s::timestamptz
         + floor(extract(epoch FROM bucket - %(start)s::timestamptz) / %(bucket_s)s)
           * %(bucket_s)s * interval '1 second'                    AS time,
       sum(samples)::bigint                                        AS samples,
       (sum(speed_sum_kmh) / nullif(sum(samples), 0))::float8      AS speed_avg_kmh,
       max(speed_max_kmh)::float8                                  AS speed_max_kmh,
       max(speed_limit_max_kmh)::float8                            AS speed_limit_kmh,
       min(battery_min_pct)::float8                                AS battery_pct,
       (100.0 * sum(autopilot_samples) / nullif(sum(samples), 0))::float8 AS autopilot_pct
FROM vehicle_minute
WHERE vehicle_id = %(vehicle_id)s AND bucket >= %(start)s AND bucket < %(end)s
GROUP BY 1
ORDER BY 1
"""

SERIES_RAW_SQL: Final = """
SELECT %(start)s::timestamptz
         + floor(extract(epoch FROM time - %(start)s::timestamptz) / %(bucket_s)s)
           * %(bucket_s)s * interval '1 second'                    AS time,
       count(*)::bigint                                            AS samples,
       avg(speed_kmh)::float8                                      AS speed_avg_kmh,
       max(speed_kmh)::float8                                      AS speed_max_kmh,
       max(speed_limit_kmh)::float8                                AS speed_limit_kmh,
       min(battery_pct)::float8                                    AS battery_pct,
       (100.0 * count(*) FILTER (WHERE autopilot) / count(*))::float8 AS autopilot_pct
FROM telemetry
WHERE vehicle_id = %(vehicle_id)s AND time >= %(start)s AND time < %(end)s
GROUP BY 1
ORDER BY 1
"""

TRACK_RAW_SQL: Final = """
SELECT time, lat, lon, speed_kmh::float8 AS speed_kmh, autopilot
FROM (
    SELECT time, lat, lon, speed_kmh, autopilot,
           row_number() OVER (ORDER BY time) AS n,
           count(*) OVER () AS total
    FROM telemetry
    WHERE vehicle_id = %(vehicle_id)s AND time >= %(start)s AND time < %(end)s
) t
WHERE (n - 1) %% greatest(1, ceil(total::float8 / %(max_points)s)::bigint) = 0 OR n = total
ORDER BY time
"""

TRACK_ROLLUP_SQL: Final = """
SELECT time, lat, lon, speed_kmh, autopilot
FROM (
    SELECT last_time AS time, lat_last AS lat, lon_last AS lon,
           speed_last_kmh::float8 AS speed_kmh, autopilot_last AS autopilot,
           row_number() OVER (ORDER BY bucket) AS n,
           count(*) OVER () AS total
    FROM vehicle_minute
    WHERE vehicle_id = %(vehicle_id)s AND bucket >= %(start)s AND bucket < %(end)s
) t
WHERE (n - 1) %% greatest(1, ceil(total::float8 / %(max_points)s)::bigint) = 0 OR n = total
ORDER BY time
"""

EVENTS_OVER_TIME_FLEET_SQL: Final = """
SELECT floor(extract(epoch FROM bucket - %(start)s::timestamptz) / %(bucket_s)s)::int AS i,
       sum(interventions)::bigint  AS interventions,
       sum(disengagements)::bigint AS disengagements
FROM fleet_minute
WHERE bucket >= %(start)s AND bucket < %(end)s
GROUP BY 1
"""

EVENTS_OVER_TIME_VEHICLE_SQL: Final = """
SELECT floor(extract(epoch FROM time - %(start)s::timestamptz) / %(bucket_s)s)::int AS i,
       count(*) FILTER (WHERE type = 'intervention')::bigint  AS interventions,
       count(*) FILTER (WHERE type = 'disengagement')::bigint AS disengagements
FROM driving_events
WHERE vehicle_id = %(vehicle_id)s AND type IN ('intervention', 'disengagement')
  AND time >= %(start)s AND time < %(end)s
GROUP BY 1
"""

EVENTS_BY_CAUSE_SQL: Final = """
SELECT coalesce(nullif(cause, ''), 'unknown') AS cause,
       count(*) FILTER (WHERE type = 'intervention')::bigint  AS interventions,
       count(*) FILTER (WHERE type = 'disengagement')::bigint AS disengagements
FROM driving_events
WHERE type IN ('intervention', 'disengagement')
  AND time >= %(start)s AND time < %(end)s
  AND (%(vehicle_id)s::text IS NULL OR vehicle_id = %(vehicle_id)s::text)
GROUP BY 1
ORDER BY count(*) DESC, 1
"""

DRIVING_EVENTS_SQL: Final = """
SELECT e.time, e.vehicle_id, e.type, e.cause, e.detail, e.lat, e.lon,
       e.speed_kmh::float8 AS speed_kmh, e.autopilot, coalesce(v.city, '') AS city,
       e.event_id::text AS event_id
FROM driving_events e
LEFT JOIN vehicles v ON v.vehicle_id = e.vehicle_id
WHERE e.type = ANY(%(types)s)
  AND e.time >= %(start)s AND e.time < %(end)s
  AND (%(vehicle_id)s::text IS NULL OR e.vehicle_id = %(vehicle_id)s::text)
ORDER BY e.time DESC
LIMIT %(limit)s
"""

PERCEPTION_CLASSES_FLEET_SQL: Final = """
SELECT object_class, sum(events)::bigint AS events
FROM perception_minute
WHERE bucket >= %(start)s AND bucket < %(end)s
GROUP BY object_class
"""

PERCEPTION_HIST_FLEET_SQL: Final = """
SELECT kind, bin, sum(events)::bigint AS events
FROM perception_hist_minute
WHERE bucket >= %(start)s AND bucket < %(end)s
GROUP BY kind, bin
"""

# One pass over the vehicle's events: counts per class, distance bin and TTC bin
# (NULL without a TTC), folded into the class counts and both histograms in Python.
PERCEPTION_VEHICLE_SQL: Final = """
SELECT object_class,
       width_bucket(distance_m, %(distance_edges)s::float8[]) - 1 AS distance_bin,
       width_bucket(ttc_s, %(ttc_edges)s::float8[]) - 1          AS ttc_bin,
       count(*)::bigint                                           AS events
FROM perception_events
WHERE vehicle_id = %(vehicle_id)s AND time >= %(start)s AND time < %(end)s
GROUP BY 1, 2, 3
"""

NEAR_MISSES_SQL: Final = """
SELECT time, vehicle_id, object_class, distance_m::float8 AS distance_m,
       closing_speed_mps::float8 AS closing_speed_mps, ttc_s::float8 AS ttc_s,
       confidence::float8 AS confidence
FROM perception_events
WHERE ttc_s < %(ttc)s AND ttc_s < 2.0
  AND time >= %(start)s AND time < %(end)s
  AND (%(vehicle_id)s::text IS NULL OR vehicle_id = %(vehicle_id)s::text)
ORDER BY time DESC
LIMIT %(limit)s
"""

NEAR_MISSES_WIDE_SQL: Final = NEAR_MISSES_SQL.replace("AND ttc_s < 2.0", "")

ALERTS_SQL: Final = f"""
SELECT a.alert_id, a.vehicle_id, a.rule, a.state, a.severity, a.first_seen, a.last_seen,
       a.fired_at, a.resolved_at, a.breach_count, a.value, a.summary,
       a.acked_by, a.acked_at, a.ack_until,
       s.until AS silenced_until, s.created_by AS silenced_by, s.reason AS silence_reason,
       {ACKNOWLEDGED_SQL} AS acknowledged,
       (s.until IS NOT NULL) AS silenced
FROM alerts a
LEFT JOIN LATERAL (
    SELECT s.until, s.created_by, s.reason {SILENCE_OF_ALERT_SQL}
    ORDER BY s.until DESC
    LIMIT 1
) s ON true
WHERE a.state = ANY(%(states)s)
  AND (cardinality(%(severities)s::text[]) = 0 OR a.severity = ANY(%(severities)s))
  AND (%(rule)s::text IS NULL OR a.rule = %(rule)s::text)
  AND (%(vehicle_id)s::text IS NULL OR a.vehicle_id = %(vehicle_id)s::text)
  AND (%(start)s::timestamptz IS NULL OR a.last_seen >= %(start)s::timestamptz)
  AND (%(end)s::timestamptz IS NULL OR a.last_seen < %(end)s::timestamptz)
ORDER BY CASE a.severity WHEN 'critical' THEN 1 WHEN 'warning' THEN 2 ELSE 3 END,
         a.last_seen DESC, a.first_seen DESC, a.vehicle_id, a.rule, a.alert_id
LIMIT %(limit)s
"""

# The context of one driving event. Every statement is a range of one vehicle's index
# (driving_vehicle_time, telemetry_vehicle_time, perception_vehicle_time on
# (vehicle_id, time DESC); alerts_vehicle_seen on (vehicle_id, last_seen DESC)), a few
# seconds long, so the cost does not grow with the table.
EVENT_SQL: Final = """
SELECT e.time, e.vehicle_id, e.type, e.cause, e.detail, e.lat, e.lon,
       e.speed_kmh::float8 AS speed_kmh, e.autopilot, coalesce(v.city, '') AS city,
       e.event_id::text AS event_id
FROM driving_events e
LEFT JOIN vehicles v ON v.vehicle_id = e.vehicle_id
WHERE e.vehicle_id = %(vehicle_id)s AND e.time = %(at)s
  AND (%(event_id)s::uuid IS NULL OR e.event_id = %(event_id)s::uuid)
  AND (%(type)s::text IS NULL OR e.type = %(type)s::text)
ORDER BY e.event_id
LIMIT 1
"""

EVENT_TELEMETRY_SQL: Final = """
SELECT time, speed_kmh::float8 AS speed_kmh, speed_limit_kmh::float8 AS speed_limit_kmh,
       battery_pct::float8 AS battery_pct, autopilot
FROM telemetry
WHERE vehicle_id = %(vehicle_id)s AND time >= %(start)s AND time <= %(end)s
ORDER BY time
"""

EVENT_PERCEPTION_CLASSES_SQL: Final = """
SELECT object_class, count(*)::bigint AS events,
       count(*) FILTER (WHERE ttc_s < %(ttc)s)::bigint AS near_misses
FROM perception_events
WHERE vehicle_id = %(vehicle_id)s AND time >= %(start)s AND time <= %(end)s
GROUP BY object_class
ORDER BY count(*) DESC, object_class
"""

# The nearest object of the span, and the one closing in fastest relative to its
# distance (lowest TTC); each the earliest of equals.
EVENT_PERCEPTION_EXTREMES_SQL: Final = """
(SELECT 'closest' AS pick, time, object_class, distance_m::float8 AS distance_m,
        closing_speed_mps::float8 AS closing_speed_mps, ttc_s::float8 AS ttc_s,
        confidence::float8 AS confidence
 FROM perception_events
 WHERE vehicle_id = %(vehicle_id)s AND time >= %(start)s AND time <= %(end)s
 ORDER BY distance_m, time
 LIMIT 1)
UNION ALL
(SELECT 'lowest_ttc', time, object_class, distance_m::float8, closing_speed_mps::float8,
        ttc_s::float8, confidence::float8
 FROM perception_events
 WHERE vehicle_id = %(vehicle_id)s AND time >= %(start)s AND time <= %(end)s
   AND ttc_s IS NOT NULL
 ORDER BY ttc_s, time
 LIMIT 1)
"""

# Alerts of the vehicle open at "at": seen first by then, and not resolved, or resolved
# after it. An alert not fired by then was pending.
EVENT_ALERTS_SQL: Final = """
SELECT alert_id, rule, severity,
       CASE WHEN fired_at <= %(at)s THEN 'firing' ELSE 'pending' END AS state,
       first_seen, fired_at, last_seen, resolved_at, value, summary
FROM alerts
WHERE vehicle_id = %(vehicle_id)s AND first_seen <= %(at)s
  AND (state <> 'resolved' OR resolved_at > %(at)s)
ORDER BY CASE severity WHEN 'critical' THEN 1 WHEN 'warning' THEN 2 ELSE 3 END,
         first_seen, alert_id
LIMIT %(limit)s
"""

ACKNOWLEDGE_SQL: Final = """
UPDATE alerts
SET acked_by = %(by)s, acked_at = %(now)s, ack_until = %(until)s, updated_at = %(now)s
WHERE alert_id = %(alert_id)s AND state <> 'resolved'
"""

SILENCE_SQL: Final = """
INSERT INTO silences (vehicle_id, rule, until, created_by, created_at, reason)
VALUES (%(vehicle_id)s, %(rule)s, %(until)s, %(by)s, %(now)s, %(reason)s)
RETURNING silence_id
"""

ACTIVE_SILENCES_SQL: Final = """
SELECT silence_id, vehicle_id, rule, until, created_by, created_at, reason
FROM silences
WHERE until > %(now)s
ORDER BY until DESC
"""


# --------------------------------------------------------------------------- fleet KPIs


def _one(conn: Connection, query: str, params: dict[str, Any]) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        row = cur.fetchone()
    assert row is not None
    return row


def _all(conn: Connection, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        return cur.fetchall()


def fleet_kpis(
    conn: Connection,
    window: Window,
    vehicle_id: str | None = None,
    *,
    reporting_s: float = 30.0,
    ttc_threshold_s: float = 2.0,
) -> FleetKpis:
    """Key figures of the whole fleet, or of one vehicle, over ``window``."""
    params = {
        **window.params(),
        "vehicle_id": vehicle_id,
        "since": window.now - timedelta(seconds=reporting_s),
        "moving_kmh": MOVING_KMH,
        "speed_rule": SPEED_RULE,
        "collision_rule": COLLISION_RULE,
        "ttc": ttc_threshold_s,
    }
    totals = _one(
        conn,
        VEHICLE_MINUTE_TOTALS_SQL if vehicle_id else FLEET_MINUTE_TOTALS_SQL,
        params,
    )
    if vehicle_id:
        events = _all(conn, DRIVING_COUNTS_BY_VEHICLE_SQL, params)
        interventions = sum(int(r["interventions"]) for r in events)
        disengagements = sum(int(r["disengagements"]) for r in events)
    else:
        interventions = int(totals["interventions"])
        disengagements = int(totals["disengagements"])
    dist = _one(conn, FLEET_DISTANCE_SQL, params)
    states = _one(conn, VEHICLE_STATE_COUNTS_SQL, params)
    alerts = _one(conn, ALERT_COUNTS_SQL, params)
    fired = _one(conn, FIRED_BY_RULE_SQL, params)
    near_misses = _near_miss_total(conn, params, ttc_threshold_s, vehicle_id)
    rejects = 0 if vehicle_id else int(_one(conn, REJECTS_SQL, params)["rejects"])

    distance_km = float(dist["distance_km"])
    autonomous_km = min(
        distance_km,
        max(0.0, float(totals["autonomous_km"]) - float(dist["first_autonomous_step_km"])),
    )
    samples = int(totals["samples"])
    return FleetKpis(
        window=window,
        vehicle_id=vehicle_id,
        vehicles_total=int(states["total"]),
        vehicles_reporting=int(states["reporting"]),
        vehicles_moving=int(states["moving"]),
        vehicles_autonomous=int(states["autonomous"]),
        distance_km=distance_km,
        autonomous_km=autonomous_km,
        interventions=interventions,
        disengagements=disengagements,
        km_per_intervention=km_per_event(distance_km, interventions),
        km_per_disengagement=km_per_event(distance_km, disengagements),
        interventions_per_1000km=per_1000_km(interventions, distance_km),
        disengagements_per_1000km=per_1000_km(disengagements, distance_km),
        autopilot_distance_pct=_pct(autonomous_km, distance_km),
        autopilot_time_pct=_pct(int(totals["autopilot_samples"]), samples),
        telemetry_samples=samples,
        speed_violations=int(fired["speed_violations"]),
        collision_risks=int(fired["collision_risks"]),
        near_misses=near_misses,
        alerts_open_critical=int(alerts["critical"]),
        alerts_open_warning=int(alerts["warning"]),
        alerts_open_info=int(alerts["info"]),
        alerts_firing=int(alerts["firing"]),
        alerts_pending=int(alerts["pending"]),
        alerts_handled=int(alerts["handled"]),
        rejects=rejects,
    )


def _near_misses_by_class(
    conn: Connection, params: dict[str, Any], ttc_threshold_s: float
) -> dict[str, int]:
    query = (
        NEAR_MISS_COUNT_SQL if ttc_threshold_s <= NEAR_MISS_INDEX_S else NEAR_MISS_COUNT_WIDE_SQL
    )
    return {r["object_class"]: int(r["near_misses"]) for r in _all(conn, query, params)}


def _near_miss_total(
    conn: Connection, params: dict[str, Any], ttc_threshold_s: float, vehicle_id: str | None
) -> int:
    """Near misses in the window: from the partial index up to NEAR_MISS_INDEX_S, from
    the fleet's TTC histogram when the threshold is one of its edges, else by a scan."""
    if (
        vehicle_id is None
        and ttc_threshold_s > NEAR_MISS_INDEX_S
        and ttc_threshold_s in TTC_EDGES_S
    ):
        row = _one(
            conn,
            NEAR_MISS_FROM_HISTOGRAM_SQL,
            {**params, "bins_below": TTC_EDGES_S.index(ttc_threshold_s)},
        )
        return int(row["near_misses"])
    return sum(_near_misses_by_class(conn, params, ttc_threshold_s).values())


# --------------------------------------------------------------------------- vehicles

_SEVERITY_BY_RANK: Final = {1: "critical", 2: "warning", 3: "info"}


def vehicle_table(
    conn: Connection,
    window: Window,
    vehicle_id: str | None = None,
    *,
    reporting_s: float = 30.0,
    with_autonomous_km: bool = False,
) -> tuple[VehicleRow, ...]:
    """Every vehicle (or one) with its latest state and its figures over ``window``,
    sorted by vehicle id.

    ``autonomous_km`` per vehicle costs a scan of the window's rollup rows, so it is
    only computed when ``with_autonomous_km`` is set (reports); otherwise it is 0.
    """
    params = {
        **window.params(),
        "vehicle_id": vehicle_id,
        "with_autonomous": with_autonomous_km,
    }
    since = window.now - timedelta(seconds=reporting_s)
    rows = _all(conn, VEHICLE_TABLE_SQL, params)
    result = []
    for r in rows:
        last_seen: datetime = r["last_seen"]
        reporting = last_seen >= since
        distance_km = float(r["distance_km"])
        interventions = int(r["interventions"])
        result.append(
            VehicleRow(
                vehicle_id=r["vehicle_id"],
                last_seen=last_seen,
                age_s=max(0.0, (window.now - last_seen).total_seconds()),
                reporting=reporting,
                moving=reporting and float(r["speed_kmh"]) > MOVING_KMH,
                speed_kmh=float(r["speed_kmh"]),
                speed_limit_kmh=float(r["speed_limit_kmh"]),
                battery_pct=float(r["battery_pct"]),
                range_km=float(r["range_km"]),
                odometer_km=float(r["odometer_km"]),
                autopilot=bool(r["autopilot"]),
                lat=float(r["lat"]),
                lon=float(r["lon"]),
                heading_deg=float(r["heading_deg"]),
                city=r["city"],
                route_id=r["route_id"],
                trip_id=r["trip_id"],
                alerts_open=int(r["alerts_open"]),
                worst_severity=_SEVERITY_BY_RANK.get(r["worst"]) if r["worst"] else None,
                distance_km=distance_km,
                autonomous_km=min(distance_km, float(r["autonomous_km"])),
                interventions=interventions,
                disengagements=int(r["disengagements"]),
                km_per_intervention=km_per_event(distance_km, interventions),
            )
        )
    return tuple(result)


def bucket_seconds(window: Window, buckets: int, *, minimum_s: int = 1) -> int:
    """Bucket width so that ``window`` fits in at most ``buckets`` buckets.

    Widths of a minute or more are whole minutes (they are read from the rollups).
    """
    buckets = max(1, buckets)
    width = max(minimum_s, math.ceil(window.duration_s / buckets))
    if width >= 60:
        width = 60 * math.ceil(width / 60)
    return width


def vehicle_series(
    conn: Connection, vehicle_id: str, window: Window, buckets: int = 120
) -> VehicleSeries:
    """One vehicle's speed (with the road limit), battery and autopilot share in at
    most ``buckets`` buckets (a chart's width), from the rollup when buckets are a
    minute or longer, else from raw telemetry."""
    bucket_s = bucket_seconds(window, buckets)
    params = {**window.params(), "vehicle_id": vehicle_id, "bucket_s": bucket_s}
    query = SERIES_ROLLUP_SQL if bucket_s >= 60 else SERIES_RAW_SQL
    with conn.cursor(row_factory=class_row(SeriesPoint)) as cur:
        cur.execute(query, params)
        points = tuple(cur.fetchall())
    return VehicleSeries(vehicle_id, window, bucket_s, points)


def route_track(
    conn: Connection, vehicle_id: str, window: Window, max_points: int = 500
) -> tuple[TrackPoint, ...]:
    """The vehicle's positions in ``window``, downsampled to about ``max_points``
    (always keeping the latest)."""
    params = {**window.params(), "vehicle_id": vehicle_id, "max_points": max(2, max_points)}
    query = TRACK_RAW_SQL if window.duration_s / max(2, max_points) < 60 else TRACK_ROLLUP_SQL
    with conn.cursor(row_factory=class_row(TrackPoint)) as cur:
        cur.execute(query, params)
        return tuple(cur.fetchall())


# --------------------------------------------------------------------------- events


def events_over_time(
    conn: Connection, window: Window, buckets: int = 60, vehicle_id: str | None = None
) -> EventSeries:
    """Interventions and disengagements per bucket, every bucket present."""
    bucket_s = bucket_seconds(window, buckets, minimum_s=1 if vehicle_id else 60)
    params = {**window.params(), "vehicle_id": vehicle_id, "bucket_s": bucket_s}
    rows = _all(
        conn,
        EVENTS_OVER_TIME_VEHICLE_SQL if vehicle_id else EVENTS_OVER_TIME_FLEET_SQL,
        params,
    )
    by_index = {int(r["i"]): r for r in rows}
    count = math.ceil(window.duration_s / bucket_s)
    result = []
    for i in range(count):
        r = by_index.get(i)
        result.append(
            EventBucket(
                time=window.start + timedelta(seconds=i * bucket_s),
                interventions=int(r["interventions"]) if r else 0,
                disengagements=int(r["disengagements"]) if r else 0,
            )
        )
    return EventSeries(window, vehicle_id, bucket_s, tuple(result))


def events_by_cause(
    conn: Connection, window: Window, vehicle_id: str | None = None
) -> tuple[CauseCount, ...]:
    """Interventions and disengagements per cause, most frequent first."""
    rows = _all(conn, EVENTS_BY_CAUSE_SQL, {**window.params(), "vehicle_id": vehicle_id})
    return tuple(
        CauseCount(r["cause"], int(r["interventions"]), int(r["disengagements"])) for r in rows
    )


def events_by_vehicle(conn: Connection, window: Window) -> tuple[VehicleEventStats, ...]:
    """Every vehicle with interventions or disengagements in ``window``, with its
    distance; most interventions first."""
    params: dict[str, Any] = {**window.params(), "vehicle_id": None}
    counts = {r["vehicle_id"]: r for r in _all(conn, DRIVING_COUNTS_BY_VEHICLE_SQL, params)}
    if not counts:
        return ()
    params["vehicle_ids"] = sorted(counts)
    distances = {
        r["vehicle_id"]: float(r["distance_km"]) for r in _all(conn, VEHICLES_DISTANCE_SQL, params)
    }
    stats = []
    for vid, row in counts.items():
        distance_km = distances.get(vid, 0.0)
        interventions = int(row["interventions"])
        disengagements = int(row["disengagements"])
        stats.append(
            VehicleEventStats(
                vehicle_id=vid,
                distance_km=distance_km,
                interventions=interventions,
                disengagements=disengagements,
                km_per_intervention=km_per_event(distance_km, interventions),
                km_per_disengagement=km_per_event(distance_km, disengagements),
            )
        )
    stats.sort(key=lambda s: (-s.interventions, -s.disengagements, s.vehicle_id))
    return tuple(stats)


def worst_vehicles(
    conn: Connection, window: Window, limit: int = 10
) -> tuple[VehicleEventStats, ...]:
    """Vehicles with the lowest km per intervention (only vehicles with interventions)."""
    with_events = [s for s in events_by_vehicle(conn, window) if s.km_per_intervention is not None]
    with_events.sort(key=lambda s: (s.km_per_intervention or 0.0, -s.interventions, s.vehicle_id))
    return tuple(with_events[:limit])


def driving_events(
    conn: Connection,
    window: Window,
    vehicle_id: str | None = None,
    *,
    types: Sequence[str] = ("intervention", "disengagement"),
    limit: int = 200,
) -> tuple[DrivingEventRow, ...]:
    """The newest driving events of ``types`` in ``window``, newest first."""
    params = {**window.params(), "vehicle_id": vehicle_id, "types": list(types), "limit": limit}
    with conn.cursor(row_factory=class_row(DrivingEventRow)) as cur:
        cur.execute(DRIVING_EVENTS_SQL, params)
        return tuple(cur.fetchall())


# --------------------------------------------------------------------------- perception


def _histogram(edges: Sequence[float], counts: dict[int, int]) -> tuple[HistogramBin, ...]:
    bins = []
    for i, lower in enumerate(edges):
        upper = edges[i + 1] if i + 1 < len(edges) else None
        bins.append(
            HistogramBin(float(lower), None if upper is None else float(upper), counts.get(i, 0))
        )
    return tuple(bins)


def perception_summary(
    conn: Connection,
    window: Window,
    vehicle_id: str | None = None,
    *,
    ttc_threshold_s: float = 2.0,
) -> PerceptionSummary:
    """Counts by object class, distance and TTC histograms and near-miss counts."""
    params = {
        **window.params(),
        "vehicle_id": vehicle_id,
        "ttc": ttc_threshold_s,
        "distance_edges": list(DISTANCE_EDGES_M),
        "ttc_edges": list(TTC_EDGES_S),
    }
    class_rows: list[dict[str, Any]]
    hist_rows: list[dict[str, Any]]
    if vehicle_id:
        class_totals: dict[str, int] = {}
        hist_totals: dict[tuple[str, int], int] = {}
        for r in _all(conn, PERCEPTION_VEHICLE_SQL, params):
            n = int(r["events"])
            class_totals[r["object_class"]] = class_totals.get(r["object_class"], 0) + n
            for kind, b in (("distance", r["distance_bin"]), ("ttc", r["ttc_bin"])):
                if b is not None:
                    hist_totals[(kind, int(b))] = hist_totals.get((kind, int(b)), 0) + n
        class_rows = [{"object_class": c, "events": n} for c, n in class_totals.items()]
        hist_rows = [{"kind": k, "bin": b, "events": n} for (k, b), n in hist_totals.items()]
    else:
        class_rows = _all(conn, PERCEPTION_CLASSES_FLEET_SQL, params)
        hist_rows = _all(conn, PERCEPTION_HIST_FLEET_SQL, params)
    near_by_class = _near_misses_by_class(conn, params, ttc_threshold_s)
    events_by_class = {r["object_class"]: int(r["events"]) for r in class_rows}
    classes = sorted(
        (
            ClassCount(c, events_by_class.get(c, 0), near_by_class.get(c, 0))
            for c in set(events_by_class) | set(near_by_class)
        ),
        key=lambda c: (-c.events, c.object_class),
    )
    dist_counts: dict[int, int] = {}
    ttc_counts: dict[int, int] = {}
    for r in hist_rows:
        target = dist_counts if r["kind"] == "distance" else ttc_counts
        target[int(r["bin"])] = target.get(int(r["bin"]), 0) + int(r["events"])
    return PerceptionSummary(
        window=window,
        vehicle_id=vehicle_id,
        ttc_threshold_s=ttc_threshold_s,
        events=sum(events_by_class.values()),
        near_misses=sum(near_by_class.values()),
        classes=tuple(classes),
        distance_hist_m=_histogram(DISTANCE_EDGES_M, dist_counts),
        ttc_hist_s=_histogram(TTC_EDGES_S, ttc_counts),
    )


def near_misses(
    conn: Connection,
    window: Window,
    vehicle_id: str | None = None,
    *,
    ttc_threshold_s: float = 2.0,
    limit: int = 100,
) -> tuple[NearMiss, ...]:
    """Perception events with time-to-collision below ``ttc_threshold_s``, newest first."""
    params = {**window.params(), "vehicle_id": vehicle_id, "ttc": ttc_threshold_s, "limit": limit}
    query = NEAR_MISSES_SQL if ttc_threshold_s <= NEAR_MISS_INDEX_S else NEAR_MISSES_WIDE_SQL
    with conn.cursor(row_factory=class_row(NearMiss)) as cur:
        cur.execute(query, params)
        return tuple(cur.fetchall())


# --------------------------------------------------------------------------- one event


def event_context(
    conn: Connection,
    vehicle_id: str,
    at: datetime,
    *,
    event_id: str | None = None,
    event_type: str | None = None,
    telemetry_s: float = 30.0,
    perception_s: float = 5.0,
    ttc_threshold_s: float = 2.0,
    alert_limit: int = 50,
) -> EventContext:
    """The driving event of ``vehicle_id`` at ``at`` (the one with ``event_id`` and of
    ``event_type`` when given) and what surrounded it: telemetry from ``telemetry_s``
    before to ``telemetry_s`` after (both ends included), perception events within
    ``perception_s`` either side, and the alerts open at ``at``."""
    at = _utc(at)
    base: dict[str, Any] = {"vehicle_id": vehicle_id, "at": at}
    with conn.cursor(row_factory=class_row(DrivingEventRow)) as cur:
        cur.execute(EVENT_SQL, {**base, "event_id": event_id or None, "type": event_type})
        event = cur.fetchone()
    span = timedelta(seconds=telemetry_s)
    with conn.cursor(row_factory=class_row(TelemetrySample)) as cur:
        cur.execute(EVENT_TELEMETRY_SQL, {**base, "start": at - span, "end": at + span})
        telemetry = tuple(cur.fetchall())
    near = timedelta(seconds=perception_s)
    params = {**base, "start": at - near, "end": at + near, "ttc": ttc_threshold_s}
    classes = tuple(
        ClassCount(r["object_class"], int(r["events"]), int(r["near_misses"]))
        for r in _all(conn, EVENT_PERCEPTION_CLASSES_SQL, params)
    )
    picks = {
        r.pop("pick"): PerceivedObject(**r)
        for r in _all(conn, EVENT_PERCEPTION_EXTREMES_SQL, params)
    }
    with conn.cursor(row_factory=class_row(AlertAtMoment)) as cur:
        cur.execute(EVENT_ALERTS_SQL, {**base, "limit": alert_limit})
        open_alerts = tuple(cur.fetchall())
    return EventContext(
        vehicle_id=vehicle_id,
        at=at,
        event=event,
        telemetry_s=telemetry_s,
        telemetry=telemetry,
        perception_s=perception_s,
        ttc_threshold_s=ttc_threshold_s,
        perception=classes,
        closest=picks.get("closest"),
        lowest_ttc=picks.get("lowest_ttc"),
        alerts=open_alerts,
    )


# --------------------------------------------------------------------------- alerts


def alerts(
    conn: Connection, now: datetime, filter: AlertFilter | None = None
) -> tuple[AlertRow, ...]:
    """Alerts matching ``filter``, most severe then most recent first, with their
    acknowledgement and any silence active at ``now``."""
    filter = filter or AlertFilter()
    params = {
        "now": now,
        "states": list(filter.states),
        "severities": list(filter.severities),
        "rule": filter.rule,
        "vehicle_id": filter.vehicle_id,
        "start": filter.window.start if filter.window else None,
        "end": filter.window.end if filter.window else None,
        "limit": filter.limit,
    }
    with conn.cursor(row_factory=class_row(AlertRow)) as cur:
        cur.execute(ALERTS_SQL, params)
        return tuple(cur.fetchall())


def acknowledge(
    conn: Connection,
    alert_id: int,
    by: str,
    until: datetime | None,
    *,
    now: datetime,
) -> bool:
    """Acknowledge an open alert until ``until`` (None: until it resolves).

    Returns False when there is no open alert with that id. Commits.
    """
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(ACKNOWLEDGE_SQL, {"alert_id": alert_id, "by": by, "until": until, "now": now})
        return cur.rowcount == 1


def silence(
    conn: Connection,
    vehicle_id: str,
    rule: str,
    until: datetime,
    by: str,
    reason: str = "",
    *,
    now: datetime,
) -> int:
    """Silence ``rule`` (``"*"`` for every rule) for a vehicle (``"*"`` for every
    vehicle) until ``until``; returns the silence id. Commits."""
    if until <= now:
        raise ValueError("a silence must end in the future")
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            SILENCE_SQL,
            {
                "vehicle_id": vehicle_id,
                "rule": rule,
                "until": until,
                "by": by,
                "now": now,
                "reason": reason,
            },
        )
        row = cur.fetchone()
    assert row is not None
    return int(row[0])


def active_silences(conn: Connection, now: datetime) -> tuple[Silence, ...]:
    with conn.cursor(row_factory=class_row(Silence)) as cur:
        cur.execute(ACTIVE_SILENCES_SQL, {"now": now})
        return tuple(cur.fetchall())


__all__ = [
    "AlertAtMoment",
    "AlertFilter",
    "AlertRow",
    "CauseCount",
    "ClassCount",
    "DrivingEventRow",
    "EventBucket",
    "EventContext",
    "EventSeries",
    "FleetKpis",
    "HistogramBin",
    "NearMiss",
    "PerceivedObject",
    "PerceptionSummary",
    "SeriesPoint",
    "Silence",
    "TelemetrySample",
    "TrackPoint",
    "Units",
    "VehicleEventStats",
    "VehicleRow",
    "VehicleSeries",
    "Window",
    "WindowError",
    "acknowledge",
    "active_silences",
    "alerts",
    "driving_events",
    "event_context",
    "events_by_cause",
    "events_by_vehicle",
    "events_over_time",
    "fleet_kpis",
    "format_distance",
    "format_km_per_event",
    "format_pct",
    "format_rate_per_1000",
    "format_speed",
    "near_misses",
    "parse_window",
    "per_event_label",
    "perception_summary",
    "route_track",
    "silence",
    "vehicle_series",
    "vehicle_table",
    "worst_vehicles",
]
