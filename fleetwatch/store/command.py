"""`fleetwatch db migrate|status|reset`: upgrade the schema, describe or wipe the database.

- ``migrate`` applies pending ``sql/`` migrations; with TimescaleDB's community
  licence it also sets the compression and retention policies
  (``database.compress_after_days``, ``database.retention_days``).
- ``status`` prints which database (the masked DSN, or "embedded at PATH"), the
  backend and its capabilities, the schema version, the size and row counts.
- ``reset`` deletes the embedded database after a confirmation (``--yes`` skips it);
  it refuses for a database given by DSN.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

import psycopg
from psycopg import sql

from fleetwatch.cli import CliError
from fleetwatch.config import Settings
from fleetwatch.store import migrate, rollups
from fleetwatch.store.capabilities import Capabilities, detect
from fleetwatch.store.db import DatabaseUnavailable, connect
from fleetwatch.store.embedded import (
    EmbeddedError,
    EmbeddedPostgres,
    database_dsn,
    describe_database,
)

COUNTED_TABLES = (
    "telemetry",
    "perception_events",
    "driving_events",
    "vehicles",
    "vehicle_minute",
    "fleet_minute",
    "perception_minute",
    "perception_hist_minute",
    "alerts",
    "alert_transitions",
    "silences",
    "rejects",
    "ingest_offsets",
)


def _add_db_flag(parser: argparse.ArgumentParser, default: Any = None) -> None:
    parser.add_argument(
        "--db",
        dest="database.dsn",
        metavar="DSN",
        default=default,
        help="PostgreSQL/TimescaleDB connection string (default: the embedded database)",
    )


def configure(parser: argparse.ArgumentParser) -> None:
    _add_db_flag(parser)
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions = [
        sub.add_parser(
            "migrate",
            help="apply pending schema migrations",
            description="Apply pending schema migrations (safe to run twice).",
        ),
        sub.add_parser(
            "status",
            help="which database, backend, schema version, size, row counts",
            description="Which database, its backend and capabilities, schema version, "
            "size and row counts.",
        ),
        sub.add_parser(
            "reset",
            help="delete the embedded database and all its data",
            description="Delete the embedded database in the user data directory and all "
            "its data; it is created afresh when 'fleetwatch' next runs. A server database "
            "(--db) is never deleted.",
        ),
    ]
    actions[2].add_argument("--yes", action="store_true", help="do not ask for confirmation")
    for action in actions:
        # --db also after the action; SUPPRESS keeps a --db given before it.
        _add_db_flag(action, default=argparse.SUPPRESS)


def run(args: argparse.Namespace, settings: Settings, out: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout
    dsn = settings.database.dsn.get_secret_value() if settings.database.dsn else None
    try:
        if args.action == "reset":
            return _reset(dsn, settings, args.yes, out)
        embedded = EmbeddedPostgres(settings.database.data_dir)
        if args.action == "status" and dsn is None and not embedded.initialized():
            # Nothing to report on: creating it here would only leave an empty database.
            print(
                f"fleetwatch: there is no embedded database in {embedded.data_dir} yet: "
                "'fleetwatch' creates it when it first runs; give --db DSN for a server",
                file=sys.stderr,
            )
            return 1
        with database_dsn(dsn, settings.database.data_dir) as target, connect(target) as conn:
            if args.action == "migrate":
                return _migrate(conn, settings, out)
            return _status(conn, describe_database(dsn, settings.database.data_dir), out)
    except (DatabaseUnavailable, EmbeddedError) as error:
        print(f"fleetwatch: {error}", file=sys.stderr)
        return 1
    except psycopg.Error as error:
        first = str(error).strip().splitlines()
        print(f"fleetwatch: the database refused: {first[0] if first else error}", file=sys.stderr)
        return 1


def _migrate(conn: psycopg.Connection[Any], settings: Settings, out: TextIO) -> int:
    applied = migrate.apply_migrations(conn)
    for name in applied:
        out.write(f"applied {name}\n")
    caps = detect(conn)
    policies = apply_policies(conn, caps, settings)
    if policies:
        out.write(
            f"compression after {settings.database.compress_after_days} days and retention "
            f"of {settings.database.retention_days} days set\n"
        )
    versions = migrate.applied_migrations(conn)
    latest = versions[-1][0] if versions else "none"
    if not applied:
        out.write(f"the schema is up to date (version {latest})\n")
    return 0


def apply_policies(conn: psycopg.Connection[Any], caps: Capabilities, settings: Settings) -> bool:
    """Compression and retention policies where the TimescaleDB licence has them.

    Returns False (and changes nothing) on the Apache build and plain PostgreSQL,
    where retention is ``rollups.enforce_retention`` run by the ingestor.
    """
    if not (caps.compression and caps.retention_policies):
        return False
    with conn.transaction():
        for statement in rollups.policy_statements(
            settings.database.retention_days, settings.database.compress_after_days
        ):
            conn.execute(statement)
    return True


def _status(conn: psycopg.Connection[Any], where: str, out: TextIO) -> int:
    caps = detect(conn)
    versions = migrate.applied_migrations(conn)
    size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()
    lines = [
        ("database", where),
        ("backend", caps.describe()),
        (
            "schema",
            f"version {versions[-1][0]} ({len(versions)} migrations applied)"
            if versions
            else "none: run 'fleetwatch db migrate'",
        ),
        ("size", str(size[0]) if size else "?"),
    ]
    for table in COUNTED_TABLES:
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
        if not exists or not exists[0]:
            continue
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        ).fetchone()
        lines.append((f"rows in {table}", f"{row[0]:,}" if row else "?"))
    conn.rollback()
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        out.write(f"{key:<{width}}  {value}\n")
    return 0


def _reset(dsn: str | None, settings: Settings, yes: bool, out: TextIO) -> int:
    if dsn:
        raise CliError(
            "'fleetwatch db reset' only deletes the embedded database; drop a server "
            "database with that server's own tools"
        )
    server = EmbeddedPostgres(settings.database.data_dir)
    if not server.initialized():
        out.write(f"there is no embedded database at {server.data_dir}\n")
        return 0
    if not yes:
        if not sys.stdin.isatty():
            raise CliError("refusing to delete the embedded database without --yes")
        answer = input(
            f"Delete the embedded database at {server.data_dir} and all its data? [y/N] "
        )
        if answer.strip().lower() not in ("y", "yes"):
            out.write("nothing deleted\n")
            return 1
    server.reset()
    out.write(f"deleted the embedded database at {server.data_dir}\n")
    return 0
