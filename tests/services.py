#!/usr/bin/env python3
"""Provision the real PostgreSQL/TimescaleDB and Apache Kafka servers that the tests use.

    python tests/services.py up      build what is missing, start both, wait until both answer
    python tests/services.py down    stop both
    python tests/services.py status  say what runs where (exit 1 unless both run)
    python tests/services.py env     print FLEETWATCH_TEST_DSN=... and FLEETWATCH_TEST_KAFKA=...

Everything lives under ~/.cache/fleetwatch-dev (or $FLEETWATCH_DEV_CACHE), outside the checkout:

- timescaledb/  Debian's `timescaledb` source package from trixie, fetched with `apt-get source`
                through a private APT configuration (the system's sources and lists are not
                touched), built with cmake against PostgreSQL 15 (Apache-licensed part only)
                and installed into the server's lib/extension directories. A warm run only
                checks the installed files against the hashes recorded at install time.
- pg/           a PostgreSQL 15 cluster on 127.0.0.1:54329, run as the `postgres` user when
                we are root (PostgreSQL refuses to run as root).
- kafka/        Apache Kafka broker jars fetched from Maven Central by a generated pom, and
                a single-node KRaft broker+controller on 127.0.0.1:39092.

Before a running server is used it is checked to be the one started from here (pid file,
the pid's command line, and a token: a marker table for PostgreSQL, the cluster id for
Kafka). A foreign process on one of the ports is an error, never silently reused.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"  # the log4j2 release Kafka 4.1 is built with
TIMESCALEDB_SUITE = "trixie"
PG_MAJOR = 15
PG_USER = "fleetwatch"
PG_PASSWORD = "fleetwatch"
PG_DATABASE = "fleetwatch"
MARKER_TABLE = "fleetwatch_provisioned"
START_TIMEOUT_S = 120.0

State = Literal["running", "starting", "stopped", "foreign"]


class ServiceError(RuntimeError):
    """A service cannot be provisioned; the message is one sentence for a person."""


@dataclass(frozen=True)
class Settings:
    """Where things live and which loopback ports they use."""

    cache: Path
    pg_port: int
    kafka_port: int
    kafka_controller_port: int
    pg_bindir: Path
    home: Path | None = None
    """Where the servers' data, logs and pid files live (default: ``cache``). The builds
    (TimescaleDB, the Kafka jars) always come from ``cache``, so a second, private pair of
    servers can run from a temporary directory on other ports."""

    @property
    def state_root(self) -> Path:
        return self.home if self.home is not None else self.cache

    @property
    def pg_dsn(self) -> str:
        return f"postgresql://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{self.pg_port}/{PG_DATABASE}"

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    # PostgreSQL
    @property
    def pg_root(self) -> Path:
        return self.state_root / "pg"

    @property
    def pg_data(self) -> Path:
        return self.pg_root / "data"

    @property
    def pg_socket_dir(self) -> Path:
        return self.pg_root / "run"

    @property
    def pg_log(self) -> Path:
        return self.pg_root / "postgres.log"

    @property
    def pg_token_file(self) -> Path:
        return self.state_root / "pg-token"

    # TimescaleDB
    @property
    def tsdb_root(self) -> Path:
        return self.cache / "timescaledb"

    @property
    def tsdb_stamp(self) -> Path:
        return self.tsdb_root / "installed.json"

    # Kafka
    @property
    def kafka_root(self) -> Path:
        """The fetched jars and Maven's files."""
        return self.cache / "kafka"

    @property
    def kafka_libs(self) -> Path:
        return self.kafka_root / f"libs-{KAFKA_VERSION}"

    @property
    def kafka_home(self) -> Path:
        """The broker's configuration, data, log and pid file."""
        return self.state_root / "kafka"

    @property
    def kafka_data(self) -> Path:
        return self.kafka_home / "data"

    @property
    def kafka_properties(self) -> Path:
        return self.kafka_home / "server.properties"

    @property
    def kafka_log4j_properties(self) -> Path:
        return self.kafka_home / "log4j2.properties"

    @property
    def kafka_pid_file(self) -> Path:
        return self.kafka_home / "kafka.pid"

    @property
    def kafka_log(self) -> Path:
        return self.kafka_home / "kafka.log"

    @property
    def kafka_cluster_id_file(self) -> Path:
        return self.kafka_home / "cluster-id"


