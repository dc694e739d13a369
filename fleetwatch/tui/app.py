"""The fleetwatch terminal app: composition root shared by the CLI, the tests and the
screenshot script (:func:`create_app`).

Threading model: thread workers do every piece of I/O (starting services, refresh
queries, acknowledgements, CSV export) and post typed messages back; the UI thread
only renders immutable snapshots. Refreshes follow a poll loop: a refresh worker
runs, its result is rendered, and only then is the next refresh scheduled, so
refreshes never overlap. One ``Worker.StateChanged`` handler reports unexpected errors.
"""

from __future__ import annotations

import csv
import getpass
import logging
import re
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any, ClassVar, cast

import platformdirs
from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import ModalScreen, Screen
from textual.timer import Timer
from textual.widgets import Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from fleetwatch.config import APP_NAME, Settings
from fleetwatch.tui import format as fmt
from fleetwatch.tui.messages import (
    ActionDone,
    ActionFailed,
    EventDetailFailed,
    EventDetailFetched,
    OpenEvent,
    OpenVehicle,
    RefreshFailed,
    RenderContext,
    ServicesFailed,
    ServicesReady,
    SnapshotFetched,
    StartupProgress,
)
from fleetwatch.tui.prefs import Sorts
from fleetwatch.tui.screens.alerts import AlertsPane
from fleetwatch.tui.screens.common import FilterBox, View
from fleetwatch.tui.screens.event import EventChoice, EventDetailScreen
from fleetwatch.tui.screens.fleet import FleetPane
from fleetwatch.tui.screens.interventions import InterventionsPane
from fleetwatch.tui.screens.modals import (
    ACK_CHOICES,
    SILENCE_CHOICES,
    DurationModal,
    HelpScreen,
    StartupPanel,
)
from fleetwatch.tui.screens.perception import PerceptionPane
from fleetwatch.tui.screens.vehicle import VehicleDetail, event_key
from fleetwatch.tui.snapshots import (
    VIEW_NAMES,
    WINDOW_NAMES,
    WINDOWS,
    DrivingEventRow,
    ServiceStatus,
    Snapshot,
    ViewName,
    ViewRequest,
    WindowName,
)
from fleetwatch.tui.source import (
    Clock,
    DataSource,
    Services,
    SourceUnavailable,
    StatusSource,
)
from fleetwatch.tui.widgets.bars import StatusBar, WindowSelector
from fleetwatch.tui.widgets.footer import KeyFooter
from fleetwatch.tui.widgets.table import SnapshotTable

log = logging.getLogger(__name__)

MAX_RETRY_S = 10.0
START_FAILURE_HINT = (
    "Check --db / FLEETWATCH_DB (and --kafka / FLEETWATCH_KAFKA) and that the servers are up."
)

VIEW_TITLES: dict[ViewName, str] = {
    "fleet": "Fleet",
    "vehicle": "Vehicle",
    "alerts": "Alerts",
    "interventions": "Interventions",
    "perception": "Perception",
}

# Actions that only make sense on one view; hidden from the footer elsewhere.
VIEW_ACTIONS: dict[str, tuple[ViewName, ...]] = {
    "acknowledge": ("alerts",),
    "silence": ("alerts",),
    "alert_filters": ("alerts",),
    "step_vehicle": ("vehicle",),
    "live": ("vehicle",),
    "filter": ("fleet", "alerts", "interventions", "perception"),
}

FOOTER_GIVES_WAY = ("units", "export", "quit", "pause", "window.cycle", "table.sort", "filter")
"""Keys (binding ids) that leave a footer too narrow for every key, first to last; the
view's own keys (acknowledge, previous vehicle…) stay longer, help always stays. Every key
still works and is in the help screen."""


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def default_export_dir() -> Path:
    """Where ``e`` writes CSV files: ``fleetwatch`` under the user's documents folder."""
    return Path(platformdirs.user_documents_dir()) / APP_NAME


ALWAYS_QUITS = "ctrl+q"
"""Textual's own quit key: no remap may take it, so the app can always be left."""


def binding_ids() -> set[str]:
    """Every binding id the ``[ui] keys`` setting may remap (the help screen lists them)."""
    owners: tuple[type[Any], ...] = (
        FleetwatchApp,
        SnapshotTable,
        HelpScreen,
        DurationModal,
        EventDetailScreen,
    )
    return {
        binding.id
        for owner in owners
        for cls in owner.__mro__
        for binding in getattr(cls, "BINDINGS", ())
        if isinstance(binding, Binding) and binding.id
    }


