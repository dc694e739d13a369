"""Formatting of figures for the terminal app: units (km or miles), ages, counts."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, tzinfo
from typing import Final, Literal

from fleetwatch.model import KM_PER_MILE
from fleetwatch.pipeline.rules import COLLISION_SUMMARY, SPEED_SUMMARY

Units = Literal["km", "mi"]


def distance(km: float, units: Units, *, digits: int = 1) -> str:
    value = km if units == "km" else km / KM_PER_MILE
    if abs(value) >= 10_000:
        return f"{value:,.0f} {units}"
    return f"{value:,.{digits}f} {units}"


def distance_value(km: float, units: Units) -> float:
    return km if units == "km" else km / KM_PER_MILE


def speed(kmh: float, units: Units) -> str:
    if units == "km":
        return f"{kmh:.0f} km/h"
    return f"{kmh / KM_PER_MILE:.0f} mph"


def speed_value(kmh: float, units: Units) -> float:
    return kmh if units == "km" else kmh / KM_PER_MILE


def speed_unit(units: Units) -> str:
    return "km/h" if units == "km" else "mph"


FEET_PER_METRE: Final = 1 / 0.3048
MPH_PER_MPS: Final = 3.6 / KM_PER_MILE


def object_distance(distance_m: float, units: Units) -> str:
    """How far a perceived object is: ``15.6 m``, or ``51 ft`` with miles (feet, as US
    drivers and safety engineers read short distances)."""
    if units == "km":
        return f"{distance_m:.1f} m"
    return f"{distance_m * FEET_PER_METRE:.0f} ft"


def object_distance_value(distance_m: float, units: Units) -> float:
    return distance_m if units == "km" else distance_m * FEET_PER_METRE


def object_distance_unit(units: Units) -> str:
    return "m" if units == "km" else "ft"


def closing_speed(mps: float, units: Units) -> str:
    """How fast an object closes in: ``8.9 m/s``, or ``20 mph`` with miles."""
    if units == "km":
        return f"{mps:.1f} m/s"
    return f"{mps * MPH_PER_MPS:.0f} mph"


def closing_speed_value(mps: float, units: Units) -> float:
    return mps if units == "km" else mps * MPH_PER_MPS


def closing_speed_unit(units: Units) -> str:
    return "m/s" if units == "km" else "mph"


def alert_summary(summary: str, units: Units) -> str:
    """An alert's summary, which the rules write in metric units with tenths, in
    ``units`` and whole numbers: with miles a speed summary reads in mph and a collision
    summary's distance in feet. Other summaries (battery, silence) have no unit to change
    and are shown as written."""
    speeding = SPEED_SUMMARY.fullmatch(summary)
    if speeding:
        # Written again, so a summary stored in an earlier shape reads as the rest.
        scale = 1.0 if units == "km" else 1 / KM_PER_MILE
        speed, limit = (float(speeding[name]) * scale for name in ("speed", "limit"))
        unit = speed_unit(units)
        return f"{speed:.0f} {unit} in a {limit:.0f} {unit} zone"
    collision = COLLISION_SUMMARY.fullmatch(summary)
    if collision:
        metres = float(collision["distance"])
        distance = f"{metres:.0f} m" if units == "km" else object_distance(metres, units)
        return f"{collision['object_class']} TTC {collision['ttc']} s at {distance}"
    return summary


def age(then: datetime, now: datetime) -> str:
    """Compact age such as ``3s``, ``4m``, ``2h``, ``5d`` (``now`` when in the future)."""
    seconds = int((now - then).total_seconds())
    if seconds < 1:
        return "now"
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    if seconds % 86400 == 0 and seconds >= 86400:
        return f"{seconds // 86400}d"
    if seconds % 3600 == 0 and seconds >= 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 60}m"


def clock(moment: datetime) -> str:
    return moment.strftime("%H:%M:%S")


def stamp(moment: datetime) -> str:
    return moment.strftime("%m-%d %H:%M:%S")


def all_today(moments: Iterable[datetime], now: datetime) -> bool:
    """True when every moment falls on ``now``'s date (in the zone they are shown in,
    UTC), so a column of them can show the clock time alone."""
    return all(moment.astimezone(now.tzinfo).date() == now.date() for moment in moments)


def when(moment: datetime, *, dated: bool) -> str:
    """A table's time: ``14:29:02``, or ``11-26 14:29:02`` when the column needs dates."""
    return stamp(moment) if dated else clock(moment)


CAUSE_WORDS: Final = {
    "double_parked_vehicle": "double-parked vehicle",
    "cut_in": "cut-in",
    "cyclist_close": "cyclist close by",
}


RULE_LABELS: Final = {
    "speed_violation": "speeding",
    "low_battery": "low battery",
    "collision_risk": "collision risk",
    "vehicle_silent": "silent",
}
"""Alert rules as the screens name them; exports and the settings keep the rule id."""
SHORT_RULE_LABELS: Final = {
    "speed_violation": "speeding",
    "low_battery": "battery",
    "collision_risk": "collision",
    "vehicle_silent": "silent",
}
"""The same in one word, for a narrow alerts table."""
SHORT_SEVERITY: Final = {"critical": "crit", "warning": "warn", "info": "info"}
"""Severities as the open-alerts tile and a narrow alerts table write them."""


def rule(rule_id: str, *, short: bool = False) -> str:
    """An alert rule in words: ``speed_violation`` reads "speeding"; ``short``: in one word
    (``collision_risk`` reads "collision")."""
    return (SHORT_RULE_LABELS if short else RULE_LABELS).get(rule_id) or words(rule_id)


def words(code: str) -> str:
    """A snake_case code in words: ``double_parked_vehicle`` reads "double-parked vehicle"."""
    if not code:
        return "-"
    return CAUSE_WORDS.get(code, code.replace("_", " "))


def count(value: int) -> str:
    return f"{value:,}"


def rate(per_s: float | None) -> str:
    if per_s is None:
        return "-"
    if per_s >= 1000:
        return f"{per_s / 1000:.1f}k/s"
    return f"{per_s:.0f}/s"


def local_clock(moment: datetime, zone: tzinfo | None = None) -> str:
    """``07:12:05 MST``: the clock time in ``zone`` (the machine's own zone when None),
    named by the zone's abbreviation, or by its offset from UTC when it has none."""
    local = moment.astimezone(zone)
    name = local.tzname() or ""
    if not name or name[0] in "+-":
        offset = local.utcoffset() or timedelta(0)
        sign = "-" if offset < timedelta(0) else "+"
        minutes = abs(int(offset.total_seconds())) // 60
        name = f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    return f"{local:%H:%M:%S} {name}"


def signed_seconds(seconds: float) -> str:
    """An offset from a moment: ``-30s``, ``0s``, ``+5s``."""
    value = round(seconds)
    return f"{value:+d}s" if value else "0s"