def settings() -> Settings:
    """Settings from the environment, with the defaults the docs mention."""
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    cache = Path(os.environ.get("FLEETWATCH_DEV_CACHE") or Path(cache_home) / "fleetwatch-dev")
    kafka_port = int(os.environ.get("FLEETWATCH_DEV_KAFKA_PORT", "39092"))
    return Settings(
        cache=cache.absolute(),
        pg_port=int(os.environ.get("FLEETWATCH_DEV_PG_PORT", "54329")),
        kafka_port=kafka_port,
        kafka_controller_port=kafka_port + 1,
        pg_bindir=Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin"),
    )


def say(message: str) -> None:
    print(f"services: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- helpers


def _run(
    cmd: Sequence[str | Path],
    *,
    log: Path | None = None,
    what: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    as_user: pwd.struct_passwd | None = None,
) -> str:
    """Run a command; on failure raise ServiceError naming `what` and showing the output tail."""
    switch = as_user is not None and as_user.pw_uid != os.geteuid()
    proc = subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
        user=as_user.pw_uid if as_user and switch else None,
        group=as_user.pw_gid if as_user and switch else None,
        extra_groups=[] if switch else None,
    )
    if log is not None:
        with log.open("a") as f:
            f.write(f"$ {' '.join(str(c) for c in cmd)}\n{proc.stdout}\n")
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-25:])
        where = f" (full output in {log})" if log else ""
        raise ServiceError(f"{what} failed with exit code {proc.returncode}{where}:\n{tail}")
    return proc.stdout


def _require_tools(tools: dict[str, str]) -> None:
    """tools maps an executable to the Debian package that provides it."""
    missing = sorted({pkg for exe, pkg in tools.items() if shutil.which(exe) is None})
    if missing:
        raise ServiceError(
            f"missing build tools; install them with: apt-get install {' '.join(missing)}"
        )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _read_pid(path: Path) -> int | None:
    try:
        first = path.read_text().split("\n", 1)[0].strip()
    except OSError:
        return None
    return int(first) if first.isdigit() else None


def _foreign(port: int, variable: str) -> ServiceError:
    return ServiceError(
        f"port {port} on 127.0.0.1 is held by a process that tests/services.py did not start; "
        f"stop it or pick another port with {variable}"
    )


