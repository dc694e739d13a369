"""The ingest loop: consume batches, decode, judge alerts, write each batch in one transaction.

Usable headless (``fleetwatch ingest``) and as a background thread of the app. The
database holds the consumed offsets together with the data, so on every assignment
the loop resumes each partition from there: nothing is lost and nothing is written
twice across restarts, crashes and rebalances. While the database or the broker is
down the loop retries with backoff, logs one line per state change, commits nothing
it has not stored and resumes by itself. :meth:`Ingestor.stats` is a frozen snapshot
the app polls from another thread.

Per vehicle the loop keeps the last odometer reading (for ``step_km``) and the alert
engine's state; both are loaded from the database the first time a vehicle shows up,
or when its partition is assigned (``vehicles.kafka_partition``, so a vehicle silent
since before the assignment is still watched), and dropped when its partitions go to
another consumer. With nothing to consume the loop still judges by the watermark once
a second, so silences fire at the end of a backlog too.

With ``IngestParams.retention_days`` set, the loop also drops raw events older than
that at start and every ``retention_every_s`` (``rollups.enforce_retention``, in a
transaction of its own on the loop's connection).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Final, Literal, TypeVar

import psycopg

from fleetwatch.config import IngestSettings, RuleSettings
from fleetwatch.model import (
    DRIVING_TYPES,
    PERCEPTION_TOPIC,
    PERCEPTION_TYPES,
    TELEMETRY_TOPIC,
    TELEMETRY_TYPES,
    TOPICS,
    Decoded,
    DecodeError,
    DrivingStruct,
    PerceptionStruct,
    TelemetryStruct,
    WireStruct,
    ingest_decoder,
)
from fleetwatch.pipeline.rules import (
    COLLISION_RISK,
    FIRING,
    Alert,
    AlertEngine,
    Transition,
    alert_from_row,
)
from fleetwatch.store.capabilities import Capabilities, detect
from fleetwatch.store.db import DatabaseUnavailable
from fleetwatch.store.rollups import enforce_retention
from fleetwatch.store.writer import (
    Batch,
    OffsetConflict,
    Reject,
    driving_row,
    last_odometers,
    load_alert_rows,
    load_offsets,
    perception_row,
    telemetry_row,
    vehicles_of_partitions,
    write_batch,
)
from fleetwatch.transport.base import Consumer, Record, TopicPartition

log = logging.getLogger(__name__)

State = Literal["starting", "running", "db-down", "broker-down", "stopped"]

RATE_WINDOW_S: Final = 5.0
BACKOFF_MIN_S: Final = 0.2
BACKOFF_MAX_S: Final = 5.0
RETENTION_EVERY_S: Final = 600.0
"""How often the loop drops raw events older than the retention (first: at start)."""
GC_YOUNG_THRESHOLD: Final = 50_000
"""The least young-generation threshold of the cyclic garbage collector while the loop runs.

Python's default of 700 ran the collector hundreds of times a second while decoding,
and every tenth time over the older generations too (over a third of the loop's CPU
time). See :func:`gc_threshold_for`."""
GC_OBJECTS_PER_EVENT: Final = 25
"""Tracked objects allowed per event of a batch before the young generation is collected.

The threshold counts tracked objects allocated and not yet freed. A batch in flight
holds about five per event (the record, the decoded message's pair and event id, the
row), and three batches can be in flight (being gathered, prepared, written): with
room for that, the collector runs when objects accumulate rather than for every batch
still being worked on. 1,000 vehicles, 400,000 events from a backlog, batch 20,000:
about 20 collections taking 0.7-1.0 s of a 6 s run with a threshold of 50,000, one
with 1,000,000."""
IDLE_PARTITION_S: Final = 5.0
"""A partition that delivered nothing for this long no longer holds the watermark back."""

IDLE_TICK_S: Final = 1.0
"""With nothing to consume, how often the loop sees whether the watermark moved on."""

RULE_TOPIC: Final[dict[str, str]] = {COLLISION_RISK: PERCEPTION_TOPIC}
"""The stream that drives each rule (default: telemetry); an alert is resumed only by
the consumer that owns that stream's partition of the vehicle."""


