"""What an 80x24 terminal (SSH, a laptop split) shows: the footer keeps its help key,
columns and chart labels stay readable. Assertions are on the screen's text."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from textual.app import App, ComposeResult
from textual.pilot import Pilot

from fleetwatch.pipeline.rules import collision_summary
from fleetwatch.tui import format as fmt
from fleetwatch.tui.app import FleetwatchApp
from fleetwatch.tui.snapshots import DrivingEventRow, Snapshot, ViewRequest
from fleetwatch.tui.widgets.barlist import bar
from fleetwatch.tui.widgets.bars import StatusBar
from fleetwatch.tui.widgets.footer import KeyFooter, fit
from fleetwatch.tui.widgets.table import FIT_NARROW_AFTER, Column, SnapshotTable
from tests.tui.conftest import (
    NARROW,
    SIZE,
    AppFactory,
    drive,
    quiet_settings,
    rendered,
    screen_lines,
    wait_for,
)
from tests.tui.event_steps import SHOWN_VEHICLE, open_event
from tests.tui.sample import FIXED_NOW, FixedSource


def footer_line(app: FleetwatchApp) -> str:
    return screen_lines(app)[-1]


async def footer_settled(app: FleetwatchApp, pilot: Pilot[Any]) -> str:
    """The footer line once it has been redrawn for the current bindings."""
    await pilot.pause(0.1)
    await pilot.pause()
    return footer_line(app)


VIEW_KEYS = {
    "1": ("fleet", ["o Sort", "/ Filter"]),
    "2": ("vehicle", ["[ Prev", "] Next"]),
    "3": ("alerts", ["a Ack", "s Silence", "/ Filter"]),
    "4": ("interventions", ["/ Filter"]),
    "5": ("perception", ["/ Filter"]),
}


def test_every_view_keeps_help_and_quit_on_an_80_column_footer(make_app: AppFactory) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        for key, (view, own_keys) in VIEW_KEYS.items():
            await pilot.press(key)
            await wait_for(pilot, rendered(app, view))
            line = await footer_settled(app, pilot)
            assert len(line) <= 80
            for shown in ["? Help", "q Quit", *own_keys]:
                assert shown in line, (view, line)
            assert line.rstrip().endswith("^p palette"), line
        # A past moment adds the key back to live: help still stays.
        await pilot.press("3")
        await wait_for(pilot, rendered(app, "alerts"))
        alerts = app.query_one("#alerts-table", SnapshotTable)
        oldest = min(alerts.shown_rows, key=lambda a: a.last_seen)
        assert alerts.move_to_key(str(oldest.alert_id))
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.vehicle_at is not None and app.view == "vehicle")
        line = await footer_settled(app, pilot)
        assert "l Live" in line and "? Help" in line, line

    drive(make_app(), scenario, size=NARROW)


def test_a_wide_footer_shows_every_key_spaced_out(make_app: AppFactory) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await pilot.press("3")
        await wait_for(pilot, rendered(app, "alerts"))
        line = await footer_settled(app, pilot)
        expected = "o Sort  w Window  space Pause  / Filter  a Ack  s Silence  e Export  "
        assert expected + "u km/mi  ? Help  q Quit" in line

    drive(make_app(), scenario, size=SIZE)


def test_a_remapped_help_key_stays_on_the_footer_as_remapped(make_app: AppFactory) -> None:
    settings = quiet_settings(keys={"help": "f1"})

    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await pilot.press("3")
        await wait_for(pilot, rendered(app, "alerts"))
        line = await footer_settled(app, pilot)
        assert "f1 Help" in line, line
        footer = app.query_one(KeyFooter)
        assert "help" in footer.shown_ids

    drive(make_app(settings=settings), scenario, size=NARROW)


def test_the_event_detail_footer_keeps_its_keys_at_80_columns(make_app: AppFactory) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await open_event(app, pilot)
        line = await footer_settled(app, pilot)
        for shown in ("Close", "v Vehicle at this moment", "? Help"):
            assert shown in line, line

    drive(make_app(), scenario, size=NARROW)


@pytest.mark.parametrize("room", [25, 40, 70])
def test_footer_keys_give_way_in_order_and_help_stays(room: int) -> None:
    keys = [
        ("o", "Sort", "table.sort"),
        ("w", "Window", "window.cycle"),
        ("a", "Ack", "alert.acknowledge"),
        ("e", "Export", "export"),
        ("?", "Help", "help"),
        ("q", "Quit", "quit"),
    ]
    compact, shown = fit(keys, room, ("export", "quit", "window.cycle", "table.sort"), ("help",))
    ids = [keys[i][2] for i in shown]
    if room >= 70:
        assert not compact and len(ids) == len(keys)
    else:
        assert compact and "help" in ids
        # Whatever left, left in the given order: a key stays only if all after it stay.
        order = ["export", "quit", "window.cycle", "table.sort", "alert.acknowledge"]
        gone = [i for i in order if i not in ids]
        assert gone == order[: len(gone)]


def table_lines(app: FleetwatchApp, table: SnapshotTable[Any]) -> list[str]:
    """The table's lines on screen, header first."""
    region = table.region
    return [line[region.x : region.right] for line in screen_lines(app)[region.y : region.bottom]]