@contextlib.contextmanager
def _locked(s: Settings) -> Iterator[None]:
    """Serialise up/down between concurrent callers (several test runs, several shells)."""
    s.state_root.mkdir(parents=True, exist_ok=True)
    with (s.state_root / "services.lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _wait_for(
    condition: Callable[[], bool],
    timeout_s: float,
    what: str,
    check_alive: Callable[[], None] | None = None,
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return
        if check_alive is not None:
            check_alive()
        if time.monotonic() > deadline:
            raise ServiceError(f"{what} did not happen within {timeout_s:.0f} s")
        time.sleep(0.2)


# --------------------------------------------------------------------------- TimescaleDB


@dataclass(frozen=True)
class PgInstall:
    pg_config: Path
    version: str  # "15.18"
    pkglibdir: Path
    sharedir: Path


def _pg_install(s: Settings) -> PgInstall:
    postgres = s.pg_bindir / "postgres"
    pg_config = s.pg_bindir / "pg_config"
    if not postgres.exists():
        raise ServiceError(
            f"PostgreSQL {PG_MAJOR} is not installed ({postgres} is missing); "
            f"install it with: apt-get install postgresql-{PG_MAJOR}"
        )
    server = _run([postgres, "--version"], what="postgres --version")
    m = re.search(r"(\d+\.\d+)", server)
    if not m:
        raise ServiceError(f"cannot read the PostgreSQL version from {server!r}")
    version = m.group(1)

    def config(flag: str) -> str:
        return _run([pg_config, flag], what=f"pg_config {flag}").strip()

    headers = Path(config("--includedir-server")) / "postgres.h" if pg_config.exists() else None
    if headers is None or not headers.exists():
        raise ServiceError(
            f"the PostgreSQL {PG_MAJOR} server headers are missing; install them with: "
            f"apt-get install postgresql-server-dev-{PG_MAJOR} (same version as the server)"
        )
    dev_version = re.search(r"(\d+\.\d+)", config("--version"))
    if not dev_version or dev_version.group(1) != version:
        raise ServiceError(
            f"postgresql-server-dev-{PG_MAJOR} ({config('--version')}) does not match the server "
            f"({version}); install the same version of both"
        )
    return PgInstall(
        pg_config=pg_config,
        version=version,
        pkglibdir=Path(config("--pkglibdir")),
        sharedir=Path(config("--sharedir")),
    )


def _timescaledb_installed(s: Settings, pg: PgInstall) -> bool:
    """True when the files we installed are still there, unchanged, for this server version."""
    try:
        stamp = json.loads(s.tsdb_stamp.read_text())
    except (OSError, ValueError):
        return False
    if stamp.get("pg_version") != pg.version or not stamp.get("files"):
        return False
    for name, digest in stamp["files"].items():
        path = Path(name)
        if not path.exists() or _sha256(path) != digest:
            return False
    return True


def _apt_private(s: Settings) -> dict[str, str]:
    """Environment for apt-get with its own sources list, state and cache."""
    apt = s.tsdb_root / "apt"
    for sub in ("sources.list.d", "lists/partial", "archives/partial"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    (apt / "sources.list").write_text(
        "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
        f"http://deb.debian.org/debian {TIMESCALEDB_SUITE} main\n"
    )
    lines = [
        f'Dir::Etc::SourceList "{apt}/sources.list";',
        f'Dir::Etc::SourceParts "{apt}/sources.list.d";',
        f'Dir::State "{apt}";',
        f'Dir::State::Lists "{apt}/lists";',
        f'Dir::Cache "{apt}";',
        f'Dir::Cache::Archives "{apt}/archives";',
    ]
    if os.geteuid() == 0:
        # the _apt sandbox user cannot reach a cache inside root's home
        lines.append('APT::Sandbox::User "root";')
    (apt / "apt.conf").write_text("\n".join(lines) + "\n")
    return {**os.environ, "APT_CONFIG": str(apt / "apt.conf"), "LC_ALL": "C"}


def _build_timescaledb(s: Settings, pg: PgInstall, log: Path) -> Path:
    """Fetch and build the extension; return the cmake build directory."""
    _require_tools(
        {
            "apt-get": "apt",
            "dpkg-source": "dpkg-dev",
            "cmake": "cmake",
            "make": "make",
            "cc": "build-essential",
        }
    )
    build = s.tsdb_root / "build"
    build_stamp = build / "fleetwatch-build.json"
    want = {"pg_config": str(pg.pg_config), "pg_version": pg.version}
    with contextlib.suppress(OSError, ValueError):
        if json.loads(build_stamp.read_text()) == want:
            return build

    env = _apt_private(s)
    src_root = s.tsdb_root / "src"
    shutil.rmtree(src_root, ignore_errors=True)
    shutil.rmtree(build, ignore_errors=True)
    src_root.mkdir(parents=True)
    say(f"fetching Debian's timescaledb source package from {TIMESCALEDB_SUITE}")
    _run(["apt-get", "-q", "update"], env=env, log=log, what="apt-get update (private)")
    _run(
        ["apt-get", "-q", "source", "timescaledb"],
        env=env,
        cwd=src_root,
        log=log,
        what="apt-get source timescaledb",
    )
    sources = [p for p in src_root.iterdir() if (p / "CMakeLists.txt").exists()]
    if len(sources) != 1:
        raise ServiceError(f"expected one unpacked timescaledb source tree in {src_root}")
    say(f"building {sources[0].name} against PostgreSQL {pg.version} (about a minute)")
    _run(
        [
            "cmake",
            "-S",
            sources[0],
            "-B",
            build,
            "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
            f"-DPG_CONFIG={pg.pg_config}",
            "-DAPACHE_ONLY=1",
            "-DREGRESS_CHECKS=OFF",
            "-DTAP_CHECKS=OFF",
            "-DUSE_OPENSSL=OFF",
            "-DUSE_TELEMETRY=OFF",
            "-DSEND_TELEMETRY_DEFAULT=OFF",
            "-DWARNINGS_AS_ERRORS=OFF",
        ],
        log=log,
        what="cmake configure of timescaledb",
    )
    _run(["make", "-C", build, f"-j{os.cpu_count() or 2}"], log=log, what="building timescaledb")
    build_stamp.write_text(json.dumps(want))
    return build


def ensure_timescaledb(s: Settings, *, build: bool = True) -> None:
    """Make sure the TimescaleDB extension is installed for the local PostgreSQL 15."""
    pg = _pg_install(s)
    if _timescaledb_installed(s, pg):
        return
    if not build:
        raise ServiceError("TimescaleDB is not built yet; run: python tests/services.py up")
    s.tsdb_root.mkdir(parents=True, exist_ok=True)
    log = s.tsdb_root / "build.log"
    log.write_text("")
    build_dir = _build_timescaledb(s, pg, log)
    if not os.access(pg.pkglibdir, os.W_OK):
        raise ServiceError(
            f"installing TimescaleDB into {pg.pkglibdir} needs root; "
            f"run: sudo make -C {build_dir} install"
        )
    say(f"installing TimescaleDB into {pg.pkglibdir} and {pg.sharedir}/extension")
    staging = s.tsdb_root / "staging"
    shutil.rmtree(staging, ignore_errors=True)
    _run(
        ["make", "-C", build_dir, "install", f"DESTDIR={staging}"],
        log=log,
        what="make install of timescaledb",
    )
    files: dict[str, str] = {}
    for staged in sorted(p for p in staging.rglob("*") if p.is_file()):
        target = Path("/") / staged.relative_to(staging)
        digest = _sha256(staged)
        if not target.exists() or _sha256(target) != digest:
            # a new inode, renamed into place: a running server keeps the library it mapped
            partial = target.with_name(f".{target.name}.partial")
            shutil.copy2(staged, partial)
            partial.replace(target)
        files[str(target)] = digest
    s.tsdb_stamp.write_text(json.dumps({"pg_version": pg.version, "files": files}, indent=1))


# --------------------------------------------------------------------------- PostgreSQL


def _pg_os_user() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise ServiceError(
            "there is no `postgres` user to run PostgreSQL as; "
            f"install postgresql-{PG_MAJOR}, which creates it"
        ) from None


def _grant_traverse(s: Settings, user: pwd.struct_passwd) -> None:
    """Let the postgres user reach its data directory inside root's home (search bit only)."""
    if user.pw_uid == os.geteuid():
        return
    probe = ["test", "-x", str(s.pg_root)]
    if subprocess.run(probe, user=user.pw_uid, group=user.pw_gid, check=False).returncode == 0:
        return
    _require_tools({"setfacl": "acl"})
    for directory in reversed(s.pg_root.parents):
        if not os.stat(directory).st_mode & 0o001:
            _run(
                ["setfacl", "-m", f"u:{user.pw_name}:x", directory],
                what=f"granting {user.pw_name} search access to {directory}",
            )


def _pg_pid(s: Settings) -> int | None:
    """The pid of the postmaster we started on our data directory, if it is alive."""
    pid = _read_pid(s.pg_data / "postmaster.pid")
    if pid is None:
        return None
    cmd = _cmdline(pid)
    if cmd and Path(cmd[0]).name in ("postgres", "postmaster") and str(s.pg_data) in cmd:
        return pid
    return None


def _pg_token(s: Settings) -> str:
    if not s.pg_token_file.exists():
        s.pg_token_file.write_text(secrets.token_hex(16))
    return s.pg_token_file.read_text().strip()


def _pg_is_ours(s: Settings) -> bool:
    """Ask the server on our port for the marker token and its data directory."""
    import psycopg

    dsn = f"host=127.0.0.1 port={s.pg_port} user={PG_USER} password={PG_PASSWORD} dbname=postgres"
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            row = conn.execute(
                f"SELECT (SELECT token FROM public.{MARKER_TABLE}), "
                "current_setting('data_directory')"
            ).fetchone()
    except psycopg.Error:
        return False
    return row is not None and row[0] == _pg_token(s) and row[1] == str(s.pg_data)


def pg_state(s: Settings) -> State:
    if _pg_pid(s) is None:
        return "foreign" if _port_open(s.pg_port) else "stopped"
    return "running" if _pg_is_ours(s) else "starting"


def _write_pg_config(s: Settings) -> None:
    (s.pg_data / "fleetwatch.conf").write_text(
        "# written by tests/services.py on every start\n"
        "listen_addresses = '127.0.0.1'\n"
        f"port = {s.pg_port}\n"
        f"unix_socket_directories = '{s.pg_socket_dir}'\n"
        "shared_preload_libraries = 'timescaledb'\n"
        "timescaledb.telemetry_level = off\n"
        "fsync = on\n"
        "max_connections = 200\n"
        "max_locks_per_transaction = 256\n"
        "max_worker_processes = 24\n"
        "shared_buffers = 256MB\n"
        "password_encryption = 'scram-sha-256'\n"
        "log_min_messages = warning\n"
        "log_min_error_statement = panic\n"
    )
    (s.pg_data / "pg_hba.conf").write_text(
        "# written by tests/services.py: the socket directory is private, TCP is loopback only\n"
        "local all all trust\n"
        "host all all 127.0.0.1/32 scram-sha-256\n"
    )


def _pg_init(s: Settings, user: pwd.struct_passwd) -> None:
    say(f"initialising a PostgreSQL {PG_MAJOR} cluster in {s.pg_data}")
    _run(
        [
            s.pg_bindir / "initdb",
            "-D",
            s.pg_data,
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        ],
        what="initdb",
        as_user=user,
        cwd=s.pg_root,
    )
    with (s.pg_data / "postgresql.conf").open("a") as f:
        f.write("\ninclude = 'fleetwatch.conf'\n")


def _pg_bootstrap(s: Settings) -> None:
    """Create the role, the database and the marker table, idempotently."""
    import psycopg
    from psycopg import sql

    admin = f"host={s.pg_socket_dir} port={s.pg_port} user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [PG_USER]).fetchone() is None:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER").format(sql.Identifier(PG_USER)))
        conn.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(PG_USER), sql.Literal(PG_PASSWORD)
            )
        )
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [PG_DATABASE])
        if exists.fetchone() is None:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(PG_DATABASE), sql.Identifier(PG_USER)
                )
            )
        conn.execute(f"CREATE TABLE IF NOT EXISTS public.{MARKER_TABLE} (token text NOT NULL)")
        conn.execute(f"DELETE FROM public.{MARKER_TABLE}")
        conn.execute(f"INSERT INTO public.{MARKER_TABLE} VALUES (%s)", [_pg_token(s)])


