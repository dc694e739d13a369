"""The embedded PostgreSQL: private, shared between processes, and recovering from kills."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest

from fleetwatch.store import embedded, migrate, queries
from fleetwatch.store.capabilities import detect
from fleetwatch.store.embedded import EmbeddedError, EmbeddedPostgres
from tests.polling import pid_alive

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="the embedded database needs Unix sockets"
)


def _wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_s:.0f} s for: {what}")
        time.sleep(0.05)


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "embedded"
    yield path
    # Never leave a server behind, whatever the test did.
    server = EmbeddedPostgres(path)
    pid = server.running_pid()
    if pid is not None:
        os.kill(pid, signal.SIGTERM)  # "smart" shutdown
        _wait_until(lambda: not pid_alive(pid), "the test server to stop")


def test_start_gives_a_private_durable_server_that_takes_the_schema(data_dir: Path) -> None:
    with EmbeddedPostgres(data_dir) as server:
        socket_dir = server.socket_dir
        assert (socket_dir.stat().st_mode & 0o777) == 0o700
        with psycopg.connect(server.dsn) as conn:
            settings: dict[str, str] = dict(
                conn.execute(
                    "SELECT name, setting FROM pg_settings WHERE name IN"
                    " ('fsync', 'full_page_writes', 'listen_addresses', 'synchronous_commit')"
                ).fetchall()
            )
            assert settings == {
                "fsync": "on",
                "full_page_writes": "on",
                "listen_addresses": "",
                "synchronous_commit": "on",
            }
            migrate.apply_migrations(conn)
            caps = detect(conn)
            assert not caps.timescaledb
            window = queries.Window.last("1h", datetime(2026, 1, 1, tzinfo=timezone.utc))
            assert queries.fleet_kpis(conn, window).km_per_intervention is None
        pid = server.running_pid()
        assert pid is not None
    assert not pid_alive(pid)
    assert server.running_pid() is None


def test_a_second_process_shares_the_server_and_the_last_one_stops_it(data_dir: Path) -> None:
    first = EmbeddedPostgres(data_dir)
    dsn = first.start()
    pid = first.running_pid()
    # A second fleetwatch in another process joins the same server.
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, psycopg
                from pathlib import Path
                from fleetwatch.store.embedded import EmbeddedPostgres
                server = EmbeddedPostgres(Path({str(data_dir)!r}))
                dsn = server.start()
                with psycopg.connect(dsn) as conn:
                    conn.execute("SELECT 1")
                print(server.running_pid(), flush=True)
                sys.stdin.readline()
                print(server.stop(), flush=True)
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        assert int(child.stdout.readline()) == pid
        assert first.stop() is False, "the other process still uses it"
        assert first.running_pid() == pid
        with psycopg.connect(dsn) as conn:
            conn.execute("SELECT 1")
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "True"
    finally:
        child.kill()
        child.wait()
    assert pid is not None
    assert not pid_alive(pid)


def test_a_killed_app_leaves_a_server_that_the_next_start_reuses(data_dir: Path) -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import time
                from pathlib import Path
                from fleetwatch.store.embedded import EmbeddedPostgres
                server = EmbeddedPostgres(Path({str(data_dir)!r}))
                server.start()
                print(server.running_pid(), flush=True)
                time.sleep(600)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    pid = int(child.stdout.readline())
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert pid_alive(pid), "the server outlives the killed app"
    server = EmbeddedPostgres(data_dir)
    with psycopg.connect(server.start()) as conn:
        conn.execute("SELECT 1")
    assert server.running_pid() == pid
    assert server.stop() is True
    assert not pid_alive(pid)


def test_a_crashed_server_is_restarted_and_keeps_committed_data(data_dir: Path) -> None:
    server = EmbeddedPostgres(data_dir)
    with psycopg.connect(server.start()) as conn:
        conn.execute("CREATE TABLE kept (n int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    pid = server.running_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    _wait_until(lambda: not pid_alive(pid), "the killed server to go")
    assert (server.pgdata / "postmaster.pid").exists(), "a stale pid file is left"
    again = EmbeddedPostgres(data_dir)
    with psycopg.connect(again.start()) as conn:
        row = conn.execute("SELECT n FROM kept").fetchone()
    assert row == (42,)
    assert again.running_pid() not in (None, pid)
    again.stop()
    server.stop()


def test_a_pid_file_naming_an_unrelated_live_process_is_stale(data_dir: Path) -> None:
    server = EmbeddedPostgres(data_dir)
    server.start()
    server.stop()
    pid_file = server.pgdata / "postmaster.pid"
    pid_file.write_text(f"{os.getpid()}\n{server.pgdata}\n0\n5432\n\n\n\nready\n")
    with psycopg.connect(server.start()) as conn:
        conn.execute("SELECT 1")
    assert server.running_pid() != os.getpid()
    server.stop()


def test_an_interrupted_first_initialisation_is_redone(data_dir: Path) -> None:
    (data_dir / "pgdata.init").mkdir(parents=True)
    (data_dir / "pgdata.init" / "half").write_text("x")
    (data_dir / "pgdata").mkdir()
    (data_dir / "pgdata" / "junk").write_text("x")
    with EmbeddedPostgres(data_dir) as server, psycopg.connect(server.dsn) as conn:
        conn.execute("SELECT 1")
    assert not (data_dir / "pgdata.init").exists()


def test_reset_refuses_while_in_use_and_wipes_afterwards(data_dir: Path) -> None:
    server = EmbeddedPostgres(data_dir)
    with psycopg.connect(server.start()) as conn:
        conn.execute("CREATE TABLE gone (n int)")
    with pytest.raises(EmbeddedError, match="another fleetwatch is using"):
        EmbeddedPostgres(data_dir).reset()
    server.stop()
    server.reset()
    assert not server.initialized()
    with psycopg.connect(server.start()) as conn:
        assert conn.execute("SELECT to_regclass('gone')").fetchone() == (None,)
    server.stop()


def test_an_unusable_data_dir_gives_one_sentence(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(EmbeddedError) as caught:
        EmbeddedPostgres(blocker / "db").start()
    message = str(caught.value)
    assert "cannot create the database directory" in message
    assert "\n" not in message


def test_missing_binaries_give_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EmbeddedError, match="not installed"):
        embedded._bin_dir()
