"""Fixtures for the terminal app's tests: a deterministic app over fixed data."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.pilot import Pilot

from fleetwatch.config import Settings, UiSettings
from fleetwatch.tui.app import FleetwatchApp, create_app
from fleetwatch.tui.widgets.table import SnapshotTable
from tests.polling import wait_for as wait_for  # the tests import it from here
from tests.tui.sample import LOCAL_ZONE, FixedSource, FixedStatus, fixed_clock

SIZE = (120, 36)
NARROW = (80, 24)


def quiet_settings(**ui: Any) -> Settings:
    """Settings with a slow poll, so nothing redraws by itself during a test."""
    values: dict[str, Any] = {"refresh_s": 30.0}
    values.update(ui)
    return Settings(ui=UiSettings(**values))


AppFactory = Callable[..., FleetwatchApp]


@pytest.fixture
def make_app(tmp_path: Path) -> AppFactory:
    def build(source: FixedSource | None = None, **kwargs: Any) -> FleetwatchApp:
        starting = kwargs.get("services") is not None
        if not starting:
            kwargs.setdefault("status", FixedStatus())
        kwargs.setdefault("clock", fixed_clock)
        kwargs.setdefault("export_dir", tmp_path / "exports")
        kwargs.setdefault("user", "tester")
        kwargs.setdefault("animate", False)
        kwargs.setdefault("local_zone", LOCAL_ZONE)
        settings = kwargs.pop("settings", None) or quiet_settings()
        if starting:
            return create_app(settings, **kwargs)
        return create_app(settings, source=source or FixedSource(), **kwargs)

    return build


def view_table(app: FleetwatchApp, view: str) -> SnapshotTable[Any]:
    """The main table of ``view``."""
    found = app.query_one(f"#view-{view}").main_table()  # type: ignore[attr-defined]
    assert isinstance(found, SnapshotTable)
    return found


def rendered(app: FleetwatchApp, view: str) -> Callable[[], bool]:
    """True once a snapshot of ``view`` has been fetched and drawn."""

    def check() -> bool:
        snap = app.last_snapshot
        return snap is not None and snap.request.view == view and app.view == view

    return check


def screen_lines(app: FleetwatchApp) -> list[str]:
    """The terminal's lines as the user sees them (plain text, the screen and any dialog)."""
    width, height = app.size
    console = Console(
        width=width, height=height, file=io.StringIO(), record=True, legacy_windows=False
    )
    console.print(
        app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    )
    return console.export_text().splitlines()


Scenario = Callable[[FleetwatchApp, Pilot[Any]], Awaitable[None]]
"""What a test does with the running app, once its first view has rendered."""


def drive(app: FleetwatchApp, scenario: Scenario, size: tuple[int, int] = SIZE) -> None:
    """Run ``app`` at ``size``, wait for the fleet view, then play ``scenario``."""

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await wait_for(pilot, rendered(app, "fleet"))
            await scenario(app, pilot)

    asyncio.run(main())