def start_pg(s: Settings) -> None:
    """Start our cluster unless it runs; then make sure it is the one answering on our port."""
    if _pg_pid(s) is None:
        if _port_open(s.pg_port):
            raise _foreign(s.pg_port, "FLEETWATCH_DEV_PG_PORT")
        _start_pg_process(s)
    _pg_bootstrap(s)
    if not _pg_is_ours(s):
        raise ServiceError(f"the server answering on {s.pg_dsn} is not the cluster in {s.pg_data}")


def _start_pg_process(s: Settings) -> None:
    user = _pg_os_user()
    s.pg_root.mkdir(parents=True, exist_ok=True)
    s.pg_socket_dir.mkdir(exist_ok=True)
    for path in (s.pg_root, s.pg_socket_dir):
        os.chown(path, user.pw_uid, user.pw_gid)
        path.chmod(0o700)
    _grant_traverse(s, user)
    if not (s.pg_data / "PG_VERSION").exists():
        shutil.rmtree(s.pg_data, ignore_errors=True)
        _pg_init(s, user)
    else:
        (s.pg_data / "postmaster.pid").unlink(missing_ok=True)  # stale: left by a crash
    _write_pg_config(s)
    _run(
        [s.pg_bindir / "pg_ctl", "-D", s.pg_data, "-l", s.pg_log, "-w", "-t", "120", "start"],
        what=f"starting PostgreSQL (log: {s.pg_log})",
        as_user=user,
        cwd=s.pg_root,
    )