def test_alerts_at_80_columns_show_whole_words_and_the_whole_summary(
    make_app: AppFactory,
) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await pilot.press("3")
        await wait_for(pilot, rendered(app, "alerts"))
        alerts = app.query_one("#alerts-table", SnapshotTable)
        lines = table_lines(app, alerts)
        header = lines[0].split()
        assert header[:5] == ["State", "Sev", "Rule", "Vehicle", "Last"], header
        assert header[-1] == "Summary" and "Severity" not in header, header
        for row, line in zip(alerts.shown_rows, lines[1:], strict=False):
            # Rules read as a word; the summary is whole, nothing ends in "…".
            assert (
                fmt.rule(row.rule, short=True) in line
                and fmt.alert_summary(row.summary, "km") in line
            ), line
            assert fmt.SHORT_SEVERITY[row.severity] in line
            assert "…" not in line
        assert "collision " in "\n".join(lines)
        # The export keeps the severity and the rule id and says times are UTC.
        header, rows = alerts.export_rows()
        assert "First seen (UTC)" in header
        assert {r[header.index("Severity")] for r in rows} <= {"critical", "warning", "info"}
        assert {r[header.index("Rule")] for r in rows} <= {
            "speed_violation",
            "low_battery",
            "collision_risk",
            "vehicle_silent",
        }

    drive(make_app(), scenario, size=NARROW)


def test_alerts_at_80_columns_keep_the_sorted_column_and_room_for_the_summary(
    make_app: AppFactory,
) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await pilot.press("3")
        await wait_for(pilot, rendered(app, "alerts"))
        alerts = app.query_one("#alerts-table", SnapshotTable)
        for column in alerts.spec:
            alerts.sort_by(column.key, reverse=False)
            await pilot.pause()
            shown = [str(key.value) for key in alerts.columns]
            assert column.key in shown and "summary" in shown
            width = sum(c.get_render_width(alerts) for c in alerts.columns.values())
            assert width <= alerts.size.width, (column.key, shown)
            summary = alerts.columns["summary"]  # type: ignore[index]
            assert summary.get_render_width(alerts) >= 22, column.key
            header = table_lines(app, alerts)[0]
            assert f"{column.label} ▲" in header, header
        # Every alert started today: the first-seen time goes without its date.
        alerts.sort_by("first", reverse=False)
        await pilot.pause()
        first = alerts.shown_rows[0]
        cell = alerts.get_cell(str(first.alert_id), "first")
        assert re.fullmatch(r"\d\d:\d\d:\d\d", str(cell)), cell

    drive(make_app(), scenario, size=NARROW)


def test_an_acknowledged_alert_says_so_in_a_state_column_that_makes_room(
    make_app: AppFactory,
) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await pilot.press("3")
        await wait_for(pilot, rendered(app, "alerts"))
        alerts = app.query_one("#alerts-table", SnapshotTable)
        state = alerts.columns["state"]  # type: ignore[index]
        assert state.get_render_width(alerts) == len("resolved") + 2
        await pilot.press("a")
        await pilot.pause()
        await pilot.press("enter")
        await wait_for(pilot, lambda: "firing ack" in table_lines(app, alerts)[1])
        assert alerts.columns["state"].get_render_width(alerts) == len("firing ack") + 2  # type: ignore[index]

    drive(make_app(), scenario, size=NARROW)


def test_times_show_their_date_only_when_a_row_is_not_from_today() -> None:
    now = FIXED_NOW
    today = [now - timedelta(hours=3), now]
    assert fmt.all_today(today, now)
    assert not fmt.all_today([*today, now - timedelta(hours=15)], now)
    assert fmt.when(now, dated=False) == "14:30:00"
    assert fmt.when(now, dated=True) == "11-27 14:30:00"


