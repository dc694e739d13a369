"""Pilot tests of the event detail: opened with Enter from the vehicle view's events and
from the interventions view, what it shows, its keys (remappable), and a database that
is down while it reads."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Footer, Static
from textual.widgets._footer import FooterKey

from fleetwatch.tui import format as fmt
from fleetwatch.tui.app import FleetwatchApp, binding_ids
from fleetwatch.tui.screens.event import EventDetailScreen
from fleetwatch.tui.screens.modals import HelpScreen
from fleetwatch.tui.snapshots import WINDOWS, DrivingEventRow, EventDetail
from fleetwatch.tui.widgets.table import SnapshotTable
from tests.tui.conftest import (
    NARROW,
    SIZE,
    AppFactory,
    Scenario,
    drive,
    quiet_settings,
    rendered,
)
from tests.tui.conftest import view_table as events_table
from tests.tui.conftest import wait_for as wait_until
from tests.tui.sample import LOCAL_ZONE, FixedSource, event_detail


def text_of(app: FleetwatchApp, widget_id: str) -> str:
    return str(app.screen.query_one(f"#{widget_id}", Static).render())


def footer_keys(app: FleetwatchApp) -> list[tuple[str, str]]:
    """(key, description) of each key in the footer of the screen on top."""
    footer = app.screen.query_one(Footer)
    return [(key.key_display, key.description) for key in footer.query(FooterKey)]


def detail_shown(app: FleetwatchApp) -> bool:
    return isinstance(app.screen, EventDetailScreen) and app.screen.detail is not None


async def open_from_vehicle(app: FleetwatchApp, pilot: Pilot[Any]) -> DrivingEventRow:
    """Fleet, Enter on the third vehicle (it has events), Enter on its newest event."""
    await pilot.press("down", "down", "enter")
    await wait_until(pilot, rendered(app, "vehicle"))
    events = events_table(app, "vehicle")
    await wait_until(pilot, lambda: app.focused is events and bool(events.shown_rows))
    row: DrivingEventRow = events.shown_rows[0]
    await pilot.press("enter")
    await wait_until(pilot, lambda: detail_shown(app))
    return row


async def interventions_in_focus(app: FleetwatchApp, pilot: Pilot[Any]) -> SnapshotTable[Any]:
    """The interventions view shown (``4``), its events table with the keys."""
    await pilot.press("4")
    await wait_until(pilot, rendered(app, "interventions"))
    events = events_table(app, "interventions")
    await wait_until(pilot, lambda: app.focused is events)
    return events


def run(app: FleetwatchApp, scenario: Scenario, size: tuple[int, int] = SIZE) -> None:
    """:func:`drive`, once the fleet table has the focus."""

    async def from_the_fleet_table(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await wait_until(pilot, lambda: app.focused is events_table(app, "fleet"))
        await scenario(app, pilot)

    drive(app, from_the_fleet_table, size)


def test_enter_on_a_vehicle_event_shows_every_field_and_its_surroundings(
    make_app: AppFactory,
) -> None:
    source = FixedSource()

    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        row = await open_from_vehicle(app, pilot)
        assert source.event_requests == [row]
        expected = event_detail(source.dataset, row)
        event = expected.event

        title = text_of(app, "event-title")
        assert fmt.words(row.type).upper() in title and row.vehicle_id in title
        fields = text_of(app, "event-fields")
        local = row.time.astimezone(LOCAL_ZONE)
        assert f"{fmt.stamp(row.time)} UTC" in fields
        assert f"{local:%H:%M:%S} MST local" in fields
        assert f"Vehicle    {row.vehicle_id}  {expected.city}" in fields
        assert f"Type       {row.type}" in fields
        assert f"Cause      {fmt.words(row.cause)}" in fields
        assert f"Speed      {fmt.speed(row.speed_kmh, 'km')}" in fields
        assert f"Position   {row.lat:.5f}, {row.lon:.5f}" in fields
        autopilot = "on" if row.autopilot else "off"
        assert f"Autopilot  {autopilot} before the event" in fields
        assert event.detail and f"Detail     {event.detail}" in fields
        assert f"Event id   {event.event_id}" in fields

        telemetry = text_of(app, "event-telemetry").splitlines()
        assert telemetry[0].split()[0] == "Telemetry"
        offsets = telemetry[0].split()[1:]
        assert offsets == [fmt.signed_seconds(s) for s in range(-30, 31, 5)]
        at_event = min(expected.telemetry, key=lambda p: abs(p.time - row.time))
        speeds = telemetry[1].split()
        assert speeds[:2] == ["speed", "km/h"]
        assert speeds[2 + offsets.index("0s")] == f"{at_event.speed_kmh:.0f}"
        assert telemetry[3].split()[1 + offsets.index("0s")] == "off"
        assert telemetry[5].startswith("per second ")

        perception = text_of(app, "event-perception")
        total = sum(c.count for c in expected.perception)
        assert f"objects    {total}" in perception
        for item in expected.perception:
            assert f"{item.object_class} {item.count}" in perception
        assert expected.closest is not None
        assert f"closest    {expected.closest.distance_m:.1f} m  " in perception
        assert expected.lowest_ttc is not None and expected.lowest_ttc.ttc_s is not None
        assert f"lowest TTC {expected.lowest_ttc.ttc_s:.1f} s  " in perception

        alerts = text_of(app, "event-alerts")
        assert alerts.startswith("Alerts open then")
        for alert in expected.alerts:
            assert fmt.rule(alert.rule) in alerts and alert.summary in alerts
        if not expected.alerts:
            assert "no open alert" in alerts

        # The detail's footer shows its own keys, not those of the view under it.
        assert footer_keys(app) == [
            ("esc", "Close"),
            ("v", "Vehicle at this moment"),
            ("u", "km/mi"),
            ("?", "Help"),
        ]
        # Esc closes the detail and the events table has the keys again.
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, EventDetailScreen))
        assert app.view == "vehicle" and app.focused is events_table(app, "vehicle")

    run(make_app(source), scenario)


def test_speeds_and_distances_follow_the_chosen_units(make_app: AppFactory) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await pilot.press("u")
        row = await open_from_vehicle(app, pilot)
        assert f"Speed      {fmt.speed(row.speed_kmh, 'mi')}" in text_of(app, "event-fields")
        assert text_of(app, "event-telemetry").splitlines()[1].startswith("speed mph")
        # With miles, objects are feet away and close in at mph (TTC stays in seconds).
        screen = app.screen
        assert isinstance(screen, EventDetailScreen) and screen.detail is not None
        closest, lowest = screen.detail.closest, screen.detail.lowest_ttc
        assert closest is not None and lowest is not None and lowest.ttc_s is not None
        perception = text_of(app, "event-perception")
        feet = round(closest.distance_m / 0.3048)
        assert f"closest    {feet} ft  {closest.object_class}" in perception
        mph = round(lowest.closing_speed_mps * 3600 / 1609.344)
        assert f"closing at {mph} mph" in perception
        assert f"lowest TTC {lowest.ttc_s:.1f} s  " in perception
        assert " m/s" not in perception and " m " not in perception
        # u switches back to kilometres here too, and the views under it follow.
        await pilot.press("u")
        await pilot.pause()
        assert app.units == "km"
        assert f"Speed      {fmt.speed(row.speed_kmh, 'km')}" in text_of(app, "event-fields")
        assert text_of(app, "event-telemetry").splitlines()[1].startswith("speed km/h")
        perception = text_of(app, "event-perception")
        assert " m/s" in perception and " ft" not in perception and " mph" not in perception
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, EventDetailScreen))
        assert "km/h" in str(app.query_one("#vehicle-header", Static).render())

    run(make_app(), scenario)


def test_enter_on_an_intervention_opens_its_detail_and_v_the_vehicle_then(
    make_app: AppFactory,
) -> None:
    source = FixedSource()

    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        events = await interventions_in_focus(app, pilot)
        # An event the vehicle view at its moment shows below a later one of the same
        # vehicle (the newest comes first), far enough back to be a past moment.
        rows = events.shown_rows
        after = WINDOWS[app.window] / 4
        row = min(
            (
                e
                for e in rows
                if e.time + after < source.dataset.now
                and any(
                    o.vehicle_id == e.vehicle_id and e.time < o.time <= e.time + after for o in rows
                )
            ),
            key=lambda e: e.time,
        )
        assert events.move_to_key(f"{row.time.isoformat()}/{row.vehicle_id}/{row.type}")
        await pilot.press("enter")
        await wait_until(pilot, lambda: detail_shown(app))
        assert source.event_requests == [row]
        assert row.vehicle_id in text_of(app, "event-title")
        await pilot.press("v")
        await wait_until(pilot, rendered(app, "vehicle"))
        assert not isinstance(app.screen, EventDetailScreen)
        assert app.vehicle_id == row.vehicle_id
        assert app.vehicle_at == row.time
        assert source.requests[-1].vehicle_at_key is not None
        banner = app.query_one("#vehicle-past", Static)
        assert banner.display and "PAST" in str(banner.render())
        # The cursor is on the event in the vehicle's events, and stays there.
        vehicle_events = events_table(app, "vehicle")
        await wait_until(pilot, lambda: vehicle_events.current_row() == row)
        assert vehicle_events.cursor_row > 0
        assert app.focused is vehicle_events
        first = vehicle_events.cursor_row
        app.request_refresh()
        await wait_until(pilot, lambda: len(source.requests) > 1 + len(source.event_requests))
        await pilot.pause()
        assert vehicle_events.current_row() == row
        assert first == vehicle_events.cursor_row

    run(make_app(source), scenario)


def test_the_detail_keys_have_ids_and_can_be_remapped(make_app: AppFactory) -> None:
    assert {"event.vehicle", "event.close"} <= binding_ids()
    settings = quiet_settings(keys={"event.vehicle": "g"})

    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        row = await open_from_vehicle(app, pilot)
        assert ("g", "Vehicle at this moment") in footer_keys(app)
        # ? lists the detail's keys, as remapped; Esc returns to the detail.
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        assert isinstance(app.screen, HelpScreen)
        listed = [(keys, binding_id) for keys, _label, binding_id in app.screen.rows]
        # The detail's keys first, as remapped; none of the views' keys (they do not work).
        assert set(listed[:4]) == {
            ("esc", "event.close"),
            ("g", "event.vehicle"),
            ("u", "units"),
            ("?", "help"),
        }
        assert not {"back", "vehicle.live", "window.cycle"} & {i for _k, i in listed}
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, EventDetailScreen))
        await pilot.press("g")
        await wait_until(
            pilot, lambda: app.last_snapshot is not None and app.vehicle_at == row.time
        )

    run(make_app(settings=settings), scenario)


def test_a_database_down_while_reading_says_so_and_keeps_the_event(
    make_app: AppFactory,
) -> None:
    source = FixedSource()

    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        events = await interventions_in_focus(app, pilot)
        row = events.shown_rows[0]
        source.down = True
        await pilot.press("enter")
        await wait_until(pilot, lambda: "Could not read" in text_of(app, "event-telemetry"))
        assert "database is unavailable" in text_of(app, "event-telemetry")
        assert f"Position   {row.lat:.5f}, {row.lon:.5f}" in text_of(app, "event-fields")

    run(make_app(source), scenario)


def test_at_80x24_every_part_is_on_screen(make_app: AppFactory) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await open_from_vehicle(app, pilot)
        await pilot.pause()
        screen = app.screen
        for widget_id in ("title", "fields", "telemetry", "perception", "alerts"):
            region = screen.query_one(f"#event-{widget_id}").region
            assert region.height > 0 and region.bottom <= NARROW[1], widget_id
        # The telemetry table is every 10 s and nothing is cut on the right.
        telemetry = text_of(app, "event-telemetry").splitlines()
        assert telemetry[0].split()[1:] == ["-30s", "-20s", "-10s", "0s", "+10s", "+20s", "+30s"]
        body = screen.query_one("#event-body")
        assert body.region.right <= NARROW[0]
        assert body.max_scroll_y == 0  # all of it fits: nothing to scroll to
        assert body.region.bottom <= screen.query_one(Footer).region.y
        assert all(len(line) <= body.content_size.width for line in telemetry)

    run(make_app(), scenario, size=NARROW)


class GoneSource(FixedSource):
    """The event was dropped by retention between the listing and its detail."""

    def event_detail(self, event: DrivingEventRow) -> EventDetail:
        detail = super().event_detail(event)
        return replace(
            detail,
            event=event,
            found=False,
            telemetry=(),
            perception=(),
            closest=None,
            lowest_ttc=None,
            alerts=(),
        )


def test_an_event_no_longer_stored_says_so_and_shows_the_listed_row(
    make_app: AppFactory,
) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        row = await open_from_vehicle(app, pilot)
        telemetry = text_of(app, "event-telemetry")
        assert telemetry.startswith("This event is no longer stored"), telemetry
        assert "none from the vehicle within 30 s" in telemetry
        assert row.vehicle_id in text_of(app, "event-title")
        assert fmt.words(row.cause) in text_of(app, "event-fields")

    run(make_app(GoneSource()), scenario)