def stop_pg(s: Settings, mode: Literal["smart", "fast", "immediate"] = "fast") -> None:
    """Stop our cluster; ``immediate`` is a crash: the next start recovers from the WAL."""
    if _pg_pid(s) is None:
        return
    _run(
        [s.pg_bindir / "pg_ctl", "-D", s.pg_data, "-m", mode, "-w", "-t", "120", "stop"],
        what="stopping PostgreSQL",
        as_user=_pg_os_user(),
        cwd=s.pg_root,
    )


# --------------------------------------------------------------------------- Kafka


def _kafka_pom() -> str:
    def dep(group: str, artifact: str, version: str) -> str:
        return (
            f"    <dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
            f"<version>{version}</version></dependency>\n"
        )

    return (
        '<project xmlns="http://maven.apache.org/POM/4.0.0">\n'
        "  <!-- generated by tests/services.py to fetch the broker's jars -->\n"
        "  <modelVersion>4.0.0</modelVersion>\n"
        "  <groupId>fleetwatch.dev</groupId><artifactId>kafka-broker</artifactId>"
        "<version>1</version><packaging>pom</packaging>\n"
        "  <dependencies>\n"
        + dep("org.apache.kafka", "kafka_2.13", KAFKA_VERSION)
        + dep("org.apache.logging.log4j", "log4j-slf4j-impl", LOG4J_VERSION)
        + "  </dependencies>\n</project>\n"
    )


