"""Chart axes: whole-number count ticks with thousands separators, dated day axes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from fleetwatch.tui.widgets.charts import TimeAxis, _tick_label, value_ticks


def test_count_ticks_are_whole_numbers() -> None:
    assert value_ticks(2) == [0.0, 1.0, 2.0]
    assert all(t == int(t) for t in value_ticks(3))
    assert value_ticks(128697) == [0.0, 50000.0, 100000.0]
    assert [_tick_label(t) for t in value_ticks(128697)] == ["0", "50,000", "100,000"]
    assert value_ticks(0) == [0.0]


def test_a_day_axis_carries_the_date() -> None:
    end = datetime(2026, 11, 27, 14, 30, tzinfo=timezone.utc)
    _positions, labels = TimeAxis(end - timedelta(hours=24), end).ticks()
    assert labels[0] == "11-26 14:30" and labels[-1] == "11-27 14:30"
    _positions, labels = TimeAxis(end - timedelta(hours=1), end).ticks()
    assert labels[-1] == "14:30"
