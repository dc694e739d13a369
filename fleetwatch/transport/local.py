"""In-process transport: partitioned append-only logs shared by threads of one process.

Used by the embedded app, where the simulator and the ingestor run as threads. It
mirrors Kafka closely enough that the ingestor cannot tell the difference: records
are keyed to a partition by a stable hash (CRC-32 of the key, never Python's
per-process ``hash``), offsets are dense per partition, a consumer resumes each
partition from the offset its ``on_assign`` callback returns, and lag is the end of
each assigned partition minus the consumer's position.

A broker holds one consumer per group at a time, which is assigned every partition
of the topics it subscribes to.
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


def partition_for(key: bytes, partitions: int) -> int:
    """The partition a key maps to: stable across processes and runs."""
    return zlib.crc32(key) % partitions


class LocalBroker:
    """Per-topic partitioned logs, safe to use from several threads."""

    def __init__(self, partitions: int = 6) -> None:
        if partitions < 1:
            raise ValueError("a local broker needs at least one partition")
        self.partitions = partitions
        self._logs: dict[str, list[list[Record]]] = {}
        self._committed: dict[str, dict[TopicPartition, int]] = {}
        self._lock = threading.Lock()
        self._appended = threading.Condition(self._lock)

    def producer(self) -> LocalProducer:
        return LocalProducer(self)

    def consumer(self, group: str) -> LocalConsumer:
        return LocalConsumer(self, group)

    # -- used by producers and consumers ---------------------------------------------

    def _topic_locked(self, topic: str) -> list[list[Record]]:
        logs = self._logs.get(topic)
        if logs is None:
            logs = [[] for _ in range(self.partitions)]
            self._logs[topic] = logs
        return logs

    def append(self, topic: str, key: bytes, value: bytes) -> None:
        partition = partition_for(key, self.partitions)
        with self._lock:
            log = self._topic_locked(topic)[partition]
            log.append(Record(topic, partition, len(log), key, value))
            self._appended.notify_all()

    def append_many(self, records: Sequence[tuple[str, bytes, bytes]]) -> None:
        """Append several ``(topic, key, value)`` records under one lock acquisition."""
        with self._lock:
            for topic, key, value in records:
                partition = partition_for(key, self.partitions)
                log = self._topic_locked(topic)[partition]
                log.append(Record(topic, partition, len(log), key, value))
            self._appended.notify_all()

    def end_offsets(self, topic: str) -> list[int]:
        """The next offset to be written in each partition of ``topic``."""
        with self._lock:
            return [len(log) for log in self._topic_locked(topic)]

    def committed(self, group: str) -> dict[TopicPartition, int]:
        with self._lock:
            return dict(self._committed.get(group, {}))

    def _commit(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        with self._lock:
            self._committed.setdefault(group, {}).update(offsets)


class LocalProducer:
    """Producer protocol over a :class:`LocalBroker`; records are visible at once."""

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
        self._topics = tuple(topics)
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._assigned = False
        with self._broker._lock:
            for topic in self._topics:
                self._broker._topic_locked(topic)

    def assignment(self) -> list[TopicPartition]:
        return sorted(self._positions)

    def _assign(self) -> None:
        # Like Kafka, assignment happens inside poll, on the consuming thread.
        partitions = [(t, p) for t in self._topics for p in range(self._broker.partitions)]
        resume = self._on_assign(partitions) if self._on_assign is not None else {}
        self._positions = {tp: max(0, int(resume.get(tp, 0))) for tp in partitions}
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
                broker._appended.wait_for(
                    lambda: self._available_locked(), timeout=max(0.0, timeout_s)
                )
                self._collect_locked(out, max_records)
        return out

    def _available_locked(self) -> bool:
        logs = self._broker._logs
        return any(len(logs[t][p]) > pos for (t, p), pos in self._positions.items())

    def _collect_locked(self, out: list[Record], max_records: int) -> bool:
        logs = self._broker._logs
        order = list(self._positions)
        if not order:
            return False
        start = self._next % len(order)
        self._next += 1
        order = order[start:] + order[:start]
        # Spread the batch over partitions so one busy partition cannot starve others.
        pending = [tp for tp in order if len(logs[tp[0]][tp[1]]) > self._positions[tp]]
        while pending and len(out) < max_records:
            share = max(1, (max_records - len(out)) // len(pending))
            still: list[TopicPartition] = []
            for tp in pending:
                room = max_records - len(out)
                if room <= 0:
                    break
                log = logs[tp[0]][tp[1]]
                pos = self._positions[tp]
                taken = log[pos : pos + min(share, room)]
                out.extend(taken)
                self._positions[tp] = pos + len(taken)
                if len(log) > self._positions[tp]:
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
        with self._broker._lock:
            logs = self._broker._logs
            return sum(len(logs[t][p]) - pos for (t, p), pos in self._positions.items())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._assigned and self._on_revoke is not None:
            self._on_revoke(sorted(self._positions))
        self._positions = {}
        self._assigned = False
