"""The vehicle drill-down: current state, speed/battery charts, route, events, alerts."""

from __future__ import annotations

from typing import Any, Final

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from fleetwatch.tui import format as fmt
from fleetwatch.tui.messages import OpenEvent, RenderContext
from fleetwatch.tui.screens.common import (
    SEVERITY_STYLE,
    STATE_STYLE,
    STATUS_STYLE,
    View,
    cause_column,
    event_type_column,
    last_seen_column,
    styled,
    styled_as,
)
from fleetwatch.tui.snapshots import (
    AlertRow,
    DrivingEventRow,
    Snapshot,
    VehicleView,
)
from fleetwatch.tui.widgets.charts import (
    LineChart,
    LineData,
    RouteChart,
    RouteData,
    Series,
    TimeAxis,
)
from fleetwatch.tui.widgets.table import Column, SnapshotTable

CAUSE_WIDTH = 18
"""Room for most causes in words ("localization drift") beside the vehicle's alerts on
80 columns; longer ones end in "…"."""


PAST_EXPLAINED: Final = (
    " charts and lists as they were then, not live; the lines above are now  ",
    " charts and lists as they were then; the lines above are now  ",
    " as it was then  ",
)
"""What the past banner says between its time span and the key back to live, longest
first: the first that fits the width is shown."""


def speed_title(units: fmt.Units) -> str:
    """Short enough for the chart at 80 columns: plotext leaves out a title wider than
    its plot. The legend names the speed and the limit."""
    return f"speed {fmt.speed_unit(units)}, │ events"


def event_columns(context: RenderContext, *, dated: bool = False) -> list[Column[DrivingEventRow]]:
    """The vehicle's events: clock times (with the date when one is not from today) and
    the cause taking the room left; the speed gives way on a narrow terminal."""
    return [
        Column(
            "time",
            "Time",
            lambda e: fmt.when(e.time, dated=dated),
            lambda e: e.time,
            export=lambda e: e.time.isoformat(),
            export_label="Time (UTC)",
            width=8,
            fit=True,
        ),
        event_type_column(),
        cause_column(CAUSE_WIDTH),
        Column(
            "speed",
            "Speed",
            lambda e: fmt.speed(e.speed_kmh, context.units),
            lambda e: e.speed_kmh,
            export=lambda e: round(fmt.speed_value(e.speed_kmh, context.units), 1),
            export_label=f"Speed ({fmt.speed_unit(context.units)})",
            width=8,
            drop=1,
        ),
    ]


def vehicle_alert_columns(context: RenderContext) -> list[Column[AlertRow]]:
    """The vehicle's alerts, narrow enough to leave the events beside them their causes:
    the rule in words coloured by severity (the alerts view has the full detail), the
    state, and how long ago the alert was last seen."""
    now = context.now
    return [
        Column(
            "rule",
            "Rule",
            lambda a: styled_as(fmt.rule(a.rule), a.severity, SEVERITY_STYLE),
            lambda a: fmt.rule(a.rule),
            export=lambda a: a.rule,
            width=4,
            fit=True,
        ),
        Column(
            "state",
            "State",
            lambda a: styled(a.state, STATE_STYLE),
            lambda a: a.state,
            width=5,
            fit=True,
        ),
        last_seen_column(now),
    ]