_T = TypeVar("_T")

ConnectionFactory = Callable[[], "psycopg.Connection[Any]"]
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True, slots=True)
class IngestStats:
    """A snapshot of the loop, safe to read from any thread."""

    state: State = "starting"
    consumed: int = 0
    """Messages whose outcome is committed: ``stored + rejected``."""
    stored: int = 0
    rejected: int = 0
    alerts_fired: int = 0
    batches: int = 0
    events_per_s: float = 0.0
    lag: int | None = None
    idle_s: float = 0.0
    """Seconds since the last record, the last partition assignment or the recovery from an
    outage; 0 before the first assignment (joining a group can take a while after a member
    died)."""
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class IngestParams:
    group: str = "fleetwatch-ingest"
    batch_max: int = 50_000
    batch_ms: int = 200
    topics: Mapping[str, str] = field(default_factory=lambda: {t: t for t in TOPICS})
    """Topic to subscribe to -> the stream it carries (one of ``fleetwatch.model.TOPICS``)."""
    retention_days: int | None = None
    """Raw events older than this are dropped (``rollups.enforce_retention``) every
    ``retention_every_s`` seconds, in a transaction of its own; None: never."""
    retention_every_s: float = RETENTION_EVERY_S

    @classmethod
    def from_settings(
        cls, settings: IngestSettings, topic_prefix: str = "", retention_days: int | None = None
    ) -> IngestParams:
        return cls(
            group=settings.group,
            batch_max=settings.batch_max,
            batch_ms=settings.batch_ms,
            topics={f"{topic_prefix}{t}": t for t in TOPICS},
            retention_days=retention_days,
        )


class _NUL(Exception):
    pass


def _check_text(message: WireStruct) -> None:
    # PostgreSQL text cannot hold NUL; such a message would fail the whole batch.
    if type(message) is PerceptionStruct:  # no free text: the most frequent, checked first
        return
    if isinstance(message, TelemetryStruct):
        texts: tuple[str | None, ...] = (message.city, message.route_id, message.trip_id)
    elif isinstance(message, DrivingStruct):
        texts = (message.cause, message.detail)
    else:
        return
    for text in texts:
        if text is not None and "\x00" in text:
            raise _NUL


def _event_time(item: tuple[TopicPartition, WireStruct]) -> datetime:
    return item[1].time


@dataclass(slots=True)
class _Prepared:
    batch: Batch
    vehicles: set[str]
    consumed: int
    fired: int
    live: list[tuple[Alert, Alert]] = field(default_factory=list)
    """(snapshot written with this batch, the engine's live alert) pairs."""


def _snapshot(alerts: list[Alert], transitions: list[Transition]) -> _Prepared:
    """Copies of the changed alerts as they are now, so the engine can go on mutating
    its live alerts while this batch waits for the writer."""
    copies = [replace(a) for a in alerts]
    copy_of = {id(a): c for a, c in zip(alerts, copies, strict=True)}
    batch = Batch(group="")
    batch.alerts = copies
    batch.transitions = [replace(t, alert=copy_of[id(t.alert)]) for t in transitions]
    return _Prepared(batch, set(), 0, 0, list(zip(copies, alerts, strict=True)))


_DONE: Final = object()