def ensure_kafka_jars(s: Settings, *, fetch: bool = True) -> None:
    done = s.kafka_libs / ".complete"
    if done.exists():
        return
    if not fetch:
        raise ServiceError("the Kafka broker is not fetched yet; run: python tests/services.py up")
    _require_tools({"mvn": "maven", "java": "openjdk-17-jre-headless"})
    s.kafka_root.mkdir(parents=True, exist_ok=True)
    pom = s.kafka_root / "pom.xml"
    pom.write_text(_kafka_pom())
    shutil.rmtree(s.kafka_libs, ignore_errors=True)
    say(f"fetching Apache Kafka {KAFKA_VERSION} broker jars from Maven Central")
    try:
        _run(
            [
                "mvn",
                "-B",
                "-q",
                "-f",
                pom,
                f"-Dmaven.repo.local={s.kafka_root / 'm2'}",
                "dependency:copy-dependencies",
                f"-DoutputDirectory={s.kafka_libs}",
                "-DincludeScope=runtime",
            ],
            log=s.kafka_root / "mvn.log",
            what="mvn dependency:copy-dependencies",
        )
    except ServiceError as exc:
        raise ServiceError(f"Maven Central did not deliver the Kafka jars: {exc}") from None
    done.write_text(KAFKA_VERSION)


def _kafka_cluster_id(s: Settings) -> str:
    """Our broker's cluster id, made once. Like Kafka's own random ids it never starts with
    "-": the storage tool would read such an id as an option and refuse to format."""
    path = s.kafka_cluster_id_file
    if not path.exists() or path.read_text().startswith("-"):
        raw = "-"
        while raw.startswith("-"):
            raw = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        path.write_text(raw)
    return path.read_text().strip()


def _write_kafka_config(s: Settings) -> None:
    host = "127.0.0.1"
    s.kafka_properties.write_text(
        "# written by tests/services.py on every start: one node, broker and KRaft controller\n"
        "process.roles=broker,controller\n"
        "node.id=1\n"
        f"controller.quorum.voters=1@{host}:{s.kafka_controller_port}\n"
        f"listeners=PLAINTEXT://{host}:{s.kafka_port},CONTROLLER://{host}:{s.kafka_controller_port}\n"
        f"advertised.listeners=PLAINTEXT://{host}:{s.kafka_port}\n"
        "controller.listener.names=CONTROLLER\n"
        "inter.broker.listener.name=PLAINTEXT\n"
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n"
        f"log.dirs={s.kafka_data}\n"
        "num.partitions=6\n"
        # topics are created explicitly, by the tests and by the application
        "auto.create.topics.enable=false\n"
        "offsets.topic.replication.factor=1\n"
        "offsets.topic.num.partitions=6\n"
        "transaction.state.log.replication.factor=1\n"
        "transaction.state.log.min.isr=1\n"
        "transaction.state.log.num.partitions=6\n"
        "share.coordinator.state.topic.replication.factor=1\n"
        "share.coordinator.state.topic.min.isr=1\n"
        "group.initial.rebalance.delay.ms=0\n"
        "num.network.threads=2\n"
        "num.io.threads=4\n"
        "log.cleaner.dedupe.buffer.size=16777216\n"
    )
    s.kafka_log4j_properties.write_text(
        "status = warn\n"
        "appender.out.type = Console\n"
        "appender.out.name = OUT\n"
        "appender.out.layout.type = PatternLayout\n"
        "appender.out.layout.pattern = [%d] %p %m (%c)%n\n"
        "rootLogger.level = warn\n"
        "rootLogger.appenderRef.out.ref = OUT\n"
        "logger.server.name = kafka.server.KafkaRaftServer\n"
        "logger.server.level = info\n"
    )


