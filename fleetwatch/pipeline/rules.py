"""Alert rules and the alert lifecycle: pure per-vehicle event-time logic, no I/O.

The ingestor feeds every decoded message to :meth:`AlertEngine.observe`, calls
:meth:`AlertEngine.tick` with its event-time watermark after each batch, and writes
what :meth:`AlertEngine.take_changes` returns in the same transaction as the batch.

Lifecycle (DESIGN.md, "Alerts"): each (vehicle, rule) has at most one open alert,
``pending`` -> ``firing`` -> ``resolved``. Every state change is a :class:`Transition`
stamped with the event time that caused it; a ``firing`` -> ``firing`` transition is
an escalation of severity. Notify on transitions whose ``to_state`` is ``firing``.

Rules (thresholds from :class:`fleetwatch.config.RuleSettings`):

``speed_violation``
    Speed over the road's limit by more than ``speed_margin_kmh``. The first breaching
    sample opens a pending alert; it fires once the breach has lasted ``speed_for_s``
    (from the first breaching sample to the current one, in event time). A compliant
    sample while pending resolves it at once without firing (the breach was not
    sustained), and so does a gap in the samples longer than ``speed_for_s`` (a new
    pending alert starts at the breach after the gap). A firing alert resolves after
    ``speed_clear_s`` of compliant samples; a breach in between restarts the clear run.
    Warning; critical when the speed is more than 30 km/h over the limit (measured
    from the limit, not from limit plus margin). Samples with a speed limit of 0
    (unknown road) are not judged. Value: worst km/h over the limit.
``low_battery``
    Fires on the first sample below ``battery_fire_pct`` (warning; critical below
    10 %), resolves on the first sample above ``battery_clear_pct``; samples in
    between change nothing (hysteresis). A clear threshold below the fire threshold
    is raised to it. Value: lowest battery %.
``collision_risk``
    Time-to-collision = distance / closing speed, for a closing object (closing speed
    > 0) of a class in ``ttc_classes``, below ``ttc_threshold_s``: fires at once,
    critical. Resolves ``ttc_clear_s`` after the last breach, at exactly that event
    time, as soon as any later event of the vehicle or the watermark shows the time
    has passed. Value: lowest TTC in seconds.
``vehicle_silent``
    No telemetry from a vehicle for ``silent_after_s`` by the watermark (never by the
    wall clock). ``first_seen`` is the time of the last telemetry before the gap and
    ``fired_at`` is ``first_seen + silent_after_s``, so the record does not depend on
    how often ``tick`` runs. Value: seconds without telemetry, updated in steps of
    ``silent_after_s`` while silent and exactly when telemetry arrives again, which
    resolves the alert. Warning. ``breach_count`` stays 1.

Pending alerts that clear without firing are kept as rows in state ``resolved`` with
``fired_at`` NULL rather than dropped: a pending alert must be persisted anyway (so a
restarted ingestor fires it on time), deleting rows would make the stored outcome
depend on batch boundaries, and the rows are the replay horizon (below). Views and
notifications that must stay quiet filter on ``fired_at IS NOT NULL``.

Replay safety: per vehicle, telemetry not newer than the last telemetry already
judged, and perception events older than the last one judged, are ignored by the
rules (the writer still stores them), so replaying old data never re-fires or
re-notifies. Restarts: :meth:`AlertEngine.load` takes the open alerts of the vehicles
(plus, for replay safety, each (vehicle, rule)'s latest resolved alert) and continues
exactly where the previous owner stopped; the alert columns of ``sql/001_core.sql``
are sufficient. ``load`` ignores vehicles the engine already tracks, so the ingestor
can load lazily: before observing a batch, load the alerts and ``vehicles.last_seen``
of ``engine.unknown_vehicles(batch_vehicle_ids)`` (and of the vehicles of newly
assigned partitions, which may send nothing more).

Assumptions the ingestor must keep: each stream of a vehicle arrives in event-time
order (one Kafka partition per key); a batch mixing topics is observed in event-time
order (otherwise a telemetry sample can resolve a collision alert before an earlier
perception breach is seen, which is then ignored); a failed batch write is retried
with the same changes, or else the batch's vehicles are forgotten (``forget``) and
loaded again before their messages are consumed again. The watermark should not run
far ahead of a lagging partition, or vehicles in that partition look silent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Final, Literal, TypeAlias, cast

from fleetwatch.config import RuleSettings
from fleetwatch.model import (
    DRIVING_TYPES,
    PERCEPTION_TYPES,
    TELEMETRY_TYPES,
    AnyPerception,
    AnyTelemetry,
    Decoded,
    ObjectClass,
)

SPEED_VIOLATION: Final = "speed_violation"
LOW_BATTERY: Final = "low_battery"
COLLISION_RISK: Final = "collision_risk"
VEHICLE_SILENT: Final = "vehicle_silent"
RULES: Final = (SPEED_VIOLATION, LOW_BATTERY, COLLISION_RISK, VEHICLE_SILENT)

AlertState: TypeAlias = Literal["pending", "firing", "resolved"]
Severity: TypeAlias = Literal["info", "warning", "critical"]
PENDING: Final[AlertState] = "pending"
FIRING: Final[AlertState] = "firing"
RESOLVED: Final[AlertState] = "resolved"
STATES: Final[tuple[AlertState, ...]] = (PENDING, FIRING, RESOLVED)
INFO: Final[Severity] = "info"
WARNING: Final[Severity] = "warning"
CRITICAL: Final[Severity] = "critical"
SEVERITIES: Final[tuple[Severity, ...]] = (INFO, WARNING, CRITICAL)

SPEED_CRITICAL_OVER_KMH: Final = 30.0
"""A speed violation is critical when the speed exceeds the limit by more than this."""
BATTERY_CRITICAL_PCT: Final = 10.0
"""A low-battery alert is critical below this state of charge."""

_RANK: Final[dict[str, int]] = {INFO: 0, WARNING: 1, CRITICAL: 2}
_ZERO: Final = timedelta(0)


@dataclass(slots=True)
class Alert:
    """One alert lifecycle; mirrors an ``alerts`` row without the acknowledgement columns.

    ``alert_id`` is None until the writer inserts the row and sets it. The engine keeps
    mutating an open alert, so the writer upserts the latest state of each one.
    """

    vehicle_id: str
    rule: str
    state: AlertState
    severity: Severity
    first_seen: datetime
    last_seen: datetime
    fired_at: datetime | None = None
    clear_since: datetime | None = None
    resolved_at: datetime | None = None
    breach_count: int = 1
    value: float | None = None
    summary: str = ""
    alert_id: int | None = None

    @property
    def is_open(self) -> bool:
        return self.state != RESOLVED

    def values(self) -> tuple[Any, ...]:
        """The persisted columns in :data:`ALERT_COLUMNS` order (``alert_id`` excluded)."""
        return (
            self.vehicle_id,
            self.rule,
            self.state,
            self.severity,
            self.first_seen,
            self.last_seen,
            self.fired_at,
            self.clear_since,
            self.resolved_at,
            self.breach_count,
            self.value,
            self.summary,
        )


ALERT_COLUMNS: Final = (
    "vehicle_id",
    "rule",
    "state",
    "severity",
    "first_seen",
    "last_seen",
    "fired_at",
    "clear_since",
    "resolved_at",
    "breach_count",
    "value",
    "summary",
)
"""The ``alerts`` columns the engine owns; the writer never overwrites the ack columns."""


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change of an alert, at the event time that caused it.

    ``severity`` and ``value`` are taken when the change happened; ``alert`` is the live
    object, whose ``alert_id`` the writer fills in before writing the transition.
    """

    time: datetime
    alert: Alert
    from_state: AlertState | None
    to_state: AlertState
    severity: Severity
    value: float | None

    @property
    def vehicle_id(self) -> str:
        return self.alert.vehicle_id

    @property
    def rule(self) -> str:
        return self.alert.rule


