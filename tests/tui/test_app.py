"""Pilot tests of the terminal app over fixed data: navigation, drill-down, sorting,
filtering, alerts actions, pause, window, units, export and the database-down state."""

from __future__ import annotations

import asyncio
import csv
import re
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from rich.text import Text
from textual.app import App, ComposeResult
from textual.geometry import Region
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Select, Static

from fleetwatch.tui import format as fmt
from fleetwatch.tui.app import FleetwatchApp
from fleetwatch.tui.screens.alerts import AlertsPane
from fleetwatch.tui.screens.modals import DurationModal, HelpScreen
from fleetwatch.tui.snapshots import (
    AlertRow,
    FleetKpis,
    ServiceStatus,
    Snapshot,
    VehicleRow,
    ViewRequest,
)
from fleetwatch.tui.widgets.bars import KpiTile, StatusBar, WindowSelector
from fleetwatch.tui.widgets.charts import LineChart, LineData
from tests.tui.conftest import (
    NARROW,
    SIZE,
    AppFactory,
    drive,
    quiet_settings,
    rendered,
    wait_for,
)
from tests.tui.conftest import view_table as table
from tests.tui.sample import FIXED_NOW, FixedSource, FixedStatus, GatedServices


def notice(app: FleetwatchApp, view: str) -> str:
    widget = app.query_one(f"#view-{view}-notice", Static)
    return str(widget.render()) if widget.has_class("-shown") else ""


def status_text(app: FleetwatchApp) -> str:
    return str(app.query_one(StatusBar).render())


def test_number_keys_switch_views_and_fetch_only_the_visible_one(make_app: AppFactory) -> None:
    source = FixedSource()

    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        for key, view in (("3", "alerts"), ("4", "interventions"), ("5", "perception")):
            await pilot.press(key)
            await wait_for(pilot, rendered(app, view))
            assert source.requests[-1].view == view
        await pilot.press("1")
        await wait_for(pilot, rendered(app, "fleet"))

    drive(make_app(source), scenario)


def test_enter_opens_the_vehicle_escape_goes_back_and_brackets_step(
    make_app: AppFactory,
) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        fleet = table(app, "fleet")
        await pilot.press("down", "enter")
        await wait_for(pilot, rendered(app, "vehicle"))
        assert app.vehicle_id == fleet.shown_rows[1].vehicle_id
        snapshot = app.last_snapshot
        assert snapshot is not None and snapshot.vehicle is not None
        assert snapshot.vehicle.vehicle is not None
        assert snapshot.vehicle.vehicle.vehicle_id == app.vehicle_id
        await pilot.press("right_square_bracket")
        await wait_for(pilot, lambda: app.vehicle_id == fleet.shown_rows[2].vehicle_id)
        await pilot.press("left_square_bracket", "left_square_bracket")
        await wait_for(pilot, lambda: app.vehicle_id == fleet.shown_rows[0].vehicle_id)
        await pilot.press("right_square_bracket", "right_square_bracket")
        await wait_for(pilot, lambda: app.vehicle_id == fleet.shown_rows[2].vehicle_id)
        await pilot.press("escape")
        await wait_for(pilot, rendered(app, "fleet"))
        # The cursor lands on the vehicle last viewed.
        assert fleet.cursor_row == 2

    drive(make_app(), scenario)


def test_sorting_by_key_and_by_header_click(make_app: AppFactory) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        fleet = table(app, "fleet")
        ids = [r.vehicle_id for r in fleet.shown_rows]
        assert ids == sorted(ids)
        await pilot.press("o")  # vehicle -> status
        assert fleet.sort_column == "status"
        await pilot.press("o")  # -> speed
        speeds = [r.speed_kmh for r in fleet.shown_rows]
        assert speeds == sorted(speeds)
        await pilot.press("O")
        speeds = [r.speed_kmh for r in fleet.shown_rows]
        assert speeds == sorted(speeds, reverse=True)
        fleet.sort_by("battery")
        batteries = [r.battery_pct for r in fleet.shown_rows]
        assert batteries == sorted(batteries)

    drive(make_app(), scenario)


def test_header_click_sorts(make_app: AppFactory) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        fleet = table(app, "fleet")
        # The Battery header starts after Vehicle, Status and Speed columns.
        region = fleet.region
        offset = sum(c.get_render_width(fleet) for c in list(fleet.columns.values())[:3])
        await pilot.click(offset=(region.x + offset + 2, region.y))
        await pilot.pause()
        assert fleet.sort_column == "battery"
        batteries = [r.battery_pct for r in fleet.shown_rows]
        assert batteries == sorted(batteries)

    drive(make_app(), scenario)


def test_slash_filters_the_table_and_escape_clears_it(make_app: AppFactory) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        fleet = table(app, "fleet")
        total = len(fleet.shown_rows)
        await pilot.press("slash")
        await pilot.press(*"phoenix")
        await pilot.pause()
        rows: tuple[VehicleRow, ...] = fleet.shown_rows
        assert 0 < len(rows) < total
        assert all(r.city == "Phoenix" for r in rows)
        count = app.query_one("#fleet-filter-count", Static)
        assert str(count.render()) == f"{len(rows)} of {total} match"
        await pilot.press("escape")
        await pilot.pause()
        assert len(fleet.shown_rows) == total
        assert app.focused is fleet
        # Escape on the table also clears a filter left active with Enter.
        await pilot.press("slash", *"phoenix", "enter")
        await pilot.pause()
        assert app.focused is fleet and len(fleet.shown_rows) < total
        await pilot.press("escape")
        await pilot.pause()
        assert len(fleet.shown_rows) == total

    drive(make_app(), scenario)