def _kafka_pid(s: Settings) -> int | None:
    pid = _read_pid(s.kafka_pid_file)
    if pid is None:
        return None
    cmd = _cmdline(pid)
    if "kafka.Kafka" in cmd and str(s.kafka_properties) in cmd:
        return pid
    return None


def _kafka_cluster_seen(s: Settings, timeout_s: float = 5.0) -> str | None:
    """The cluster id the broker on our port reports, or None when it does not answer."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": s.kafka_bootstrap, "log_level": 0})
    try:
        cluster_id: str | None = admin.list_topics(timeout=timeout_s).cluster_id
    except Exception:  # KafkaException: not (yet) answering
        return None
    return cluster_id


def kafka_state(s: Settings) -> State:
    if _kafka_pid(s) is None:
        ports = (s.kafka_port, s.kafka_controller_port)
        return "foreign" if any(_port_open(p) for p in ports) else "stopped"
    return "running" if _kafka_cluster_seen(s) == _kafka_cluster_id(s) else "starting"


def _kafka_java() -> list[str]:
    _require_tools({"java": "openjdk-17-jre-headless"})
    return [
        "java",
        "-Xms256m",
        "-Xmx512m",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
    ]


def _start_kafka_process(s: Settings) -> int | None:
    """Start the broker if it is not running; return the new pid (None when already up)."""
    if _kafka_pid(s) is not None:
        return None  # ours, running or still starting
    for port in (s.kafka_port, s.kafka_controller_port):
        if _port_open(port):
            raise _foreign(port, "FLEETWATCH_DEV_KAFKA_PORT")
    s.kafka_home.mkdir(parents=True, exist_ok=True)
    _write_kafka_config(s)
    classpath = f"{s.kafka_libs}/*"
    if not (s.kafka_data / "meta.properties").exists():
        shutil.rmtree(s.kafka_data, ignore_errors=True)
        say(f"formatting Kafka storage in {s.kafka_data}")
        _run(
            [
                *_kafka_java(),
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                _kafka_cluster_id(s),
                "-c",
                s.kafka_properties,
            ],
            what="kafka StorageTool format",
        )
    if s.kafka_log.exists():
        s.kafka_log.replace(s.kafka_log.with_suffix(".log.1"))
    with s.kafka_log.open("w") as log:
        proc = subprocess.Popen(
            [
                *_kafka_java(),
                f"-Dlog4j2.configurationFile={s.kafka_log4j_properties}",
                "-cp",
                classpath,
                "kafka.Kafka",
                str(s.kafka_properties),
            ],
            cwd=s.kafka_home,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    s.kafka_pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def _wait_kafka(s: Settings) -> None:
    def alive() -> None:
        # Not _kafka_pid(): the java launcher may re-exec itself, and for that moment its
        # command line is empty.
        pid = _read_pid(s.kafka_pid_file)
        if pid is None or _gone(pid):
            tail = "\n".join(s.kafka_log.read_text(errors="replace").splitlines()[-20:])
            raise ServiceError(f"the Kafka broker exited (log: {s.kafka_log}):\n{tail}")

    _wait_for(lambda: _port_open(s.kafka_port), START_TIMEOUT_S, "Kafka listening", alive)
    _wait_for(lambda: _kafka_cluster_seen(s) is not None, START_TIMEOUT_S, "Kafka answering", alive)
    if _kafka_cluster_seen(s) != _kafka_cluster_id(s):
        raise ServiceError(
            f"the broker on {s.kafka_bootstrap} reports another cluster id than {s.kafka_home}"
        )


def start_kafka(s: Settings) -> None:
    """Start our broker unless it runs (on its existing log dir), and wait until it answers."""
    _start_kafka_process(s)
    _wait_kafka(s)


def stop_kafka(s: Settings, *, kill: bool = False) -> None:
    """Stop our broker: a controlled shutdown, or with ``kill`` a SIGKILL (a crash)."""
    pid = _kafka_pid(s)
    if pid is None:
        return
    if kill:
        os.kill(pid, signal.SIGKILL)
        _wait_for(lambda: _gone(pid), 10, "Kafka kill")
        s.kafka_pid_file.unlink(missing_ok=True)
        return
    os.kill(pid, signal.SIGTERM)  # controlled shutdown
    try:
        _wait_for(lambda: _gone(pid), 60, "Kafka shutdown")
    except ServiceError:
        os.kill(pid, signal.SIGKILL)
        _wait_for(lambda: _gone(pid), 10, "Kafka kill")
    s.kafka_pid_file.unlink(missing_ok=True)


def _gone(pid: int) -> bool:
    """True once every thread of ``pid`` has exited (reaping it if it is our child).

    The JVM's main thread may exit before the others, which still hold the ports and
    the log directory lock: an empty command line alone does not mean it is gone.
    """
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    zombie = fields.get("State", "").strip().startswith("Z")
    return zombie and int(fields.get("Threads", "1").strip() or 1) <= 1


# --------------------------------------------------------------------------- commands


def is_built(s: Settings | None = None) -> bool:
    """True when `up` would start both servers without building or downloading anything."""
    s = s or settings()
    try:
        return _timescaledb_installed(s, _pg_install(s)) and (s.kafka_libs / ".complete").exists()
    except ServiceError:
        return False


def _refuse_foreign(s: Settings) -> None:
    if _pg_pid(s) is None and _port_open(s.pg_port):
        raise _foreign(s.pg_port, "FLEETWATCH_DEV_PG_PORT")
    for port in (s.kafka_port, s.kafka_controller_port):
        if _kafka_pid(s) is None and _port_open(port):
            raise _foreign(port, "FLEETWATCH_DEV_KAFKA_PORT")


def _start_both(s: Settings) -> None:
    _start_kafka_process(s)  # the JVM warms up while PostgreSQL starts
    start_pg(s)
    _wait_kafka(s)


def up(s: Settings | None = None, *, build: bool = True) -> Settings:
    """Build what is missing, start both servers and wait until both answer."""
    s = s or settings()
    with _locked(s):
        _refuse_foreign(s)  # before spending a minute on building
        ensure_timescaledb(s, build=build)
        ensure_kafka_jars(s, fetch=build)
        _start_both(s)
    return s


def start_private(s: Settings) -> None:
    """Start a second pair of servers (``s.home`` set, other ports) from the builds that are
    already installed, and wait until both answer; stop them with :func:`down`.

    Nothing is built or fetched, and the installed TimescaleDB is used as it is (whoever
    installed it), so tests can restart and crash these servers without touching the
    shared ones.
    """
    if s.home is None or s.home == s.cache:
        raise ServiceError("a private pair of servers needs its own home directory")
    control = _pg_install(s).sharedir / "extension" / "timescaledb.control"
    if not control.exists():
        raise ServiceError("TimescaleDB is not installed; run: python tests/services.py up")
    with _locked(s):
        _refuse_foreign(s)
        ensure_kafka_jars(s, fetch=False)
        _start_both(s)


def down(s: Settings | None = None) -> None:
    s = s or settings()
    with _locked(s):
        stop_kafka(s)
        stop_pg(s)


def status(s: Settings | None = None) -> dict[str, State]:
    s = s or settings()
    return {"postgres": pg_state(s), "kafka": kafka_state(s)}


def env_lines(s: Settings | None = None) -> list[str]:
    s = s or settings()
    return [f"FLEETWATCH_TEST_DSN={s.pg_dsn}", f"FLEETWATCH_TEST_KAFKA={s.kafka_bootstrap}"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    args = parser.parse_args(argv)
    s = settings()
    try:
        if args.command == "up":
            started = time.monotonic()
            up(s)
            say(
                f"PostgreSQL {s.pg_dsn} and Kafka {s.kafka_bootstrap} are up "
                f"({time.monotonic() - started:.1f} s)"
            )
        elif args.command == "down":
            down(s)
            say("stopped")
        elif args.command == "status":
            states = status(s)
            print(f"postgres {states['postgres']:8} {s.pg_dsn}")
            print(f"kafka    {states['kafka']:8} {s.kafka_bootstrap}")
            return 0 if set(states.values()) == {"running"} else 1
        else:
            print("\n".join(env_lines(s)))
    except ServiceError as exc:
        print(f"services: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
