"""Units on the perception view: with miles, objects are feet away and close in at mph,
on screen and in the export; time to collision stays in seconds."""

from __future__ import annotations

import asyncio
import csv
from typing import Any

import pytest
from textual.pilot import Pilot

from fleetwatch.tui import format as fmt
from fleetwatch.tui.app import FleetwatchApp
from fleetwatch.tui.snapshots import NearMiss
from fleetwatch.tui.widgets.table import SnapshotTable
from tests.tui.conftest import SIZE, AppFactory, rendered, screen_lines, wait_for


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

    async def main() -> None:
        app = make_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, rendered(app, "fleet"))
            await scenario(app, pilot)

    asyncio.run(main())