def check_keymap(keys: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The remaps from the ``[ui] keys`` setting that can be applied, and one sentence for
    each problem: an unknown binding id (ignored), a remap onto ctrl+q (ignored: it always
    quits), and a remap that takes a key away from quit (applied; ctrl+q still quits)."""
    known = binding_ids()
    problems: list[str] = []
    unknown = [binding_id for binding_id in keys if binding_id not in known]
    if unknown:
        names = ", ".join(f'"{binding_id}"' for binding_id in unknown)
        problems.append(
            f"Unknown key binding id{'s' if len(unknown) > 1 else ''} {names} in the [ui] keys "
            "setting, ignored: the help screen (?) lists the ids."
        )
    keymap: dict[str, str] = {}
    for binding_id, value in keys.items():
        if binding_id not in known:
            continue
        bound = [key.strip() for key in value.split(",")]
        if ALWAYS_QUITS in bound and binding_id != "quit":
            problems.append(
                f'The [ui] keys setting gives {ALWAYS_QUITS} to "{binding_id}", ignored: '
                f"{ALWAYS_QUITS} always quits."
            )
            continue
        keymap[binding_id] = value
    quit_keys = [key.strip() for key in keymap.get("quit", "q").split(",")]
    for binding_id, value in keymap.items():
        taken = [key.strip() for key in value.split(",") if key.strip() in quit_keys]
        if binding_id != "quit" and taken:
            problems.append(
                f'The [ui] keys setting gives {", ".join(taken)} to "{binding_id}" instead '
                f"of quit: {ALWAYS_QUITS} always quits."
            )
    return keymap, problems


class FleetwatchApp(App[int]):
    """Live fleet monitor; see the module docstring for the threading model."""

    CSS_PATH = "app.tcss"
    TITLE = "fleetwatch"
    HORIZONTAL_BREAKPOINTS = [
        (0, "-narrow"),
        (100, "-medium"),
        (120, "-wide"),
    ]

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "1",
            "show_view('fleet')",
            "Fleet",
            id="view.fleet",
            show=False,
            tooltip="Fleet KPIs and vehicles",
        ),
        Binding(
            "2",
            "show_view('vehicle')",
            "Vehicle",
            id="view.vehicle",
            show=False,
            tooltip="The chosen vehicle",
        ),
        Binding(
            "3",
            "show_view('alerts')",
            "Alerts",
            id="view.alerts",
            show=False,
            tooltip="Open and recent alerts",
        ),
        Binding(
            "4",
            "show_view('interventions')",
            "Interventions",
            id="view.interventions",
            show=False,
            tooltip="Interventions and disengagements",
        ),
        Binding(
            "5",
            "show_view('perception')",
            "Perception",
            id="view.perception",
            show=False,
            tooltip="Objects, distances, time to collision, near misses",
        ),
        Binding("w", "cycle_window", "Window", id="window.cycle", tooltip="Next time window"),
        Binding(
            "W",
            "cycle_window(-1)",
            "Previous window",
            id="window.previous",
            show=False,
            tooltip="Previous time window",
        ),
        Binding("space", "toggle_pause", "Pause", id="pause", tooltip="Pause or resume redraws"),
        Binding("slash", "filter", "Filter", id="filter", tooltip="Filter the table"),
        Binding("a", "acknowledge", "Ack", id="alert.acknowledge", tooltip="Acknowledge the alert"),
        Binding(
            "s",
            "silence",
            "Silence",
            id="alert.silence",
            tooltip="Silence the rule for the vehicle",
        ),
        Binding(
            "left_square_bracket",
            "step_vehicle(-1)",
            "Prev",
            id="vehicle.previous",
            tooltip="Previous vehicle",
        ),
        Binding(
            "right_square_bracket",
            "step_vehicle(1)",
            "Next",
            id="vehicle.next",
            tooltip="Next vehicle",
        ),
        Binding(
            "l",
            "live",
            "Live",
            id="vehicle.live",
            tooltip="Back to live: the vehicle now instead of a past moment",
        ),
        Binding(
            "f",
            "alert_filters",
            "Filters",
            id="alert.filters",
            show=False,
            tooltip="Choose the state, severity and rule filters (Tab to the next one)",
        ),
        Binding(
            "escape", "go_back", "Back", id="back", show=False, tooltip="Back / close the filter"
        ),
        Binding("e", "export", "Export", id="export", tooltip="Export the table to CSV"),
        Binding("u", "toggle_units", "km/mi", id="units", tooltip="Switch kilometres and miles"),
        Binding("r", "refresh_now", "Refresh", id="refresh", show=False, tooltip="Refresh now"),
        Binding("question_mark", "help", "Help", id="help", tooltip="Show every key"),
        Binding("q", "quit", "Quit", id="quit", tooltip="Quit fleetwatch"),
    ]

    def __init__(
        self,
        settings: Settings,
        *,
        source: DataSource | None = None,
        status: StatusSource | None = None,
        services: Services | None = None,
        clock: Clock = utc_now,
        export_dir: Path | None = None,
        user: str | None = None,
        animate: bool = True,
        local_zone: tzinfo | None = None,
        sorts: Sorts | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.local_zone = local_zone
        """The zone of the local times shown next to UTC (None: the machine's own)."""
        self.source = source
        self.status_source = status
        self.services = services
        self.clock = clock
        self.export_dir = export_dir or default_export_dir()
        self.user = user or _user_name()
        self.window: WindowName = settings.ui.window
        self.units: fmt.Units = settings.ui.units
        self.view: ViewName = "fleet"
        self.previous_view: ViewName = "fleet"
        self.vehicle_id: str | None = None
        self.vehicle_at: datetime | None = None
        self.paused = False
        self.last_snapshot: Snapshot | None = None
        self.last_refresh: datetime | None = None
        self.refresh_error: str | None = None
        self.status: ServiceStatus | None = None
        self.fleet_order: tuple[str, ...] = ()
        self.sorts: Sorts = dict(sorts or {})
        """Per table id, the order the operator chose where it differs from the table's
        own: restored at start, kept up to date, remembered when the app stops."""
        self._seq = 0
        self._event_seq = 0
        self._poll_timer: Timer | None = None
        self._shown_screen: tuple[object, ...] | None = None
        self._retry_s = settings.ui.refresh_s
        if not animate:
            self.animation_level = "none"
        if settings.ui.theme in self.available_themes:
            self.theme = settings.ui.theme
        self.keymap, self.keymap_problems = check_keymap(settings.ui.keys)
        if self.keymap:
            self.set_keymap(self.keymap)

    # ------------------------------------------------------------------ crashes

    crash_reason: str | None = None
    """Set when an unexpected error stopped the app; the CLI prints it as one sentence."""

    def _handle_exception(self, error: Exception) -> None:
        # Overrides Textual's handler (pinned version): the traceback goes to the log file.
        log.error("the app stopped on an unexpected error", exc_info=error)
        self.crash_reason = f"{type(error).__name__}: {error}"
        super()._handle_exception(error)

    def _print_error_renderables(self) -> None:
        # Textual would print the traceback on the terminal; it is in the log file and
        # the CLI says so in one sentence.
        self._exit_renderables.clear()

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        context = RenderContext(self.units, self.clock())
        with Horizontal(id="topbar"):
            yield Static("fleetwatch", id="brand")
            yield WindowSelector(self.window, self.units, id="window")
        with TabbedContent(id="tabs", initial="fleet"):
            panes: list[tuple[ViewName, View]] = [
                ("fleet", FleetPane(context, id="view-fleet")),
                ("vehicle", VehicleDetail(context, id="view-vehicle")),
                ("alerts", AlertsPane(context, id="view-alerts")),
                ("interventions", InterventionsPane(context, id="view-interventions")),
                ("perception", PerceptionPane(context, id="view-perception")),
            ]
            for index, (name, view) in enumerate(panes, start=1):
                with TabPane(f"{index} {VIEW_TITLES[name]}", id=name):
                    yield view
        yield StartupPanel(id="startup")
        yield StatusBar(id="status")
        yield KeyFooter(give_way=FOOTER_GIVES_WAY)

    def on_mount(self) -> None:
        if self.animation_level == "none":
            for box in self.query(FilterBox):
                box.cursor_blink = False
        self._restore_sorts()
        self._update_status_bar()
        if self.services is not None and self.source is None:
            self.query_one("#tabs").display = False
            self._start_services(self.services)
        else:
            self.query_one("#startup").display = False
            self.request_refresh()
        self.call_after_refresh(self._focus_view)
        for problem in self.keymap_problems:
            self.notify(problem, title="Settings", severity="warning", timeout=15, markup=False)

    def on_unmount(self) -> None:
        self._stop_polling()
        if self.source is not None:
            try:
                self.source.close()
            except Exception:  # closing must never stop the app from exiting
                log.exception("closing the data source failed")

    def _restore_sorts(self) -> None:
        for table in self.query(SnapshotTable):
            order = self.sorts.get(table.id or "")
            if order is not None and not table.restore_sort(*order):
                del self.sorts[table.id or ""]  # a column this version no longer has

    def on_snapshot_table_sorted(self, event: SnapshotTable.Sorted) -> None:
        table = event.table
        if table.id is None:
            return
        if (event.column, event.reverse) == table.default_sort:
            self.sorts.pop(table.id, None)
        else:
            self.sorts[table.id] = (event.column, event.reverse)

    # ------------------------------------------------------------------ services

    @work(thread=True, exclusive=True, group="services", exit_on_error=False)
    def _start_services(self, services: Services) -> None:
        def progress(step: str, fraction: float | None) -> None:
            self.post_message(StartupProgress(step, fraction))

        try:
            source, status = services.start(progress)
        except SourceUnavailable as error:
            self.post_message(ServicesFailed(str(error)))
            return
        self.source = source
        self.status_source = status
        self.post_message(ServicesReady())

    def on_startup_progress(self, message: StartupProgress) -> None:
        self.query_one(StartupPanel).show_step(message.step, message.fraction)

    def on_services_ready(self, _message: ServicesReady) -> None:
        self.query_one("#startup").display = False
        self.query_one("#tabs").display = True
        self.request_refresh()
        self._focus_view()

    start_failure: str | None = None
    """Why the services could not start; quitting then exits with status 1."""

    def on_services_failed(self, message: ServicesFailed) -> None:
        self.start_failure = message.reason
        panel = self.query_one(StartupPanel)
        panel.show_step(
            f"{message.reason}\n{START_FAILURE_HINT}\nPress q to quit.",
            0.0,
        )
        panel.add_class("-failed")
        self.set_focus(None)  # the hidden views' keys (sort, filter) do not apply
        self._update_status_bar()
        self.refresh_bindings()

    async def action_quit(self) -> None:
        self.exit(return_code=1 if self.start_failure else 0)

    # ------------------------------------------------------------------ poll loop

    def build_request(self) -> ViewRequest:
        now = self.clock()
        return ViewRequest(
            view=self.view,
            window=self.window,
            end=now,
            vehicle_id=self.vehicle_id,
            vehicle_end=self._vehicle_end(now),
        )

    def _vehicle_end(self, now: datetime) -> datetime | None:
        """Where the vehicle view's window ends when it shows a past moment (the moment a
        quarter of the window from its end), or None when it is live."""
        if self.vehicle_at is None:
            return None
        end = self.vehicle_at + WINDOWS[self.window] / 4
        return end if end < now else None

    def _set_vehicle_at(self, at: datetime | None) -> None:
        """Anchor the vehicle view at a past moment (None: live). A moment the window
        reaches to now is live, so a later, narrower window does not anchor it again."""
        self.vehicle_at = at
        if self._vehicle_end(self.clock()) is None:
            self.vehicle_at = None
        self.refresh_bindings()

    def request_refresh(self) -> None:
        """Refresh now (superseding any refresh in flight); the loop continues from it."""
        self._stop_polling()
        if self.source is None:
            return
        self._seq += 1
        self._fetch(self.source, self._seq, self.build_request())

    @work(thread=True, exclusive=True, group="refresh", exit_on_error=False)
    def _fetch(self, source: DataSource, seq: int, request: ViewRequest) -> None:
        try:
            snapshot = source.fetch(request)
        except SourceUnavailable as error:
            self.post_message(RefreshFailed(seq, str(error)))
            return
        self.post_message(SnapshotFetched(seq, snapshot))

    def _tick(self) -> None:
        self._poll_timer = None
        if self.paused:
            self._update_status_bar()
            self._schedule(self.settings.ui.refresh_s)
        else:
            self.request_refresh()

    def _schedule(self, delay_s: float) -> None:
        self._stop_polling()
        self._poll_timer = self.set_timer(delay_s, self._tick, name="poll")

    def _stop_polling(self) -> None:
        if self._poll_timer is not None:
            self._poll_timer.stop()
            self._poll_timer = None

    def on_snapshot_fetched(self, message: SnapshotFetched) -> None:
        if message.seq != self._seq:
            return
        self.refresh_error = None
        self._retry_s = self.settings.ui.refresh_s
        self.last_snapshot = message.snapshot
        self.last_refresh = message.snapshot.taken_at
        if message.snapshot.fleet is not None:
            self.fleet_order = tuple(v.vehicle_id for v in message.snapshot.fleet.vehicles)
        self._update_status_bar()  # first, so the views know whether history is loading
        # Paused: live data is not redrawn, but what the user navigates to is shown.
        if not self.paused or _screen_of(message.snapshot.request) != self._shown_screen:
            self._render_snapshot(message.snapshot)
        self._update_status_bar()
        self._schedule(self.settings.ui.refresh_s)

    def on_refresh_failed(self, message: RefreshFailed) -> None:
        if message.seq != self._seq:
            return
        self._refresh_failed(message.reason)

    def _refresh_failed(self, reason: str) -> None:
        self.refresh_error = reason
        since = f" Showing data from {fmt.clock(self.last_refresh)}." if self.last_refresh else ""
        self._current_view().set_notice(
            f"Database unavailable: {reason} Retrying every {self._retry_s:.0f} s.{since}"
        )
        self._update_status_bar()
        self._schedule(self._retry_s)
        self._retry_s = min(MAX_RETRY_S, max(1.0, self._retry_s * 2))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place unexpected worker failures land: logged, shown, never raised."""
        if event.state != WorkerState.ERROR:
            return
        error = event.worker.error
        log.error("worker %s failed", event.worker.name, exc_info=error)
        reason = f"{type(error).__name__}: {error}"
        if event.worker.group == "refresh":
            self._refresh_failed(reason)
        elif event.worker.group == "services":
            self.on_services_failed(ServicesFailed(f"Start-up failed: {reason}"))
        elif event.worker.group == "event":
            self.on_event_detail_failed(EventDetailFailed(self._event_seq, reason))
        else:
            self.notify(reason, title="Error", severity="error")

    # ------------------------------------------------------------------ rendering

    def context(self) -> RenderContext:
        now = self.last_snapshot.taken_at if self.last_snapshot else self.clock()
        loading = self.status.backfill_pct if self.status is not None else None
        return RenderContext(self.units, now, loading, live_key=self.key_display("vehicle.live"))

    def _render_snapshot(self, snapshot: Snapshot) -> None:
        self._shown_screen = _screen_of(snapshot.request)
        view = self._view(snapshot.request.view)
        context = self.context()
        try:
            view.show(snapshot, context)
            view.show_filter_count()
        except Exception:  # a rendering bug must not take the monitor down
            log.exception("rendering %s failed", snapshot.request.view)
            view.set_notice("This view could not be drawn; see the log file.")
            return
        if context.loading_pct is not None:
            view.set_notice(
                f"Loading history: {context.loading_pct:.0f} %. Figures cover only what is "
                "stored so far; vehicles show as loading until their data arrives."
            )

    def _update_status_bar(self) -> None:
        status = self.status_source.status() if self.status_source is not None else None
        if status is not None and self.refresh_error is not None:
            status = _with_database_down(status, self.refresh_error)
        self.status = status
        self.query_one(StatusBar).show(
            status,
            paused=self.paused,
            last_refresh=self.last_refresh,
            refresh_error=None,
            start_failed=self.start_failure is not None,
        )
        self.sub_title = "PAUSED" if self.paused else ""

    def _view(self, name: ViewName) -> View:
        return self.query_one(f"#view-{name}", View)

    def _current_view(self) -> View:
        return self._view(self.view)

    def _focus_view(self) -> None:
        if self.start_failure is None:
            self._current_view().focus_main()

    # ------------------------------------------------------------------ navigation

    def action_show_view(self, name: str) -> None:
        if name not in VIEW_NAMES:
            return
        # Let go of the focus first: when the focused table is hidden, Textual passes the
        # focus to the widget before it, the view's open filter box, and focusing that
        # switches back to its tab. The new view's table takes the focus once shown.
        tabs = self.query_one(TabbedContent)
        if tabs.active != name:
            self.screen.set_focus(None)
            tabs.active = name

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        name = cast(ViewName, event.pane.id)
        if name == self.view:
            return
        self.previous_view = self.view
        self.view = name
        if name == "vehicle" and self.vehicle_id is None:
            # Nothing chosen yet: show the first vehicle of the fleet table.
            order = self._vehicle_order()
            if order:
                self.vehicle_id = order[0]
                self._view("vehicle").vehicle_id = order[0]  # type: ignore[attr-defined]
        self.refresh_bindings()
        self.call_after_refresh(self._focus_view)
        self.request_refresh()

    def on_open_vehicle(self, message: OpenVehicle) -> None:
        self.open_vehicle(message.vehicle_id, message.at)

    def open_vehicle(
        self, vehicle_id: str, at: datetime | None = None, event: DrivingEventRow | None = None
    ) -> None:
        """Show ``vehicle_id`` now or at the moment ``at``, with the cursor on ``event``."""
        self.vehicle_id = vehicle_id
        self._set_vehicle_at(at)
        view = cast(VehicleDetail, self._view("vehicle"))
        view.vehicle_id = vehicle_id
        view.select_event = None if event is None else event_key(event)
        if self.view == "vehicle":
            self.request_refresh()
        else:
            self.action_show_view("vehicle")

    def on_open_event(self, message: OpenEvent) -> None:
        self.open_event(message.event)

    def open_event(self, event: DrivingEventRow) -> None:
        """Show the detail of ``event``; its surroundings are read by a worker."""
        if self.source is None:
            return

        def closed(choice: EventChoice | None) -> None:
            if choice == "vehicle":
                self.open_vehicle(event.vehicle_id, event.time, event)

        self._event_seq += 1
        self.push_screen(EventDetailScreen(event, self.context(), self.local_zone), closed)
        self._fetch_event(self.source, self._event_seq, event)

    @work(thread=True, exclusive=True, group="event", exit_on_error=False)
    def _fetch_event(self, source: DataSource, seq: int, event: DrivingEventRow) -> None:
        try:
            detail = source.event_detail(event)
        except SourceUnavailable as error:
            self.post_message(EventDetailFailed(seq, str(error)))
            return
        self.post_message(EventDetailFetched(seq, detail))

    def on_event_detail_fetched(self, message: EventDetailFetched) -> None:
        if message.seq == self._event_seq and isinstance(self.screen, EventDetailScreen):
            self.screen.show(message.detail)

    def on_event_detail_failed(self, message: EventDetailFailed) -> None:
        if message.seq == self._event_seq and isinstance(self.screen, EventDetailScreen):
            self.screen.show_failure(message.reason)

    def _filter_active(self) -> bool:
        box = self._current_view().filter_box()
        return box is not None and (box.has_class("-open") or bool(box.value))

    def action_go_back(self) -> None:
        box = self._current_view().filter_box()
        if isinstance(self.focused, FilterBox) or (box is not None and self._filter_active()):
            if box is not None:
                box.close()
            self._current_view().focus_main()
            table = self._current_view().main_table()
            if table is not None:
                table.set_filter("")
            return
        if self.view == "vehicle":
            back = self.previous_view if self.previous_view != "vehicle" else "fleet"
            self.action_show_view(back)
            if back == "fleet" and self.vehicle_id is not None:
                # The fleet cursor follows the vehicle last viewed (after [ and ]).
                table = self._view("fleet").main_table()
                if table is not None:
                    table.move_to_key(self.vehicle_id)

    def action_step_vehicle(self, step: int) -> None:
        order = self._vehicle_order()
        if not order:
            return
        if self.vehicle_id in order:
            index = (order.index(self.vehicle_id) + step) % len(order)
        else:
            index = 0 if step > 0 else len(order) - 1
        self.open_vehicle(order[index])

    def _vehicle_order(self) -> list[str]:
        table = self._view("fleet").main_table()
        if table is not None and table.shown_rows:
            return [row.vehicle_id for row in table.shown_rows]
        return sorted(self.fleet_order)

    # ------------------------------------------------------------------ window, pause, units

    def action_cycle_window(self, step: int = 1) -> None:
        index = (WINDOW_NAMES.index(self.window) + step) % len(WINDOW_NAMES)
        self.set_window(WINDOW_NAMES[index])

    def set_window(self, window: WindowName) -> None:
        self.window = window
        self._set_vehicle_at(self.vehicle_at)
        self.query_one(WindowSelector).show(window)
        self.request_refresh()

    def action_live(self) -> None:
        self._set_vehicle_at(None)
        self.request_refresh()

    def on_window_selector_chosen(self, message: WindowSelector.Chosen) -> None:
        self.set_window(message.window)

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        self._update_status_bar()
        if not self.paused:
            self.request_refresh()

    def action_toggle_units(self) -> None:
        self.units = "mi" if self.units == "km" else "km"
        if isinstance(self.screen, EventDetailScreen):
            self.screen.show_units(self.units)
        self.query_one(WindowSelector).show(self.window, self.units)
        if self.last_snapshot is not None and not self.paused:
            self._render_snapshot(self.last_snapshot)
        self._update_status_bar()

    def action_refresh_now(self) -> None:
        self.request_refresh()

    def action_filter(self) -> None:
        self._current_view().open_filter()

    # ------------------------------------------------------------------ alerts

    def _selected_alert(self) -> Any:
        view = self._view("alerts")
        assert isinstance(view, AlertsPane)
        return view.selected_alert()

    def action_alert_filters(self) -> None:
        view = self._view("alerts")
        assert isinstance(view, AlertsPane)
        view.focus_filters()

    def action_acknowledge(self) -> None:
        alert = self._selected_alert()
        if alert is None or self.source is None:
            self.notify("Choose an alert first.", severity="warning")
            return
        if alert.state == "resolved":
            self.notify("This alert is resolved; only open alerts can be acknowledged.")
            return

        def chosen(duration: timedelta | None) -> None:
            if duration is not None and self.source is not None:
                until = self.clock() + duration
                self._acknowledge(
                    self.source, alert.alert_id, until, fmt.rule(alert.rule), alert.vehicle_id
                )

        self.push_screen(
            DurationModal(
                "Acknowledge alert",
                f"{fmt.rule(alert.rule)} on {alert.vehicle_id} ({alert.severity})",
                ACK_CHOICES,
            ),
            chosen,
        )

    def action_silence(self) -> None:
        alert = self._selected_alert()
        if alert is None or self.source is None:
            self.notify("Choose an alert first.", severity="warning")
            return

        def chosen(duration: timedelta | None) -> None:
            if duration is not None and self.source is not None:
                until = self.clock() + duration
                self._silence(self.source, alert.vehicle_id, alert.rule, until)

        self.push_screen(
            DurationModal(
                "Silence rule",
                f"{fmt.rule(alert.rule)} for {alert.vehicle_id}",
                SILENCE_CHOICES,
            ),
            chosen,
        )

    @work(thread=True, group="actions", exit_on_error=False)
    def _acknowledge(
        self, source: DataSource, alert_id: int, until: datetime, rule: str, vehicle_id: str
    ) -> None:
        try:
            source.acknowledge(alert_id, until, self.user)
        except SourceUnavailable as error:
            self.post_message(ActionFailed(f"Could not acknowledge: {error}"))
            return
        self.post_message(
            ActionDone(f"Acknowledged {rule} on {vehicle_id} until {fmt.stamp(until)} UTC.")
        )

    @work(thread=True, group="actions", exit_on_error=False)
    def _silence(self, source: DataSource, vehicle_id: str, rule: str, until: datetime) -> None:
        try:
            source.silence(vehicle_id, rule, until, self.user)
        except SourceUnavailable as error:
            self.post_message(ActionFailed(f"Could not silence: {error}"))
            return
        self.post_message(
            ActionDone(f"Silenced {fmt.rule(rule)} for {vehicle_id} until {fmt.stamp(until)} UTC.")
        )

    def on_action_done(self, message: ActionDone) -> None:
        self.notify(message.text, title="Exported" if message.path else "Done")
        if message.path is None:
            self.request_refresh()

    def on_action_failed(self, message: ActionFailed) -> None:
        self.notify(message.text, title="Failed", severity="error")

    # ------------------------------------------------------------------ export

    def action_export(self) -> None:
        table = self._current_view().main_table()
        if self.start_failure is not None or self.source is None or self.last_snapshot is None:
            self.notify("Nothing to export: no data has been loaded.", severity="warning")
            return
        if table is None:
            self.notify("This view has no table to export.", severity="warning")
            return
        header, rows = table.export_rows()
        what: str = self.view
        empty = f"Nothing to export: the {self.view} table is empty."
        if self.view == "vehicle" and self.vehicle_id is not None:
            what = "vehicle-" + re.sub(r"[^A-Za-z0-9_.-]", "_", self.vehicle_id) + "-events"
            empty = (
                f"Nothing to export: {self.vehicle_id} has no driving events "
                f"in the last {self.window}."
            )
        if not rows:
            self.notify(empty, severity="warning")
            return
        stamp = self.clock().strftime("%Y%m%d-%H%M%S")
        path = self.export_dir / f"fleetwatch-{what}-{self.window}-{stamp}.csv"
        self._export(path, header, rows)

    @work(thread=True, group="export", exit_on_error=False)
    def _export(self, path: Path, header: list[str], rows: list[list[Any]]) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(header)
                writer.writerows(rows)
        except OSError as error:
            self.post_message(ActionFailed(f"Could not write {path}: {error.strerror}"))
            return
        written = f"{fmt.count(len(rows))} row{'' if len(rows) == 1 else 's'}"
        self.post_message(ActionDone(f"{written} written to {path}", path=path))

    # ------------------------------------------------------------------ keys, help, palette

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if isinstance(self.screen, ModalScreen) and action not in ("quit", "help"):
            # The event detail shows speeds and distances: its units can be switched.
            return action == "toggle_units" and isinstance(self.screen, EventDetailScreen)
        if self.start_failure is not None and action not in ("quit", "help", "command_palette"):
            return False  # nothing to show: only quitting and help make sense
        views = VIEW_ACTIONS.get(action)
        if views is not None and self.view not in views:
            return False
        if action == "live":
            return self.vehicle_at is not None
        if action == "go_back":
            return (
                self.view == "vehicle"
                or isinstance(self.focused, FilterBox)
                or self._filter_active()
            )
        return True

    def help_rows(self) -> list[tuple[str, str, str]]:
        """(keys, description, binding id) of every active action, once each: the app's own
        first, then the focused widget's, generated from the live bindings so remapped keys
        show as remapped. An action bound to two keys (``q`` and Textual's ``ctrl+q``) is one
        row with both keys and the description of the binding that has an id. Over a dialog
        (the event detail) only the dialog's keys work: its own first, then its widgets'."""
        dialog = isinstance(self.screen, ModalScreen)
        first = self.screen if dialog else self
        rows: dict[str, tuple[list[str], str, str, bool]] = {}
        for key, active in self.screen.active_bindings.items():
            binding = active.binding
            if binding.system or not binding.description or binding.action == "select_cursor":
                continue  # the table's Enter is listed below, with what it opens
            name = self.get_key_display(binding) or key
            label = (binding.tooltip or binding.description).strip()
            found = rows.get(binding.action)
            if found is None:
                rows[binding.action] = ([name], label, binding.id or "", active.node is first)
                continue
            keys, _label, old_id, own = found
            if binding.id and not old_id:
                rows[binding.action] = ([name, *keys], label, binding.id, own)
            else:
                keys.append(name)
        own_rows = [(" ".join(k), label, i) for k, label, i, own in rows.values() if own]
        widget_rows = [(" ".join(k), label, i) for k, label, i, own in rows.values() if not own]
        if dialog:
            own_rows.sort(key=lambda row: not row[2])  # its own keys before Textual's copy
            return own_rows + widget_rows
        # Keys that are only active in some places, so the list above may lack them.
        listed = {binding_id for _key, _label, binding_id in own_rows + widget_rows}
        extra = [("enter", "Open the vehicle, event or alert under the cursor", "")]
        for binding_id in ("back", "vehicle.previous", "vehicle.next", "vehicle.live"):
            somewhere = self._binding_by_id(binding_id)
            if somewhere is not None and binding_id not in listed:
                label = somewhere.tooltip or somewhere.description
                extra.append((self.key_display(binding_id), label, binding_id))
        return own_rows + extra + widget_rows

    def _binding_by_id(self, binding_id: str) -> Binding | None:
        for binding in self.BINDINGS:
            if isinstance(binding, Binding) and binding.id == binding_id:
                return binding
        return None

    def key_display(self, binding_id: str) -> str:
        """How the footer shows the key of one of the app's bindings, remapped or not."""
        binding = self._binding_by_id(binding_id)
        if binding is None:
            return ""
        keys = self.keymap.get(binding_id, binding.key)
        return " ".join(
            self.get_key_display(replace(binding, key=key.strip())) for key in keys.split(",")
        )

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.help_rows()))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for name in VIEW_NAMES:
            yield SystemCommand(
                f"Show {VIEW_TITLES[name]}",
                f"Switch to the {VIEW_TITLES[name].lower()} view",
                lambda name=name: self.action_show_view(name),
            )
        for window in WINDOW_NAMES:
            yield SystemCommand(
                f"Window {window}",
                f"Show the last {window}",
                lambda window=window: self.set_window(window),
            )
        commands = [
            ("Pause / resume", "Pause or resume live redraws (ingest goes on)", "toggle_pause"),
            ("Export table to CSV", "Write the current table to a CSV file", "export"),
            ("Switch units", "Switch between kilometres and miles", "toggle_units"),
            ("Filter table", "Filter the current table", "filter"),
            ("Acknowledge alert", "Acknowledge the selected alert", "acknowledge"),
            ("Silence rule", "Silence the selected alert's rule for its vehicle", "silence"),
            ("Alert filters", "Choose the alert state, severity and rule filters", "alert_filters"),
            ("Next vehicle", "Show the next vehicle", "step_vehicle(1)"),
            ("Back to live", "Show the vehicle now instead of a past moment", "live"),
            ("Previous vehicle", "Show the previous vehicle", "step_vehicle(-1)"),
            ("Refresh now", "Run the queries now", "refresh_now"),
            ("Help", "Show every key", "help"),
        ]
        for title, help_text, action in commands:
            yield SystemCommand(title, help_text, lambda action=action: self._palette(action))

    def _palette(self, action: str) -> None:
        name = action.split("(", 1)[0]
        views = VIEW_ACTIONS.get(name)
        if views is not None and self.view not in views:
            where = " or ".join(f"{VIEW_TITLES[v]} ({VIEW_NAMES.index(v) + 1})" for v in views)
            self.notify(f"That works on the {where} view only.", severity="warning")
            return
        self.call_later(self.run_action, action)

    def on_data_table_row_highlighted(self, _event: SnapshotTable.RowHighlighted) -> None:
        if self.view == "alerts":
            self.refresh_bindings()


def _with_database_down(status: ServiceStatus, reason: str) -> ServiceStatus:
    log.debug("database down: %s", reason)
    return replace(status, database="down", database_detail="retrying")


def _screen_of(request: ViewRequest) -> tuple[object, ...]:
    """What a request shows, apart from the moment it was taken."""
    return (request.view, request.window, request.vehicle_id, request.vehicle_at_key)


def _user_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "operator"


def create_app(
    settings: Settings,
    *,
    source: DataSource | None = None,
    status: StatusSource | None = None,
    services: Services | None = None,
    clock: Clock = utc_now,
    export_dir: Path | None = None,
    user: str | None = None,
    animate: bool = True,
    local_zone: tzinfo | None = None,
    sorts: Sorts | None = None,
) -> FleetwatchApp:
    """Build the app. The CLI passes ``services`` (embedded or connected mode); tests and
    screenshots pass a fixed ``source``/``status`` and a fixed ``clock``."""
    return FleetwatchApp(
        settings,
        source=source,
        status=status,
        services=services,
        clock=clock,
        export_dir=export_dir,
        user=user,
        animate=animate,
        local_zone=local_zone,
        sorts=sorts,
    )