def _utc(value: Any, column: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"alerts.{column} must be a timezone-aware time, not {value!r}")
    return value.astimezone(timezone.utc)


def _utc_or_none(value: Any, column: str) -> datetime | None:
    return None if value is None else _utc(value, column)


def alert_from_row(row: Mapping[str, Any]) -> Alert:
    """Build an :class:`Alert` from an ``alerts`` row (a mapping); other columns are ignored."""
    state = row["state"]
    if state not in STATES:
        raise ValueError(f"alerts.state {state!r} is not one of {', '.join(STATES)}")
    severity = row["severity"]
    if severity not in SEVERITIES:
        raise ValueError(f"alerts.severity {severity!r} is not one of {', '.join(SEVERITIES)}")
    value = row.get("value")
    alert_id = row.get("alert_id")
    return Alert(
        vehicle_id=str(row["vehicle_id"]),
        rule=str(row["rule"]),
        state=cast(AlertState, state),
        severity=cast(Severity, severity),
        first_seen=_utc(row["first_seen"], "first_seen"),
        last_seen=_utc(row["last_seen"], "last_seen"),
        fired_at=_utc_or_none(row.get("fired_at"), "fired_at"),
        clear_since=_utc_or_none(row.get("clear_since"), "clear_since"),
        resolved_at=_utc_or_none(row.get("resolved_at"), "resolved_at"),
        breach_count=int(row.get("breach_count") or 1),
        value=None if value is None else float(value),
        summary=str(row.get("summary") or ""),
        alert_id=None if alert_id is None else int(alert_id),
    )


