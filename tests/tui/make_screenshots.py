"""Write an SVG of each screen to ``screenshots/`` from the snapshot tests' fixed data.

Run: ``.venv/bin/python -m tests.tui.make_screenshots [--out DIR]``. Same seeded dataset,
fixed clock and 120x36 terminal as ``tests/tui/test_snapshots.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Static

from fleetwatch.config import Settings, UiSettings
from fleetwatch.tui.app import FleetwatchApp, create_app
from fleetwatch.tui.screens.modals import DurationModal, HelpScreen
from tests.polling import wait_for
from tests.tui.event_steps import open_event
from tests.tui.sample import LOCAL_ZONE, FixedSource, FixedStatus, GatedServices, fixed_clock

SIZE = (120, 36)
NARROW = (80, 24)
ROOT = Path(__file__).resolve().parents[2]

Steps = Callable[[FleetwatchApp, Pilot[Any]], Awaitable[None]]


def _shown(app: FleetwatchApp, view: str) -> Callable[[], bool]:
    return lambda: (
        app.last_snapshot is not None
        and app.last_snapshot.request.view == view
        and app.view == view
    )


async def _fleet(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
    await wait_for(pilot, _shown(app, "fleet"))


def _press(*keys: str, view: str) -> Steps:
    async def steps(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await _fleet(app, pilot)
        await pilot.press(*keys)
        await wait_for(pilot, _shown(app, view))

    return steps


async def _acknowledge(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
    await _press("3", view="alerts")(app, pilot)
    await pilot.press("a")
    await wait_for(pilot, lambda: isinstance(app.screen, DurationModal))


async def _help(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
    await _fleet(app, pilot)
    await pilot.press("question_mark")
    await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))


async def _down(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
    await _fleet(app, pilot)
    source = app.source
    assert isinstance(source, FixedSource)
    source.down = True
    app.request_refresh()
    await wait_for(pilot, lambda: app.refresh_error is not None)


async def _starting(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
    step = app.query_one("#startup-step", Static)
    await wait_for(pilot, lambda: "migrating the schema" in str(step.render()))


SHOTS: list[tuple[str, Steps, tuple[int, int]]] = [
    ("0-starting", _starting, SIZE),
    ("1-fleet", _fleet, SIZE),
    ("2-vehicle", _press("down", "down", "enter", view="vehicle"), SIZE),
    ("3-alerts", _press("3", view="alerts"), SIZE),
    ("3-alerts-acknowledge", _acknowledge, SIZE),
    ("4-interventions", _press("4", view="interventions"), SIZE),
    ("5-perception", _press("5", view="perception"), SIZE),
    ("6-event", open_event, SIZE),
    ("help", _help, SIZE),
    ("database-down", _down, SIZE),
    ("narrow-fleet-80x24", _fleet, NARROW),
    ("narrow-vehicle-80x24", _press("enter", view="vehicle"), NARROW),
    ("narrow-event-80x24", open_event, NARROW),
    ("narrow-alerts-80x24", _press("3", view="alerts"), NARROW),
    ("narrow-perception-80x24", _press("5", view="perception"), NARROW),
]


async def _shoot(name: str, steps: Steps, size: tuple[int, int], out: Path) -> Path:
    starting = steps is _starting
    app = create_app(
        Settings(ui=UiSettings(refresh_s=30.0)),
        source=None if starting else FixedSource(),
        status=None if starting else FixedStatus(),
        services=GatedServices(FixedSource()) if starting else None,
        clock=fixed_clock,
        export_dir=Path(tempfile.gettempdir()),
        user="operator",
        animate=False,
        local_zone=LOCAL_ZONE,
    )
    async with app.run_test(size=size) as pilot:
        await steps(app, pilot)
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()
        return Path(app.save_screenshot(f"{name}.svg", str(out)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, steps, size in SHOTS:
        path = asyncio.run(_shoot(name, steps, size, args.out))
        print(path)


if __name__ == "__main__":
    main()