def decode_records(
    records: Sequence[Record], streams: Mapping[str, str], now: datetime, batch: Batch
) -> list[tuple[TopicPartition, WireStruct]]:
    """Decode ``records``: rejects go to ``batch.rejects``, every record advances
    ``batch.offsets``; return the valid messages with their partition, in event-time order.

    ``streams`` maps a topic to the stream it carries. The sort is stable, so each
    vehicle's messages of one stream keep their partition order; the alert engine needs
    a batch that mixes streams in event-time order.
    """
    offsets = batch.offsets
    messages: list[tuple[TopicPartition, WireStruct]] = []
    append = messages.append
    decode = ingest_decoder(now)
    for record in records:
        topic, partition, offset, key, value, _ = record
        tp = (topic, partition)
        if offsets.get(tp, -1) <= offset:
            offsets[tp] = offset + 1
        try:
            message = decode(streams.get(topic, topic), value, key)
            _check_text(message)
        except DecodeError as error:
            reason = error.reason
        except _NUL:
            reason = "a text field contains a NUL character"
        else:
            append((tp, message))
            continue
        batch.rejects.append(Reject(topic, partition, offset, key, value, reason))
    messages.sort(key=_event_time)
    return messages


def add_rows(
    batch: Batch,
    messages: Iterable[tuple[TopicPartition, Decoded]],
    odometer: dict[str, float],
) -> None:
    """Append the table rows of ``messages`` to ``batch``.

    ``odometer`` holds each vehicle's last odometer reading and is advanced here:
    ``step_km`` is the increase since that reading, 0 for a vehicle's first sample and
    for a reading lower than the last (out of order, or a replaced odometer), so
    distance is never negative and never counted twice.
    """
    for _, message in messages:
        if isinstance(message, TELEMETRY_TYPES):
            vehicle = message.vehicle_id
            reading = message.odometer_km
            previous = odometer.get(vehicle)
            step = 0.0
            if previous is None or reading >= previous:
                if previous is not None:
                    step = reading - previous
                odometer[vehicle] = reading
            batch.telemetry.append(telemetry_row(message, step))
        elif isinstance(message, PERCEPTION_TYPES):
            batch.perception.append(perception_row(message))
        elif isinstance(message, DRIVING_TYPES):
            batch.driving.append(driving_row(message))


_gc_lock = threading.Lock()
_gc_users = 0
_gc_default: tuple[int, int, int] | None = None


def gc_threshold_for(batch_max: int) -> int:
    """The young-generation threshold for batches of up to ``batch_max`` messages."""
    return max(GC_YOUNG_THRESHOLD, GC_OBJECTS_PER_EVENT * batch_max)


@contextlib.contextmanager
def fewer_collections(young: int = GC_YOUNG_THRESHOLD) -> Iterator[None]:
    """Raise the young-generation threshold of the cyclic garbage collector meanwhile.

    Nested and concurrent uses (several ingestors in one process) share the change; the
    previous thresholds come back when the last one ends.
    """
    global _gc_users, _gc_default
    with _gc_lock:
        if _gc_users == 0:
            _gc_default = gc.get_threshold()
            gc.set_threshold(max(young, _gc_default[0]), *_gc_default[1:])
        _gc_users += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_users -= 1
            if _gc_users == 0 and _gc_default is not None:
                gc.set_threshold(*_gc_default)
                _gc_default = None


