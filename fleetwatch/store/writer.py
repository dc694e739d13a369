"""The batch writer: one transaction per batch with rows, alerts, rejects and offsets.

Event rows go in with binary COPY. In the same transaction the writer merges the
per-minute rollups and the latest state of each vehicle
(``fleetwatch.store.rollups.merge``), writes alert changes and transitions, the
rejected messages and the next offset of every partition the batch came from.
Offsets are fenced: the transaction first locks the stored offsets and refuses
(:class:`OffsetConflict`) if they are not where this consumer last left them, so a
consumer that lost its partitions without noticing cannot write them twice.

Rows are tuples in the column order of ``TELEMETRY_COLUMNS``, ``PERCEPTION_COLUMNS``
and ``DRIVING_COLUMNS``; ``fleetwatch.store.rollups.merge(cur, telemetry_rows,
perception_rows, driving_rows)`` receives them in that form.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Final, Protocol

import psycopg
from psycopg.rows import dict_row

from fleetwatch.model import AnyDriving, AnyPerception, AnyTelemetry
from fleetwatch.store import rollups
from fleetwatch.store.db import copy_rows
from fleetwatch.transport.base import TopicPartition

REJECT_RAW_MAX_BYTES: Final = 64 * 1024

TELEMETRY_COLUMNS: Final = (
    "time",
    "vehicle_id",
    "event_id",
    "speed_kmh",
    "speed_limit_kmh",
    "lat",
    "lon",
    "heading_deg",
    "battery_pct",
    "range_km",
    "odometer_km",
    "autopilot",
    "city",
    "route_id",
    "trip_id",
    "step_km",
)
_TELEMETRY_TYPES: Final = (
    "timestamptz",
    "text",
    "uuid",
    "float4",
    "float4",
    "float8",
    "float8",
    "float4",
    "float4",
    "float4",
    "float8",
    "bool",
    "text",
    "text",
    "text",
    "float8",
)
PERCEPTION_COLUMNS: Final = (
    "time",
    "vehicle_id",
    "event_id",
    "object_class",
    "distance_m",
    "closing_speed_mps",
    "bearing_deg",
    "confidence",
    "ttc_s",
)
_PERCEPTION_TYPES: Final = (
    "timestamptz",
    "text",
    "uuid",
    "text",
    "float4",
    "float4",
    "float4",
    "float4",
    "float4",
)
DRIVING_COLUMNS: Final = (
    "time",
    "vehicle_id",
    "event_id",
    "type",
    "cause",
    "detail",
    "lat",
    "lon",
    "speed_kmh",
    "autopilot",
)
_DRIVING_TYPES: Final = (
    "timestamptz",
    "text",
    "uuid",
    "text",
    "text",
    "text",
    "float8",
    "float8",
    "float4",
    "bool",
)
_REJECT_COLUMNS: Final = (
    "received_at",
    "consumer_group",
    "topic",
    "partition",
    "offset",
    "key",
    "raw",
    "raw_size",
    "reason",
)
_REJECT_TYPES: Final = (
    "timestamptz",
    "text",
    "text",
    "int4",
    "int8",
    "bytea",
    "bytea",
    "int4",
    "text",
)

TelemetryRow = tuple[Any, ...]
PerceptionRow = tuple[Any, ...]
DrivingRow = tuple[Any, ...]


def telemetry_row(message: AnyTelemetry, step_km: float) -> TelemetryRow:
    m = message
    return (
        m.time,
        m.vehicle_id,
        m.event_id,
        m.speed_kmh,
        m.speed_limit_kmh,
        m.lat,
        m.lon,
        m.heading_deg,
        m.battery_pct,
        m.range_km,
        m.odometer_km,
        m.autopilot,
        m.city,
        m.route_id,
        m.trip_id,
        step_km,
    )


def ttc_s(distance_m: float, closing_speed_mps: float) -> float | None:
    """Time to collision: distance over closing speed while closing, else None."""
    if closing_speed_mps <= 0.0:
        return None
    return distance_m / closing_speed_mps


def perception_row(message: AnyPerception) -> PerceptionRow:
    m = message
    return (
        m.time,
        m.vehicle_id,
        m.event_id,
        m.object_class._value_,  # the plain attribute: Enum.value is a slow descriptor
        m.distance_m,
        m.closing_speed_mps,
        m.bearing_deg,
        m.confidence,
        ttc_s(m.distance_m, m.closing_speed_mps),
    )


def driving_row(message: AnyDriving) -> DrivingRow:
    m = message
    return (
        m.time,
        m.vehicle_id,
        m.event_id,
        m.type._value_,
        m.cause,
        m.detail,
        m.lat,
        m.lon,
        m.speed_kmh,
        m.autopilot,
    )


@dataclass(frozen=True, slots=True)
class Reject:
    """A message that could not be decoded or validated."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    raw: bytes | None
    reason: str


