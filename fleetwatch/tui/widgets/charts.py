"""Plotext charts (through textual-plotext) that draw immutable series handed to them.

Each chart keeps the last data it was given and draws it in ``render``, so a redraw at a
new size or theme needs no new data. Time axes are minutes relative to the window end,
labelled with clock times, which keeps the output deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from textual.app import RenderResult
from textual_plotext import PlotextPlot
from textual_plotext.plot import Plot

from fleetwatch.tui.snapshots import HistogramBin


@dataclass(frozen=True)
class Series:
    label: str
    x: tuple[float, ...]
    y: tuple[float, ...]
    color: str
    marker: str = "braille"


@dataclass(frozen=True)
class TimeAxis:
    """Maps datetimes to minutes before ``end`` and labels ticks as clock times."""

    start: datetime
    end: datetime

    def x(self, moment: datetime) -> float:
        return (moment - self.end).total_seconds() / 60.0

    def ticks(self, count: int = 4) -> tuple[list[float], list[str]]:
        """At most ``count`` ticks at round times (every 5 or 15 minutes, every 2 or 6
        hours...) within the axis, labelled as :func:`time_label` says."""
        start, end = self.start.timestamp(), self.end.timestamp()
        for step_min in TICK_STEPS_MIN:
            step = step_min * 60.0
            first = math.ceil(start / step) * step
            if (end - first) // step + 1 <= count:
                break
        positions, labels = [], []
        moment = first
        while moment <= end:
            when = datetime.fromtimestamp(moment, tz=self.end.tzinfo)
            positions.append(self.x(when))
            labels.append(time_label(when, self.end - self.start))
            moment += step
        return positions, labels


TICK_STEPS_MIN: Final = (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080)
"""The steps between time-axis ticks, in minutes: whole clock times, UTC days."""


def time_label(moment: datetime, span: timedelta) -> str:
    """A time-axis label for a window of ``span``: the clock time within a day, the date
    and time for a day (which crosses midnight), only the date for longer windows."""
    day = timedelta(days=1)
    fmt = "%H:%M" if span < day else "%m-%d %H:%M" if span == day else "%m-%d"
    return moment.strftime(fmt)


def day_ticks(
    first_start: datetime, bucket_width: timedelta, count: int
) -> tuple[tuple[float, str], ...]:
    """Ticks at each midnight over ``count`` bars of ``bucket_width`` starting at
    ``first_start``, labelled with the date, for a bar chart over more than a day.

    Bar ``i`` (from 1) is centred on ``i``, so bucket time ``t`` sits at
    ``0.5 + (t - first_start) / bucket_width``."""
    end = first_start + bucket_width * count
    midnight = first_start.replace(hour=0, minute=0, second=0, microsecond=0)
    if midnight < first_start:
        midnight += timedelta(days=1)
    ticks = []
    while midnight <= end:
        position = 0.5 + (midnight - first_start) / bucket_width
        ticks.append((position, time_label(midnight, end - first_start)))
        midnight += timedelta(days=1)
    return tuple(ticks)


class Chart(PlotextPlot):
    """Base chart: subclasses implement ``draw`` on ``self.plt`` from their stored data."""

    DEFAULT_CSS = """
    Chart {
        height: 1fr;
        width: 1fr;
        min-height: 6;
    }
    """

    def __init__(self, title: str = "", *, id: str | None = None, classes: str | None = None):
        super().__init__(id=id, classes=classes)
        self.chart_title = title
        self.empty_text = "no data in this window"
        self._data: Any = None

    def set_data(self, data: Any) -> None:
        self._data = data
        self.refresh()

    @property
    def data(self) -> Any:
        """What the chart draws (None before :meth:`set_data`)."""
        return self._data

    def render(self) -> RenderResult:
        # A fresh figure per frame: plotext figures keep state between draws (tick
        # choices among others), which made the same data draw differently.
        self._plot = Plot()
        plt = self.plt
        plt.title(self.chart_title)
        if self._data is None or not self.draw(self._data):
            plt.xticks([])
            plt.yticks([])
            plt.text(self.empty_text, 0.5, 0.5, alignment="center")
            plt.xlim(0, 1)
            plt.ylim(0, 1)
        return super().render()

    def draw(self, data: Any) -> bool:  # pragma: no cover - abstract
        """Draw ``data``; return False when there is nothing to draw."""
        raise NotImplementedError


@dataclass(frozen=True)
class LineData:
    axis: TimeAxis
    series: tuple[Series, ...]
    y_min: float | None = None
    y_max: float | None = None
    marks: tuple[tuple[float, str], ...] = ()
    """Vertical lines (x, colour) under the series, such as the vehicle's interventions."""