def test_enter_opens_a_vehicle_from_a_filtered_table(make_app: AppFactory) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        fleet = table(app, "fleet")
        await pilot.press("slash", *"AV-00", "enter")
        await pilot.pause()
        assert app.focused is fleet
        chosen = fleet.current_row()
        assert chosen is not None
        focused: list[Widget | None] = []

        def record(widget: Widget | None) -> None:
            focused.append(widget)

        app.screen.watch(app.screen, "focused", record, init=False)
        await pilot.press("enter")
        # Hiding the fleet used to hand the focus to its open filter box, which took the
        # app back to the fleet a moment later.
        for _ in range(10):
            await pilot.pause(0.05)
            assert app.view == "vehicle"
        assert app.vehicle_id == chosen.vehicle_id
        assert app.query_one("#fleet-filter") not in focused
        assert app.focused is table(app, "vehicle")

    drive(make_app(), scenario)


def test_home_and_end_go_to_the_first_and_last_row(make_app: AppFactory) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        fleet = table(app, "fleet")
        await pilot.press("end")
        await pilot.pause()
        assert fleet.current_row() == fleet.shown_rows[-1]
        await pilot.press("home")
        await pilot.pause()
        assert fleet.current_row() == fleet.shown_rows[0]
        listed = {binding_id for _keys, _label, binding_id in app.help_rows()}
        assert {"table.first", "table.last"} <= listed

    drive(make_app(), scenario, size=(120, 20))


def test_the_speed_chart_marks_the_vehicles_interventions_and_disengagements(
    make_app: AppFactory,
) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        events = [e for e in FixedSource().dataset.events if e.vehicle_id == "AV-003"]
        assert events
        assert table(app, "fleet").move_to_key("AV-003")
        await pilot.press("enter")
        await wait_for(pilot, rendered(app, "vehicle"))
        data = app.query_one("#chart-speed", LineChart).data
        assert isinstance(data, LineData)
        colors = {"intervention": "red", "disengagement": "orange"}
        shown = table(app, "vehicle").shown_rows
        assert sorted(data.marks) == sorted((data.axis.x(e.time), colors[e.type]) for e in shown)
        assert data.marks and all(data.axis.x(data.axis.start) <= x <= 0 for x, _ in data.marks)

    drive(make_app(), scenario)


@pytest.mark.parametrize("size", [NARROW, (100, 30), SIZE])
def test_the_vehicle_charts_share_their_time_axis_row_and_the_speed_unit_is_in_its_title(
    make_app: AppFactory, size: tuple[int, int]
) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await pilot.press("enter")
        await wait_for(pilot, rendered(app, "vehicle"))

        def lines(chart_id: str) -> list[str]:
            chart = app.query_one(chart_id, LineChart)
            return [strip.text for strip in chart.render_lines(Region(0, 0, *chart.outer_size))]

        def axis_row(chart_id: str) -> int:
            return next(i for i, line in enumerate(lines(chart_id)) if "└" in line)

        assert axis_row("#chart-speed") == axis_row("#chart-battery")
        # The title is drawn (plotext leaves out one wider than the plot).
        assert "speed km/h, │ events" in lines("#chart-speed")[0]
        await pilot.press("u")
        await wait_for(pilot, lambda: "speed mph" in lines("#chart-speed")[0])

    drive(make_app(), scenario, size=size)


def test_table_orders_come_back_and_a_changed_one_is_kept_for_the_next_start(
    make_app: AppFactory,
) -> None:
    remembered = {
        "fleet-table": ("speed", True),
        "alerts-table": ("no-such-column", False),  # from another version: left out
    }

    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        fleet = table(app, "fleet")
        assert (fleet.sort_column, fleet.sort_reverse) == ("speed", True)
        speeds = [v.speed_kmh for v in fleet.shown_rows]
        assert speeds == sorted(speeds, reverse=True)
        assert app.sorts == {"fleet-table": ("speed", True)}
        await pilot.press("3")
        await wait_for(pilot, rendered(app, "alerts"))
        await pilot.press("o")
        alerts = table(app, "alerts")
        chosen = (alerts.sort_column, alerts.sort_reverse)
        await wait_for(pilot, lambda: app.sorts.get("alerts-table") == chosen)
        # Back to a table's own order: nothing to remember for it.
        await pilot.press("1")
        await wait_for(pilot, rendered(app, "fleet"))
        fleet.focus()
        await pilot.press("o")
        assert fleet.sort_column == "battery"
        while fleet.sort_column != "vehicle":
            await pilot.press("o")
        await wait_for(pilot, lambda: "fleet-table" not in app.sorts)

    drive(make_app(sorts=remembered), scenario)


