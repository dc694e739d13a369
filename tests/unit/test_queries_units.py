"""Unit tests of the metrics module's pure parts: windows, ratios, units and formatting."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from fleetwatch.model import KM_PER_MILE
from fleetwatch.store import queries as q

NOW = datetime(2026, 3, 1, 12, 34, 56, 789, tzinfo=timezone.utc)


def test_last_window_ends_after_the_current_minute_and_spans_exactly() -> None:
    window = q.Window.last("1h", NOW)
    assert window.end == datetime(2026, 3, 1, 12, 35, tzinfo=timezone.utc)
    assert window.start == datetime(2026, 3, 1, 11, 35, tzinfo=timezone.utc)
    assert window.duration == timedelta(hours=1)
    assert window.now == NOW
    assert window.label == "1h"


@pytest.mark.parametrize(
    ("text", "minutes"), [("15m", 15), ("6h", 360), ("7d", 10080), ("90m", 90)]
)
def test_window_spans(text: str, minutes: int) -> None:
    assert q.Window.last(text, NOW).minutes == minutes


def test_window_from_timedelta_rounds_up_to_whole_minutes() -> None:
    window = q.Window.last(timedelta(seconds=61), NOW)
    assert window.minutes == 2
    assert window.label == "2m"


def test_explicit_window_is_widened_to_whole_minutes() -> None:
    start = datetime(2026, 3, 1, 10, 0, 30, tzinfo=timezone.utc)
    end = datetime(2026, 3, 1, 11, 0, 1, tzinfo=timezone.utc)
    window = q.Window.between(start, end)
    assert window.start == datetime(2026, 3, 1, 10, 0, tzinfo=timezone.utc)
    assert window.end == datetime(2026, 3, 1, 11, 1, tzinfo=timezone.utc)
    exact = q.Window.between(window.start, window.end)
    assert (exact.start, exact.end) == (window.start, window.end)


def test_window_converts_other_timezones_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    window = q.Window.last("15m", NOW.astimezone(plus_two))
    assert window.end.tzinfo == timezone.utc
    assert window.end == q.Window.last("15m", NOW).end


@pytest.mark.parametrize("text", ["", "abc", "0h", "5w", "-1h", "30s", "99999999d"])
def test_bad_windows_raise_one_sentence(text: str) -> None:
    with pytest.raises(q.WindowError, match="invalid window"):
        q.parse_window(text, NOW)


def test_explicit_window_must_not_be_empty() -> None:
    with pytest.raises(q.WindowError):
        q.Window.between(NOW, NOW - timedelta(hours=1))


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        q.Window.last("1h", datetime(2026, 3, 1, 12, 0))


def test_km_per_event_is_a_ratio_of_totals_and_none_without_events() -> None:
    assert q.km_per_event(1234.0, 4) == pytest.approx(308.5)
    assert q.km_per_event(1234.0, 0) is None
    assert q.km_per_event(0.0, 0) is None
    assert q.km_per_event(0.0, 3) == 0.0


def test_rate_per_1000_km_needs_distance() -> None:
    assert q.per_1000_km(3, 1500.0) == pytest.approx(2.0)
    assert q.per_1000_km(3, 0.0) is None


def test_units_convert_and_label() -> None:
    assert q.Units.MI.distance(KM_PER_MILE) == pytest.approx(1.0)
    assert q.Units("km").distance(5.0) == 5.0
    assert q.Units.MI.speed_label == "mph"
    # 1 event per 1,000 km is 1.609344 events per 1,000 miles.
    assert q.Units.MI.per_1000(1.0) == pytest.approx(KM_PER_MILE)


def test_format_distance_in_both_units() -> None:
    assert q.format_distance(1234.56, "km") == "1,234.6 km"
    assert q.format_distance(16.09344, q.Units.MI) == "10.0 mi"
    assert q.format_distance(None) == "-"


def test_format_km_per_event_without_events_says_so() -> None:
    assert q.format_km_per_event(None) == "no interventions"
    assert q.format_km_per_event(None, "mi", what="disengagements") == "no disengagements"
    assert q.format_km_per_event(250.0, "km") == "250.0 km"
    assert q.format_km_per_event(KM_PER_MILE * 100, "mi") == "100.0 mi"
    assert q.per_event_label("mi", "disengagements") == "mi per disengagement"


def test_format_rate_and_pct() -> None:
    assert q.format_rate_per_1000(2.0, "km") == "2.00 interventions per 1,000 km"
    assert q.format_rate_per_1000(None) == "-"
    assert q.format_pct(12.345) == "12.3%"
    assert q.format_pct(None) == "-"


@pytest.mark.parametrize(
    ("span", "buckets", "expected"),
    [
        ("15m", 100, 9),
        ("15m", 900, 1),
        ("15m", 5000, 1),
        ("1h", 100, 36),
        ("1h", 50, 120),
        ("24h", 100, 900),
        ("6h", 7, 3120),
    ],
)
def test_bucket_width_fits_the_chart_and_uses_whole_minutes_from_a_minute_on(
    span: str, buckets: int, expected: int
) -> None:
    window = q.Window.last(span, NOW)
    width = q.bucket_seconds(window, buckets)
    assert width == expected
    assert window.duration_s / width <= buckets or width == 1
    if width >= 60:
        assert width % 60 == 0


def test_absurdly_long_windows_are_refused_not_overflowed() -> None:
    assert q.parse_duration("3660d").days == 3660
    with pytest.raises(q.WindowError, match="longer than 3660 days"):
        q.parse_duration("99999999d")
