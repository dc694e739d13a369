"""``fleetwatch`` without a command: the live terminal app (flags here, Textual loaded in run)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from fleetwatch.cli import add_connection_flags, add_topic_prefix_flag
from fleetwatch.config import Settings, log_dir
from fleetwatch.signals import Stopper, stop_on_signals
from fleetwatch.tui.prefs import prefs_path, remember, remembered_sorts, with_remembered

if TYPE_CHECKING:
    from textual.app import App

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    add_connection_flags(parser)
    parser.add_argument(
        "--vehicles",
        dest="simulator.vehicles",
        type=int,
        metavar="N",
        help="vehicles to simulate (default 25)",
    )
    parser.add_argument(
        "--seed", dest="simulator.seed", type=int, metavar="N", help="simulator seed (default 7)"
    )
    parser.add_argument(
        "--no-simulator",
        dest="simulator.enabled",
        action="store_const",
        const=False,
        help="do not run the built-in fleet simulator",
    )
    parser.add_argument(
        "--no-ingest",
        dest="ingest.enabled",
        action="store_const",
        const=False,
        help="do not run the built-in ingestor (another `fleetwatch ingest` feeds the database)",
    )
    parser.add_argument(
        "--group",
        dest="ingest.group",
        metavar="G",
        help="the built-in ingestor's consumer group with --kafka (default: settings)",
    )
    add_topic_prefix_flag(parser, "with --kafka, simulate to and consume")


def setup_logging() -> Path | None:
    """Send fleetwatch's logs to ``fleetwatch.log`` under the user log dir (never the screen)."""
    try:
        directory = log_dir()
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "fleetwatch.log"
        handler: logging.Handler = logging.FileHandler(path, encoding="utf-8")
    except OSError:
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # Everything goes to the file: a library warning written to the terminal would
    # tear the screen.
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("fleetwatch").setLevel(logging.INFO)
    logging.getLogger("fleetwatch.transport.librdkafka").setLevel(logging.CRITICAL)
    return path


def no_producer(settings: Settings) -> bool:
    """Whether the ingestor would read the in-process broker with no simulator feeding it."""
    return (
        settings.ingest.enabled
        and not settings.simulator.enabled
        and settings.kafka.bootstrap is None
    )


def discard_output() -> None:
    """Point stdout and stderr at /dev/null: once the terminal has hung up, writing to it
    fails (EIO), and that must not stop the shutdown."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):  # stdout, stderr: Textual draws on stderr
        os.dup2(devnull, fd)
    os.close(devnull)


def quit_app(app: App[Any]) -> None:
    """Ask ``app`` to quit as ``q`` does, from a signal handler: the handler runs between two
    steps of the app's event loop, so the request is queued on that loop, which it wakes.
    An app not running yet returns at once when it is run."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        app.exit()
    else:
        loop.call_soon_threadsafe(app.exit)


class QuitOnSignal(Stopper):
    """Quits the app as ``q`` does on SIGHUP (its terminal went away) and SIGTERM, so that
    what it started is stopped. A signal that comes before the app is built (the database
    is starting by then) quits it as soon as it is attached."""

    def __init__(self) -> None:
        super().__init__()
        self.app: App[Any] | None = None
        self.signum: int | None = None

    def handle(self, signum: int, frame: FrameType | None) -> None:
        super().handle(signum, frame)
        self.signum = signum
        if signum == signal.SIGHUP:
            discard_output()
        if self.app is not None:
            quit_app(self.app)

    def attach(self, app: App[Any]) -> None:
        self.app = app
        if self.event.is_set():
            quit_app(app)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from fleetwatch.tui.runtime import AppServices, EarlyStart

    if no_producer(settings):
        print(
            "fleetwatch: nothing would produce data: pass --kafka HOST:PORT to consume a real "
            "fleet, --no-ingest to only view the database, or drop --no-simulator",
            file=sys.stderr,
        )
        return 2
    log_path = setup_logging()
    remembered = prefs_path()
    settings = with_remembered(settings, remembered)
    stopper = QuitOnSignal()
    with stop_on_signals(stopper, (signal.SIGHUP, signal.SIGTERM)):
        services = AppServices(settings)
        # The database starts while Textual is imported and the screens are built.
        starting = EarlyStart(services)
        # Textual is imported here so other commands never load it.
        from fleetwatch.tui.app import create_app

        app = create_app(settings, services=starting, sorts=remembered_sorts(remembered))
        stopper.attach(app)
        try:
            app.run()
        finally:
            if stopper.signum is not None:
                log.info("quit on %s", signal.Signals(stopper.signum).name)
            print("fleetwatch: stopping…", file=sys.stderr, flush=True)
            remember(remembered, app.units, app.window, app.sorts)
            starting.stop()
    if app.start_failure is not None:
        print(f"fleetwatch: {app.start_failure}", file=sys.stderr)
        return 1
    if app.return_code not in (None, 0):
        reason = f" ({app.crash_reason})" if app.crash_reason else ""
        where = f"; the details are in {log_path}" if log_path else ""
        print(f"fleetwatch: stopped by an unexpected error{reason}{where}", file=sys.stderr)
        return app.return_code or 1
    return 0