class AlertRow(Protocol):
    """What the writer needs from an alert the engine changed (an ``alerts`` row).

    ``fleetwatch.pipeline.rules.Alert`` is one; ``alert_id`` is None until inserted.
    """

    alert_id: int | None

    @property
    def vehicle_id(self) -> str: ...
    @property
    def rule(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def first_seen(self) -> datetime: ...
    @property
    def last_seen(self) -> datetime: ...
    @property
    def fired_at(self) -> datetime | None: ...
    @property
    def clear_since(self) -> datetime | None: ...
    @property
    def resolved_at(self) -> datetime | None: ...
    @property
    def breach_count(self) -> int: ...
    @property
    def value(self) -> float | None: ...
    @property
    def summary(self) -> str: ...


class TransitionRow(Protocol):
    """One alert state change (``fleetwatch.pipeline.rules.Transition``)."""

    @property
    def time(self) -> datetime: ...
    @property
    def alert(self) -> AlertRow: ...
    @property
    def from_state(self) -> str | None: ...
    @property
    def to_state(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def value(self) -> float | None: ...


@dataclass(slots=True)
class Batch:
    """Everything one transaction writes.

    ``offsets`` is the next offset to read per partition after this batch;
    ``expected_offsets`` is what this consumer believes is stored now (None: no row).
    ``alerts`` and ``transitions`` are what the alert engine's ``take_changes`` returned.
    """

    group: str
    telemetry: list[TelemetryRow] = field(default_factory=list)
    perception: list[PerceptionRow] = field(default_factory=list)
    driving: list[DrivingRow] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    alerts: Sequence[AlertRow] = field(default_factory=list)
    transitions: Sequence[TransitionRow] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    expected_offsets: dict[TopicPartition, int | None] = field(default_factory=dict)
    partitions: dict[str, int] = field(default_factory=dict)
    """Vehicle id -> the partition number its messages arrive on, to record in
    ``vehicles.kafka_partition`` (vehicles with telemetry in this batch)."""

    @property
    def events(self) -> int:
        return len(self.telemetry) + len(self.perception) + len(self.driving)


@dataclass(frozen=True, slots=True)
class WriteResult:
    stored: int
    rejected: int
    alerts_inserted: int


class OffsetConflict(Exception):
    """The stored offsets are not where this consumer left them: someone else wrote them."""

    def __init__(self, partitions: Sequence[TopicPartition]) -> None:
        names = ", ".join(f"{t}[{p}]" for t, p in partitions)
        super().__init__(f"offsets of {names} were moved by another consumer")
        self.partitions = list(partitions)


RollupMerge = Callable[
    [psycopg.Cursor[Any], Sequence[TelemetryRow], Sequence[PerceptionRow], Sequence[DrivingRow]],
    None,
]


def copy_events(
    cur: psycopg.Cursor[Any],
    telemetry: Sequence[TelemetryRow],
    perception: Sequence[PerceptionRow],
    driving: Sequence[DrivingRow],
) -> None:
    """COPY the event rows into their tables (used by the writer and the benchmark)."""
    copy_rows(cur, "telemetry", TELEMETRY_COLUMNS, _TELEMETRY_TYPES, telemetry)
    copy_rows(cur, "perception_events", PERCEPTION_COLUMNS, _PERCEPTION_TYPES, perception)
    copy_rows(cur, "driving_events", DRIVING_COLUMNS, _DRIVING_TYPES, driving)


def _fence_offsets(cur: psycopg.Cursor[Any], batch: Batch) -> None:
    """Lock this batch's offset rows and check they are where this consumer left them.

    Rows this consumer expects to be missing are inserted here, first, so that of two
    consumers that both believe a partition is new only one gets past this point.
    Locks are taken in (topic, partition) order, so concurrent writers never deadlock.
    """
    fenced = sorted(tp for tp in batch.offsets if tp in batch.expected_offsets)
    if not fenced:
        return
    existing = [tp for tp in fenced if batch.expected_offsets[tp] is not None]
    fresh = [tp for tp in fenced if batch.expected_offsets[tp] is None]
    moved: list[TopicPartition] = []
    if existing:
        stored = {
            (t, p): o
            for t, p, o in cur.execute(
                "SELECT o.topic, o.partition, o.next_offset FROM ingest_offsets o"
                " JOIN unnest(%s::text[], %s::int[]) AS b(topic, partition)"
                "   USING (topic, partition)"
                " WHERE o.consumer_group = %s"
                " ORDER BY o.topic, o.partition"
                " FOR UPDATE OF o",
                ([t for t, _ in existing], [p for _, p in existing], batch.group),
            )
        }
        moved = [tp for tp in existing if stored.get(tp) != batch.expected_offsets[tp]]
    if fresh and not moved:
        inserted = {
            (t, p)
            for t, p in cur.execute(
                "INSERT INTO ingest_offsets (consumer_group, topic, partition, next_offset)"
                " SELECT %s, b.topic, b.partition, b.next_offset"
                " FROM unnest(%s::text[], %s::int[], %s::bigint[])"
                "   AS b(topic, partition, next_offset)"
                " ON CONFLICT (consumer_group, topic, partition) DO NOTHING"
                " RETURNING topic, partition",
                (
                    batch.group,
                    [t for t, _ in fresh],
                    [p for _, p in fresh],
                    [batch.offsets[tp] for tp in fresh],
                ),
            )
        }
        moved = [tp for tp in fresh if tp not in inserted]
    if moved:
        raise OffsetConflict(sorted(moved))


def _store_offsets(cur: psycopg.Cursor[Any], batch: Batch) -> None:
    """Advance the offsets (rows inserted by the fence already hold their value)."""
    items = sorted(
        (tp, o) for tp, o in batch.offsets.items() if batch.expected_offsets.get(tp, -1) is not None
    )
    if not items:
        return
    cur.execute(
        "INSERT INTO ingest_offsets (consumer_group, topic, partition, next_offset)"
        " SELECT %s, b.topic, b.partition, b.next_offset"
        " FROM unnest(%s::text[], %s::int[], %s::bigint[]) AS b(topic, partition, next_offset)"
        " ON CONFLICT (consumer_group, topic, partition) DO UPDATE"
        " SET next_offset = EXCLUDED.next_offset, updated_at = now()",
        (
            batch.group,
            [t for (t, _), _ in items],
            [p for (_, p), _ in items],
            [o for _, o in items],
        ),
    )


def _write_rejects(cur: psycopg.Cursor[Any], batch: Batch, now: datetime) -> None:
    if not batch.rejects:
        return
    rows = [
        (
            now,
            batch.group,
            r.topic,
            r.partition,
            r.offset,
            r.key,
            None if r.raw is None else r.raw[:REJECT_RAW_MAX_BYTES],
            0 if r.raw is None else len(r.raw),
            r.reason,
        )
        for r in batch.rejects
    ]
    copy_rows(cur, "rejects", _REJECT_COLUMNS, _REJECT_TYPES, rows)


_ALERT_INSERT: Final = """
    INSERT INTO alerts (vehicle_id, rule, state, severity, first_seen, last_seen, fired_at,
        clear_since, resolved_at, breach_count, value, summary, updated_at)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())
    RETURNING alert_id
"""

# Lifecycle columns only: acked_by, acked_at and ack_until belong to the operator.
_ALERT_UPDATE: Final = """
    UPDATE alerts SET state = %s, severity = %s, first_seen = %s, last_seen = %s,
        fired_at = %s, clear_since = %s, resolved_at = %s, breach_count = %s, value = %s,
        summary = %s, updated_at = now()
    WHERE alert_id = %s
"""

_TRANSITION_COLUMNS: Final = (
    "time",
    "alert_id",
    "vehicle_id",
    "rule",
    "from_state",
    "to_state",
    "severity",
    "value",
)
_TRANSITION_TYPES: Final = ("timestamptz", "int8", "text", "text", "text", "text", "text", "float8")


def _lifecycle(alert: AlertRow) -> tuple[Any, ...]:
    return (
        alert.state,
        alert.severity,
        alert.first_seen,
        alert.last_seen,
        alert.fired_at,
        alert.clear_since,
        alert.resolved_at,
        alert.breach_count,
        alert.value,
        alert.summary,
    )


def _write_alerts(cur: psycopg.Cursor[Any], batch: Batch) -> dict[int, int]:
    """Write alert changes and transitions; return ``id(alert) -> alert_id`` of new alerts.

    Updates go first: a resolved alert frees its (vehicle, rule) slot for the new alert
    the same batch may open.
    """
    updates = [(*_lifecycle(a), a.alert_id) for a in batch.alerts if a.alert_id is not None]
    fresh = [a for a in batch.alerts if a.alert_id is None]
    if updates:
        cur.executemany(_ALERT_UPDATE, updates)
    new_ids: dict[int, int] = {}
    if fresh:
        cur.executemany(
            _ALERT_INSERT,
            [(a.vehicle_id, a.rule, *_lifecycle(a)) for a in fresh],
            returning=True,
        )
        for alert in fresh:
            row = cur.fetchone()
            assert row is not None
            new_ids[id(alert)] = int(row[0])
            cur.nextset()
    if batch.transitions:
        rows = []
        for t in batch.transitions:
            alert_id = t.alert.alert_id
            if alert_id is None:
                alert_id = new_ids.get(id(t.alert))
            if alert_id is None:
                raise ValueError(f"a {t.alert.rule} transition names an alert not in the batch")
            rows.append(
                (
                    t.time,
                    alert_id,
                    t.alert.vehicle_id,
                    t.alert.rule,
                    t.from_state,
                    t.to_state,
                    t.severity,
                    t.value,
                )
            )
        copy_rows(cur, "alert_transitions", _TRANSITION_COLUMNS, _TRANSITION_TYPES, rows)
    return new_ids


def write_batch(
    conn: psycopg.Connection[Any],
    batch: Batch,
    *,
    now: datetime | None = None,
    merge: RollupMerge | None = None,
) -> WriteResult:
    """Write ``batch`` in one transaction and commit; raise :class:`OffsetConflict` if the
    stored offsets moved (nothing is written then).

    New alerts get their ``alert_id`` set only once the transaction has committed, so a
    failed write can be retried with the same batch. ``now`` stamps the rejects.
    """
    now = now if now is not None else datetime.now(timezone.utc)
    merge = merge if merge is not None else rollups.merge
    with conn.transaction(), conn.cursor() as cur:
        _fence_offsets(cur, batch)
        copy_events(cur, batch.telemetry, batch.perception, batch.driving)
        merge(cur, batch.telemetry, batch.perception, batch.driving)
        _store_partitions(cur, batch)
        new_ids = _write_alerts(cur, batch)
        _write_rejects(cur, batch, now)
        _store_offsets(cur, batch)
    for alert in batch.alerts:
        if alert.alert_id is None:
            alert.alert_id = new_ids[id(alert)]
    return WriteResult(
        stored=batch.events, rejected=len(batch.rejects), alerts_inserted=len(new_ids)
    )


STORE_PARTITIONS_SQL: Final = """
UPDATE vehicles AS v SET kafka_partition = p.number
FROM unnest(%s::text[], %s::int[]) AS p(vehicle_id, number)
WHERE v.vehicle_id = p.vehicle_id AND v.kafka_partition IS DISTINCT FROM p.number
"""


def _store_partitions(cur: psycopg.Cursor[Any], batch: Batch) -> None:
    if batch.partitions:
        cur.execute(STORE_PARTITIONS_SQL, (list(batch.partitions), list(batch.partitions.values())))


def vehicles_of_partitions(conn: psycopg.Connection[Any], numbers: Iterable[int]) -> dict[str, int]:
    """``vehicle_id -> partition number`` of the stored vehicles in ``numbers``."""
    numbers = sorted(set(numbers))
    if not numbers:
        return {}
    rows = conn.execute(
        "SELECT vehicle_id, kafka_partition FROM vehicles WHERE kafka_partition = ANY(%s)",
        (numbers,),
    ).fetchall()
    if not conn.autocommit:
        conn.rollback()
    return {str(v): int(p) for v, p in rows}


def load_offsets(
    conn: psycopg.Connection[Any], group: str, partitions: Sequence[TopicPartition]
) -> dict[TopicPartition, int]:
    """The stored next offset of each of ``partitions`` that has one."""
    if not partitions:
        return {}
    rows = conn.execute(
        "SELECT topic, partition, next_offset FROM ingest_offsets"
        " WHERE consumer_group = %s AND (topic, partition) IN"
        " (SELECT * FROM unnest(%s::text[], %s::int[]))",
        (group, [t for t, _ in partitions], [p for _, p in partitions]),
    ).fetchall()
    if not conn.autocommit:
        conn.rollback()
    return {(t, p): int(o) for t, p, o in rows}


def load_alert_rows(
    conn: psycopg.Connection[Any], vehicle_ids: Sequence[str]
) -> list[dict[str, Any]]:
    """What the alert engine needs to resume these vehicles: their open alerts and the
    latest resolved alert of each (vehicle, rule), as column-name mappings."""
    if not vehicle_ids:
        return []
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT * FROM alerts WHERE vehicle_id = ANY(%(v)s) AND state <> 'resolved'"
            " UNION ALL"
            " (SELECT DISTINCT ON (vehicle_id, rule) * FROM alerts"
            "  WHERE vehicle_id = ANY(%(v)s) AND state = 'resolved'"
            "  ORDER BY vehicle_id, rule, resolved_at DESC NULLS LAST, alert_id DESC)",
            {"v": list(vehicle_ids)},
        ).fetchall()
    if not conn.autocommit:
        conn.rollback()
    return rows


def last_odometers(
    conn: psycopg.Connection[Any], vehicle_ids: Sequence[str]
) -> dict[str, tuple[datetime, float]]:
    """``vehicle_id -> (time, odometer_km)`` of the latest stored sample of each vehicle."""
    if not vehicle_ids:
        return {}
    rows = conn.execute(
        "SELECT vehicle_id, last_seen, odometer_km FROM vehicles WHERE vehicle_id = ANY(%s)",
        (list(vehicle_ids),),
    ).fetchall()
    if not conn.autocommit:
        conn.rollback()
    return {v: (t, float(o)) for v, t, o in rows}