class Ingestor:
    """The ingest loop over one consumer and one database connection at a time."""

    def __init__(
        self,
        params: IngestParams,
        consumer: Consumer,
        conn_factory: ConnectionFactory,
        engine: AlertEngine | None = None,
        clock: Clock = utc_now,
        *,
        rules: RuleSettings | None = None,
    ) -> None:
        self.params = params
        self.consumer = consumer
        self._conn_factory = conn_factory
        self.engine = engine if engine is not None else AlertEngine(rules or RuleSettings())
        self._clock = clock
        self._conns: dict[str, psycopg.Connection[Any]] = {}  # "read" (loop), "write" (writer)
        self._stop = threading.Event()
        self._stats = IngestStats()
        self._stats_lock = threading.Lock()
        self._rate: deque[tuple[float, int]] = deque()  # (monotonic time, stored so far)
        self._started = time.monotonic()
        self._last_record: float | None = None  # or the last assignment
        self._last_lag = 0.0
        # Next offset per assigned partition once every batch prepared so far is written
        # (None: no row yet); the writer is told to expect these before each batch.
        self._planned: dict[TopicPartition, int | None] = {}
        self._pending: list[Record] = []
        # The writer thread: prepared batches go through a one-slot queue, so the next
        # batch is decoded while the database writes the previous one.
        self._queue: queue.Queue[object] = queue.Queue(maxsize=1)
        self._writer: threading.Thread | None = None
        self._writer_error: BaseException | None = None
        self._refused: list[_Prepared] = []  # batches dropped after a refused write
        self._refused_lock = threading.Lock()
        self._to_commit: dict[TopicPartition, int] = {}
        self._odometer: dict[str, float] = {}
        self._vehicle_partition: dict[str, int] = {}
        self._partition_vehicles: dict[int, set[str]] = {}
        self._to_watch: set[int] = set()
        """Partition numbers assigned since the last batch: the vehicles stored with them
        are loaded before it, so one already silent is watched though it sends nothing."""
        self._partition_recorded: set[str] = set()
        """Vehicles whose partition number this consumer has had written with a batch."""
        self._partition_time: dict[TopicPartition, tuple[datetime, float]] = {}
        self._watermark: datetime | None = None
        self._ticked: datetime | None = None  # the watermark the engine last judged by
        self._next_idle_tick = 0.0  # monotonic time
        self._capabilities: Capabilities | None = None
        self._next_retention = 0.0  # monotonic time of the next retention run

    # -- stats ----------------------------------------------------------------------------

    def stats(self) -> IngestStats:
        with self._stats_lock:
            snapshot = self._stats
            rate = self._rate_locked(time.monotonic())
        last = self._last_record
        return replace(
            snapshot,
            events_per_s=rate,
            idle_s=0.0 if last is None else time.monotonic() - last,
        )

    def _rate_locked(self, now: float) -> float:
        """Events stored per second over the last ``RATE_WINDOW_S`` (0 when idle)."""
        samples = self._rate
        while len(samples) > 1 and samples[1][0] <= now - RATE_WINDOW_S:
            samples.popleft()
        if not samples:
            return 0.0
        since, stored_then = samples[0]
        stored_now = samples[-1][1]
        if now - since < 0.5:  # too short a span to be meaningful: the previous figure
            return self._stats.events_per_s
        return (stored_now - stored_then) / (now - since)

    def _update(self, **changes: Any) -> None:
        with self._stats_lock:
            self._stats = replace(self._stats, **changes)

    def _set_state(self, state: State, error: str | None = None) -> None:
        with self._stats_lock:
            previous = self._stats.state
        if state == previous:
            if error is not None:
                self._update(last_error=error)
            return
        if state == "db-down":
            log.warning("database unavailable, retrying: %s", error)
        elif state == "broker-down":
            log.warning("Kafka broker unavailable, retrying: %s", error)
        elif state == "running" and previous in ("db-down", "broker-down"):
            log.warning(
                "%s again, ingesting", "database up" if previous == "db-down" else "broker up"
            )
            if self._last_record is not None:
                # Nothing could arrive during the outage: idleness counts from now on.
                self._last_record = time.monotonic()
        self._update(state=state, last_error=error if error is not None else None)

    def _count(self, prepared: _Prepared) -> None:
        now = time.monotonic()
        with self._stats_lock:
            s = self._stats
            stored = s.stored + prepared.batch.events
            if not self._rate:
                self._rate.append((self._started, 0))
            self._rate.append((now, stored))
            rate = self._rate_locked(now)
            self._stats = replace(
                s,
                consumed=s.consumed + prepared.consumed,
                stored=stored,
                rejected=s.rejected + len(prepared.batch.rejects),
                alerts_fired=s.alerts_fired + prepared.fired,
                batches=s.batches + 1,
                events_per_s=rate,
            )

    # -- database ---------------------------------------------------------------------------

    def _connection(self, role: str) -> psycopg.Connection[Any]:
        conn = self._conns.get(role)
        if conn is None or conn.closed:
            conn = self._conns[role] = self._conn_factory()
        return conn

    def _drop_connection(self, role: str) -> None:
        conn = self._conns.pop(role, None)
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def _with_db(
        self, what: Callable[[psycopg.Connection[Any]], _T], role: str = "read"
    ) -> _T | None:
        """Run ``what`` with a connection, retrying while the database is unavailable.

        Returns None only when stopping was requested before it succeeded.
        """
        backoff = BACKOFF_MIN_S
        while True:
            try:
                result = what(self._connection(role))
            except (DatabaseUnavailable, psycopg.OperationalError) as error:
                self._drop_connection(role)
                self._set_state("db-down", str(error).strip().splitlines()[0])
            else:
                return result
            if self._stop.wait(backoff):
                return None
            backoff = min(BACKOFF_MAX_S, backoff * 2)

    # -- consumer callbacks -------------------------------------------------------------------

    def _on_assign(self, partitions: Sequence[TopicPartition]) -> Mapping[TopicPartition, int]:
        stored = self._with_db(lambda c: load_offsets(c, self.params.group, partitions))
        if stored is None:
            stored = {}
        for tp in partitions:
            self._planned[tp] = stored.get(tp)
        self._to_watch |= {number for _, number in partitions}
        self._last_record = time.monotonic()
        return stored

    def _on_revoke(self, partitions: Sequence[TopicPartition]) -> None:
        revoked = set(partitions)
        if (
            any((r.topic, r.partition) in revoked for r in self._pending)
            and not self._stop.is_set()
        ):
            self._flush()
        # Everything prepared must be written (or refused) before the partitions go.
        self._drain()
        self._recover_if_refused()
        # Records of revoked partitions that could not be written are re-read by the new owner.
        self._pending = [r for r in self._pending if (r.topic, r.partition) not in revoked]
        numbers = {p for _, p in partitions}
        vehicles: set[str] = set()
        for number in numbers:
            vehicles |= self._partition_vehicles.pop(number, set())
        self._forget(vehicles)
        for tp in partitions:
            self._planned.pop(tp, None)
            self._partition_time.pop(tp, None)

    def _forget(self, vehicles: Iterable[str]) -> None:
        vehicles = list(vehicles)
        self.engine.forget(vehicles)
        for vehicle in vehicles:
            self._odometer.pop(vehicle, None)
            self._partition_recorded.discard(vehicle)
            number = self._vehicle_partition.pop(vehicle, None)
            if number is not None:
                self._partition_vehicles.get(number, set()).discard(vehicle)

    # -- the loop -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to finish the current batch and return."""
        self._stop.set()

    def run(self, stop: threading.Event | None = None) -> IngestStats:
        """Consume until ``stop`` (or :meth:`stop`) is set; return the final stats."""
        with fewer_collections(gc_threshold_for(self.params.batch_max)):
            return self._run(stop)

    def _run(self, stop: threading.Event | None) -> IngestStats:
        if stop is not None:
            self._stop = stop
        self._writer = threading.Thread(target=self._write_loop, name="ingest-writer", daemon=True)
        self._writer.start()
        self.consumer.subscribe(list(self.params.topics), self._on_assign, self._on_revoke)
        self._set_state("running")
        try:
            while not self._stop.is_set():
                self._gather()
                self._recover_if_refused()
                if self._pending:
                    self._flush()
                else:
                    self._tick_while_idle()
                self._commit_to_transport()
                self._refresh_lag()
                self._retention_if_due()
            if self._pending:
                self._flush()  # the batch in hand when asked to stop
            self._drain()
            self._commit_to_transport()
        finally:
            try:
                self._update(lag=self.consumer.lag())
                self.consumer.close()
            finally:
                self._queue.put(_DONE)
                self._writer.join()
                for role in list(self._conns):
                    self._drop_connection(role)
                self._set_state("stopped")
        if self._writer_error is not None:
            raise self._writer_error
        return self.stats()

    def _gather(self) -> None:
        params = self.params
        deadline: float | None = None
        wait_s = min(0.5, params.batch_ms / 1000)
        while len(self._pending) < params.batch_max and not self._stop.is_set():
            if deadline is not None:
                wait_s = deadline - time.monotonic()
                if wait_s <= 0:
                    break
            records = self.consumer.poll_batch(params.batch_max - len(self._pending), wait_s)
            down = not records and bool(getattr(self.consumer, "broker_down", False))
            with self._stats_lock:
                state = self._stats.state
            if down:
                self._set_state("broker-down", getattr(self.consumer, "last_error", None))
                break
            if state == "broker-down":
                self._set_state("running")
            if records:
                self._last_record = time.monotonic()
                self._pending.extend(records)
                if deadline is None:
                    deadline = time.monotonic() + params.batch_ms / 1000
            elif deadline is None:
                break  # nothing arrived; let the caller refresh lag and check stop

    def _refresh_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag < 1.0:
            return
        self._last_lag = now
        self._update(lag=self.consumer.lag())

    def _retention_if_due(self) -> None:
        """Drop raw events older than ``params.retention_days`` when a run is due.

        Runs on the loop's own connection in a short transaction of its own, never in a
        batch's; a failure other than the database being down is logged and retried at
        the next period rather than stopping ingest.
        """
        days = self.params.retention_days
        now = time.monotonic()
        if days is None or now < self._next_retention:
            return
        self._next_retention = now + self.params.retention_every_s

        def enforce(conn: psycopg.Connection[Any]) -> dict[str, int]:
            if not conn.autocommit:
                conn.rollback()
            if self._capabilities is None:
                self._capabilities = detect(conn)
                if not conn.autocommit:
                    conn.rollback()
            return enforce_retention(conn, self._capabilities, days, self._clock())

        try:
            done = self._with_db(enforce)
        except psycopg.Error as error:
            log.warning("retention failed, retrying later: %s", str(error).strip())
            return
        if done and any(done.values()):
            log.info(
                "retention of %d days: %s",
                days,
                ", ".join(f"{table} {n}" for table, n in done.items() if n),
            )

    def _flush(self) -> None:
        """Prepare the pending records and hand them to the writer thread."""
        if self._writer_error is not None:
            raise self._writer_error
        records, self._pending = self._pending, []
        prepared = self._with_db(lambda c: self._prepare(c, records))
        if prepared is None:
            return  # stopping while the database is down: nothing was committed
        for tp, offset in prepared.batch.offsets.items():
            if tp in self._planned:
                self._planned[tp] = offset
        self._queue.put(prepared)

    def _tick_while_idle(self) -> None:
        """With nothing to consume, partitions that have gone quiet stop holding the
        watermark back: judge by it and write what changes (a silence firing, a collision
        alert resolving), as the next batch would have. Without this, the end of a backlog
        or a fleet that stopped sending left those changes until more data came."""
        now = time.monotonic()
        if now < self._next_idle_tick or self._writer_error is not None:
            return
        self._next_idle_tick = now + IDLE_TICK_S
        watermark = self._current_watermark()
        if watermark is None or (self._ticked is not None and watermark <= self._ticked):
            return
        prepared = self._with_db(lambda c: self._prepare(c, []))
        if prepared is not None and (prepared.batch.alerts or prepared.batch.transitions):
            self._queue.put(prepared)

    def _drain(self) -> None:
        """Wait until the writer has written or dropped every batch handed to it."""
        self._queue.join()
        if self._writer_error is not None:
            raise self._writer_error

    def _write_loop(self) -> None:
        refused = False
        while True:
            item = self._queue.get()
            try:
                if item is _DONE:
                    return
                assert isinstance(item, _Prepared)
                with self._refused_lock:
                    refused = bool(self._refused)
                if refused or not self._write(item):
                    with self._refused_lock:
                        self._refused.append(item)
            except BaseException as error:  # surfaced by the loop thread
                self._writer_error = error
                self._stop.set()
            finally:
                self._queue.task_done()

    def _write(self, prepared: _Prepared) -> bool:
        """Write one batch, retrying while the database is down; False if it was refused
        (or abandoned because stopping was requested while the database was down)."""
        for snapshot, live in prepared.live:
            if snapshot.alert_id is None:
                snapshot.alert_id = live.alert_id  # inserted by an earlier batch
        while True:
            try:
                done = self._with_db(
                    lambda c: write_batch(c, prepared.batch, now=self._clock()), role="write"
                )
            except OffsetConflict as conflict:
                log.warning("%s; re-reading them from the stored offsets", conflict)
                return False
            except psycopg.Error as error:
                # Not a connection problem: keep the batch and retry, visibly.
                reason = str(error).strip().splitlines()[0]
                log.error("writing a batch failed, retrying: %s", reason)
                self._drop_connection("write")
                self._set_state("db-down", reason)
                if self._stop.wait(BACKOFF_MAX_S):
                    return False
                continue
            break
        if done is None:
            return False
        for snapshot, live in prepared.live:
            if live.alert_id is None:
                live.alert_id = snapshot.alert_id
        with self._refused_lock:
            # Committed to the transport by the loop thread: a consumer may block a commit
            # from another thread while it is in a rebalance callback waiting for us.
            self._to_commit.update(prepared.batch.offsets)
        self._count(prepared)
        self._set_state("running")
        return True

    def _commit_to_transport(self) -> None:
        with self._refused_lock:
            offsets, self._to_commit = self._to_commit, {}
        assigned = self._planned
        offsets = {tp: o for tp, o in offsets.items() if tp in assigned}
        if offsets:
            self.consumer.commit(offsets)

    def _recover_if_refused(self) -> None:
        """After a refused write: forget what the dropped batches taught us and re-read
        every assigned partition from the offsets stored in the database."""
        with self._refused_lock:
            refused = bool(self._refused)
        if not refused:
            return
        self._drain()
        with self._refused_lock:
            dropped, self._refused = self._refused, []
        vehicles: set[str] = set()
        for prepared in dropped:
            vehicles |= prepared.vehicles
        self._forget(vehicles)
        self._pending = []  # fetched after the dropped batches: read again after the seek
        partitions = sorted(self._planned)
        self._to_watch |= {number for _, number in partitions}
        stored = self._with_db(lambda c: load_offsets(c, self.params.group, partitions)) or {}
        for tp in partitions:
            self._planned[tp] = stored.get(tp)
            self.consumer.seek(tp[0], tp[1], stored.get(tp, 0))

    def _prepare(self, conn: psycopg.Connection[Any], records: list[Record]) -> _Prepared:
        """Decode, validate, compute ``step_km`` and run the alert engine over ``records``."""
        params = self.params
        batch = Batch(group=params.group)
        messages = decode_records(records, params.topics, self._clock(), batch)
        batch.expected_offsets = {tp: self._planned.get(tp) for tp in batch.offsets}

        # A vehicle's key puts it in the same partition number of every stream.
        home = {m.vehicle_id: number for (_, number), m in messages}
        vehicles = set(home)
        if self._to_watch:
            # Vehicles of newly assigned partitions, whether they send or not.
            stored = vehicles_of_partitions(conn, self._to_watch)
            self._to_watch = set()
            self._first_sight(conn, {**stored, **home})
        else:
            self._first_sight(conn, home)
        unrecorded = home.keys() - self._partition_recorded
        if unrecorded:
            # Recorded with the vehicle's stored state, which telemetry writes.
            batch.partitions = {
                m.vehicle_id: home[m.vehicle_id]
                for _, m in messages
                if m.vehicle_id in unrecorded and isinstance(m, TELEMETRY_TYPES)
            }
            self._partition_recorded.update(batch.partitions)
        # In event-time order, so the last time seen per partition is its latest.
        self._advance_partition_times({tp: m.time for tp, m in messages})

        engine = self.engine
        for _, message in messages:
            engine.observe(message)
        add_rows(batch, messages, self._odometer)
        watermark = self._current_watermark()
        if watermark is not None:
            engine.tick(watermark)
            self._ticked = watermark
        alerts, transitions = engine.take_changes()
        prepared = _snapshot(alerts, transitions)
        batch.alerts = prepared.batch.alerts
        batch.transitions = prepared.batch.transitions
        prepared.batch = batch
        prepared.vehicles = vehicles
        prepared.consumed = len(records)
        prepared.fired = sum(
            1 for t in transitions if t.to_state == FIRING and t.from_state != FIRING
        )
        return prepared

    def _first_sight(self, conn: psycopg.Connection[Any], home: Mapping[str, int]) -> None:
        """Load odometer and alert state of vehicles this consumer has not seen yet.

        A vehicle's rules are resumed only for the streams whose partition of that
        vehicle this consumer owns (one key maps to the same partition number in every
        stream), so two consumers never drive the same alert.
        """
        partition_of = self._vehicle_partition
        for vehicle in home.keys() - partition_of.keys():
            number = home[vehicle]
            partition_of[vehicle] = number
            self._partition_vehicles.setdefault(number, set()).add(vehicle)
        vehicles = home.keys()
        unknown_odometer = vehicles - self._odometer.keys()
        unknown = self.engine.unknown_vehicles(vehicles)
        if not unknown_odometer and not unknown:
            return
        last = last_odometers(conn, sorted(unknown_odometer | unknown))
        for vehicle in unknown_odometer:
            if vehicle in last:
                self._odometer[vehicle] = last[vehicle][1]
        if not unknown:
            return
        owned = set(self._planned)
        physical_of = {stream: physical for physical, stream in self.params.topics.items()}

        def owns(vehicle: str, stream: str) -> bool:
            number = partition_of.get(vehicle)
            return number is None or (physical_of.get(stream, stream), number) in owned

        alerts = [
            alert
            for alert in map(alert_from_row, load_alert_rows(conn, sorted(unknown)))
            if owns(alert.vehicle_id, RULE_TOPIC.get(alert.rule, TELEMETRY_TOPIC))
        ]
        last_telemetry = {
            v: (last[v][0] if v in last and owns(v, TELEMETRY_TOPIC) else None) for v in unknown
        }
        self.engine.load(alerts, last_telemetry)

    def _advance_partition_times(self, latest: Mapping[TopicPartition, datetime]) -> None:
        """Record each partition's latest event time in this batch and that it delivered."""
        now = time.monotonic()
        for tp, t in latest.items():
            known = self._partition_time.get(tp)
            if known is None or t > known[0]:
                self._partition_time[tp] = (t, now)
            else:
                self._partition_time[tp] = (known[0], now)

    def _current_watermark(self) -> datetime | None:
        """Event-time watermark: the slowest partition that still has something to deliver.

        A partition holds the watermark back while it has a backlog or delivered within
        ``IDLE_PARTITION_S``; a caught-up partition gone quiet (its vehicles stopped
        sending) no longer does, and once all are quiet the watermark is the latest event
        time seen. While a partition with a backlog has delivered nothing
        yet, the watermark stays where it is. Without this, a consumer working through a
        backlog unevenly (Kafka fetches partition by partition) took the lagging
        partitions' vehicles for silent.
        """
        now = time.monotonic()
        lags = self.consumer.partition_lags()
        if any(lag > 0 and tp not in self._partition_time for tp, lag in lags.items()):
            return self._watermark
        active = [
            t
            for tp, (t, seen) in self._partition_time.items()
            if now - seen < IDLE_PARTITION_S or lags.get(tp, 0) > 0
        ]
        if not active and self._partition_time:
            # Every partition caught up and quiet: the fleet has got as far as the latest
            # event seen anywhere (the least would leave the watermark at a sparse
            # partition's last driving event, and a vehicle silent since never judged).
            active = [max(t for t, _ in self._partition_time.values())]
        if not active:
            return self._watermark
        candidate = min(active)
        if self._watermark is None or candidate > self._watermark:
            self._watermark = candidate
        return self._watermark
