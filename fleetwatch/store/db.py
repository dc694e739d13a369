"""Database connections: one place that turns driver failures into a one-sentence error."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from fleetwatch.config import mask_dsn

CONNECT_TIMEOUT_S = 5


class DatabaseUnavailable(Exception):
    """The database cannot be reached or refused us; the message is one sentence."""


def _first_line(error: BaseException) -> str:
    """The driver's first line, with any password it quotes masked."""
    text = str(error).strip()
    return mask_dsn(text.splitlines()[0]) if text else type(error).__name__


def connect(dsn: str, *, autocommit: bool = False, **kwargs: Any) -> psycopg.Connection[Any]:
    """Open a connection to ``dsn``; raise :class:`DatabaseUnavailable` on any failure.

    A connect timeout of ``CONNECT_TIMEOUT_S`` applies unless the DSN sets one.
    """
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as error:
        raise DatabaseUnavailable(
            f"invalid database connection string {mask_dsn(dsn)!r}: {_first_line(error)}"
        ) from None
    if "connect_timeout" not in params:
        kwargs.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    if "application_name" not in params:
        kwargs.setdefault("application_name", "fleetwatch")
    try:
        return psycopg.connect(dsn, autocommit=autocommit, **kwargs)
    except psycopg.Error as error:
        raise DatabaseUnavailable(
            f"cannot connect to the database at {mask_dsn(dsn)}: {_first_line(error)}"
        ) from None


def copy_rows(
    cur: psycopg.Cursor[Any],
    table: str,
    columns: Sequence[str],
    types: Sequence[str],
    rows: Sequence[Sequence[Any]],
) -> None:
    """Binary COPY of ``rows`` into ``table``; ``types`` are the PostgreSQL type names of
    ``columns`` (``"float4"``, ``"timestamptz"``...).

    Much cheaper than binding thousands of array elements as query parameters: COPY
    into a temporary table and merge from it with one ``INSERT ... SELECT`` (the
    writer's event rows, the rollups' staged rows).
    """
    if not rows:
        return
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with cur.copy(statement) as copy:
        copy.set_types(list(types))
        write_row = copy.write_row
        for row in rows:
            write_row(row)
