"""`fleetwatch ingest` flags that need no service."""

from __future__ import annotations

import argparse

import pytest

from fleetwatch.pipeline.command import _idle_seconds


@pytest.mark.parametrize(
    ("text", "seconds"), [("4", 4.0), ("2.5", 2.5), ("30s", 30.0), ("2m", 120.0)]
)
def test_idle_time_takes_seconds_or_a_duration(text: str, seconds: float) -> None:
    assert _idle_seconds(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-3", "0", "inf", "nan", "1h 2m"])
def test_bad_idle_time_is_one_sentence(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=f"invalid duration '{text}'"):
        _idle_seconds(text)