def test_alert_filters_by_state_severity_and_rule(make_app: AppFactory) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await pilot.press("3")
        await wait_for(pilot, rendered(app, "alerts"))
        pane = app.query_one(AlertsPane)
        alerts = table(app, "alerts")
        everything: tuple[AlertRow, ...] = alerts.shown_rows
        assert {a.state for a in everything} > {"firing"}
        pane.set_filters(state="firing")
        await pilot.pause()
        assert alerts.shown_rows and all(a.state == "firing" for a in alerts.shown_rows)
        pane.set_filters(state="firing", severity="warning", rule="speed_violation")
        await pilot.pause()
        assert all(
            (a.state, a.severity, a.rule) == ("firing", "warning", "speed_violation")
            for a in alerts.shown_rows
        )
        pane.set_filters()
        await pilot.pause()
        assert len(alerts.shown_rows) == len(everything)

    drive(make_app(), scenario)


def test_the_state_filter_offers_open_and_needs_attention(make_app: AppFactory) -> None:
    source = FixedSource()
    data = source.dataset
    open_alerts = [i for i, a in enumerate(data.alerts) if a.state != "resolved"]
    acked, muted = open_alerts[:2]
    later = data.now + timedelta(hours=1)
    data.alerts[acked] = replace(data.alerts[acked], acked_by="tester", ack_until=later)
    data.alerts[muted] = replace(data.alerts[muted], silenced_until=later)

    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await pilot.press("3")
        await wait_for(pilot, rendered(app, "alerts"))
        pane = app.query_one(AlertsPane)
        alerts = table(app, "alerts")
        pane.set_filters(state="open")
        await pilot.pause()
        ids = {a.alert_id for a in alerts.shown_rows}
        assert ids == {data.alerts[i].alert_id for i in open_alerts}
        pane.set_filters(state="attention")
        await pilot.pause()
        ids = {a.alert_id for a in alerts.shown_rows}
        assert ids == {data.alerts[i].alert_id for i in open_alerts[2:]}

    drive(make_app(source), scenario)


def test_acknowledge_and_silence_from_the_alerts_view(make_app: AppFactory) -> None:
    source = FixedSource()

    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await pilot.press("3")
        await wait_for(pilot, rendered(app, "alerts"))
        alerts = table(app, "alerts")
        first: AlertRow = alerts.shown_rows[0]
        assert first.state != "resolved"
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, DurationModal))
        await pilot.press("down", "enter")  # the second choice: 4 hours
        await wait_for(pilot, lambda: bool(source.acks))
        assert source.acks == [(first.alert_id, FIXED_NOW + timedelta(hours=4), "tester")]
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, DurationModal))
        await pilot.press("enter")  # the highlighted default: 1 hour
        await wait_for(pilot, lambda: bool(source.silences))
        assert source.silences == [
            (first.vehicle_id, first.rule, FIXED_NOW + timedelta(hours=1), "tester")
        ]
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, DurationModal))
        # ? lists the dialog's keys; closing the list goes back to the dialog.
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        assert isinstance(app.screen, HelpScreen)
        assert ("esc", "Cancel", "modal.cancel") in app.screen.rows
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, DurationModal))
        await pilot.press("escape")
        await pilot.pause()
        assert len(source.silences) == 1
        # The refresh after the action shows the acknowledgement.
        await wait_for(pilot, lambda: "ack" in str(alerts.get_row_at(0)[0]))
        assert "ack by tester" in str(alerts.get_row_at(0)[-1])
        # The fleet's open-alerts tile counts it as seen to (acknowledged and silenced: one).
        await pilot.press("1")
        await wait_for(pilot, rendered(app, "fleet"))
        assert " 1 ack/muted " in tile_text(app, "alerts")

    drive(make_app(source), scenario)


def test_f_reaches_the_alert_filters_from_the_keyboard(make_app: AppFactory) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await pilot.press("3")
        await wait_for(pilot, rendered(app, "alerts"))
        listed = {binding_id for _keys, _label, binding_id in app.help_rows()}
        assert "alert.filters" in listed
        await pilot.press("f")
        await wait_for(pilot, lambda: app.focused is not None)
        assert app.focused is app.query_one("#filter-state", Select)
        # Enter opens the list; down and Enter choose its first state.
        await pilot.press("enter", "down", "enter")
        alerts = table(app, "alerts")
        await wait_for(pilot, lambda: len({a.state for a in alerts.shown_rows}) == 1)
        chosen = app.query_one("#filter-state", Select).value
        assert {a.state for a in alerts.shown_rows} == {chosen}
        await pilot.press("tab")
        assert app.focused is app.query_one("#filter-severity", Select)

    drive(make_app(), scenario)


