"""Snapshot tests: every view and the main states, at 120x36 (and 80x24 for narrow
terminals), over the seeded fixed dataset and a fixed clock.

Update with ``pytest tests/tui/test_snapshots.py --snapshot-update`` and look at the
SVGs before committing them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Static

from fleetwatch.tui.app import FleetwatchApp
from fleetwatch.tui.screens.modals import HelpScreen
from fleetwatch.tui.snapshots import ServiceStatus
from tests.tui.conftest import NARROW, SIZE, AppFactory, rendered, wait_for
from tests.tui.event_steps import open_event
from tests.tui.sample import FixedSource, FixedStatus, GatedServices

SnapCompare = Callable[..., bool]


def ready(app: FleetwatchApp, view: str) -> Callable[[Pilot[Any]], Any]:
    async def wait(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, rendered(app, view))
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()

    return wait


def test_fleet(snap_compare: SnapCompare, make_app: AppFactory) -> None:
    app = make_app()
    assert snap_compare(app, terminal_size=SIZE, run_before=ready(app, "fleet"))


def test_fleet_while_history_loads(snap_compare: SnapCompare, make_app: AppFactory) -> None:
    status = ServiceStatus(mode="embedded", database="up", broker="in-process", backfill_pct=42.0)
    app = make_app(status=FixedStatus(status))
    assert snap_compare(app, terminal_size=SIZE, run_before=ready(app, "fleet"))


def test_vehicle(snap_compare: SnapCompare, make_app: AppFactory) -> None:
    app = make_app()

    async def open_vehicle(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, rendered(app, "fleet"))
        await pilot.press("down", "down", "enter")
        await ready(app, "vehicle")(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=open_vehicle)


def test_alerts(snap_compare: SnapCompare, make_app: AppFactory) -> None:
    app = make_app()

    async def show(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, rendered(app, "fleet"))
        await pilot.press("3")
        await ready(app, "alerts")(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=show)


def test_interventions(snap_compare: SnapCompare, make_app: AppFactory) -> None:
    app = make_app()

    async def show(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, rendered(app, "fleet"))
        await pilot.press("4")
        await ready(app, "interventions")(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=show)


def test_perception(snap_compare: SnapCompare, make_app: AppFactory) -> None:
    app = make_app()

    async def show(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, rendered(app, "fleet"))
        await pilot.press("5")
        await ready(app, "perception")(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=show)


def test_empty_database(snap_compare: SnapCompare, make_app: AppFactory) -> None:
    app = make_app(FixedSource(empty=True))
    assert snap_compare(app, terminal_size=SIZE, run_before=ready(app, "fleet"))


def test_database_down(snap_compare: SnapCompare, make_app: AppFactory) -> None:
    source = FixedSource()
    app = make_app(source)

    async def go_down(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, rendered(app, "fleet"))
        source.down = True
        app.request_refresh()
        await wait_for(pilot, lambda: app.refresh_error is not None)
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=go_down)


def test_start_up_failure(snap_compare: SnapCompare, make_app: AppFactory) -> None:
    services = GatedServices(FixedSource(), fail="Cannot reach the database at localhost:5432.")
    services.release.set()
    app = make_app(services=services)

    async def failed(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, lambda: app.start_failure is not None)
        await pilot.pause()

    assert snap_compare(app, terminal_size=NARROW, run_before=failed)


def test_paused_in_miles_over_24h(snap_compare: SnapCompare, make_app: AppFactory) -> None:
    app = make_app()

    async def change(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, rendered(app, "fleet"))
        await pilot.press("w", "w", "u")
        await wait_for(
            pilot,
            lambda: app.last_snapshot is not None and app.last_snapshot.request.window == "24h",
        )
        await pilot.press("space")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=change)


def test_narrow_fleet(snap_compare: SnapCompare, make_app: AppFactory) -> None:
    app = make_app()
    assert snap_compare(app, terminal_size=NARROW, run_before=ready(app, "fleet"))


def test_narrow_vehicle(snap_compare: SnapCompare, make_app: AppFactory) -> None:
    app = make_app()

    async def open_vehicle(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, rendered(app, "fleet"))
        await pilot.press("enter")
        await ready(app, "vehicle")(pilot)

    assert snap_compare(app, terminal_size=NARROW, run_before=open_vehicle)


def test_event_detail(snap_compare: SnapCompare, make_app: AppFactory) -> None:
    app = make_app()
    assert snap_compare(app, terminal_size=SIZE, run_before=lambda pilot: open_event(app, pilot))


def test_narrow_event_detail(snap_compare: SnapCompare, make_app: AppFactory) -> None:
    app = make_app()
    assert snap_compare(app, terminal_size=NARROW, run_before=lambda pilot: open_event(app, pilot))


def test_help(snap_compare: SnapCompare, make_app: AppFactory) -> None:
    app = make_app()

    async def show(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, rendered(app, "fleet"))
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=show)


def test_starting(snap_compare: SnapCompare, make_app: AppFactory) -> None:
    # Start-up is held until the app exits: a timed hold could run out on a busy machine
    # before the screenshot is taken, and the screen would show the fleet.
    services = GatedServices(FixedSource())
    app = make_app(services=services)

    async def wait(pilot: Pilot[Any]) -> None:
        step = app.query_one("#startup-step", Static)
        await wait_for(pilot, lambda: "migrating the schema" in str(step.render()))
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=wait)