def widget_lines(app: FleetwatchApp, widget_id: str) -> list[str]:
    region = app.query_one(widget_id).region
    return [line[region.x : region.right] for line in screen_lines(app)[region.y : region.bottom]]


@pytest.mark.parametrize("size", [NARROW, SIZE, (160, 50)])
def test_objects_by_class_names_every_class_whole(
    make_app: AppFactory, size: tuple[int, int]
) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await pilot.press("5")
        await wait_for(pilot, rendered(app, "perception"))
        await pilot.pause()
        snapshot = app.last_snapshot
        assert snapshot is not None and snapshot.perception is not None
        lines = widget_lines(app, "#chart-classes")
        assert lines[0].strip() == "objects by class"
        counts = {c.object_class: c.count for c in snapshot.perception.by_class}
        rows = [line.split() for line in lines[1:] if line.strip()]
        # One line per class, most seen first: its whole name, its bar and its count.
        assert [row[0] for row in rows] == sorted(counts, key=lambda c: -counts[c])
        for row in rows:
            assert row[-1] == fmt.count(counts[row[0]])
            assert set(row[1]) <= set("█▉▊▋▌▍▎▏")

    drive(make_app(), scenario, size=size)


@pytest.mark.parametrize("size", [NARROW, (80, 30), SIZE, (100, 45)])
def test_each_ranking_bar_is_on_the_line_of_its_vehicle(
    make_app: AppFactory, size: tuple[int, int]
) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await pilot.press("4")
        await wait_for(pilot, rendered(app, "interventions"))
        await pilot.pause()
        snapshot = app.last_snapshot
        assert snapshot is not None and snapshot.interventions is not None
        lines = widget_lines(app, "#chart-ranking")
        assert lines[0].strip() == "lowest km per intervention"
        ranked = sorted(
            (r for r in snapshot.interventions.ranking if r.km_per_intervention is not None),
            key=lambda r: (r.km_per_intervention or 0.0, r.vehicle_id),
        )
        bars = [line.split() for line in lines[1:] if "█" in line or "▏" in line]
        more = [line.strip() for line in lines[1:] if line.strip().startswith("…")]
        # Every line with a bar names its vehicle and its figure; none is without a bar.
        assert bars and len(bars) <= len(lines) - 1
        for row, vehicle in zip(bars, ranked, strict=False):
            assert row[0] == vehicle.vehicle_id
            assert " ".join(row[-2:]) == fmt.distance(vehicle.km_per_intervention or 0.0, "km")
        shown = min(len(ranked), 10)
        if len(bars) < shown:
            assert more == [f"… {shown - len(bars)} more"]
        else:
            assert len(bars) == shown and not more

    drive(make_app(), scenario, size=size)


def test_a_bar_is_measured_in_eighths_and_never_vanishes() -> None:
    assert bar(1.0, 4) == "████"
    assert bar(0.5, 3) == "█▌"
    assert bar(0.001, 10) == "▏"
    assert bar(0.0, 10) == ""


LONG_CAUSES = ("traffic_light_misread", "unexpected_pedestrian", "double_parked_vehicle")


class LongCauseSource(FixedSource):
    """The simulator's longest causes (21 characters in words); ``days_back`` moves the
    oldest event of each list that many days back."""

    def __init__(self, days_back: int = 0) -> None:
        super().__init__()
        self.days_back = days_back

    def _events(self, events: tuple[DrivingEventRow, ...]) -> tuple[DrivingEventRow, ...]:
        changed = [
            replace(e, cause=LONG_CAUSES[i % len(LONG_CAUSES)]) for i, e in enumerate(events)
        ]
        if changed and self.days_back:
            oldest = min(range(len(changed)), key=lambda i: changed[i].time)
            moved = changed[oldest].time - timedelta(days=self.days_back)
            changed[oldest] = replace(changed[oldest], time=moved)
        return tuple(changed)

    def fetch(self, request: ViewRequest) -> Snapshot:
        snapshot = super().fetch(request)
        if snapshot.interventions is not None:
            events = self._events(snapshot.interventions.events)
            snapshot = replace(
                snapshot, interventions=replace(snapshot.interventions, events=events)
            )
        if snapshot.vehicle is not None:
            events = self._events(snapshot.vehicle.events)
            snapshot = replace(snapshot, vehicle=replace(snapshot.vehicle, events=events))
        return snapshot


