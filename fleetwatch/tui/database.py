"""The app's data source over the database: runs the metrics queries for one view and
turns their results into the snapshots the views render.

Called from worker threads only. One connection (autocommit), opened on first use and
reopened after a failure; every driver error becomes :class:`SourceUnavailable` with
one sentence, so the app shows a state instead of a traceback.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

import psycopg

from fleetwatch.config import RuleSettings
from fleetwatch.store import queries as q
from fleetwatch.store.db import DatabaseUnavailable, connect
from fleetwatch.tui.snapshots import (
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
    Snapshot,
    TelemetryPoint,
    VehicleRanking,
    VehicleRow,
    VehicleView,
    ViewRequest,
)
from fleetwatch.tui.source import SourceUnavailable

log = logging.getLogger(__name__)
_T = TypeVar("_T")

ALL_ALERT_STATES: Final = ("pending", "firing", "resolved")
VEHICLE_EVENT_TYPES: Final = (
    "intervention",
    "disengagement",
    "engagement",
    "hard_brake",
    "emergency_stop",
    "trip_start",
    "trip_end",
    "charging_start",
    "charging_end",
)
EVENT_TELEMETRY_S: Final = 30.0
"""The event detail shows the vehicle's telemetry this long before and after the event."""
EVENT_PERCEPTION_S: Final = 5.0
"""... and counts its perception events within this of the event."""
CHART_BUCKETS: Final = 120
EVENT_BUCKETS: Final = 24


