"""Durations as people type them: ``90s``, ``10m``, ``1h30m``, ``24h``, ``7d``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Final

_PART = re.compile(r"(\d+(?:\.\d+)?)(s|min|m|h|d)")
_UNIT_SECONDS: Final = {"s": 1, "min": 60, "m": 60, "h": 3600, "d": 86400}

MAX_DURATION: Final = timedelta(days=3660)
"""Ten years: anything longer is a typo, and overflows date arithmetic."""


class DurationError(ValueError):
    """A duration that cannot be used; the message is one sentence."""


def parse_duration(
    text: str, *, what: str = "duration", minimum: timedelta = timedelta(seconds=1)
) -> timedelta:
    """Parse one or more ``<number><unit>`` parts (units s, m or min, h, d).

    ``what`` names the value in error messages ("window", "idle time"...).
    """
    cleaned = text.strip().lower()
    parts = _PART.findall(cleaned)
    if not cleaned or "".join(n + u for n, u in parts) != cleaned:
        raise DurationError(
            f"invalid {what} {text!r}: use a number with s, m, h or d, such as 90s, 10m, 24h or 7d"
        )
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds < minimum.total_seconds():
        raise DurationError(f"invalid {what} {text!r}: must be at least {_describe(minimum)}")
    if seconds > MAX_DURATION.total_seconds():
        raise DurationError(f"invalid {what} {text!r}: longer than {MAX_DURATION.days} days")
    return timedelta(seconds=seconds)


def _describe(value: timedelta) -> str:
    seconds = value.total_seconds()
    if seconds % 60:
        return f"{seconds:g}s"
    return f"{seconds / 60:g}m"
