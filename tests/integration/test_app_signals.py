"""The terminal app quits as ``q`` does when its terminal goes away (SIGHUP) or it is told
to stop (SIGTERM): the real ``fleetwatch`` runs in a pseudo-terminal with a private home,
and once its embedded PostgreSQL is up and the fleet runs, the signal makes it exit and
shut down the server it started instead of leaving it running."""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from fleetwatch.store.embedded import EmbeddedPostgres
from tests import polling

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="the embedded database needs Unix sockets"
)

wait_until = partial(polling.wait_until, timeout_s=120.0)
EXIT_TIMEOUT_S = 60.0
"""Generous: quitting takes about a second, the ingestor's batch and the server's stop included."""
REMEMBERED = {
    "units": "mi",
    "window": "6h",
    "sorts": {"fleet-table": {"column": "kmpi", "reverse": True}},
}
"""Not the defaults: written back on exit only if the app started with them."""


class Terminal:
    """A pseudo-terminal of 80x24 whose output is read as it comes (and kept), so the app
    drawing on it never blocks on a full buffer."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        self.output = bytearray()
        self._reading = threading.Event()
        self._reading.set()
        self._reader = threading.Thread(target=self._read, name="pty-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while self._reading.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: no process has the terminal open any more
                return
            if not chunk:
                return
            self.output += chunk

    def hang_up(self) -> None:
        """Close the terminal's master side, as a dropped SSH connection or a killed tmux
        session does: the app's reads and writes on it fail from now on."""
        self._reading.clear()
        self._reader.join()
        if self.master >= 0:
            os.close(self.master)
            self.master = -1

    def close(self) -> None:
        self.hang_up()
        if self.slave >= 0:
            os.close(self.slave)
            self.slave = -1


class RunningApp:
    def __init__(self, process: subprocess.Popen[bytes], terminal: Terminal, home: Path) -> None:
        self.process = process
        self.terminal = terminal
        self.home = home
        self.server = EmbeddedPostgres(home / "data" / "fleetwatch" / "postgres")
        self.log_path = home / "state" / "fleetwatch" / "log" / "fleetwatch.log"

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""


@pytest.fixture
def app(tmp_path: Path) -> Iterator[RunningApp]:
    """``fleetwatch`` with no configuration (embedded database, in-process fleet) in its
    own terminal, with HOME and the XDG dirs under ``tmp_path``."""
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEETWATCH_", "TEXTUAL"))}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_DATA_HOME=str(home / "data"),
        XDG_STATE_HOME=str(home / "state"),
        XDG_CACHE_HOME=str(home / "cache"),
        TERM="xterm-256color",
        FLEETWATCH_SIMULATOR__VEHICLES="5",
        FLEETWATCH_SIMULATOR__BACKFILL_HOURS="0.05",
    )
    # Units, a window and a table order chosen in an earlier session: the app starts
    # with them and writes them back when it stops.
    state = home / "data" / "fleetwatch" / "ui-state.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps(REMEMBERED), encoding="utf-8")
    terminal = Terminal()
    process = subprocess.Popen(
        [sys.executable, "-m", "fleetwatch"],
        stdin=terminal.slave,
        stdout=terminal.slave,
        stderr=terminal.slave,
        env=env,
        cwd=tmp_path,
        start_new_session=True,
    )
    running = RunningApp(process, terminal, home)
    try:
        yield running
    finally:
        # Never leave the app or a server behind, whatever the test did.
        if process.poll() is None:
            process.kill()
            process.wait()
        terminal.close()
        pid = running.server.running_pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            wait_until(lambda: not polling.pid_alive(pid), what="the left-over server to stop")


@pytest.mark.parametrize(
    "signum", [signal.SIGHUP, signal.SIGTERM], ids=["terminal-gone", "sigterm"]
)
def test_a_signal_quits_the_app_and_stops_the_embedded_database(
    app: RunningApp, signum: signal.Signals
) -> None:
    wait_until(lambda: app.server.running_pid() is not None, what="the embedded database")
    wait_until(lambda: "simulating 5 vehicles" in app.log(), what="the fleet to run")
    server_pid = app.server.running_pid()
    assert server_pid is not None

    if signum == signal.SIGHUP:
        app.terminal.hang_up()  # the terminal goes away; the kernel then sends SIGHUP
    app.process.send_signal(signum)

    exit_code = app.process.wait(timeout=EXIT_TIMEOUT_S)
    assert exit_code == 0, app.log()
    assert f"quit on {signum.name}" in app.log()
    assert "Traceback" not in app.log()
    server_log = app.server.log_path.read_text(encoding="utf-8")
    assert server_log.rstrip().endswith("database system is shut down"), server_log[-2000:]
    # pg_ctl returns once the server has removed its pid file, just before it exits
    wait_until(lambda: not polling.pid_alive(server_pid), timeout_s=10, what="the server to exit")
    state = app.home / "data" / "fleetwatch" / "ui-state.json"
    assert json.loads(state.read_text(encoding="utf-8")) == REMEMBERED
    if signum == signal.SIGTERM:  # the terminal is still there: the app leaves it as q does
        output = app.terminal.output.decode("utf-8", "replace")
        assert "\x1b[?1049l" in output  # left the alternate screen
        assert "fleetwatch: stopping…" in output
        assert "Traceback" not in output
