"""What the connected database can do: TimescaleDB presence, version, licence and features."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import psycopg

License = Literal["apache", "timescale"]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """Detected once at start-up; decides which TimescaleDB features the schema uses.

    ``timescaledb_available`` means the extension could be created;
    ``timescaledb`` means it is installed in this database.
    """

    server_version: int
    timescaledb: bool
    timescaledb_available: bool
    timescaledb_version: str | None
    license: License | None
    hypertables: bool
    continuous_aggregates: bool
    compression: bool
    retention_policies: bool

    def describe(self) -> str:
        major = self.server_version // 10000
        if not self.timescaledb:
            return f"PostgreSQL {major} (no TimescaleDB)"
        features = [
            name
            for name, on in (
                ("hypertables", self.hypertables),
                ("continuous aggregates", self.continuous_aggregates),
                ("compression", self.compression),
                ("retention policies", self.retention_policies),
            )
            if on
        ]
        return (
            f"PostgreSQL {major} with TimescaleDB {self.timescaledb_version} "
            f"({self.license or 'unknown'} licence: {', '.join(features) or 'no features'})"
        )


def detect(conn: psycopg.Connection[Any]) -> Capabilities:
    """Inspect ``conn``'s database without changing anything."""
    row = conn.execute(
        """
        SELECT current_setting('server_version_num')::int,
               (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'),
               EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),
               current_setting('timescaledb.license', true)
        """
    ).fetchone()
    assert row is not None
    server_version, version, available, license_setting = row
    installed = version is not None
    license_name: License | None = None
    if installed and license_setting in ("apache", "timescale"):
        license_name = license_setting
    full = installed and license_name == "timescale"
    return Capabilities(
        server_version=int(server_version),
        timescaledb=installed,
        timescaledb_available=bool(available),
        timescaledb_version=version,
        license=license_name,
        hypertables=installed,
        continuous_aggregates=full,
        compression=full,
        retention_policies=full,
    )
