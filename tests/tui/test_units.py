"""Units on the perception and alerts views: with miles, objects are feet away and close
in at mph, on screen and in the export, and alert summaries read in mph and feet; time to
collision stays in seconds."""

from __future__ import annotations

import csv
from typing import Any

import pytest
from textual.pilot import Pilot

from fleetwatch.pipeline.rules import (
    battery_summary,
    collision_summary,
    silent_summary,
    speed_summary,
)
from fleetwatch.tui import format as fmt
from fleetwatch.tui.app import FleetwatchApp
from fleetwatch.tui.screens.alerts import _search_text
from fleetwatch.tui.snapshots import AlertRow, NearMiss
from fleetwatch.tui.widgets.table import SnapshotTable
from tests.tui.conftest import AppFactory, drive, rendered, screen_lines, wait_for
from tests.tui.sample import FIXED_NOW


def test_conversions() -> None:
    assert fmt.object_distance(15.6, "km") == "15.6 m"
    assert fmt.object_distance(15.6, "mi") == "51 ft"
    assert fmt.closing_speed(21.1, "km") == "21.1 m/s"
    assert fmt.closing_speed(21.1, "mi") == "47 mph"
    assert (fmt.object_distance_unit("mi"), fmt.closing_speed_unit("mi")) == ("ft", "mph")


def test_near_misses_in_miles_show_feet_and_mph_and_export_them(make_app: AppFactory) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await pilot.press("5")
        await wait_for(pilot, rendered(app, "perception"))
        near = app.query_one("#near-miss-table", SnapshotTable)
        first: NearMiss = near.shown_rows[0]
        key = f"{first.time.isoformat()}/{first.vehicle_id}/{first.object_class}"
        assert str(near.get_cell(key, "distance")) == f"{first.distance_m:.1f} m"
        await pilot.press("u")
        await pilot.pause()
        assert str(near.get_cell(key, "distance")) == fmt.object_distance(first.distance_m, "mi")
        assert str(near.get_cell(key, "closing")).endswith(" mph")
        assert str(near.get_cell(key, "ttc")) == f"{first.ttc_s:.2f} s"
        # The distance histogram's bins are labelled in feet.
        chart = app.query_one("#chart-distance")
        region = chart.region
        axis = screen_lines(app)[region.bottom - 1][region.x : region.right]
        assert "ft" in axis and "m " not in axis + " ", axis
        await pilot.press("e")
        await wait_for(pilot, lambda: any(app.export_dir.glob("*.csv")))
        await wait_for(pilot, lambda: bool(app._notifications))
        path = next(app.export_dir.glob("*.csv"))
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
        assert rows[0][3:] == ["Distance (ft)", "Closing speed (mph)", "TTC (s)"]
        exported = next(r for r in rows[1:] if r[0] == first.time.isoformat())
        assert float(exported[3]) == pytest.approx(first.distance_m / 0.3048, abs=0.01)
        mph = first.closing_speed_mps * 3600 / 1609.344
        assert float(exported[4]) == pytest.approx(mph, abs=0.01)

    drive(make_app(), scenario)


def test_alert_summaries_follow_the_units() -> None:
    assert fmt.alert_summary(speed_summary(152.3, 50), "km") == "152 km/h in a 50 km/h zone"
    assert fmt.alert_summary(speed_summary(152.3, 50), "mi") == "95 mph in a 31 mph zone"
    # A summary stored in the earlier shape (tenths, no unit on the limit) reads the same.
    assert fmt.alert_summary("56.4 km/h in a 40.2 zone", "km") == "56 km/h in a 40 km/h zone"
    assert fmt.alert_summary("56.4 km/h in a 40.2 zone", "mi") == "35 mph in a 25 mph zone"
    collision = collision_summary("pedestrian", 1.74, 16.2)
    # Tenths of a metre are kept, so the feet are those of the perception view (53 ft,
    # not the 52 ft of 16 m); metres show whole.
    assert fmt.alert_summary(collision, "mi") == "pedestrian TTC 1.7 s at 53 ft"
    assert fmt.object_distance(16.2, "mi") == "53 ft"
    assert fmt.alert_summary(collision, "km") == "pedestrian TTC 1.7 s at 16 m"
    # A summary stored in whole metres reads as before.
    assert (
        fmt.alert_summary("pedestrian TTC 1.7 s at 16 m", "mi") == "pedestrian TTC 1.7 s at 52 ft"
    )
    for unchanged in (battery_summary(18.2), silent_summary(84), "written by hand"):
        assert fmt.alert_summary(unchanged, "mi") == unchanged


def test_alerts_in_miles_show_speeds_in_mph_and_distances_in_feet(make_app: AppFactory) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await pilot.press("3")
        await wait_for(pilot, rendered(app, "alerts"))
        table = app.query_one("#alerts-table", SnapshotTable)
        kinds = {"speed_violation": "km/h", "collision_risk": " m"}
        shown: dict[str, AlertRow] = {}
        for alert in table.shown_rows:
            shown.setdefault(alert.rule, alert)
        assert kinds.keys() <= shown.keys()
        for rule, unit in kinds.items():
            assert unit in str(table.get_cell(str(shown[rule].alert_id), "summary"))
        await pilot.press("u")
        await pilot.pause()
        for rule in kinds:
            alert = shown[rule]
            cell = str(table.get_cell(str(alert.alert_id), "summary"))
            assert cell.startswith(fmt.alert_summary(alert.summary, "mi")), cell
            assert "km/h" not in cell and not cell.endswith(" m"), cell
        assert " mph zone" in str(table.get_cell(str(shown["speed_violation"].alert_id), "summary"))

    drive(make_app(), scenario)


def test_the_alert_filter_matches_a_summary_as_it_is_shown() -> None:
    alert = AlertRow(
        alert_id=1,
        vehicle_id="AV-001",
        rule="collision_risk",
        state="firing",
        severity="critical",
        first_seen=FIXED_NOW,
        last_seen=FIXED_NOW,
        count=1,
        summary=collision_summary("car", 1.4, 11.0),
    )
    assert alert.summary == "car TTC 1.4 s at 11.0 m"
    words = _search_text(alert)
    assert "car TTC 1.4 s at 11 m" in words and "car TTC 1.4 s at 36 ft" in words
