"""The alerts view: open and recent alerts, filterable by state, severity and rule."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Select

from fleetwatch.tui import format as fmt
from fleetwatch.tui.messages import OpenVehicle, RenderContext
from fleetwatch.tui.screens.common import (
    SEVERITY_STYLE,
    STATE_STYLE,
    FilterBox,
    View,
    last_seen_column,
    styled,
    styled_as,
)
from fleetwatch.tui.snapshots import ALERT_STATES, SEVERITIES, AlertRow, Snapshot
from fleetwatch.tui.widgets.table import Column, SnapshotTable

SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}
STATE_RANK = {"firing": 0, "pending": 1, "resolved": 2}


NARROW_ALERTS: Final = 100
"""Below this width the alerts table names severities and rules in short (``crit``,
``collision``), so that a collision summary is whole on 80 columns."""


SUMMARY_MIN: Final = len("motorcycle TTC 1.9 s at 105 ft")
"""The summary's least width: the longest collision summary, in either units."""


def alert_columns(
    context: RenderContext, *, dated: bool = False, narrow: bool = False
) -> list[Column[AlertRow]]:
    """The alerts table. On 80 columns the summary, the most telling column, gets what the
    others leave: they are as wide as their cells (``fit``), rules read as words (one word
    each when ``narrow``, as severities then read ``crit``, ``warn``), and the first-seen
    time (without a date when every alert started today) and the count give way unless
    the table is sorted by them. Exports keep the full severity and the rule id."""
    now = context.now
    return [
        Column(
            "state",
            "State",
            lambda a: _state_cell(a, context),
            lambda a: STATE_RANK.get(a.state, 9),
            width=8,
            fit=True,
        ),
        Column(
            "severity",
            "Sev" if narrow else "Severity",
            lambda a: styled_as(
                fmt.SHORT_SEVERITY.get(a.severity, a.severity) if narrow else a.severity,
                a.severity,
                SEVERITY_STYLE,
            ),
            lambda a: SEVERITY_RANK.get(a.severity, 9),
            export=lambda a: a.severity,
            export_label="Severity",
            width=4,
            fit=True,
        ),
        Column(
            "rule",
            "Rule",
            lambda a: fmt.rule(a.rule, short=narrow),
            lambda a: fmt.rule(a.rule),
            export=lambda a: a.rule,
            width=4,
            fit=True,
        ),
        Column(
            "vehicle",
            "Vehicle",
            lambda a: a.vehicle_id,
            lambda a: a.vehicle_id,
            width=7,
            fit=True,
        ),
        Column(
            "first",
            "First",
            lambda a: fmt.when(a.first_seen, dated=dated),
            lambda a: a.first_seen,
            export=lambda a: a.first_seen.isoformat(),
            export_label="First seen (UTC)",
            width=8,
            fit=True,
            drop=3,
        ),
        last_seen_column(now, drop=1),
        Column(
            "count",
            "Count",
            lambda a: Text(fmt.count(a.count), justify="right"),
            lambda a: a.count,
            width=5,
            fit=True,
            drop=2,
        ),
        Column(
            "summary",
            "Summary",
            lambda a: _summary_cell(a, context),
            lambda a: a.summary,
            export=lambda a: fmt.alert_summary(a.summary, context.units),
            # The first-seen time and the count give way to it on 80 columns.
            width=SUMMARY_MIN,
            flex=True,
        ),
    ]


STATE_GROUPS: Final = (("open", "open"), ("attention", "needs attention"))
"""State filters beyond the states themselves, (value, label): open is firing or pending;
needs attention is open and neither acknowledged nor silenced."""


def _in_state(alert: AlertRow, state: str | None, now: datetime) -> bool:
    """Whether ``alert`` passes the state filter ``state`` (a state or a
    :data:`STATE_GROUPS` value; None: any)."""
    if state is None:
        return True
    if state == "open":
        return alert.state != "resolved"
    if state == "attention":
        return alert.state != "resolved" and not alert.handled(now)
    return alert.state == state


def _search_text(alert: AlertRow) -> str:
    """What ``/`` matches: every word an alert is shown with, in full (its summary as
    shown in either units)."""
    summaries = (fmt.alert_summary(alert.summary, units) for units in ("km", "mi"))
    return " ".join(
        (alert.state, alert.severity, fmt.rule(alert.rule), alert.vehicle_id, *summaries)
    )


def _state_cell(alert: AlertRow, context: RenderContext) -> Text:
    text = styled(alert.state, STATE_STYLE)
    if alert.acknowledged(context.now):
        text.append(" ack", style="dim")
    if alert.silenced(context.now):
        text.append(" muted", style="dim")
    return text


def _summary_cell(alert: AlertRow, context: RenderContext) -> Text:
    text = Text(fmt.alert_summary(alert.summary, context.units))
    if alert.acknowledged(context.now) and alert.acked_by:
        text.append(f"  ack by {alert.acked_by}", style="dim")
    return text


