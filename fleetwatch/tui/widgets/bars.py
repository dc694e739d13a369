"""Small one-line and tile widgets: KPI tiles, the window selector and the status bar."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial

from rich.text import Text
from textual import events
from textual.message import Message
from textual.widgets import Static

from fleetwatch.tui import format as fmt
from fleetwatch.tui.snapshots import WINDOW_NAMES, ServiceStatus, WindowName


class KpiTile(Static):
    """A labelled figure with a caption of a few phrases under it, such as
    ``("0 crit", "11 warn", "0 info")``. Phrases share a line while they fit and
    otherwise start a new one, so a narrow tile never cuts a phrase or parts a number
    from its word."""

    _label: str = ""
    _value: Text = Text()
    _note: Text | None = None
    _phrases: tuple[Text, ...] = ()

    NOTE_GAP = "  "

    def show(
        self,
        label: str,
        value: str | Text,
        caption: str | Text | Sequence[str | Text] = (),
        *,
        note: str | Text | None = None,
    ) -> None:
        """``note``, a dim phrase about the figure, goes beside it when the tile is wide
        enough and otherwise ends the caption."""
        self._label = label
        self._value = value if isinstance(value, Text) else Text(value, style="bold")
        self._note = Text(note, style="dim") if isinstance(note, str) else note
        parts = (caption,) if isinstance(caption, str | Text) else tuple(caption)
        self._phrases = tuple(p if isinstance(p, Text) else Text(p, style="dim") for p in parts)
        self.refresh()

    def render(self) -> Text:
        width = self.content_size.width
        body = Text()
        body.append(self._label.upper(), style="dim")
        body.append("\n")
        body.append_text(self._value)
        phrases = self._phrases
        if self._note is not None:
            beside = self._value.cell_len + len(self.NOTE_GAP) + self._note.cell_len <= width
            if beside:
                body.append(self.NOTE_GAP)
                body.append_text(self._note)
            else:
                phrases += (self._note,)
        for line in self._caption(phrases, width):
            body.append("\n")
            body.append_text(line)
        return body

    def on_resize(self) -> None:
        self.refresh()

    @staticmethod
    def _caption(phrases: Sequence[Text], width: int) -> list[Text]:
        lines: list[Text] = []
        for phrase in phrases:
            if lines and lines[-1].cell_len + 1 + phrase.cell_len <= width:
                lines[-1].append(" ")
                lines[-1].append_text(phrase)
            else:
                lines.append(phrase.copy())
        return lines


class WindowSelector(Static):
    """The time window, e.g. ``15m [1h] 6h 24h 7d`` (click a name to choose it), and the
    distance units in use."""

    class Chosen(Message):
        def __init__(self, window: WindowName) -> None:
            super().__init__()
            self.window = window

    def __init__(self, window: WindowName, units: fmt.Units, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.window: WindowName = window
        self.units: fmt.Units = units
        self._spans: list[tuple[int, int, WindowName]] = []

    def on_mount(self) -> None:
        self.show(self.window, self.units)

    def show(self, window: WindowName, units: fmt.Units | None = None) -> None:
        self.window = window
        self.units = units or self.units
        text = Text("units ", style="dim")
        text.append(self.units, style="bold")
        text.append("   window ", style="dim")
        self._spans = []
        for name in WINDOW_NAMES:
            start = len(text)
            if name == window:
                text.append(f" {name} ", style="bold reverse")
            else:
                text.append(f" {name} ")
            self._spans.append((start, len(text), name))
        self.update(text)

    def on_click(self, event: events.Click) -> None:
        for start, end, name in self._spans:
            if start <= event.x < end:
                self.post_message(self.Chosen(name))
                return


class StatusBar(Static):
    """Mode, database and broker state, ingest rate, lag, rejects and last refresh.

    When the line is wider than the bar (80 columns), the ingest rate and the refresh time
    go without their labels (``43/s``, ``00:05:12``), and if need be a zero lag or count of
    rejects is left out, so the time of the data is always on screen."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._line: Callable[..., Text] | None = None

    def show(
        self,
        status: ServiceStatus | None,
        *,
        paused: bool,
        last_refresh: datetime | None,
        refresh_error: str | None,
        start_failed: bool = False,
    ) -> None:
        self._line = partial(
            status_line,
            status,
            paused=paused,
            last_refresh=last_refresh,
            refresh_error=refresh_error,
            start_failed=start_failed,
        )
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        if self._line is None:
            return
        room = self.content_size.width
        line = self._line()
        for compact in (1, 2):
            if not room or line.cell_len <= room:
                break
            line = self._line(compact=compact)
        self.update(line)


def status_line(
    status: ServiceStatus | None,
    *,
    paused: bool,
    last_refresh: datetime | None,
    refresh_error: str | None,
    start_failed: bool = False,
    compact: int = 0,
) -> Text:
    """The status bar's line; ``compact`` 1 leaves out the labels of the rate and the time,
    2 also a lag or a count of rejects that is zero."""
    text = Text()
    if paused:
        text.append(" PAUSED ", style="bold black on yellow")
        text.append(" ")
    if status is None and start_failed:
        text.append("start-up failed", style="bold red")
    elif status is None:
        text.append("starting…", style="dim")
    else:
        text.append(status.mode, style="bold")
        _field(text, "db", _state(status.database, status.database_detail))
        _field(text, "broker", _state(status.broker, status.broker_detail))
        if status.ingest_rate_per_s is not None:
            _field(text, "" if compact else "ingest", Text(fmt.rate(status.ingest_rate_per_s)))
        if status.consumer_lag is not None and not (compact > 1 and status.consumer_lag == 0):
            _field(text, "lag", Text(fmt.count(status.consumer_lag)))
        if status.rejects is not None and not (compact > 1 and status.rejects == 0):
            style = "bold red" if status.rejects else ""
            _field(text, "rejects", Text(fmt.count(status.rejects), style=style))
        if status.backfill_pct is not None:
            _field(text, "backfilling", Text(f"{status.backfill_pct:.0f} %", style="bold"))
    if refresh_error:
        text.append("  ")
        text.append(refresh_error, style="bold red")
    clock = Text(fmt.clock(last_refresh) if last_refresh else "-")
    _field(text, "" if compact else "refreshed", clock)
    return text


def _field(text: Text, label: str, value: Text) -> None:
    text.append("  ")
    if label:
        text.append(label, style="dim")
        text.append(" ")
    text.append_text(value)


def _state(state: str, detail: str) -> Text:
    style = {
        "up": "bold green",
        "in-process": "bold green",
        "starting": "bold yellow",
        "down": "bold red",
        "none": "dim",
    }.get(state, "")
    text = Text(state, style=style)
    if detail and state != "up":
        text.append(f" ({detail})", style="dim")
    return text