class LineChart(Chart):
    """Lines over a time window (speed against the limit, battery), with marks."""

    def draw(self, data: LineData) -> bool:
        if not any(s.x for s in data.series):
            return False
        plt = self.plt
        start = data.axis.x(data.axis.start)
        for x, color in data.marks:
            if start <= x <= 0:
                plt.vline(x, color)
        for s in data.series:
            if s.x:
                plt.plot(list(s.x), list(s.y), label=s.label, color=s.color, marker=s.marker)
        positions, labels = data.axis.ticks()
        plt.xticks(positions, labels)
        plt.xlim(start, 0)
        if data.y_min is not None or data.y_max is not None:
            low = data.y_min if data.y_min is not None else min(min(s.y) for s in data.series)
            high = data.y_max
            if high is None:
                # Headroom above the data for the legend, which plotext draws top left.
                top = max(max(s.y) for s in data.series if s.y)
                high = top + max(abs(top - low) * 0.35, 1.0)
            plt.ylim(low, high)
            ticks = [t for t in value_ticks(high - low, integer=False) if low + t <= high]
            plt.yticks([low + t for t in ticks], [_tick_label(low + t) for t in ticks])
        return True


@dataclass(frozen=True)
class RouteData:
    lat: tuple[float, ...]
    lon: tuple[float, ...]
    current: tuple[float, float] | None


class RouteChart(Chart):
    """The route as a small lon/lat scatter, the current position highlighted."""

    def draw(self, data: RouteData) -> bool:
        if not data.lat:
            return False
        plt = self.plt
        plt.scatter(list(data.lon), list(data.lat), marker="braille", color="cyan")
        if data.current is not None:
            plt.scatter([data.current[1]], [data.current[0]], marker="●", color="red")
        plt.xticks([])
        plt.yticks([])
        low_lat, high_lat = min(data.lat), max(data.lat)
        low_lon, high_lon = min(data.lon), max(data.lon)
        pad_lat = max((high_lat - low_lat) * 0.05, 1e-4)
        pad_lon = max((high_lon - low_lon) * 0.05, 1e-4)
        plt.ylim(low_lat - pad_lat, high_lat + pad_lat)
        plt.xlim(low_lon - pad_lon, high_lon + pad_lon)
        return True


@dataclass(frozen=True)
class BarData:
    labels: tuple[str, ...]
    values: tuple[tuple[float, ...], ...]
    """One tuple per group (series), each as long as ``labels``."""
    names: tuple[str, ...] = ()
    colors: tuple[str, ...] = ("orange", "cyan")
    width: float = 0.8
    counts: bool = True
    """Values are counts: the value axis has whole-number ticks."""
    markers: tuple[str, ...] = ()
    """Per group: a fill pattern, so groups differ by more than colour (default solid)."""
    ticks: tuple[tuple[float, str], ...] = ()
    """Labels at chosen positions (the first bar at 1) instead of the bar names, e.g. the
    dates of a time axis (:func:`day_ticks`)."""