def _number(value: float) -> str:
    """62 -> "62", 19.6 -> "19.6": whole numbers without a decimal, others with one."""
    return f"{value:.0f}" if abs(value - round(value)) < 0.05 else f"{value:.1f}"


SPEED_SUMMARY: Final = re.compile(
    r"(?P<speed>\d+(?:\.\d)?) km/h in a (?P<limit>\d+(?:\.\d)?)(?: km/h)? zone"
)
"""The shape of :func:`speed_summary` (and of the earlier ``85.2 km/h in a 50 zone``),
for showing a stored summary in whole numbers and other units."""
COLLISION_SUMMARY: Final = re.compile(
    r"(?P<object_class>\S+) TTC (?P<ttc>\d+\.\d) s at (?P<distance>\d+(?:\.\d)?) m"
)
"""The shape of :func:`collision_summary` (and of the earlier, in whole metres), for
showing a stored summary in whole metres or in feet."""


def speed_summary(speed_kmh: float, limit_kmh: float) -> str:
    """``85.2 km/h in a 50 km/h zone``; shown in whole numbers, as speeds are elsewhere
    (see ``fleetwatch.tui.format.alert_summary``)."""
    return f"{_number(speed_kmh)} km/h in a {_number(limit_kmh)} km/h zone"


def battery_summary(battery_pct: float) -> str:
    return f"battery {_number(battery_pct)} %"


def collision_summary(object_class: str, ttc_s: float, distance_m: float) -> str:
    """``car TTC 1.2 s at 13.4 m``: the distance in tenths, so that in feet it reads as
    the perception view's; shown in whole metres."""
    return f"{object_class} TTC {ttc_s:.1f} s at {distance_m:.1f} m"


def silent_summary(silent_s: float) -> str:
    return f"no telemetry for {silent_s:.0f} s"


def _speed_severity(over_kmh: float) -> Severity:
    return CRITICAL if over_kmh > SPEED_CRITICAL_OVER_KMH else WARNING


def _battery_severity(battery_pct: float) -> Severity:
    return CRITICAL if battery_pct < BATTERY_CRITICAL_PCT else WARNING


def _later(current: datetime | None, candidate: datetime | None) -> datetime | None:
    if candidate is None:
        return current
    if current is None or candidate > current:
        return candidate
    return current


class _Vehicle:
    """Per-vehicle rule state: replay horizons and the open alert of each rule."""

    __slots__ = (
        "battery",
        "collision",
        "perception_time",
        "silent",
        "speed",
        "telemetry_time",
        "watch_silence",
    )

    def __init__(self) -> None:
        self.telemetry_time: datetime | None = None
        """Latest telemetry judged; older or equal samples are ignored, silence counts from it."""
        self.perception_time: datetime | None = None
        """Latest perception event judged; older ones are ignored."""
        self.watch_silence = False
        """Whether silence is judged (telemetry seen, or an open alert restored)."""
        self.speed: Alert | None = None
        self.battery: Alert | None = None
        self.collision: Alert | None = None
        self.silent: Alert | None = None

    def open_alerts(self) -> int:
        return (
            (self.speed is not None)
            + (self.battery is not None)
            + (self.collision is not None)
            + (self.silent is not None)
        )