def test_event_causes_are_whole_at_80_columns_and_times_drop_todays_date(
    make_app: AppFactory,
) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await pilot.press("4")
        await wait_for(pilot, rendered(app, "interventions"))
        events = app.query_one("#interventions-table", SnapshotTable)
        lines = table_lines(app, events)
        assert lines[0].split()[:4] == ["Time", "▼", "Vehicle", "Event"]
        for row, line in zip(events.shown_rows, lines[1:], strict=False):
            assert fmt.words(row.cause) in line and "…" not in line, line
            assert line.split()[0] == fmt.clock(row.time)
        # The vehicle's own events, beside its alerts.
        await pilot.press("1")
        await wait_for(pilot, rendered(app, "fleet"))
        assert app.query_one("#fleet-table", SnapshotTable).move_to_key(SHOWN_VEHICLE)
        await pilot.press("enter")
        await wait_for(pilot, rendered(app, "vehicle"))
        own = app.query_one("#vehicle-events", SnapshotTable)
        await wait_for(pilot, lambda: bool(own.shown_rows))
        lines = table_lines(app, own)
        for row, line in zip(own.shown_rows, lines[1:], strict=False):
            assert line.split()[0] == fmt.clock(row.time)
            assert fmt.words(row.cause) in line and "…" not in line, line

    drive(make_app(LongCauseSource()), scenario, size=NARROW)


def test_an_event_from_another_day_brings_the_dates_back(make_app: AppFactory) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await pilot.press("4")
        await wait_for(pilot, rendered(app, "interventions"))
        events = app.query_one("#interventions-table", SnapshotTable)
        lines = table_lines(app, events)
        for row, line in zip(events.shown_rows, lines[1:], strict=False):
            assert " ".join(line.split()[:2]) == fmt.stamp(row.time), line

    drive(make_app(LongCauseSource(days_back=1)), scenario, size=NARROW)


def test_near_misses_from_today_show_clock_times(make_app: AppFactory) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await pilot.press("5")
        await wait_for(pilot, rendered(app, "perception"))
        near = app.query_one("#near-miss-table", SnapshotTable)
        lines = table_lines(app, near)
        for row, line in zip(near.shown_rows, lines[1:], strict=False):
            assert line.split()[:2] == [fmt.clock(row.time), row.vehicle_id], line
        header, _rows = near.export_rows()
        assert header[0] == "Time (UTC)"

    drive(make_app(), scenario, size=NARROW)


def test_a_fit_column_widens_at_once_and_narrows_only_after_several_refreshes() -> None:
    columns = [
        Column[str]("name", "Name", lambda s: s, lambda s: s, width=4, fit=True),
        Column[str]("rest", "Rest", lambda s: "", lambda s: s, width=4, flex=True),
    ]

    class One(App[None]):
        def compose(self) -> ComposeResult:
            yield SnapshotTable(columns, row_key=lambda s: s, sort_column="name")

    def width(table: SnapshotTable[str]) -> int:
        return table.columns["name"].get_render_width(table)  # type: ignore[index]

    async def scenario() -> None:
        app = One()
        async with app.run_test(size=(60, 10)) as pilot:
            table = app.query_one(SnapshotTable)
            table.show_rows(["short", "a much longer name"])
            await pilot.pause()
            wide = width(table)
            assert wide == len("a much longer name") + 2
            for _ in range(FIT_NARROW_AFTER - 1):
                table.show_rows(["short", "other"])
                await pilot.pause()
                assert width(table) == wide
            table.show_rows(["short", "a much longer name!"])  # wider: at once
            await pilot.pause()
            assert width(table) == wide + 1
            for _ in range(FIT_NARROW_AFTER):
                table.show_rows(["short", "other"])
                await pilot.pause()
            assert width(table) == len("Name ▲") + 2  # the header is now the widest

    asyncio.run(scenario())


def test_the_status_bar_always_shows_the_time_of_the_data(make_app: AppFactory) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        bar = app.query_one(StatusBar)
        await wait_for(pilot, lambda: app.last_snapshot is not None)
        await pilot.pause()
        clock = fmt.clock(app.last_snapshot.taken_at)  # type: ignore[union-attr]
        wide = app.size.width > 80
        line = screen_lines(app)[bar.region.y].rstrip()
        assert line.endswith(f"refreshed {clock}" if wide else f"  {clock}"), line
        assert ("ingest 1.3k/s" in line) is wide and "1.3k/s" in line, line
        assert "broker in-process" in line and "lag 0" in line and "rejects 0" in line, line
        # Paused, the line is longer still: the time stays, a zero lag and rejects give way.
        await pilot.press("space")
        await pilot.pause()
        line = screen_lines(app)[bar.region.y].rstrip()
        assert "PAUSED" in line and line.endswith(clock), line
        assert ("rejects 0" in line) is wide and ("lag 0" in line) is wide, line

    for size in (NARROW, SIZE):
        drive(make_app(), scenario, size=size)


