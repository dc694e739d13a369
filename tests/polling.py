"""Waiting in tests for something that happens on another thread, in another process, or
in the app under test."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot


def wait_until(condition: Callable[[], bool], timeout_s: float = 60.0, what: str = "") -> None:
    """Return once ``condition()`` is true; fail the test after ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_s:.0f} s for {what or condition}")
        time.sleep(0.05)


async def wait_for(
    pilot: Pilot[Any], condition: Callable[[], bool], timeout_s: float = 10.0
) -> None:
    """Let the app under ``pilot`` run until ``condition()`` holds; fail after ``timeout_s``."""
    loop_time = 0.0
    while not condition():
        if loop_time > timeout_s:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.02)
        loop_time += 0.02
    await pilot.pause()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs; an exited process nobody has reaped (a zombie) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"
