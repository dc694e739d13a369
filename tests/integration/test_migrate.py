"""Migrations on a real PostgreSQL/TimescaleDB: in order, once, concurrently, with hypertables."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from fleetwatch.store.capabilities import detect
from fleetwatch.store.db import DatabaseUnavailable, connect
from fleetwatch.store.migrate import HYPERTABLES, applied_migrations, apply_migrations, migrations


@pytest.fixture
def empty_dsn(pg_dsn: str) -> Iterator[str]:
    """A database with nothing in it (not cloned from the migrated template)."""
    name = f"fwtest_{os.getpid()}_empty_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(pg_dsn, dbname=name)
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def tables(conn: psycopg.Connection[tuple[object, ...]]) -> set[str]:
    rows = conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    ).fetchall()
    return {str(r[0]) for r in rows}


def test_fresh_database_gets_every_migration_once(empty_dsn: str) -> None:
    files = [m.name for m in migrations()]
    assert files[0] == "001_core.sql"
    with connect(empty_dsn) as conn:
        before = detect(conn)
        conn.rollback()
        assert before.timescaledb is False
        assert before.timescaledb_available is True

        assert apply_migrations(conn) == files
        assert [name for _, name in applied_migrations(conn)] == files
        assert {
            "telemetry",
            "perception_events",
            "driving_events",
            "vehicles",
            "vehicle_minute",
            "alerts",
            "alert_transitions",
            "silences",
            "rejects",
            "ingest_offsets",
            "schema_migrations",
        } <= tables(conn)

        # A second run changes nothing.
        assert apply_migrations(conn) == []
        assert [name for _, name in applied_migrations(conn)] == files


def test_timescaledb_is_detected_and_event_tables_are_hypertables(empty_dsn: str) -> None:
    with connect(empty_dsn) as conn:
        apply_migrations(conn)
        caps = detect(conn)
        assert caps.timescaledb is True
        assert caps.hypertables is True
        assert caps.license in ("apache", "timescale")
        # The Apache build has no continuous aggregates, compression or retention policies.
        if caps.license == "apache":
            assert not (caps.continuous_aggregates or caps.compression or caps.retention_policies)
        assert caps.timescaledb_version
        rows = conn.execute(
            "SELECT hypertable_name FROM timescaledb_information.hypertables"
        ).fetchall()
        assert {str(r[0]) for r in rows} == set(HYPERTABLES)
        interval = conn.execute(
            "SELECT time_interval FROM timescaledb_information.dimensions"
            " WHERE hypertable_name = 'telemetry'"
        ).fetchone()
        assert interval is not None
        assert str(interval[0]) == "1 day, 0:00:00"


def test_concurrent_runners_apply_each_migration_once(empty_dsn: str) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def migrate() -> None:
        try:
            with connect(empty_dsn) as conn:
                barrier.wait()
                results.append(apply_migrations(conn))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=migrate) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    files = [m.name for m in migrations()]
    assert sorted(results, key=len) == [[], [], files]
    with connect(empty_dsn) as conn:
        count = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
        assert count == (len(files),)


def test_the_template_database_is_migrated(db_dsn: str) -> None:
    with connect(db_dsn) as conn:
        assert apply_migrations(conn) == []
        assert "ingest_offsets" in tables(conn)


def test_unreachable_database_is_one_sentence_with_the_password_masked() -> None:
    with pytest.raises(DatabaseUnavailable) as info:
        connect("postgresql://fleetwatch:hunter2@127.0.0.1:1/fleetwatch", connect_timeout=2)
    message = str(info.value)
    assert "hunter2" not in message
    assert "****" in message
    assert "\n" not in message
