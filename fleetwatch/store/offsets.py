"""Which consumer groups have stored consumed offsets in this database."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

OTHER_GROUPS_SQL = """
SELECT DISTINCT consumer_group
FROM ingest_offsets
WHERE topic = ANY(%(topics)s) AND consumer_group <> %(group)s
ORDER BY consumer_group
"""


def other_groups(conn: psycopg.Connection[Any], group: str, topics: Sequence[str]) -> list[str]:
    """Consumer groups other than ``group`` that already ingested any of ``topics`` here.

    Each group keeps its own offsets, so a second group on the same database would
    store every event a second time.
    """
    rows = conn.execute(OTHER_GROUPS_SQL, {"topics": list(topics), "group": group}).fetchall()
    return [row[0] for row in rows]