class LongSummarySource(FixedSource):
    """Every collision alert with the longest summary the rule writes (105 ft in miles),
    one pending, acknowledged and silenced: the longest state."""

    def __init__(self) -> None:
        super().__init__()
        data = self.dataset
        alerts = []
        for alert in data.alerts:
            if alert.rule == "collision_risk":
                summary = collision_summary("motorcycle", 1.9, 32.0)
                alert = replace(alert, state="firing", summary=summary)
            alerts.append(alert)
        first = next(i for i, a in enumerate(alerts) if a.rule == "collision_risk")
        later = data.now + timedelta(hours=1)
        alerts[first] = replace(
            alerts[first],
            state="pending",
            acked_by="tester",
            ack_until=later,
            silenced_until=later,
        )
        self.dataset = replace(data, alerts=alerts)


@pytest.mark.parametrize("size", [NARROW, (100, 30)])
@pytest.mark.parametrize("units", ["km", "mi"])
def test_the_longest_collision_summary_is_whole_even_acknowledged_and_silenced(
    make_app: AppFactory, units: str, size: tuple[int, int]
) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        if units == "mi":
            await pilot.press("u")
        await pilot.press("3")
        await wait_for(pilot, rendered(app, "alerts"))
        alerts = app.query_one("#alerts-table", SnapshotTable)
        lines = table_lines(app, alerts)
        collisions = [
            (row, line)
            for row, line in zip(alerts.shown_rows, lines[1:], strict=False)
            if row.rule == "collision_risk"
        ]
        assert collisions and any(row.acked_by for row, _ in collisions)
        for row, line in collisions:
            assert fmt.alert_summary(row.summary, app.units) in line, line
            assert ("pending ack muted" in line) is bool(row.acked_by), line

    drive(make_app(LongSummarySource()), scenario, size=size)


def test_a_wide_alerts_table_names_severities_and_rules_in_full(make_app: AppFactory) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await pilot.press("3")
        await wait_for(pilot, rendered(app, "alerts"))
        alerts = app.query_one("#alerts-table", SnapshotTable)
        lines = table_lines(app, alerts)
        assert lines[0].split()[:3] == ["State", "Severity", "Rule"]
        for row, line in zip(alerts.shown_rows, lines[1:], strict=False):
            assert f"{row.severity} " in line and fmt.rule(row.rule) in line, line
        # / finds an alert by its severity and rule in full at any width.
        await pilot.press("slash", *"critical collision")
        await pilot.pause()
        assert alerts.shown_rows
        assert all(
            a.severity == "critical" and a.rule == "collision_risk" for a in alerts.shown_rows
        )

    drive(make_app(), scenario, size=SIZE)


class LongHeaderSource(FixedSource):
    """The first vehicle with the longest header values: fast, full, far travelled."""

    def __init__(self) -> None:
        super().__init__()
        data = self.dataset
        first = replace(
            data.vehicles[0],
            status="moving",
            speed_kmh=133.0,
            speed_limit_kmh=112.7,
            battery_pct=100.0,
            range_km=412.0,
            autopilot=False,
            city="San Francisco",
            lat=37.7212,
            lon=-122.4512,
            odometer_km=148_374.0,
            last_seen=data.now - timedelta(minutes=59),
        )
        self.dataset = replace(data, vehicles=[first, *data.vehicles[1:]])


@pytest.mark.parametrize("size", [NARROW, SIZE])
def test_the_vehicle_header_keeps_to_two_lines(make_app: AppFactory, size: tuple[int, int]) -> None:
    async def scenario(app: FleetwatchApp, pilot: Pilot[Any]) -> None:
        await pilot.press("enter")
        await wait_for(pilot, rendered(app, "vehicle"))
        lines = widget_lines(app, "#vehicle-header")
        assert len(lines) == 2, lines
        assert "133 km/h (limit 113 km/h)" in lines[0] and "battery 100 %" in lines[0]
        assert lines[1].rstrip().endswith("odometer 148,374 km  last seen 59m"), lines
        wide = size[0] > 100
        if wide:
            assert "(412 km range)" in lines[0], lines
        assert ("37.7212, -122.4512" in lines[1]) is wide, lines

    drive(make_app(LongHeaderSource()), scenario, size=size)