def default_alert_order(alert: AlertRow) -> tuple[int, int, float]:
    return (
        STATE_RANK.get(alert.state, 9),
        SEVERITY_RANK.get(alert.severity, 9),
        -alert.last_seen.timestamp(),
    )


class AlertsPane(View):
    title = "Alerts"

    def __init__(self, context: RenderContext, *, id: str | None = None) -> None:
        super().__init__(context, id=id)
        self._alerts: tuple[AlertRow, ...] = ()
        self._rules: tuple[str, ...] = ()

    def compose(self) -> ComposeResult:
        yield from self.compose_notice()
        with Horizontal(id="alert-filters"):
            yield Select(
                [(s, s) for s in ALERT_STATES] + [(label, key) for key, label in STATE_GROUPS],
                prompt="any state",
                id="filter-state",
                compact=True,
            )
            yield Select(
                [(s, s) for s in SEVERITIES],
                prompt="any severity",
                id="filter-severity",
                compact=True,
            )
            yield Select([], prompt="any rule", id="filter-rule", compact=True)
        yield FilterBox(placeholder="filter alerts (vehicle, rule, text…)", id="alerts-filter")
        yield SnapshotTable(
            alert_columns(self._render_context),
            row_key=lambda a: str(a.alert_id),
            search_text=_search_text,
            id="alerts-table",
        )

    def main_table(self) -> SnapshotTable[Any]:
        return self.query_one("#alerts-table", SnapshotTable)

    def filter_box(self) -> FilterBox:
        return self.query_one("#alerts-filter", FilterBox)

    def selected_alert(self) -> AlertRow | None:
        row = self.main_table().current_row()
        return row if isinstance(row, AlertRow) else None

    def show(self, snapshot: Snapshot, context: RenderContext) -> None:
        self._render_context = context
        if snapshot.alerts is None:
            return
        table = self.main_table()
        watched: AlertRow | None = table.current_row() if table.has_focus else None
        self._alerts = snapshot.alerts.alerts
        rules = tuple(sorted({a.rule for a in self._alerts}))
        if rules != self._rules:
            self._rules = rules
            rule_select: Select[str] = self.query_one("#filter-rule", Select)
            current = rule_select.value
            rule_select.set_options([(fmt.rule(r), r) for r in rules])
            if isinstance(current, str) and current in rules:
                rule_select.value = current
        self._apply(context)
        if watched is not None:
            self._say_if_gone(watched, table)

    def _say_if_gone(self, watched: AlertRow, table: SnapshotTable[AlertRow]) -> None:
        """The alert under the cursor left the table with this refresh (it resolved under
        an "open" filter, say): the cursor now rests on another, which a hasty a or s
        would act on. Say so."""
        if any(a.alert_id == watched.alert_id for a in table.shown_rows):
            return
        now = next((a for a in self._alerts if a.alert_id == watched.alert_id), None)
        what = f"is {now.state}" if now is not None else "is out of the window"
        self.app.notify(
            f"{fmt.rule(watched.rule)} on {watched.vehicle_id} {what} and left the list; "
            "the cursor is on another alert.",
            title="Alerts",
            severity="warning",
            timeout=8,
        )

    def focus_filters(self) -> None:
        """Put the focus on the first filter (the state); Enter opens it."""
        self.query_one("#filter-state", Select).focus()

    def set_filters(
        self, *, state: str | None = None, severity: str | None = None, rule: str | None = None
    ) -> None:
        """Set the selectors programmatically (tests and the command palette)."""
        for widget_id, value in (
            ("#filter-state", state),
            ("#filter-severity", severity),
            ("#filter-rule", rule),
        ):
            select: Select[str] = self.query_one(widget_id, Select)
            if value is None:
                select.clear()
            else:
                select.value = value

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        self._apply(self._render_context)

    def _selected(self, widget_id: str) -> str | None:
        value = self.query_one(widget_id, Select).value
        return value if isinstance(value, str) else None

    def _apply(self, context: RenderContext) -> None:
        state = self._selected("#filter-state")
        severity = self._selected("#filter-severity")
        rule = self._selected("#filter-rule")
        rows = sorted(
            (
                a
                for a in self._alerts
                if _in_state(a, state, context.now)
                and (severity is None or a.severity == severity)
                and (rule is None or a.rule == rule)
            ),
            key=default_alert_order,
        )
        table = self.main_table()
        dated = not fmt.all_today((a.first_seen for a in self._alerts), context.now)
        # The table spans the screen; it has no size of its own before its first layout.
        narrow = self.app.size.width < NARROW_ALERTS
        table.set_spec(alert_columns(context, dated=dated, narrow=narrow))
        table.show_rows(rows)
        if not self._alerts:
            self.set_notice("No alerts in this window.")
        elif not rows:
            self.set_notice("No alert matches the filters.")
        else:
            self.set_notice("")

    def on_snapshot_table_row_chosen(self, event: SnapshotTable.RowChosen) -> None:
        event.stop()
        alert: AlertRow = event.row
        self.post_message(OpenVehicle(alert.vehicle_id, at=alert.last_seen))