def test_an_alert_that_leaves_the_list_under_the_cursor_is_announced(
    make_app: AppFactory,
) -> None:
    source = FixedSource()

    async def refreshed(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        count = len(source.requests)
        app.request_refresh()
        await wait_for(pilot, lambda: len(source.requests) > count)
        await pilot.pause()

    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await pilot.press("3")
        await wait_for(pilot, rendered(app, "alerts"))
        app.query_one(AlertsPane).set_filters(state="open")
        alerts = table(app, "alerts")
        await wait_for(pilot, lambda: all(a.state != "resolved" for a in alerts.shown_rows))
        alerts.focus()
        await pilot.press("home")
        first: AlertRow = alerts.shown_rows[0]
        second: AlertRow = alerts.shown_rows[1]
        # Another alert moving above it is no news: the cursor follows the row.
        source.dataset.alerts = [
            replace(a, severity="critical", last_seen=FIXED_NOW) if a is second else a
            for a in source.dataset.alerts
        ]
        await refreshed(app, pilot)
        assert alerts.current_row() == first
        assert "left the list" not in _last_notice(app)
        # It resolves: it leaves the "open" list, and the app says so.
        source.dataset.alerts = [
            replace(a, state="resolved") if a.alert_id == first.alert_id else a
            for a in source.dataset.alerts
        ]
        await refreshed(app, pilot)
        assert first.alert_id not in {a.alert_id for a in alerts.shown_rows}
        expected = f"{fmt.rule(first.rule)} on {first.vehicle_id} is resolved and left the list"
        assert expected in _last_notice(app)

    drive(make_app(source), scenario)


def test_enter_on_an_alert_opens_its_vehicle_at_that_moment(make_app: AppFactory) -> None:
    source = FixedSource()

    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await pilot.press("3")
        await wait_for(pilot, rendered(app, "alerts"))
        alerts = table(app, "alerts")
        alert: AlertRow = min(alerts.shown_rows, key=lambda a: a.last_seen)
        assert alert.last_seen < FIXED_NOW - timedelta(minutes=15)
        assert alerts.move_to_key(str(alert.alert_id))
        await pilot.press("enter")
        await wait_for(pilot, rendered(app, "vehicle"))
        request = source.requests[-1]
        assert request.vehicle_id == alert.vehicle_id
        assert request.vehicle_end is not None
        assert request.vehicle_end - timedelta(minutes=15) == alert.last_seen

    drive(make_app(source), scenario)


def test_pause_stops_redraws_until_resumed(make_app: AppFactory) -> None:
    source = FixedSource()

    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        fleet = table(app, "fleet")
        before = len(fleet.shown_rows)
        await pilot.press("space")
        assert "PAUSED" in status_text(app)
        source.dataset.vehicles = source.dataset.vehicles[:3]
        app.request_refresh()
        fetched = len(source.requests)
        await wait_for(pilot, lambda: len(source.requests) > fetched)
        await pilot.pause()
        assert len(fleet.shown_rows) == before
        await pilot.press("space")
        await wait_for(pilot, lambda: len(fleet.shown_rows) == 3)
        assert "PAUSED" not in status_text(app)

    drive(make_app(source), scenario)


def test_window_key_cycles_and_refetches(make_app: AppFactory) -> None:
    source = FixedSource()

    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        assert source.requests[-1].window == "1h"
        await pilot.press("w")
        await wait_for(pilot, lambda: source.requests[-1].window == "6h")
        await pilot.press("W", "W")
        await wait_for(pilot, lambda: source.requests[-1].window == "15m")
        assert app.window == "15m"

    drive(make_app(source), scenario)


def test_units_switch_to_miles(make_app: AppFactory) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        fleet = table(app, "fleet")
        assert "km/h" in str(fleet.get_row_at(0)[2])
        await pilot.press("u")
        await pilot.pause()
        assert "mph" in str(fleet.get_row_at(0)[2])
        assert "units mi" in str(app.query_one(WindowSelector).render())

    drive(make_app(), scenario)


def test_export_writes_the_visible_table(make_app: AppFactory) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        fleet = table(app, "fleet")
        await pilot.press("slash", *"austin", "enter")
        await pilot.pause()
        await pilot.press("e")
        await wait_for(pilot, lambda: any(app.export_dir.glob("*.csv")))
        await wait_for(pilot, lambda: bool(app._notifications))
        path = next(app.export_dir.glob("*.csv"))
        assert path.name == "fleetwatch-fleet-1h-20261127-143000.csv"
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
        assert rows[0][:4] == ["Vehicle", "Status", "Speed (km/h)", "Battery (%)"]
        assert [r[0] for r in rows[1:]] == [v.vehicle_id for v in fleet.shown_rows]
        assert all(r[-1] == "Austin" for r in rows[1:])
        assert str(path) in next(iter(app._notifications)).message

    drive(make_app(), scenario)


def test_database_down_shows_a_state_and_recovers(make_app: AppFactory) -> None:
    source = FixedSource()

    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        source.down = True
        app.request_refresh()
        await wait_for(pilot, lambda: app.refresh_error is not None)
        assert "Database unavailable" in notice(app, "fleet")
        assert "db down" in status_text(app)
        # The last data stays on screen.
        assert table(app, "fleet").shown_rows
        source.down = False
        app.request_refresh()
        await wait_for(pilot, lambda: app.refresh_error is None)
        assert notice(app, "fleet") == ""
        assert "db up" in status_text(app)

    drive(make_app(source), scenario)


def test_help_lists_every_bound_key(make_app: AppFactory) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        screen = app.screen
        assert isinstance(screen, HelpScreen)
        rows = {description: key for key, description, _id in screen.rows}
        assert rows["Next time window"] == "w"
        assert rows["Pause or resume redraws"] == "space"
        assert rows["Export the table to CSV"] == "e"
        assert rows["Sort by the next column"] == "o"
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, HelpScreen))

    drive(make_app(), scenario)


