"""The event detail: one driving event, every field of it, and what surrounded it: the
vehicle's telemetry from 30 s before to 30 s after, what its perception saw within a
few seconds, and its alerts open at that moment.

A modal over the view it was opened from (Enter on an event row). The row's own fields
show at once; the surroundings arrive from a worker (:meth:`EventDetailScreen.show`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta, tzinfo
from typing import ClassVar, Final, Literal

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from fleetwatch.tui import format as fmt
from fleetwatch.tui.messages import RenderContext
from fleetwatch.tui.screens.common import (
    EVENT_STYLE,
    SEVERITY_STYLE,
    STATE_STYLE,
    styled,
    styled_as,
)
from fleetwatch.tui.snapshots import (
    DrivingEventRow,
    EventDetail,
    PerceivedObject,
    TelemetryPoint,
)
from fleetwatch.tui.widgets.footer import KeyFooter

EventChoice = Literal["vehicle"]
"""What the detail was closed for: ``vehicle`` opens the vehicle at the event's moment."""

LABEL = 11
"""Width of the labels on the left."""
COLUMN = 6
"""Width of one column of the telemetry table."""
BLOCKS = " ▁▂▃▄▅▆▇█"


class EventDetailScreen(ModalScreen[EventChoice | None]):
    """One driving event and its surroundings; Esc closes, ``v`` opens the vehicle at the
    event's moment (the keys as remapped, in the footer)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="event.close", tooltip="Close the event detail"),
        Binding(
            "v",
            "open_vehicle",
            "Vehicle at this moment",
            id="event.vehicle",
            tooltip="Open the vehicle at the moment of this event",
        ),
        # The app's own keys are not active over a modal screen: units and help are
        # offered here too, under the app's ids (so remapped alike).
        Binding(
            "u", "app.toggle_units", "km/mi", id="units", tooltip="Switch kilometres and miles"
        ),
        Binding("question_mark", "app.help", "Help", id="help", tooltip="Show every key"),
    ]

    def __init__(
        self, event: DrivingEventRow, context: RenderContext, local_zone: tzinfo | None = None
    ) -> None:
        super().__init__()
        self.event = event
        self.context = context
        self.local_zone = local_zone
        self.detail: EventDetail | None = None
        self.failure: str | None = None

    def compose(self) -> ComposeResult:
        # The title stays in place (docked) while the rest scrolls; the footer shows the
        # keys of this screen.
        with VerticalScroll(classes="dialog event", id="event-body"):
            yield Static("", id="event-title")
            yield Static("", classes="event-section", id="event-fields")
            yield Static("", classes="event-section", id="event-telemetry")
            yield Static("", classes="event-section", id="event-perception")
            yield Static("", classes="event-section", id="event-alerts")
        yield KeyFooter()

    def on_mount(self) -> None:
        self._draw()
        self.query_one("#event-body").focus()

    def on_resize(self) -> None:
        self._draw()

    def show(self, detail: EventDetail) -> None:
        """The surroundings, read by a worker."""
        self.detail = detail
        self.event = detail.event
        self.failure = None
        self._draw()

    def show_failure(self, reason: str) -> None:
        self.failure = reason
        self._draw()

    def action_close(self) -> None:
        self.dismiss(None)

    def action_open_vehicle(self) -> None:
        self.dismiss("vehicle")

    def show_units(self, units: fmt.Units) -> None:
        """Redraw in ``units`` (the app's units changed)."""
        self.context = replace(self.context, units=units)
        self._draw()

    # -- drawing ------------------------------------------------------------------

    def _draw(self) -> None:
        if not self.is_mounted:
            return
        event, detail, units = self.event, self.detail, self.context.units
        width = self.query_one("#event-body").content_size.width or 76
        self.query_one("#event-title", Static).update(title(event))
        self.query_one("#event-fields", Static).update(
            fields(event, units, self.local_zone, detail.city if detail else "", width)
        )
        telemetry = self.query_one("#event-telemetry", Static)
        perception = self.query_one("#event-perception", Static)
        alerts = self.query_one("#event-alerts", Static)
        if detail is None:
            waiting = (
                Text(f"Could not read what surrounded the event: {self.failure}", style="red")
                if self.failure
                else Text("Reading the telemetry, perception and alerts around it…", style="dim")
            )
            telemetry.update(waiting)
            perception.update("")
            alerts.update("")
        else:
            surroundings = telemetry_text(detail, units, width)
            if not detail.found:
                gone = Text(GONE, style="yellow")
                gone.append("\n")
                surroundings = gone.append_text(surroundings)
            telemetry.update(surroundings)
            perception.update(perception_text(detail, width, units))
            alerts.update(alerts_text(detail, units))


GONE: Final = (
    "This event is no longer stored: raw events are kept for database.retention_days days."
    " It is shown as it was listed."
)


def title(event: DrivingEventRow) -> Text:
    text = Text()
    text.append(f" {fmt.words(event.type).upper()} ", style=f"reverse {_type_style(event.type)}")
    text.append(f"  {event.vehicle_id}", style="bold")
    text.append(f"  {fmt.stamp(event.time)} UTC")
    return text


def fields(
    event: DrivingEventRow, units: fmt.Units, local_zone: tzinfo | None, city: str, width: int
) -> Text:
    """Every field of the event, two to a line when there is room."""
    half = max(LABEL + 14, width // 2)
    pair = width >= 2 * (LABEL + 20)
    text = Text()

    def cell(label: str, value: Text | str) -> Text:
        line = Text(f"{label:<{LABEL}}", style="dim")
        line.append_text(value if isinstance(value, Text) else Text(value))
        return line

    def line(*cells: Text) -> None:
        if text:
            text.append("\n")
        if len(cells) == 2 and pair:
            left = cells[0].copy()
            left.truncate(half - 1, overflow="ellipsis", pad=True)
            text.append_text(left)
            text.append(" ")
            text.append_text(cells[1])
            return
        for index, one in enumerate(cells):
            if index:
                text.append("\n")
            text.append_text(one)

    local = fmt.local_clock(event.time, local_zone)
    when = Text(f"{fmt.stamp(event.time)} UTC", style="bold")
    when.append(f"  {local} local" if not local.endswith(" UTC") else "  (local time is UTC)")
    line(cell("Time", when))
    vehicle = Text(event.vehicle_id, style="bold")
    if city:
        vehicle.append(f"  {city}")
    kind = Text(fmt.words(event.type), style=_type_style(event.type))
    line(cell("Vehicle", vehicle), cell("Type", kind))
    speed = Text(fmt.speed(event.speed_kmh, units), style="bold")
    line(cell("Cause", fmt.words(event.cause)), cell("Speed", speed))
    autopilot = Text("on", style="green") if event.autopilot else Text("off", style="yellow")
    autopilot.append(" before the event", style="dim")
    line(cell("Position", f"{event.lat:.5f}, {event.lon:.5f}"), cell("Autopilot", autopilot))
    if event.detail:
        line(cell("Detail", event.detail))
    if event.event_id:
        line(cell("Event id", Text(event.event_id, style="dim")))
    return text


def _type_style(kind: str) -> str:
    return EVENT_STYLE.get(kind, "bold cyan")


def nearest(
    points: Sequence[TelemetryPoint], moment: datetime, within_s: float
) -> TelemetryPoint | None:
    """The reading closest to ``moment``, if one is within ``within_s`` of it."""
    best = min(points, key=lambda p: abs((p.time - moment).total_seconds()), default=None)
    if best is None or abs((best.time - moment).total_seconds()) > within_s:
        return None
    return best


def telemetry_text(detail: EventDetail, units: fmt.Units, width: int) -> Text:
    """A table of the readings from ``telemetry_s`` before to after the event, every
    5 s when the width allows, else every 10 s, and a speed line of one column a second,
    the event marked."""
    event, points = detail.event, detail.telemetry
    span_s = int(detail.telemetry_s)
    if not points:
        text = Text(f"{'Telemetry':<{LABEL}}", style="bold")
        text.append(f"none from the vehicle within {span_s} s of the event", style="dim")
        return text
    step = 5 if width >= LABEL + COLUMN * (2 * span_s // 5 + 1) else 10
    offsets = list(range(-span_s, span_s + 1, step))
    unit = fmt.speed_unit(units)
    rows: list[tuple[str, list[Text]]] = [
        (f"speed {unit}", []),
        (f"limit {unit}", []),
        ("autopilot", []),
        ("battery %", []),
    ]
    header = Text()
    header.append(f"{'Telemetry':<{LABEL}}", style="bold")
    for offset in offsets:
        label = fmt.signed_seconds(offset)
        header.append(f"{label:>{COLUMN}}", style="bold" if offset == 0 else "dim")
        point = nearest(points, event.time + timedelta(seconds=offset), step / 2)
        if point is None:
            for _label, cells in rows:
                cells.append(Text(f"{'·':>{COLUMN}}", style="dim"))
            continue
        over = point.speed_kmh > point.speed_limit_kmh + 0.5
        speed = f"{fmt.speed_value(point.speed_kmh, units):>{COLUMN}.0f}"
        rows[0][1].append(Text(speed, style="bold red" if over else ""))
        rows[1][1].append(Text(f"{fmt.speed_value(point.speed_limit_kmh, units):>{COLUMN}.0f}"))
        rows[2][1].append(
            Text(f"{'on':>{COLUMN}}", style="green")
            if point.autopilot
            else Text(f"{'off':>{COLUMN}}", style="yellow")
        )
        rows[3][1].append(Text(f"{point.battery_pct:>{COLUMN}.0f}"))
    text = header
    for label, cells in rows:
        text.append("\n")
        text.append(f"{label:<{LABEL}}", style="dim")
        for cell in cells:
            text.append_text(cell)
    text.append("\n")
    text.append_text(speed_line(detail, width - LABEL))
    return text


def speed_line(detail: EventDetail, room: int) -> Text:
    """The speed each second as a bar (red above the limit, yellow with autopilot off),
    ``│`` at the event, from the first second shown to the last."""
    event, points = detail.event, detail.telemetry
    span_s = int(detail.telemetry_s)
    seconds = min(2 * span_s + 1, max(room, 1))
    first = -(seconds // 2)
    top = max(max(p.speed_kmh for p in points), max(p.speed_limit_kmh for p in points), 1.0)
    text = Text(f"{'per second':<{LABEL}}", style="dim")
    for index in range(seconds):
        offset = first + index
        point = nearest(points, event.time + timedelta(seconds=offset), 0.5)
        if point is None:
            text.append("·" if offset else "│", style="dim" if offset else "bold")
            continue
        level = round(point.speed_kmh / top * (len(BLOCKS) - 1))
        char = BLOCKS[level] if level > 0 else "_"
        if offset == 0:
            style = "bold reverse"
        elif point.speed_kmh > point.speed_limit_kmh + 0.5:
            style = "red"
        elif not point.autopilot:
            style = "yellow"
        else:
            style = "cyan"
        text.append(char, style=style)
    return text


def perception_text(detail: EventDetail, width: int, units: fmt.Units) -> Text:
    span = f"{detail.perception_s:g} s"
    text = Text()
    text.append("Perception", style="bold")
    text.append(f"  within {span} either side", style="dim")
    if not detail.perception:
        text.append(f"\nno objects seen within {span} of the event", style="dim")
        return text
    total = sum(c.count for c in detail.perception)
    text.append(f"\n{'objects':<{LABEL}}", style="dim")
    line = Text()
    line.append(f"{total:,}", style="bold")
    for item in detail.perception:
        # A line breaks between classes, never inside one.
        chunk = Text(f"{item.object_class} {item.count:,}")
        if item.near_misses:
            chunk.append(f" ({item.near_misses} near miss)", style="bold red")
        if line.cell_len + 3 + chunk.cell_len > width - LABEL:
            text.append_text(line)
            text.append(f"\n{'':<{LABEL}}")
            line = chunk
        else:
            line.append(" · ")
            line.append_text(chunk)
    text.append_text(line)
    event_time = detail.event.time
    if detail.closest is not None:
        text.append(f"\n{'closest':<{LABEL}}", style="dim")
        text.append_text(_object(detail.closest, event_time, units, lead="distance"))
    text.append(f"\n{'lowest TTC':<{LABEL}}", style="dim")
    if detail.lowest_ttc is None:
        text.append("nothing was closing in", style="dim")
    else:
        near = detail.lowest_ttc.ttc_s is not None and detail.lowest_ttc.ttc_s < (
            detail.ttc_threshold_s
        )
        text.append_text(_object(detail.lowest_ttc, event_time, units, lead="ttc", alarm=near))
    return text


def _object(
    item: PerceivedObject,
    event_time: datetime,
    units: fmt.Units,
    *,
    lead: str,
    alarm: bool = False,
) -> Text:
    text = Text()
    distance = fmt.object_distance(item.distance_m, units)
    ttc = f"{item.ttc_s:.1f} s" if item.ttc_s is not None else ""
    if lead == "ttc":
        text.append(ttc, style="bold red" if alarm else "bold")
        text.append(f"  {item.object_class} {distance} away")
    else:
        text.append(distance, style="bold")
        text.append(f"  {item.object_class}")
    if item.closing_speed_mps > 0:
        text.append(f", closing at {fmt.closing_speed(item.closing_speed_mps, units)}")
        if lead != "ttc" and ttc:
            text.append(f" (TTC {ttc})")
    offset = (item.time - event_time).total_seconds()
    text.append(f"  at {fmt.signed_seconds(offset)}", style="dim")
    return text


def alerts_text(detail: EventDetail, units: fmt.Units) -> Text:
    text = Text()
    text.append("Alerts open then", style="bold")
    if not detail.alerts:
        text.append("\nnone: the vehicle had no open alert at that moment", style="dim")
        return text
    for alert in detail.alerts:
        text.append("\n")
        text.append_text(styled_as(f"{alert.severity:<9}", alert.severity, SEVERITY_STYLE))
        text.append(f"{fmt.rule(alert.rule):<15} ")
        text.append_text(styled(alert.state, STATE_STYLE))
        text.append(f" since {fmt.clock(alert.first_seen)}", style="dim")
        if alert.summary:
            text.append(f"  {fmt.alert_summary(alert.summary, units)}")
    return text