class DatabaseSource:
    """A :class:`fleetwatch.tui.source.DataSource` reading ``dsn``."""

    def __init__(self, dsn: str, rules: RuleSettings | None = None) -> None:
        self._dsn = dsn
        self._rules = rules or RuleSettings()
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()

    # -- connection -------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self._dsn, autocommit=True)
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def _run(self, what: str, work: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        with self._lock:
            try:
                return work(self._connection())
            except DatabaseUnavailable as error:
                self._drop()
                raise SourceUnavailable(str(error)) from None
            except psycopg.OperationalError as error:
                self._drop()
                raise SourceUnavailable(
                    f"lost the database connection: {_first_line(error)}"
                ) from None
            except psycopg.Error as error:
                log.exception("%s failed", what)
                self._drop()
                raise SourceUnavailable(f"{what} failed: {_first_line(error)}") from None

    def close(self) -> None:
        with self._lock:
            self._drop()

    # -- the DataSource protocol ----------------------------------------------------

    def fetch(self, request: ViewRequest) -> Snapshot:
        return self._run(
            f"reading the {request.view} view", lambda conn: self._fetch(conn, request)
        )

    def event_detail(self, event: DrivingEventRow) -> EventDetail:
        def work(conn: psycopg.Connection[Any]) -> EventDetail:
            context = q.event_context(
                conn,
                event.vehicle_id,
                event.time,
                event_id=event.event_id or None,
                event_type=event.type,
                telemetry_s=EVENT_TELEMETRY_S,
                perception_s=EVENT_PERCEPTION_S,
                ttc_threshold_s=self._rules.ttc_threshold_s,
            )
            return _event_detail(event, context)

        return self._run("reading the event", work)

    def acknowledge(self, alert_id: int, until: datetime, by: str) -> None:
        def work(conn: psycopg.Connection[Any]) -> None:
            now = _now_like(until)
            if not q.acknowledge(conn, alert_id, by, until, now=now):
                raise SourceUnavailable("the alert is no longer open")

        self._run("acknowledging the alert", work)

    def silence(self, vehicle_id: str, rule: str, until: datetime, by: str) -> None:
        def work(conn: psycopg.Connection[Any]) -> None:
            try:
                q.silence(conn, vehicle_id, rule, until, by, now=_now_like(until))
            except ValueError as error:
                raise SourceUnavailable(str(error)) from None

        self._run("silencing the rule", work)

    # -- queries per view -----------------------------------------------------------

    def _fetch(self, conn: psycopg.Connection[Any], request: ViewRequest) -> Snapshot:
        window = q.Window.last(request.window, request.end)
        if request.view == "fleet":
            return Snapshot(request, request.end, fleet=self._fleet(conn, window))
        if request.view == "vehicle":
            return Snapshot(request, request.end, vehicle=self._vehicle(conn, request))
        if request.view == "alerts":
            return Snapshot(request, request.end, alerts=self._alerts(conn, window))
        if request.view == "interventions":
            return Snapshot(request, request.end, interventions=self._interventions(conn, window))
        return Snapshot(request, request.end, perception=self._perception(conn, window))

    def _fleet(self, conn: psycopg.Connection[Any], window: q.Window) -> FleetView:
        reporting_s = self._rules.silent_after_s
        kpis = q.fleet_kpis(
            conn, window, reporting_s=reporting_s, ttc_threshold_s=self._rules.ttc_threshold_s
        )
        rows = q.vehicle_table(conn, window, reporting_s=reporting_s)
        return FleetView(
            FleetKpis(
                vehicles_total=kpis.vehicles_total,
                vehicles_reporting=kpis.vehicles_reporting,
                vehicles_moving=kpis.vehicles_moving,
                distance_km=kpis.distance_km,
                autonomous_km=kpis.autonomous_km,
                interventions=kpis.interventions,
                disengagements=kpis.disengagements,
                alerts_critical=kpis.alerts_open_critical,
                alerts_warning=kpis.alerts_open_warning,
                alerts_info=kpis.alerts_open_info,
                alerts_handled=kpis.alerts_handled,
            ),
            tuple(_vehicle_row(r) for r in rows),
        )

    def _vehicle(self, conn: psycopg.Connection[Any], request: ViewRequest) -> VehicleView | None:
        vehicle_id = request.vehicle_id
        if vehicle_id is None:
            return None
        end = request.vehicle_end or request.end
        window = q.Window.last(request.window, end)
        if request.vehicle_end is not None:
            window = q.Window(window.start, window.end, request.end, window.label)
        rows = q.vehicle_table(conn, window, vehicle_id, reporting_s=self._rules.silent_after_s)
        series = q.vehicle_series(conn, vehicle_id, window, CHART_BUCKETS)
        track = q.route_track(conn, vehicle_id, window, max_points=300)
        events = q.driving_events(conn, window, vehicle_id, types=VEHICLE_EVENT_TYPES, limit=100)
        alert_rows = q.alerts(
            conn,
            request.end,
            q.AlertFilter(states=ALL_ALERT_STATES, vehicle_id=vehicle_id, window=window, limit=50),
        )
        perception = q.perception_summary(
            conn, window, vehicle_id, ttc_threshold_s=self._rules.ttc_threshold_s
        )
        return VehicleView(
            vehicle=_vehicle_row(rows[0]) if rows else None,
            start=window.start,
            end=min(window.end, request.end) if request.vehicle_end is None else window.end,
            series=tuple(
                TelemetryPoint(
                    time=p.time,
                    speed_kmh=p.speed_avg_kmh,
                    speed_limit_kmh=p.speed_limit_kmh,
                    battery_pct=p.battery_pct,
                    autopilot=p.autopilot_pct >= 50,
                )
                for p in series.points
            ),
            events=tuple(_event_row(e) for e in events),
            alerts=tuple(_alert_row(a) for a in alert_rows),
            perception=tuple(
                ClassCount(c.object_class, c.events, c.near_misses) for c in perception.classes
            ),
            track=tuple((t.lat, t.lon) for t in track),
        )

    def _alerts(self, conn: psycopg.Connection[Any], window: q.Window) -> AlertsView:
        open_rows = q.alerts(conn, window.now, q.AlertFilter(limit=500))
        recent = q.alerts(
            conn, window.now, q.AlertFilter(states=("resolved",), window=window, limit=500)
        )
        seen: set[int] = set()
        rows: list[AlertRow] = []
        for alert in (*open_rows, *recent):
            if alert.alert_id not in seen:
                seen.add(alert.alert_id)
                rows.append(_alert_row(alert))
        return AlertsView(tuple(rows))

    def _interventions(self, conn: psycopg.Connection[Any], window: q.Window) -> InterventionsView:
        series = q.events_over_time(conn, window, EVENT_BUCKETS)
        ranking = q.events_by_vehicle(conn, window)
        events = q.driving_events(conn, window, limit=500)
        return InterventionsView(
            buckets=tuple(
                InterventionBucket(b.time, b.interventions, b.disengagements)
                for b in series.buckets
            ),
            bucket_width=timedelta(seconds=series.bucket_s),
            ranking=tuple(
                VehicleRanking(r.vehicle_id, r.distance_km, r.interventions) for r in ranking
            ),
            events=tuple(_event_row(e) for e in events),
        )

    def _perception(self, conn: psycopg.Connection[Any], window: q.Window) -> PerceptionView:
        ttc = self._rules.ttc_threshold_s
        summary = q.perception_summary(conn, window, ttc_threshold_s=ttc)
        near = q.near_misses(conn, window, ttc_threshold_s=ttc, limit=200)
        return PerceptionView(
            by_class=tuple(
                ClassCount(c.object_class, c.events, c.near_misses) for c in summary.classes
            ),
            distance_bins=tuple(
                HistogramBin(b.lower, b.upper, b.count) for b in summary.distance_hist_m
            ),
            ttc_bins=tuple(HistogramBin(b.lower, b.upper, b.count) for b in summary.ttc_hist_s),
            near_misses=tuple(
                NearMiss(
                    n.time, n.vehicle_id, n.object_class, n.distance_m, n.closing_speed_mps, n.ttc_s
                )
                for n in near
            ),
        )


def _vehicle_row(row: q.VehicleRow) -> VehicleRow:
    if not row.reporting:
        status = "silent"
    elif row.moving:
        status = "moving"
    else:
        status = "stopped"
    return VehicleRow(
        vehicle_id=row.vehicle_id,
        status=status,
        speed_kmh=row.speed_kmh,
        speed_limit_kmh=row.speed_limit_kmh,
        battery_pct=row.battery_pct,
        autopilot=row.autopilot,
        last_seen=row.last_seen,
        open_alerts=row.alerts_open,
        distance_km=row.distance_km,
        interventions=row.interventions,
        city=row.city,
        lat=row.lat,
        lon=row.lon,
        odometer_km=row.odometer_km,
        range_km=row.range_km,
        heading_deg=row.heading_deg,
    )


def _event_row(event: q.DrivingEventRow) -> DrivingEventRow:
    return DrivingEventRow(
        time=event.time,
        vehicle_id=event.vehicle_id,
        type=event.type,
        cause=event.cause or "",
        lat=event.lat,
        lon=event.lon,
        speed_kmh=event.speed_kmh,
        autopilot=event.autopilot,
        detail=event.detail or "",
        event_id=event.event_id,
    )


def _event_detail(listed: DrivingEventRow, context: q.EventContext) -> EventDetail:
    def perceived(found: q.PerceivedObject | None) -> PerceivedObject | None:
        if found is None:
            return None
        return PerceivedObject(
            found.time, found.object_class, found.distance_m, found.closing_speed_mps, found.ttc_s
        )

    return EventDetail(
        event=_event_row(context.event) if context.event is not None else listed,
        found=context.event is not None,
        telemetry_s=context.telemetry_s,
        telemetry=tuple(
            TelemetryPoint(t.time, t.speed_kmh, t.speed_limit_kmh, t.battery_pct, t.autopilot)
            for t in context.telemetry
        ),
        perception_s=context.perception_s,
        ttc_threshold_s=context.ttc_threshold_s,
        perception=tuple(
            ClassCount(c.object_class, c.events, c.near_misses) for c in context.perception
        ),
        closest=perceived(context.closest),
        lowest_ttc=perceived(context.lowest_ttc),
        alerts=tuple(
            EventAlert(a.rule, a.severity, a.state, a.first_seen, a.summary) for a in context.alerts
        ),
        city=context.event.city if context.event is not None else "",
    )


def _alert_row(alert: q.AlertRow) -> AlertRow:
    return AlertRow(
        alert_id=alert.alert_id,
        vehicle_id=alert.vehicle_id,
        rule=alert.rule,
        state=alert.state,
        severity=alert.severity,
        first_seen=alert.first_seen,
        last_seen=alert.last_seen,
        count=alert.breach_count,
        value=alert.value,
        summary=alert.summary,
        acked_by=alert.acked_by,
        ack_until=alert.ack_until if alert.acknowledged else None,
        silenced_until=alert.silenced_until if alert.silenced else None,
    )


def _now_like(until: datetime) -> datetime:
    """The wall clock in ``until``'s zone (acknowledgements are stamped at real time)."""
    return datetime.now(until.tzinfo)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
