"""Keys that open the event detail the same way for the snapshot tests and screenshots:
in the fleet, Enter on a vehicle, then Enter on its newest driving event."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot

from fleetwatch.tui.app import FleetwatchApp
from fleetwatch.tui.screens.event import EventDetailScreen
from fleetwatch.tui.widgets.table import SnapshotTable
from tests.polling import wait_for

SHOWN_VEHICLE = "AV-013"
"""Its newest event is a disengagement with an alert open at that moment."""


async def open_event(
    app: FleetwatchApp, pilot: Pilot[Any], vehicle_id: str = SHOWN_VEHICLE
) -> None:
    def focused(table_id: str) -> bool:
        return app.focused is not None and app.focused.id == table_id

    await wait_for(pilot, lambda: app.last_snapshot is not None and focused("fleet-table"))
    fleet = app.query_one("#fleet-table", SnapshotTable)
    assert fleet.move_to_key(vehicle_id)
    await pilot.press("enter")
    await wait_for(
        pilot,
        lambda: app.last_snapshot is not None
        and app.last_snapshot.request.view == "vehicle"
        and focused("vehicle-events"),
    )
    await pilot.press("enter")
    await wait_for(
        pilot, lambda: isinstance(app.screen, EventDetailScreen) and app.screen.detail is not None
    )
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()
