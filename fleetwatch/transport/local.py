"""In-process transport: partitioned append-only logs shared by threads of one process.

Used by the embedded app, where the simulator and the ingestor run as threads. It
mirrors Kafka closely enough that the ingestor cannot tell the difference: records
are keyed to a partition by a stable hash (CRC-32 of the key, never Python's
per-process ``hash``), offsets are dense per partition, a consumer resumes each
partition from the offset its ``on_assign`` callback returns, and lag is the end of
each assigned partition minus the consumer's position.

Memory stays bounded. Records every subscribed group has committed are dropped; a
producer waits while a subscribed group is ``retention`` records behind on the
partition it writes to (back-pressure, like a full Kafka producer queue); with no
group subscribed, records beyond the newest ``retention`` are dropped (like Kafka's
retention). A consumer is assigned every partition of the topics it subscribes to.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Mapping, Sequence

from fleetwatch.transport.base import (
    AssignCallback,
    Record,
    RevokeCallback,
    TopicPartition,
)

TRIM_CHUNK = 4096
"""Committed records are dropped in chunks of at least this many (list shifts are O(n))."""


def partition_for(key: bytes, partitions: int) -> int:
    """The partition a key maps to: stable across processes and runs."""
    return zlib.crc32(key) % partitions


class _Log:
    __slots__ = ("base", "records")

    def __init__(self) -> None:
        self.base = 0
        """Offset of ``records[0]``; everything before it was dropped."""
        self.records: list[Record] = []

    @property
    def end(self) -> int:
        return self.base + len(self.records)

    def drop_before(self, offset: int) -> None:
        count = min(offset, self.end) - self.base
        if count > 0:
            del self.records[:count]
            self.base += count


class LocalBroker:
    """Per-topic partitioned logs, safe to use from several threads."""

    def __init__(self, partitions: int = 6, retention: int = 50_000) -> None:
        if partitions < 1:
            raise ValueError("a local broker needs at least one partition")
        if retention < 1:
            raise ValueError("a local broker must retain at least one record per partition")
        self.partitions = partitions
        self.retention = retention
        self._logs: dict[str, list[_Log]] = {}
        self._committed: dict[str, dict[TopicPartition, int]] = {}
        self._subscribed: dict[str, dict[str, int]] = {}  # topic -> group -> live consumers
        self._closed = False
        self._lock = threading.Lock()
        self._appended = threading.Condition(self._lock)
        self._room = threading.Condition(self._lock)

    def producer(self) -> LocalProducer:
        return LocalProducer(self)

    def consumer(self, group: str) -> LocalConsumer:
        return LocalConsumer(self, group)

    def close(self) -> None:
        """Release producers waiting for room; later records are kept without waiting."""
        with self._lock:
            self._closed = True
            self._room.notify_all()

    # -- used by producers and consumers ---------------------------------------------

    def _topic_locked(self, topic: str) -> list[_Log]:
        logs = self._logs.get(topic)
        if logs is None:
            logs = [_Log() for _ in range(self.partitions)]
            self._logs[topic] = logs
        return logs

    def _slowest_locked(self, topic: str, partition: int, log: _Log) -> int | None:
        """The lowest committed offset among the groups subscribed to ``topic``."""
        groups = self._subscribed.get(topic)
        if not groups:
            return None
        tp = (topic, partition)
        return min(self._committed.get(g, {}).get(tp, log.base) for g in groups)

    def _append_locked(self, topic: str, key: bytes, value: bytes, waiting: bool) -> None:
        partition = partition_for(key, self.partitions)
        log = self._topic_locked(topic)[partition]
        while True:
            slowest = self._slowest_locked(topic, partition, log)
            if slowest is None:
                log.drop_before(log.end + 1 - self.retention)
                break
            if log.end - slowest < self.retention or self._closed or not waiting:
                break
            self._room.wait(0.5)
        log.records.append(Record(topic, partition, log.end, key, value))

    def append(self, topic: str, key: bytes, value: bytes) -> None:
        with self._lock:
            self._append_locked(topic, key, value, waiting=True)
            self._appended.notify_all()

    def append_many(self, records: Sequence[tuple[str, bytes, bytes]]) -> None:
        """Append several ``(topic, key, value)`` records under one lock acquisition."""
        with self._lock:
            for topic, key, value in records:
                self._append_locked(topic, key, value, waiting=True)
                self._appended.notify_all()

    def end_offsets(self, topic: str) -> list[int]:
        """The next offset to be written in each partition of ``topic``."""
        with self._lock:
            return [log.end for log in self._topic_locked(topic)]

    def retained(self, topic: str) -> int:
        """How many records of ``topic`` are held in memory."""
        with self._lock:
            return sum(len(log.records) for log in self._topic_locked(topic))

    def committed(self, group: str) -> dict[TopicPartition, int]:
        with self._lock:
            return dict(self._committed.get(group, {}))

    def _subscribe(self, group: str, topics: Sequence[str]) -> None:
        with self._lock:
            for topic in topics:
                self._topic_locked(topic)
                groups = self._subscribed.setdefault(topic, {})
                groups[group] = groups.get(group, 0) + 1

    def _unsubscribe(self, group: str, topics: Sequence[str]) -> None:
        with self._lock:
            for topic in topics:
                groups = self._subscribed.get(topic, {})
                groups[group] = groups.get(group, 1) - 1
                if groups[group] <= 0:
                    del groups[group]
            self._room.notify_all()

    def _commit(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        with self._lock:
            self._committed.setdefault(group, {}).update(offsets)
            for topic, partition in offsets:
                logs = self._logs.get(topic)
                if logs is None or partition >= len(logs):
                    continue
                log = logs[partition]
                slowest = self._slowest_locked(topic, partition, log)
                if slowest is not None and slowest - log.base >= TRIM_CHUNK:
                    log.drop_before(slowest)
            self._room.notify_all()


class LocalProducer:
    """Producer protocol over a :class:`LocalBroker`; records are visible at once.

    ``produce`` waits while a subscribed consumer group is ``retention`` records behind.
    """

    def __init__(self, broker: LocalBroker) -> None:
        self._broker = broker
        self._closed = False

    def produce(self, topic: str, key: bytes, value: bytes) -> None:
        if self._closed:
            raise RuntimeError("produce() on a closed producer")
        self._broker.append(topic, key, value)

    def produce_many(self, records: Sequence[tuple[str, bytes, bytes]]) -> None:
        if self._closed:
            raise RuntimeError("produce() on a closed producer")
        self._broker.append_many(records)

    def flush(self, timeout_s: float = 30.0) -> int:
        return 0

    def close(self) -> None:
        self._closed = True


class LocalConsumer:
    """Consumer protocol over a :class:`LocalBroker`; owns every partition it subscribes to."""

    def __init__(self, broker: LocalBroker, group: str) -> None:
        self._broker = broker
        self.group = group
        self._topics: tuple[str, ...] = ()
        self._on_assign: AssignCallback | None = None
        self._on_revoke: RevokeCallback | None = None
        self._positions: dict[TopicPartition, int] = {}
        self._assigned = False
        self._next = 0  # round-robin start among partitions, for fairness
        self._closed = False

    def subscribe(
        self,
        topics: Sequence[str],
        on_assign: AssignCallback,
        on_revoke: RevokeCallback,
    ) -> None:
        if self._topics:
            self._broker._unsubscribe(self.group, self._topics)
        self._topics = tuple(topics)
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._assigned = False
        self._broker._subscribe(self.group, self._topics)

    def assignment(self) -> list[TopicPartition]:
        return sorted(self._positions)

    def _assign(self) -> None:
        # Like Kafka, assignment happens inside poll, on the consuming thread.
        partitions = [(t, p) for t in self._topics for p in range(self._broker.partitions)]
        resume = self._on_assign(partitions) if self._on_assign is not None else {}
        with self._broker._lock:
            logs = self._broker._logs
            positions = {}
            for topic, partition in partitions:
                log = logs[topic][partition]
                offset = int(resume.get((topic, partition), 0))
                # Beyond the end (offsets stored against an earlier, in-memory broker):
                # start from the earliest record, like Kafka's auto.offset.reset=earliest.
                positions[(topic, partition)] = offset if 0 <= offset <= log.end else log.base
        self._positions = positions
        self._assigned = True

    def poll_batch(self, max_records: int, timeout_s: float) -> list[Record]:
        if self._closed:
            raise RuntimeError("poll_batch() on a closed consumer")
        if not self._assigned:
            self._assign()
        broker = self._broker
        out: list[Record] = []
        with broker._lock:
            if not self._collect_locked(out, max_records):
                broker._appended.wait_for(self._available_locked, timeout=max(0.0, timeout_s))
                self._collect_locked(out, max_records)
        return out

    def _available_locked(self) -> bool:
        logs = self._broker._logs
        return any(logs[t][p].end > pos for (t, p), pos in self._positions.items())

    def _collect_locked(self, out: list[Record], max_records: int) -> bool:
        logs = self._broker._logs
        order = list(self._positions)
        if not order:
            return False
        start = self._next % len(order)
        self._next += 1
        order = order[start:] + order[:start]
        positions = self._positions
        for tp in order:
            log = logs[tp[0]][tp[1]]
            if positions[tp] < log.base:
                positions[tp] = log.base  # dropped by retention: skip, like Kafka's reset
        # Spread the batch over partitions so one busy partition cannot starve others.
        pending = [tp for tp in order if logs[tp[0]][tp[1]].end > positions[tp]]
        while pending and len(out) < max_records:
            share = max(1, (max_records - len(out)) // len(pending))
            still: list[TopicPartition] = []
            for tp in pending:
                room = max_records - len(out)
                if room <= 0:
                    break
                log = logs[tp[0]][tp[1]]
                index = positions[tp] - log.base
                taken = log.records[index : index + min(share, room)]
                out.extend(taken)
                positions[tp] += len(taken)
                if log.end > positions[tp]:
                    still.append(tp)
            pending = still
        return bool(out)

    def seek(self, topic: str, partition: int, offset: int) -> None:
        with self._broker._lock:
            if (topic, partition) in self._positions:
                self._positions[(topic, partition)] = max(0, offset)

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        self._broker._commit(self.group, offsets)

    def lag(self) -> int | None:
        if not self._assigned:
            return None
        return sum(self.partition_lags().values())

    def partition_lags(self) -> dict[TopicPartition, int]:
        with self._broker._lock:
            logs = self._broker._logs
            return {
                (t, p): logs[t][p].end - max(pos, logs[t][p].base)
                for (t, p), pos in self._positions.items()
            }

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._assigned and self._on_revoke is not None:
                self._on_revoke(sorted(self._positions))
        finally:
            self._broker._unsubscribe(self.group, self._topics)
            self._positions = {}
            self._assigned = False