class VehicleDetail(View):
    title = "Vehicle"

    def __init__(self, context: RenderContext, *, id: str | None = None) -> None:
        super().__init__(context, id=id)
        self.vehicle_id: str | None = None
        self.select_event: str | None = None
        """The key (:func:`event_key`) of an event to put the cursor on once it is shown."""

    def compose(self) -> ComposeResult:
        yield from self.compose_notice()
        yield Static("", id="vehicle-header")
        yield Static("", id="vehicle-past")
        with Horizontal(id="vehicle-charts"):
            yield LineChart(speed_title(self._render_context.units), id="chart-speed")
            yield LineChart("battery %", id="chart-battery")
            yield RouteChart("route", id="chart-route")
        with Horizontal(id="vehicle-lists"):
            with Vertical(id="vehicle-events-box"):
                yield Static("Driving events", classes="section-title")
                yield SnapshotTable(
                    event_columns(self._render_context),
                    row_key=event_key,
                    sort_column="time",
                    sort_reverse=True,
                    id="vehicle-events",
                )
            with Vertical(id="vehicle-alerts-box"):
                yield Static("Alerts", classes="section-title")
                yield SnapshotTable(
                    vehicle_alert_columns(self._render_context),
                    row_key=lambda a: str(a.alert_id),
                    sort_column="last",
                    sort_reverse=True,
                    id="vehicle-alerts",
                )
            yield Static("", id="vehicle-perception")

    def main_table(self) -> SnapshotTable[Any]:
        return self.query_one("#vehicle-events", SnapshotTable)

    def show(self, snapshot: Snapshot, context: RenderContext) -> None:
        self._render_context = context
        view = snapshot.vehicle
        if view is None:
            if self.vehicle_id is None:
                self.set_notice("No vehicle chosen: press 1 and Enter on a vehicle.")
            return
        past = snapshot.request.vehicle_at_key is not None
        self._show_header(view, context, past=past)
        self._show_past(view, context, past=past)
        self._show_charts(view, context)
        events = self.query_one("#vehicle-events", SnapshotTable)
        dated = not fmt.all_today((e.time for e in view.events), context.now)
        events.set_spec(event_columns(context, dated=dated))
        events.show_rows(view.events)
        if self.select_event is not None and events.move_to_key(self.select_event):
            self.select_event = None
        alerts = self.query_one("#vehicle-alerts", SnapshotTable)
        alerts.set_spec(vehicle_alert_columns(context))
        alerts.show_rows(view.alerts)
        self._show_perception(view)
        if view.vehicle is None:
            self.set_notice(f"{snapshot.request.vehicle_id} has not reported.")
        else:
            self.set_notice("")

    def on_snapshot_table_row_chosen(self, event: SnapshotTable.RowChosen) -> None:
        if event.table.id == "vehicle-events":
            event.stop()
            row: DrivingEventRow = event.row
            self.post_message(OpenEvent(row))

    def _show_past(self, view: VehicleView, context: RenderContext, *, past: bool) -> None:
        """A banner while the view shows a past moment (opened from an alert, an event or
        a near miss) rather than live, and the key that returns to live."""
        banner = self.query_one("#vehicle-past", Static)
        banner.display = past
        if not past:
            return
        # The longest explanation that keeps the banner to one line.
        for middle in PAST_EXPLAINED:
            text = Text()
            text.append(" PAST ", style="bold reverse magenta")
            text.append(f" {_span(view)} UTC ", style="bold magenta")
            text.append(middle)
            text.append(context.live_key, style="bold")
            text.append(" back to live")
            if text.cell_len <= self.size.width:
                break
        banner.update(text)

    def _show_header(self, view: VehicleView, context: RenderContext, *, past: bool) -> None:
        vehicle = view.vehicle
        header = self.query_one("#vehicle-header", Static)
        if vehicle is None:
            header.update("")
            return
        units = context.units
        first = Text()
        first.append(f" {vehicle.vehicle_id} ", style="bold reverse")
        first.append("  ")
        if past:
            first.append("now ", style="dim")
        loading = vehicle.status == "silent" and context.loading_pct is not None
        first.append_text(styled("loading" if loading else vehicle.status, STATUS_STYLE))
        first.append("  speed ", style="dim")
        over = vehicle.speed_kmh > vehicle.speed_limit_kmh + 0.5
        first.append(fmt.speed(vehicle.speed_kmh, units), style="bold red" if over else "bold")
        first.append(f" (limit {fmt.speed(vehicle.speed_limit_kmh, units)})", style="dim")
        first.append("  battery ", style="dim")
        first.append(f"{vehicle.battery_pct:.0f} %", style="bold")
        range_text = Text(
            f" ({fmt.distance(vehicle.range_km, units, digits=0)} range)", style="dim"
        )
        second = Text(" ")
        second.append("autopilot ", style="dim")
        second.append(
            "on" if vehicle.autopilot else "off", style="green" if vehicle.autopilot else "yellow"
        )
        second.append("  ")
        second.append(vehicle.city or "-")
        position = Text(f"  {vehicle.lat:.4f}, {vehicle.lon:.4f}", style="dim")
        rest = Text("  odometer ", style="dim")
        rest.append(fmt.distance(vehicle.odometer_km, units, digits=0))
        rest.append("  last seen ", style="dim")
        rest.append(fmt.age(vehicle.last_seen, context.now))
        # On a narrow terminal the range and the position give way rather than wrap.
        room = header.content_size.width or self.app.size.width
        if first.cell_len + range_text.cell_len <= room:
            first.append_text(range_text)
        if second.cell_len + position.cell_len + rest.cell_len <= room:
            second.append_text(position)
        second.append_text(rest)
        text = first
        text.append("\n")
        text.append_text(second)
        header.update(text)

    def _show_charts(self, view: VehicleView, context: RenderContext) -> None:
        axis = TimeAxis(view.start, view.end)
        units = context.units
        x = tuple(axis.x(p.time) for p in view.series)
        speed = Series(
            "speed",
            x,
            tuple(fmt.speed_value(p.speed_kmh, units) for p in view.series),
            "cyan",
        )
        limit = Series(
            "limit",
            x,
            tuple(fmt.speed_value(p.speed_limit_kmh, units) for p in view.series),
            "gray+",
        )
        # Interventions and disengagements as vertical lines, coloured as in the events
        # table below: where in the drive they happened.
        marks = tuple(
            (axis.x(e.time), EVENT_MARK_COLOR[e.type])
            for e in view.events
            if e.type in EVENT_MARK_COLOR
        )
        chart = self.query_one("#chart-speed", LineChart)
        # The unit goes in the title: plotext writes an axis label on a row of its own
        # under the plot, which would leave this chart's axis a row above the battery's.
        chart.chart_title = speed_title(units)
        chart.set_data(LineData(axis, (speed, limit), y_min=0, marks=marks))
        battery = Series("battery", x, tuple(p.battery_pct for p in view.series), "green")
        self.query_one("#chart-battery", LineChart).set_data(
            LineData(axis, (battery,), y_min=0, y_max=100)
        )
        current = (view.vehicle.lat, view.vehicle.lon) if view.vehicle is not None else None
        self.query_one("#chart-route", RouteChart).set_data(
            RouteData(
                tuple(lat for lat, _ in view.track),
                tuple(lon for _, lon in view.track),
                current if view.track else None,
            )
        )

    def _show_perception(self, view: VehicleView) -> None:
        text = Text("Perception\n", style="bold")
        if not view.perception:
            text.append("no objects in this window", style="dim")
        for item in view.perception:
            text.append(f"{item.object_class:<11}", style="")
            text.append(f"{item.count:>6,}")
            if item.near_misses:
                text.append(f"  {item.near_misses} near", style="bold red")
            if item.min_ttc_s is not None:
                text.append(f"  ttc≥{item.min_ttc_s:.1f}s", style="dim")
            text.append("\n")
        self.query_one("#vehicle-perception", Static).update(text)


def _span(view: VehicleView) -> str:
    """``11-27 18:36 to 19:36``, or with both dates when the window spans more than one."""
    start, end = view.start, view.end
    if start.date() == end.date():
        return f"{start:%m-%d %H:%M} to {end:%H:%M}"
    return f"{start:%m-%d %H:%M} to {end:%m-%d %H:%M}"


EVENT_MARK_COLOR: Final = {"intervention": "red", "disengagement": "orange"}
"""Chart colours of the events marked on the speed chart (``EVENT_STYLE``'s)."""


def event_key(event: DrivingEventRow) -> str:
    """The events table's key of ``event``."""
    return f"{event.time.isoformat()}/{event.vehicle_id}/{event.type}"