def test_command_palette_offers_every_view_and_window(make_app: AppFactory) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        titles = {c.title for c in app.get_system_commands(app.screen)}
        for title in ("Show Perception", "Window 24h", "Export table to CSV", "Theme"):
            assert title in titles
        command = next(c for c in app.get_system_commands(app.screen) if c.title == "Window 24h")
        command.callback()
        await wait_for(pilot, lambda: app.window == "24h")

    drive(make_app(), scenario)


def test_bindings_can_be_remapped_by_id_in_the_settings(make_app: AppFactory) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await pilot.press("w")
        await pilot.pause()
        assert app.window == "1h"
        await pilot.press("t")
        await wait_for(pilot, lambda: app.window == "6h")
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        assert ("t", "Next time window", "window.cycle") in app.screen.rows  # type: ignore[attr-defined]

    drive(make_app(settings=quiet_settings(keys={"window.cycle": "t"})), scenario)


def test_key_remaps_name_unknown_ids_and_never_take_every_way_to_quit(
    make_app: AppFactory,
) -> None:
    keys = {"nonexistent.action": "z", "pause": "q", "units": "ctrl+q"}

    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await wait_for(pilot, lambda: len(app._notifications) == 3)
        unknown, refused, quit_taken = (note.message for note in app._notifications)
        assert unknown == (
            'Unknown key binding id "nonexistent.action" in the [ui] keys setting, ignored: '
            "the help screen (?) lists the ids."
        )
        assert refused == (
            'The [ui] keys setting gives ctrl+q to "units", ignored: ctrl+q always quits.'
        )
        assert quit_taken == (
            'The [ui] keys setting gives q to "pause" instead of quit: ctrl+q always quits.'
        )
        await pilot.press("q")  # remapped: pauses
        await wait_for(pilot, lambda: app.paused)
        assert app.is_running
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: not app.is_running)

    drive(make_app(settings=quiet_settings(keys=keys)), scenario)


def test_valid_key_remaps_say_nothing(make_app: AppFactory) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await pilot.pause()
        assert not app._notifications
        assert app.units == "km"
        await pilot.press("z")
        await wait_for(pilot, lambda: app.units == "mi")

    drive(make_app(settings=quiet_settings(keys={"units": "z", "quit": "q,x"})), scenario)


def test_start_up_shows_progress_then_the_fleet(make_app: AppFactory) -> None:
    services = GatedServices(FixedSource())
    app = make_app(services=services)

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            step = app.query_one("#startup-step", Static)
            await wait_for(pilot, lambda: "migrating the schema" in str(step.render()))
            assert app.query_one("#startup").display
            assert not app.query_one("#tabs").display
            services.release.set()
            await wait_for(pilot, rendered(app, "fleet"))
            assert not app.query_one("#startup").display
            assert table(app, "fleet").shown_rows

    asyncio.run(main())


def test_start_up_failure_is_one_sentence_on_screen(make_app: AppFactory) -> None:
    services = GatedServices(FixedSource(), fail="cannot create the database directory /x.")
    services.release.set()
    app = make_app(services=services)

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            step = app.query_one("#startup-step", Static)
            await wait_for(pilot, lambda: "cannot create the database" in str(step.render()))
            assert "Press q to quit" in str(step.render())
            assert "FLEETWATCH_DB" in str(step.render())
            assert "start-up failed" in status_text(app)
            await pilot.pause()
            shown = {b.binding.action for b in app.screen.active_bindings.values()}
            assert "sort" not in " ".join(shown)
            assert not app.check_action("export", ()) and not app.check_action("cycle_window", ())
            await pilot.press("q")

    asyncio.run(main())
    assert app.start_failure == "cannot create the database directory /x."
    assert app.return_code == 1


def test_vehicle_view_without_a_choice_shows_the_first_vehicle(make_app: AppFactory) -> None:
    source = FixedSource()

    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        first = table(app, "fleet").shown_rows[0].vehicle_id
        await pilot.press("2")
        await wait_for(pilot, rendered(app, "vehicle"))
        assert source.requests[-1].vehicle_id == first
        await pilot.press("escape")
        await wait_for(pilot, rendered(app, "fleet"))

    drive(make_app(source), scenario)


def test_clicking_a_window_in_the_selector_chooses_it(make_app: AppFactory) -> None:
    source = FixedSource()

    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        selector = app.query_one(WindowSelector)
        start = next(s for s, _end, name in selector._spans if name == "24h")
        await pilot.click(WindowSelector, offset=(start + 1, 0))
        await wait_for(pilot, lambda: source.requests[-1].window == "24h")
        assert app.window == "24h"

    drive(make_app(source), scenario)


def test_navigation_while_paused_still_shows_the_chosen_view(make_app: AppFactory) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await pilot.press("space", "3")
        await wait_for(pilot, lambda: bool(table(app, "alerts").shown_rows))
        assert app.paused
        assert "PAUSED" in status_text(app)

    drive(make_app(), scenario)


def test_an_unexpected_error_is_logged_and_summed_up_not_printed(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()

    def broken() -> None:
        raise RuntimeError("a bug")

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, rendered(app, "fleet"))
            app.call_later(broken)
            await pilot.pause()

    with pytest.raises(RuntimeError, match="a bug"):
        asyncio.run(main())
    assert app.crash_reason == "RuntimeError: a bug"
    assert app.return_code == 1
    assert "the app stopped on an unexpected error" in caplog.text
    app._print_error_renderables()
    assert not app._exit_renderables