class BarChart(Chart):
    """Vertical bars, one or several groups. (Horizontal bars, a name to each, are
    :class:`~fleetwatch.tui.widgets.barlist.BarList`.)"""

    def draw(self, data: BarData) -> bool:
        if not data.labels or not any(any(v) for v in data.values):
            return False
        # plotext's bundled stubs miss ``labels`` and colour lists: call it untyped.
        plt: Any = self.plt
        labels = list(data.labels)
        values = [list(v) for v in data.values]
        legend = len(data.values) > 1 and bool(data.names) and self._legend_fits(len(data.names))
        if len(data.values) == 1:
            plt.bar(
                labels,
                values[0],
                color=data.colors[0],
                width=data.width,
                marker="sd",
            )
        else:
            plt.multiple_bar(
                labels,
                values,
                labels=list(data.names) if legend else None,
                color=list(data.colors[: len(data.values)]),
                width=data.width,
                marker=list(data.markers) or "sd",
            )
        if data.ticks:
            self._place_ticks(plt, data.ticks)
        else:
            self._label_ticks(plt, labels)
        high = max(max(v) for v in values)
        positions = value_ticks(high, integer=data.counts)
        plt.yticks(positions, [_tick_label(p) for p in positions])
        if legend:
            plt.ylim(0, self._legend_headroom(high, len(data.names)))
        return True

    LEGEND_MIN_BAR_ROWS = 5
    """A legend is drawn only when the bars keep at least this many rows under it; a
    smaller chart goes without (its title and colours name the groups)."""

    def _plot_rows(self) -> int:
        # The widget's rows less the title, the frame and the time axis.
        return max(self.content_size.height - 4, 1)

    def _legend_fits(self, legend_rows: int) -> bool:
        return self._plot_rows() - legend_rows - 1 >= self.LEGEND_MIN_BAR_ROWS

    def _legend_headroom(self, high: float, legend_rows: int) -> float:
        """The top of the value axis that leaves the legend's rows (plotext draws it top
        left, over the bars) and one more above the tallest bar."""
        rows = self._plot_rows()
        return high * rows / (rows - legend_rows - 1)

    def _place_ticks(self, plt: Any, ticks: tuple[tuple[float, str], ...]) -> None:
        """Given ticks, every n-th of them when they do not all fit."""
        widest = max(len(label) for _position, label in ticks) + 2
        room = max(1, (self.size.width - 8) // widest)
        shown = ticks[:: math.ceil(len(ticks) / room)]
        plt.xticks([position for position, _label in shown], [label for _p, label in shown])

    def _label_ticks(self, plt: Any, labels: list[str]) -> None:
        """Choose which bar labels to show ourselves: plotext's own choice varies from one
        process to the next, which made identical data draw differently."""
        widest = max(len(label) for label in labels) + 2
        room = max(1, (self.size.width - 8) // widest)
        step = math.ceil(len(labels) / room)
        plt.xticks(list(range(1, len(labels) + 1))[::step], labels[::step])


def value_ticks(high: float, count: int = 4, *, integer: bool = True) -> list[float]:
    """Round tick positions from 0 to about ``high`` (whole numbers for counts)."""
    if high <= 0:
        return [0.0]
    raw = high / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    if integer:
        step = max(1.0, float(math.ceil(step)))
    return [i * step for i in range(int(high // step) + 1)]


def _tick_label(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def histogram_data(
    bins: Sequence[HistogramBin], unit: str, color: str, *, scale: float = 1.0
) -> BarData:
    """Bars for histogram bins, labelled with their edges times ``scale`` in ``unit``
    (bins of metres labelled in feet, say: 0-16ft, 16-33ft)."""
    labels = tuple(_bin_label(b, unit, scale) for b in bins)
    return BarData(labels=labels, values=(tuple(float(b.count) for b in bins),), colors=(color,))


def _bin_label(item: HistogramBin, unit: str, scale: float = 1.0) -> str:
    def short(value: float) -> str:
        return f"{value:g}" if scale == 1.0 else f"{value * scale:.0f}"

    if item.high is None:
        return f"≥{short(item.low)}{unit}"
    return f"{short(item.low)}-{short(item.high)}{unit}"
