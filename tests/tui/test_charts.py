"""Chart axes: whole-number count ticks with thousands separators, dated day axes."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from textual.app import App, ComposeResult
from textual.geometry import Region

from fleetwatch.tui.widgets.charts import BarChart, BarData, TimeAxis, _tick_label, value_ticks


def test_count_ticks_are_whole_numbers() -> None:
    assert value_ticks(2) == [0.0, 1.0, 2.0]
    assert all(t == int(t) for t in value_ticks(3))
    assert value_ticks(128697) == [0.0, 50000.0, 100000.0]
    assert [_tick_label(t) for t in value_ticks(128697)] == ["0", "50,000", "100,000"]
    assert value_ticks(0) == [0.0]


def test_a_day_axis_carries_the_date() -> None:
    end = datetime(2026, 11, 27, 14, 30, tzinfo=timezone.utc)
    _positions, labels = TimeAxis(end - timedelta(hours=24), end).ticks()
    assert labels == ["11-26 18:00", "11-27 00:00", "11-27 06:00", "11-27 12:00"]
    _positions, labels = TimeAxis(end - timedelta(hours=1), end).ticks()
    assert labels == ["13:30", "14:00", "14:30"]


def test_time_ticks_fall_on_round_times_within_the_axis() -> None:
    end = datetime(2026, 11, 27, 0, 7, 41, tzinfo=timezone.utc)
    for span, expected in (
        (timedelta(minutes=15), ["23:55", "00:00", "00:05"]),
        (timedelta(hours=1), ["23:15", "23:30", "23:45", "00:00"]),
        (timedelta(hours=6), ["20:00", "22:00", "00:00"]),
        (timedelta(days=7), ["11-21", "11-23", "11-25", "11-27"]),
    ):
        axis = TimeAxis(end - span, end)
        positions, labels = axis.ticks()
        assert labels == expected, (span, labels)
        assert len(positions) <= 4
        assert all(axis.x(axis.start) <= p <= 0 for p in positions)


def draw_bars(height: int) -> list[str]:
    """The lines of a 60-column bar chart of two groups, the tallest bars first."""

    class OneChart(App[None]):
        CSS = f"BarChart {{ width: 60; height: {height}; }}"

        def compose(self) -> ComposeResult:
            yield BarChart("events")

    async def draw() -> list[str]:
        app = OneChart()
        async with app.run_test(size=(60, height)) as pilot:
            chart = app.query_one(BarChart)
            # The tallest bars come first, where plotext draws the legend.
            chart.set_data(
                BarData(
                    labels=("a", "b", "c", "d"),
                    values=((5.0, 1.0, 0.0, 2.0), (5.0, 0.0, 3.0, 1.0)),
                    names=("interventions", "disengagements"),
                )
            )
            await pilot.pause()
            strips = chart.render_lines(Region(0, 0, *chart.outer_size))
            return [strip.text for strip in strips]

    return asyncio.run(draw())


def test_the_legend_of_a_bar_chart_stays_above_the_tallest_bar() -> None:
    lines = draw_bars(14)
    legend = max(i for i, line in enumerate(lines) if "disengagements" in line)
    swatch = lines[legend].index("disengagements") - 1
    # From the bottom of the plot up, the first bar's column is solid to its top.
    bottom = max(i for i, line in enumerate(lines) if line[swatch] != " " and i > legend)
    top = bottom
    while lines[top - 1][swatch] not in " │":
        top -= 1
    assert top > legend + 1, "\n".join(lines)  # a free row between them


def test_a_bar_chart_too_short_for_its_legend_goes_without() -> None:
    lines = draw_bars(10)
    assert not any("interventions" in line for line in lines), "\n".join(lines)