def test_backfill_shows_loading_history_not_silent_vehicles(make_app: AppFactory) -> None:
    status = FixedStatus(
        ServiceStatus(mode="embedded", database="up", broker="in-process", backfill_pct=42.0)
    )

    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        assert "Loading history: 42 %" in notice(app, "fleet")
        assert any(row.status == "silent" for row in table(app, "fleet").shown_rows)
        statuses = [
            Text.assemble(table(app, "fleet").get_cell(row.vehicle_id, "status")).plain
            for row in table(app, "fleet").shown_rows
        ]
        assert "silent" not in statuses  # shown as loading while history loads
        assert "loading" in statuses
        assert tile_text(app, "vehicles").endswith("others loading")
        silent = next(r for r in table(app, "fleet").shown_rows if r.status == "silent")
        app.open_vehicle(silent.vehicle_id)
        await wait_for(pilot, rendered(app, "vehicle"))
        header = str(app.query_one("#vehicle-header", Static).render())
        assert "loading" in header and "silent" not in header
        await pilot.press("3")
        await wait_for(pilot, rendered(app, "alerts"))
        assert "Loading history: 42 %" in notice(app, "alerts")
        status.value = replace(status.value, backfill_pct=None)
        app.request_refresh()
        await wait_for(pilot, lambda: notice(app, "alerts") == "")
        await pilot.press("1")
        await wait_for(pilot, lambda: tile_text(app, "vehicles").endswith(" moving"))

    drive(make_app(status=status), scenario)


def test_a_narrow_terminal_drops_less_useful_columns_first(make_app: AppFactory) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        fleet = table(app, "fleet")
        keys = [str(key.value) for key in fleet.columns]
        assert {"kmpi", "alerts", "battery"} <= set(keys)
        # The last-seen time gives way before the battery: "silent" says what it would.
        assert "city" not in keys and "last_seen" not in keys
        width = sum(c.get_render_width(fleet) for c in fleet.columns.values())
        assert width <= fleet.size.width
        header, _rows = fleet.export_rows()
        assert "City" in header  # the export keeps every column
        await pilot.press("3")
        await wait_for(pilot, rendered(app, "alerts"))
        alerts = table(app, "alerts")
        keys = [str(key.value) for key in alerts.columns]
        # Severity is what an operator triages by: it never gives way.
        assert {"severity", "last", "summary"} <= set(keys)
        width = sum(c.get_render_width(alerts) for c in alerts.columns.values())
        assert width <= alerts.size.width
        await pilot.press("4")
        await wait_for(pilot, rendered(app, "interventions"))
        events = table(app, "interventions")
        keys = [str(key.value) for key in events.columns]
        assert "cause" in keys and "place" not in keys
        width = sum(c.get_render_width(events) for c in events.columns.values())
        assert width <= events.size.width

    drive(make_app(), scenario, size=NARROW)


def test_cut_cells_end_in_an_ellipsis_and_causes_read_as_words(make_app: AppFactory) -> None:
    assert fmt.words("double_parked_vehicle") == "double-parked vehicle"
    assert fmt.words("planner_timeout") == "planner timeout"

    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await pilot.press("4")
        await wait_for(pilot, rendered(app, "interventions"))
        events = table(app, "interventions")
        row = events.shown_rows[0]
        cell = events.get_cell(f"{row.time.isoformat()}/{row.vehicle_id}/{row.type}", "cause")
        assert isinstance(cell, Text) and cell.overflow == "ellipsis" and cell.no_wrap

    drive(make_app(), scenario)


def test_export_on_the_vehicle_view_names_the_vehicle_and_says_when_empty(
    make_app: AppFactory,
) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await pilot.press("u", "enter")
        await wait_for(pilot, rendered(app, "vehicle"))
        events = table(app, "vehicle")
        await pilot.press("e")
        if events.shown_rows:
            await wait_for(pilot, lambda: any(app.export_dir.glob("*.csv")))
            path = next(app.export_dir.glob("*.csv"))
            assert path.name.startswith(f"fleetwatch-vehicle-{app.vehicle_id}-events-")
            with path.open(newline="") as handle:
                header = next(csv.reader(handle))
            assert header[0] == "Time (UTC)" and header[-1] == "Speed (mph)"
            rows = len(events.shown_rows)
            written = f"{rows} row{'' if rows == 1 else 's'} written to {path}"
            await wait_for(pilot, lambda: written in _last_notice(app))
        events.show_rows(())
        await pilot.press("e")
        await wait_for(pilot, lambda: "has no driving events" in _last_notice(app))

    drive(make_app(), scenario)


def test_export_says_there_is_nothing_before_any_data(make_app: AppFactory) -> None:
    source = FixedSource()
    source.down = True

    async def main() -> None:
        app = make_app(source)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.refresh_error is not None)
            await pilot.press("e")
            await wait_for(pilot, lambda: "Nothing to export" in _last_notice(app))
            assert not app.export_dir.exists()

    asyncio.run(main())


def _last_notice(app: FleetwatchApp) -> str:
    notes = list(app._notifications)
    return notes[-1].message if notes else ""


def test_palette_acknowledge_outside_the_alerts_view_says_why(make_app: AppFactory) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        app._palette("acknowledge")
        await wait_for(pilot, lambda: "Alerts (3)" in _last_notice(app))
        keys = {key for key, _label, _id in app.help_rows()}
        assert {"enter", "esc", "[", "]", "l"} <= keys

    drive(make_app(), scenario)