class AlertEngine:
    """Evaluates the alert rules per vehicle in event time and tracks the open alerts."""

    def __init__(self, rules: RuleSettings) -> None:
        self._speed_margin_kmh = rules.speed_margin_kmh
        self._speed_for = timedelta(seconds=rules.speed_for_s)
        self._speed_clear = timedelta(seconds=rules.speed_clear_s)
        self._battery_fire_pct = rules.battery_fire_pct
        self._battery_clear_pct = max(rules.battery_clear_pct, rules.battery_fire_pct)
        self._ttc_threshold_s = rules.ttc_threshold_s
        self._ttc_classes = frozenset(c for c in ObjectClass if c.value in rules.ttc_classes)
        self._ttc_clear = timedelta(seconds=rules.ttc_clear_s)
        self._silent_after = timedelta(seconds=rules.silent_after_s)
        self._silent_step_s = rules.silent_after_s
        self._vehicles: dict[str, _Vehicle] = {}
        self._watermark: datetime | None = None
        self._open = 0
        self._changed: dict[int, Alert] = {}
        self._transitions: list[Transition] = []

    # -- public interface -------------------------------------------------------------

    def load(
        self,
        open_alerts: Iterable[Alert],
        last_telemetry: Mapping[str, datetime | None] | None = None,
    ) -> None:
        """Restore state from the database for vehicles the engine does not track yet.

        ``open_alerts``: the open alerts of those vehicles continue their lifecycle;
        resolved ones only set their vehicle's replay horizon (pass the latest resolved
        alert of each (vehicle, rule) too). ``last_telemetry``: vehicle id -> time of its
        last stored telemetry (``vehicles.last_seen``) or None; silence is judged from
        that time, and these vehicles count as loaded even without alerts. Rows of
        vehicles already tracked are ignored (the engine's own state is newer). Loading
        records no change and no transition.
        """
        fresh: set[str] = set()
        for vehicle_id, seen in (last_telemetry or {}).items():
            if vehicle_id in self._vehicles:
                continue
            known = self._vehicles[vehicle_id] = _Vehicle()
            fresh.add(vehicle_id)
            if seen is not None:
                known.telemetry_time = _utc(seen, "last_seen")
                known.watch_silence = True
        for alert in open_alerts:
            vehicle = self._vehicles.get(alert.vehicle_id)
            if vehicle is None:
                vehicle = self._vehicles[alert.vehicle_id] = _Vehicle()
                fresh.add(alert.vehicle_id)
            elif alert.vehicle_id not in fresh:
                continue
            self._restore(vehicle, alert)

    def unknown_vehicles(self, vehicle_ids: Iterable[str]) -> set[str]:
        """The ids among ``vehicle_ids`` that the engine has no state for (to ``load``)."""
        vehicles = self._vehicles
        return {vehicle_id for vehicle_id in vehicle_ids if vehicle_id not in vehicles}

    def observe(self, message: Decoded) -> None:
        """Judge one Telemetry, PerceptionEvent or DrivingEvent, as a model or a struct."""
        if isinstance(message, TELEMETRY_TYPES):
            self._telemetry(message)
        elif isinstance(message, PERCEPTION_TYPES):
            self._perception(message)
        elif isinstance(message, DRIVING_TYPES):
            vehicle = self._vehicles.get(message.vehicle_id)
            if vehicle is not None and vehicle.collision is not None:
                self._clear_collision_by(vehicle, message.time)

    def tick(self, watermark: datetime) -> None:
        """Advance the event-time watermark: fire and extend silences, resolve stale TTC alerts.

        A watermark not later than the previous one changes nothing.
        """
        if self._watermark is not None and watermark <= self._watermark:
            return
        self._watermark = watermark
        silent_before = watermark - self._silent_after
        for vehicle_id, vehicle in self._vehicles.items():
            if vehicle.collision is not None:
                self._clear_collision_by(vehicle, watermark)
            silent = vehicle.silent
            if silent is not None:
                self._extend_silence(silent, watermark)
            elif (
                vehicle.watch_silence
                and vehicle.telemetry_time is not None
                and vehicle.telemetry_time <= silent_before
            ):
                self._start_silence(vehicle_id, vehicle, vehicle.telemetry_time, watermark)

    def take_changes(self) -> tuple[list[Alert], list[Transition]]:
        """Alerts changed since the last call (each once, in order of first change) and the
        transitions in the order they happened. Apply the alerts in the given order: an
        alert resolved in the batch precedes the next alert of the same (vehicle, rule)."""
        alerts = list(self._changed.values())
        transitions = self._transitions
        self._changed = {}
        self._transitions = []
        return alerts, transitions

    def forget(self, vehicle_ids: Iterable[str]) -> None:
        """Drop all state of these vehicles (their partitions were revoked).

        Changes not yet taken are kept; take and write them before revoking.
        """
        for vehicle_id in vehicle_ids:
            vehicle = self._vehicles.pop(vehicle_id, None)
            if vehicle is not None:
                self._open -= vehicle.open_alerts()

    def open_count(self) -> int:
        """Open (pending or firing) alerts of the tracked vehicles."""
        return self._open

    # -- restoring ------------------------------------------------------------------------

    def _restore(self, vehicle: _Vehicle, alert: Alert) -> None:
        rule = alert.rule
        if rule not in RULES:
            return
        if not alert.is_open:
            horizon = alert.resolved_at or alert.last_seen
            if rule == COLLISION_RISK:
                vehicle.perception_time = _later(vehicle.perception_time, horizon)
            else:
                vehicle.telemetry_time = _later(vehicle.telemetry_time, horizon)
            return
        if rule == COLLISION_RISK:
            vehicle.perception_time = _later(vehicle.perception_time, alert.last_seen)
        else:
            vehicle.watch_silence = True
            if rule == VEHICLE_SILENT:
                # first_seen of a silence is the last telemetry before it.
                vehicle.telemetry_time = _later(vehicle.telemetry_time, alert.first_seen)
            else:
                judged = _later(alert.last_seen, alert.clear_since)
                vehicle.telemetry_time = _later(vehicle.telemetry_time, judged)
        previous = getattr(vehicle, _SLOT[rule])
        if previous is None:
            self._open += 1
        setattr(vehicle, _SLOT[rule], alert)

    # -- telemetry: speed, battery, silence ------------------------------------------------

    def _telemetry(self, message: AnyTelemetry) -> None:
        vehicle = self._vehicles.get(message.vehicle_id)
        if vehicle is None:
            vehicle = self._vehicles[message.vehicle_id] = _Vehicle()
        time = message.time
        last = vehicle.telemetry_time
        if last is not None and time <= last:
            return
        vehicle.telemetry_time = time
        watched = vehicle.watch_silence
        vehicle.watch_silence = True
        if vehicle.silent is not None:
            self._end_silence(vehicle, vehicle.silent, time)
        elif watched and last is not None and time - last >= self._silent_after:
            # A gap that no watermark tick saw (it fell inside one batch): record it
            # after the fact, so the history does not depend on where batches were cut.
            gap = self._start_silence(message.vehicle_id, vehicle, last, time)
            self._end_silence(vehicle, gap, time)
        if vehicle.collision is not None:
            self._clear_collision_by(vehicle, time)
        limit_kmh = message.speed_limit_kmh
        if limit_kmh > 0.0:
            over_kmh = message.speed_kmh - limit_kmh
            if over_kmh > self._speed_margin_kmh:
                self._speed_breach(vehicle, message, time, over_kmh)
            elif vehicle.speed is not None:
                self._speed_compliant(vehicle, vehicle.speed, time)
        battery_pct = message.battery_pct
        if battery_pct < self._battery_fire_pct:
            self._battery_breach(vehicle, message.vehicle_id, time, battery_pct)
        elif vehicle.battery is not None and battery_pct > self._battery_clear_pct:
            self._resolve(vehicle.battery, time)
            vehicle.battery = None

    def _speed_breach(
        self, vehicle: _Vehicle, message: AnyTelemetry, time: datetime, over_kmh: float
    ) -> None:
        severity = _speed_severity(over_kmh)
        alert = vehicle.speed
        if (
            alert is not None
            and alert.state == PENDING
            and time - alert.last_seen > self._speed_for
        ):
            # No sample for longer than the for-duration: the breach was not seen to be
            # sustained, so the pending alert ends and a new one starts here.
            self._resolve(alert, time)
            vehicle.speed = alert = None
        if alert is None:
            fires = self._speed_for <= _ZERO
            alert = Alert(
                vehicle_id=message.vehicle_id,
                rule=SPEED_VIOLATION,
                state=FIRING if fires else PENDING,
                severity=severity,
                first_seen=time,
                last_seen=time,
                fired_at=time if fires else None,
                value=over_kmh,
                summary=speed_summary(message.speed_kmh, message.speed_limit_kmh),
            )
            self._open_new(vehicle, alert, time)
            return
        alert.last_seen = time
        alert.breach_count += 1
        alert.clear_since = None
        if alert.value is None or over_kmh > alert.value:
            alert.value = over_kmh
            alert.summary = speed_summary(message.speed_kmh, message.speed_limit_kmh)
        escalated = _RANK[severity] > _RANK[alert.severity]
        if escalated:
            alert.severity = severity
        if alert.state == PENDING:
            if time - alert.first_seen >= self._speed_for:
                alert.state = FIRING
                alert.fired_at = time
                self._record(time, alert, PENDING)
                return
        elif escalated:
            self._record(time, alert, FIRING)
            return
        self._changed[id(alert)] = alert

    def _speed_compliant(self, vehicle: _Vehicle, alert: Alert, time: datetime) -> None:
        if alert.state == PENDING:
            # Not sustained for speed_for_s: resolved without ever firing.
            alert.clear_since = time
            self._resolve(alert, time)
            vehicle.speed = None
            return
        if alert.clear_since is None:
            alert.clear_since = time
            self._changed[id(alert)] = alert
        if time - alert.clear_since >= self._speed_clear:
            self._resolve(alert, time)
            vehicle.speed = None

    def _battery_breach(
        self, vehicle: _Vehicle, vehicle_id: str, time: datetime, battery_pct: float
    ) -> None:
        severity = _battery_severity(battery_pct)
        alert = vehicle.battery
        if alert is None:
            alert = Alert(
                vehicle_id=vehicle_id,
                rule=LOW_BATTERY,
                state=FIRING,
                severity=severity,
                first_seen=time,
                last_seen=time,
                fired_at=time,
                value=battery_pct,
                summary=battery_summary(battery_pct),
            )
            self._open_new(vehicle, alert, time)
            return
        alert.last_seen = time
        alert.breach_count += 1
        if alert.value is None or battery_pct < alert.value:
            alert.value = battery_pct
            alert.summary = battery_summary(battery_pct)
        escalated = _RANK[severity] > _RANK[alert.severity]
        if escalated:
            alert.severity = severity
        if alert.state == PENDING:  # only from a row written by another rule version
            alert.state = FIRING
            alert.fired_at = time
            self._record(time, alert, PENDING)
        elif escalated:
            self._record(time, alert, FIRING)
        else:
            self._changed[id(alert)] = alert

    def _open_new(self, vehicle: _Vehicle, alert: Alert, time: datetime) -> None:
        """Hold a newly opened alert in its vehicle's slot for its rule and record it."""
        setattr(vehicle, _SLOT[alert.rule], alert)
        self._open += 1
        self._record(time, alert, None)

    def _start_silence(
        self, vehicle_id: str, vehicle: _Vehicle, last_telemetry: datetime, watermark: datetime
    ) -> Alert:
        silent_s = (watermark - last_telemetry).total_seconds()
        fired_at = last_telemetry + self._silent_after
        alert = Alert(
            vehicle_id=vehicle_id,
            rule=VEHICLE_SILENT,
            state=FIRING,
            severity=WARNING,
            first_seen=last_telemetry,
            last_seen=watermark,
            fired_at=fired_at,
            value=silent_s,
            summary=silent_summary(silent_s),
        )
        self._open_new(vehicle, alert, fired_at)
        return alert

    def _extend_silence(self, alert: Alert, watermark: datetime) -> None:
        silent_s = (watermark - alert.first_seen).total_seconds()
        if alert.value is None or silent_s - alert.value >= self._silent_step_s:
            alert.value = silent_s
            alert.last_seen = watermark
            alert.summary = silent_summary(silent_s)
            self._changed[id(alert)] = alert

    def _end_silence(self, vehicle: _Vehicle, alert: Alert, time: datetime) -> None:
        silent_s = (time - alert.first_seen).total_seconds()
        alert.value = silent_s
        alert.last_seen = time
        alert.summary = silent_summary(silent_s)
        self._resolve(alert, time)
        vehicle.silent = None

    # -- perception: collision risk ----------------------------------------------------------

    def _perception(self, message: AnyPerception) -> None:
        vehicle = self._vehicles.get(message.vehicle_id)
        if vehicle is None:
            vehicle = self._vehicles[message.vehicle_id] = _Vehicle()
        time = message.time
        last = vehicle.perception_time
        # Equal times are judged: one frame reports several objects at the same instant.
        if last is not None and time < last:
            return
        vehicle.perception_time = time
        if vehicle.collision is not None:
            self._clear_collision_by(vehicle, time)
        closing_mps = message.closing_speed_mps
        if closing_mps <= 0.0 or message.object_class not in self._ttc_classes:
            return
        ttc_s = message.distance_m / closing_mps
        if ttc_s >= self._ttc_threshold_s:
            return
        alert = vehicle.collision
        if alert is None:
            alert = Alert(
                vehicle_id=message.vehicle_id,
                rule=COLLISION_RISK,
                state=FIRING,
                severity=CRITICAL,
                first_seen=time,
                last_seen=time,
                fired_at=time,
                value=ttc_s,
                summary=collision_summary(message.object_class.value, ttc_s, message.distance_m),
            )
            self._open_new(vehicle, alert, time)
            return
        alert.last_seen = time
        alert.breach_count += 1
        if alert.value is None or ttc_s < alert.value:
            alert.value = ttc_s
            alert.summary = collision_summary(message.object_class.value, ttc_s, message.distance_m)
        if alert.state == PENDING:  # only from a row written by another rule version
            alert.state = FIRING
            alert.fired_at = time
            self._record(time, alert, PENDING)
        else:
            self._changed[id(alert)] = alert

    def _clear_collision_by(self, vehicle: _Vehicle, time: datetime) -> None:
        """Resolve the open collision alert if ``time`` is ttc_clear_s past its last breach."""
        alert = vehicle.collision
        if alert is None:
            return
        last_seen = alert.last_seen
        if time > last_seen and time - last_seen >= self._ttc_clear:
            resolved_at = last_seen + self._ttc_clear
            self._resolve(alert, resolved_at)
            vehicle.collision = None
            # Judged up to here: a late breach from before the resolution is ignored, as
            # it would be after a restart from the stored row.
            vehicle.perception_time = _later(vehicle.perception_time, resolved_at)

    # -- bookkeeping ------------------------------------------------------------------------

    def _resolve(self, alert: Alert, time: datetime) -> None:
        from_state = alert.state
        alert.state = RESOLVED
        alert.resolved_at = time
        self._open -= 1
        self._record(time, alert, from_state)

    def _record(self, time: datetime, alert: Alert, from_state: AlertState | None) -> None:
        self._transitions.append(
            Transition(time, alert, from_state, alert.state, alert.severity, alert.value)
        )
        self._changed[id(alert)] = alert


_SLOT: Final[dict[str, str]] = {
    SPEED_VIOLATION: "speed",
    LOW_BATTERY: "battery",
    COLLISION_RISK: "collision",
    VEHICLE_SILENT: "silent",
}
"""Rule name -> the _Vehicle attribute holding its open alert."""
