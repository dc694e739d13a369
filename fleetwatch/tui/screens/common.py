"""Shared pieces of the five views: the view base class, the filter box and cell styles."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Input, Static

from fleetwatch.tui import format as fmt
from fleetwatch.tui.messages import RenderContext
from fleetwatch.tui.snapshots import AlertRow, DrivingEventRow, Snapshot
from fleetwatch.tui.widgets.table import Column, SnapshotTable

SEVERITY_STYLE = {"critical": "bold red", "warning": "bold yellow", "info": "cyan"}
STATE_STYLE = {"firing": "bold red", "pending": "yellow", "resolved": "dim green"}
EVENT_STYLE = {"intervention": "bold red", "disengagement": "bold yellow"}
"""Driving event types that matter most for safety; the others are shown plain."""
STATUS_STYLE = {
    "moving": "green",
    "stopped": "yellow",
    "charging": "cyan",
    "silent": "bold red",
    "loading": "dim",
}


def styled(value: str, styles: dict[str, str]) -> Text:
    return Text(value, style=styles.get(value, ""))


def styled_as(value: str, kind: str, styles: dict[str, str]) -> Text:
    """``value`` in the style of ``kind`` (e.g. a rule coloured by its severity)."""
    return Text(value, style=styles.get(kind, ""))


def event_type_column() -> Column[DrivingEventRow]:
    """A driving event's type, interventions and disengagements coloured."""
    return Column(
        "type", "Event", lambda e: styled(e.type, EVENT_STYLE), lambda e: e.type, width=5, fit=True
    )


def cause_column(width: int) -> Column[DrivingEventRow]:
    """A driving event's cause in words, taking the room the other columns leave."""
    return Column(
        "cause", "Cause", lambda e: fmt.words(e.cause), lambda e: e.cause, width=width, flex=True
    )


def last_seen_column(now: datetime, *, drop: int = 0) -> Column[AlertRow]:
    """How long ago an alert was last seen, as wide as its cells."""
    return Column(
        "last",
        "Last",
        lambda a: fmt.age(a.last_seen, now),
        lambda a: a.last_seen,
        export=lambda a: a.last_seen.isoformat(),
        export_label="Last seen (UTC)",
        width=3,
        fit=True,
        drop=drop,
    )


class FilterBox(Input):
    """The ``/`` filter: typing narrows the table below it; Escape clears and leaves."""

    def open(self) -> None:
        self.add_class("-open")
        self.focus()

    def close(self) -> None:
        self.value = ""
        self.remove_class("-open")
        self.show_count("")

    def show_count(self, text: str) -> None:
        """How many rows match, on the line under the filter (empty hides it)."""
        parent = self.parent
        if not isinstance(parent, Widget):
            return
        found = parent.query(f"#{self.id}-count")
        if found:
            label = found.first(Static)
        elif text:
            label = Static("", id=f"{self.id}-count", classes="filter-count")
            parent.mount(label, after=self)
        else:
            return
        label.update(text)
        label.display = bool(text)


class View(Vertical):
    """One tab's content; renders the part of a :class:`Snapshot` it is given."""

    title = ""
    """Shown on the tab."""

    def __init__(self, context: RenderContext, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._render_context = context

    def compose_notice(self) -> ComposeResult:
        yield Static("", classes="notice", id=f"{self.id}-notice")

    def set_notice(self, text: str) -> None:
        """A one-line message over the view (database down, no data); empty hides it."""
        notice = self.query_one(f"#{self.id}-notice", Static)
        notice.update(text)
        notice.set_class(bool(text), "-shown")

    def show(self, snapshot: Snapshot, context: RenderContext) -> None:
        raise NotImplementedError

    def main_table(self) -> SnapshotTable[Any] | None:
        """The table that ``e`` exports and ``/`` filters, if the view has one."""
        return None

    def filter_box(self) -> FilterBox | None:
        return None

    def open_filter(self) -> bool:
        box = self.filter_box()
        if box is None:
            return False
        box.open()
        return True

    def on_input_changed(self, event: Input.Changed) -> None:
        table = self.main_table()
        if isinstance(event.input, FilterBox) and table is not None:
            event.stop()
            table.set_filter(event.value)
            self.show_filter_count()

    def show_filter_count(self) -> None:
        """``4 of 25`` under an active filter; called again after each refresh."""
        box, table = self.filter_box(), self.main_table()
        if box is None or table is None:
            return
        active = bool(table.filter_text)
        box.show_count(f"{len(table.shown_rows)} of {table.row_total} match" if active else "")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        table = self.main_table()
        if isinstance(event.input, FilterBox) and table is not None:
            event.stop()
            table.focus()

    def focus_main(self) -> None:
        table = self.main_table()
        if table is not None:
            table.focus()
