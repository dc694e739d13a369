"""Schema migrations: apply ``sql/NNN_*.sql`` in order, once each, and set up TimescaleDB.

The SQL files are plain PostgreSQL. When TimescaleDB can be used, the runner creates
the extension and turns the event tables into hypertables, so the same files work on
every backend. Everything happens in one transaction under an advisory lock, so
concurrent runners wait for each other and a second run does nothing.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

if TYPE_CHECKING:
    from importlib.abc import Traversable

log = logging.getLogger(__name__)

MIGRATION_LOCK_KEY = 0x666C_6565_7477  # "fleetw": one advisory lock for schema changes
HYPERTABLES = ("telemetry", "perception_events", "driving_events", "alert_transitions")
CHUNK_INTERVAL = "1 day"

_NAME = re.compile(r"^(\d{3})_[A-Za-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: str
    name: str
    text: str


def sql_dir() -> Traversable:
    """``fleetwatch/sql`` inside an installed wheel, else the repository's ``sql/``."""
    packaged = resources.files("fleetwatch").joinpath("sql")
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "sql"


def migrations(directory: Traversable | None = None) -> list[Migration]:
    """Every migration file, ordered by its number."""
    directory = directory if directory is not None else sql_dir()
    found: list[Migration] = []
    for entry in directory.iterdir():
        match = _NAME.match(entry.name)
        if match and entry.is_file():
            found.append(Migration(match.group(1), entry.name, entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migration files share a number in {directory}")
    return found


def _timescaledb(cur: psycopg.Cursor[Any]) -> bool:
    """Create the extension if it is available and loadable; True when it is installed."""
    row = cur.execute(
        "SELECT extversion IS NOT NULL, available"
        " FROM (SELECT EXISTS (SELECT 1 FROM pg_available_extensions"
        "                      WHERE name = 'timescaledb') AS available) a"
        " LEFT JOIN pg_extension ON extname = 'timescaledb'"
    ).fetchone()
    assert row is not None
    installed, available = row
    if installed or not available:
        return bool(installed)
    try:
        with cur.connection.transaction():
            cur.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error as error:
        # Not preloaded, or not allowed for this role: plain PostgreSQL it is.
        log.warning("TimescaleDB is available but cannot be enabled: %s", error)
        return False
    return True


def _make_hypertables(cur: psycopg.Cursor[Any]) -> list[str]:
    made: list[str] = []
    for table in HYPERTABLES:
        row = cur.execute(
            "SELECT to_regclass(%s) IS NOT NULL,"
            " EXISTS (SELECT 1 FROM timescaledb_information.hypertables"
            "         WHERE hypertable_schema = current_schema() AND hypertable_name = %s)",
            (table, table),
        ).fetchone()
        assert row is not None
        exists, already = row
        if not exists or already:
            continue
        cur.execute(
            "SELECT create_hypertable(%s::regclass, 'time',"
            " chunk_time_interval => %s::interval, migrate_data => true)",
            (table, CHUNK_INTERVAL),
        )
        made.append(table)
    return made


def apply_migrations(conn: psycopg.Connection[Any]) -> list[str]:
    """Apply pending migrations and commit; return the names of the files applied.

    Safe to run twice and from several processes at once. ``conn`` must not be inside
    a transaction.
    """
    applied: list[str] = []
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY,"
            " name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r[0] for r in cur.execute("SELECT version FROM schema_migrations")}
        timescale = _timescaledb(cur)
        for migration in migrations():
            if migration.version in done:
                continue
            log.info("applying %s", migration.name)
            cur.execute(sql.SQL(migration.text))  # a trusted file of the package
            cur.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            applied.append(migration.name)
        if timescale:
            for table in _make_hypertables(cur):
                log.info("made %s a hypertable", table)
    return applied


def applied_migrations(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """``(version, name)`` of every applied migration, oldest first (empty if none)."""
    row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return []
    rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version")
    return [(r[0], r[1]) for r in rows]