def test_bar_chart_over_a_week_is_labelled_with_dates_in_order(make_app: AppFactory) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await pilot.press("4")
        await wait_for(pilot, rendered(app, "interventions"))
        while app.window != "7d":
            await pilot.press("w")
        await wait_for(pilot, lambda: shown_window(app) == "7d")
        chart = app.query_one("#chart-over-time")
        axis = str(chart.render()).splitlines()[-1].split()
        # Dates (MM-DD) from left to right, as on the vehicle view; no bare clock times.
        assert len(axis) >= 3
        assert all(re.fullmatch(r"\d\d-\d\d", label) for label in axis), axis
        assert axis == sorted(axis)
        assert axis[-1] == FIXED_NOW.strftime("%m-%d")

    drive(make_app(), scenario)


def shown_window(app: FleetwatchApp) -> str | None:
    return app.last_snapshot.request.window if app.last_snapshot is not None else None


def past_banner(app: FleetwatchApp) -> str:
    banner = app.query_one("#vehicle-past", Static)
    return str(banner.render()) if banner.display else ""


@pytest.mark.parametrize("width", [80, 100, 120])
def test_the_past_banner_keeps_to_one_line_with_the_key_back_to_live(
    make_app: AppFactory, width: int
) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await pilot.press("3")
        await wait_for(pilot, rendered(app, "alerts"))
        alerts = table(app, "alerts")
        oldest = min(alerts.shown_rows, key=lambda a: a.last_seen)
        assert alerts.move_to_key(str(oldest.alert_id))
        await pilot.press("enter")
        await wait_for(pilot, lambda: "PAST" in past_banner(app))
        banner = app.query_one("#vehicle-past", Static)
        assert banner.size.height == 1
        assert past_banner(app).endswith("l back to live")
        assert len(past_banner(app)) <= banner.size.width

    drive(make_app(), scenario, size=(width, 30))


