"""Waiting in tests for something that happens on another thread or in another process."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(condition: Callable[[], bool], timeout_s: float = 60.0, what: str = "") -> None:
    """Return once ``condition()`` is true; fail the test after ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_s:.0f} s for {what or condition}")
        time.sleep(0.05)
