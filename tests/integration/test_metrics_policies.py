"""Compression and retention policies: used only where the TimescaleDB licence has them.

The CI server runs the Apache build, which cannot run the policies. These tests check
that they are skipped there, that they would be chosen under the community licence,
and that every statement parses and names functions with the right signatures: the
Apache build resolves each call and then refuses it for its licence (SQLSTATE 0A000),
whereas a syntax error (42601) or a wrong signature (42883) would fail before that.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import psycopg
import pytest

from fleetwatch.config import Settings, load_settings
from fleetwatch.store import command, rollups
from fleetwatch.store.capabilities import detect


def _settings() -> Settings:
    settings, _ = load_settings(
        {"database.retention_days": 14, "database.compress_after_days": 3},
        path=Path("/nonexistent/config.toml"),
        environ={},
    )
    return settings


def _jobs(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM timescaledb_information.jobs"
        " WHERE proc_name IN ('policy_compression', 'policy_retention')"
    ).fetchone()
    return int(row[0]) if row else 0


def test_the_apache_build_gets_no_policies(db_dsn: str) -> None:
    with psycopg.connect(db_dsn) as conn:
        caps = detect(conn)
        assert caps.timescaledb and caps.license == "apache"
        assert not command.apply_policies(conn, caps, _settings())
        assert _jobs(conn) == 0


def test_the_community_licence_gets_every_statement(db_dsn: str) -> None:
    with psycopg.connect(db_dsn) as conn:
        caps = dataclasses.replace(
            detect(conn), license="timescale", compression=True, retention_policies=True
        )
        executed: list[str] = []

        class Recorder:
            def __init__(self, real: psycopg.Connection[Any]) -> None:
                self.real = real

            def transaction(self) -> Any:
                return self.real.transaction()

            def execute(self, statement: Any) -> None:
                executed.append(statement.as_string(self.real))

        assert command.apply_policies(Recorder(conn), caps, _settings())  # type: ignore[arg-type]
    assert sum("add_compression_policy('telemetry', '3 days'" in s for s in executed) == 1
    assert sum("add_retention_policy(" in s and "'14 days'" in s for s in executed) == len(
        rollups.EVENT_TABLES
    )


def test_every_policy_statement_parses_and_resolves(db_dsn: str) -> None:
    with psycopg.connect(db_dsn) as conn:
        for statement in rollups.policy_statements(14, 3):
            refused = pytest.raises(psycopg.errors.FeatureNotSupported, match="apache")
            with refused, conn.transaction():
                conn.execute(statement)