def test_vehicle_view_at_a_past_moment_says_so_and_a_key_returns_to_live(
    make_app: AppFactory,
) -> None:
    source = FixedSource()

    async def open_oldest_near_miss(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await pilot.press("5")
        await wait_for(pilot, rendered(app, "perception"))
        near = table(app, "perception")
        oldest = min(near.shown_rows, key=lambda n: n.time)
        assert oldest.time < FIXED_NOW - timedelta(minutes=15)
        assert near.move_to_key(
            f"{oldest.time.isoformat()}/{oldest.vehicle_id}/{oldest.object_class}"
        )
        await pilot.press("enter")
        await wait_for(pilot, lambda: "PAST" in past_banner(app))

    def live_key_shown(app: FleetwatchApp) -> bool:
        return any(a.binding.id == "vehicle.live" for a in app.screen.active_bindings.values())

    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await open_oldest_near_miss(app, pilot)
        assert source.requests[-1].vehicle_at_key is not None
        header = str(app.query_one("#vehicle-header", Static).render())
        assert " now " in header  # the header's state is the current one, and says so
        assert "l back to live" in past_banner(app)
        assert live_key_shown(app)
        # Leaving and coming back with 2 still shows the past moment, and says so.
        await pilot.press("escape")
        await wait_for(pilot, rendered(app, "perception"))
        await pilot.press("2")
        await wait_for(pilot, rendered(app, "vehicle"))
        assert "PAST" in past_banner(app)
        # The key returns to live.
        await pilot.press("l")
        await wait_for(pilot, lambda: past_banner(app) == "")
        assert source.requests[-1].vehicle_end is None
        assert not live_key_shown(app)
        # A wider window that reaches now is live, and stays live when narrowed again.
        await open_oldest_near_miss(app, pilot)
        await pilot.press("w", "w")
        await wait_for(pilot, lambda: shown_window(app) == "24h")
        assert past_banner(app) == ""
        await pilot.press("W", "W")
        await wait_for(pilot, lambda: shown_window(app) == "1h")
        assert past_banner(app) == "" and source.requests[-1].vehicle_end is None
        # Opening the vehicle from the fleet table shows it live.
        await open_oldest_near_miss(app, pilot)
        await pilot.press("1")
        await wait_for(pilot, rendered(app, "fleet"))
        await pilot.press("enter")
        await wait_for(pilot, rendered(app, "vehicle"))
        assert past_banner(app) == "" and source.requests[-1].vehicle_end is None

    drive(make_app(source), scenario)


def test_live_key_can_be_remapped_and_the_banner_names_it(make_app: AppFactory) -> None:
    settings = quiet_settings(keys={"vehicle.live": "n"})

    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await pilot.press("3")
        await wait_for(pilot, rendered(app, "alerts"))
        alerts = table(app, "alerts")
        alert: AlertRow = min(alerts.shown_rows, key=lambda a: a.last_seen)
        assert alerts.move_to_key(str(alert.alert_id))
        await pilot.press("enter")
        await wait_for(pilot, lambda: "n back to live" in past_banner(app))
        await pilot.press("n")
        await wait_for(pilot, lambda: past_banner(app) == "")

    drive(make_app(settings=settings), scenario)


def test_help_lists_each_action_once(make_app: AppFactory) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        for key, view in (("1", "fleet"), ("2", "vehicle")):
            await pilot.press(key)
            await wait_for(pilot, rendered(app, view))
            rows = app.help_rows()
            descriptions = [description for _key, description, _id in rows]
            ids = [binding_id for _key, _description, binding_id in rows if binding_id]
            assert len(descriptions) == len(set(descriptions)), descriptions
            assert len(ids) == len(set(ids)), ids
            quits = [(key, d) for key, d, binding_id in rows if "Quit" in d]
            assert quits == [("q ^q", "Quit fleetwatch")]
            backs = [key for key, d, _id in rows if "Back" in d and "live" not in d]
            assert backs == ["esc"]
            assert [key for key, _d, binding_id in rows if binding_id == "vehicle.live"] == ["l"]

    drive(make_app(), scenario)


@pytest.mark.parametrize("size", [SIZE, NARROW])
def test_every_sorted_column_shows_its_arrow(make_app: AppFactory, size: tuple[int, int]) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        fleet = table(app, "fleet")
        seen: list[str] = []
        while True:
            key = fleet.sort_column
            assert key is not None
            column = fleet.columns[key]  # type: ignore[index]
            label = column.label.plain
            assert label.endswith(("▲", "▼")), label
            # The header is cut to the column's width: the arrow must fit in it.
            assert column.get_render_width(fleet) - 2 * fleet.cell_padding >= len(label), label
            seen.append(key)
            await pilot.press("o")
            await pilot.pause()
            if fleet.sort_column == seen[0]:
                break
        # Even on a narrow table, where some columns give way, every one can be sorted by.
        assert seen == [column.key for column in fleet.spec]

    drive(make_app(), scenario, size=size)


def test_a_narrow_table_keeps_the_column_it_is_sorted_by(make_app: AppFactory) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        fleet = table(app, "fleet")

        def shown() -> list[str]:
            return [str(key.value) for key in fleet.columns]

        assert "city" not in shown() and "last_seen" not in shown()
        for key in ("last_seen", "city"):
            for _column in fleet.spec:
                if fleet.sort_column == key:
                    break
                await pilot.press("o")
            assert fleet.sort_column == key
            await pilot.pause()
            assert key in shown()
            width = sum(c.get_render_width(fleet) for c in fleet.columns.values())
            assert width <= fleet.size.width, shown()
        await pilot.press("o")  # back to the first column: City gives way again
        await wait_for(pilot, lambda: "city" not in shown())
        assert fleet.sort_column == "vehicle"

    drive(make_app(), scenario, size=NARROW)


class BigFleetSource(FixedSource):
    """Figures as wide as a week of a busy fleet gives: five-digit distances, two-digit
    alert counts, a thousand kilometres per intervention."""

    def fetch(self, request: ViewRequest) -> Snapshot:
        snapshot = super().fetch(request)
        if snapshot.fleet is None:
            return snapshot
        kpis = FleetKpis(25, 25, 18, 12_642.9, 12_642.9, 11, 0, 10, 11, 10, 12)
        return replace(snapshot, fleet=replace(snapshot.fleet, kpis=kpis))


def tile_text(app: FleetwatchApp, name: str) -> str:
    """The words of the KPI tile ``name`` as drawn, its lines joined by spaces."""
    tile = app.query_one(f"#kpi-{name}", KpiTile)
    strips = tile.render_lines(Region(0, 0, *tile.outer_size))
    lines = (strip.text.strip(" ▊") for strip in strips)
    return " ".join(line for line in lines if line)


def test_a_tile_note_goes_beside_the_figure_or_else_ends_the_caption() -> None:
    def lines(width: int) -> list[str]:
        class OneTile(App[None]):
            CSS = f"KpiTile {{ width: {width}; height: 5; }}"

            def compose(self) -> ComposeResult:
                yield KpiTile()

        async def draw() -> list[str]:
            app = OneTile()
            async with app.run_test(size=(40, 6)) as pilot:
                tile = app.query_one(KpiTile)
                tile.show("Open alerts", "123", ("4 crit", "5 warn"), note="12 ack/muted")
                await pilot.pause()
                strips = tile.render_lines(Region(0, 0, *tile.outer_size))
                return [strip.text.rstrip() for strip in strips]

        return asyncio.run(draw())

    assert lines(17)[:3] == ["OPEN ALERTS", "123  12 ack/muted", "4 crit 5 warn"]
    assert lines(16)[:4] == ["OPEN ALERTS", "123", "4 crit 5 warn", "12 ack/muted"]


@pytest.mark.parametrize("size", [SIZE, NARROW])
def test_kpi_tiles_show_every_figure_with_its_word(
    make_app: AppFactory, size: tuple[int, int]
) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        # Each phrase whole (a line breaks between phrases, never inside one or past the tile).
        assert tile_text(app, "distance") == "DISTANCE 12,643 km 12,643 km autonomous"
        per = fmt.distance(12_642.9 / 11, "km")
        assert tile_text(app, "interventions").endswith(f"1 per {per}")
        assert tile_text(app, "disengagements").endswith("no disengagements")
        assert tile_text(app, "alerts") == "OPEN ALERTS 31  12 ack/muted 10 crit 11 warn 10 info"

    drive(make_app(BigFleetSource()), scenario, size=size)
