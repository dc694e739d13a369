"""The transport interface shared by Kafka and the in-process transport.

Producers send ``(topic, key, value)`` records; consumers hand out batches of
:class:`Record` and let the ingestor decide where each partition resumes, because
the ingestor stores consumed offsets in the database with the data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple, Protocol

TopicPartition = tuple[str, int]
"""(topic, partition)."""


class Record(NamedTuple):
    """One consumed message (a named tuple: consumers build tens of thousands a second)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None


AssignCallback = Callable[[Sequence[TopicPartition]], Mapping[TopicPartition, int]]
"""Called with newly assigned partitions; returns the offset to resume each one from
(partitions missing from the mapping start from the beginning)."""

RevokeCallback = Callable[[Sequence[TopicPartition]], None]
"""Called before partitions are taken away; the ingestor flushes per-vehicle state."""


class Producer(Protocol):
    def produce(self, topic: str, key: bytes, value: bytes) -> None:
        """Queue one record; may block briefly when the local queue is full."""

    def flush(self, timeout_s: float = 30.0) -> int:
        """Wait for queued records to be delivered; returns how many are still queued."""

    def close(self) -> None: ...


class Consumer(Protocol):
    def subscribe(
        self,
        topics: Sequence[str],
        on_assign: AssignCallback,
        on_revoke: RevokeCallback,
    ) -> None: ...

    def poll_batch(self, max_records: int, timeout_s: float) -> list[Record]:
        """Return up to ``max_records`` records, waiting at most ``timeout_s`` for the first."""

    def seek(self, topic: str, partition: int, offset: int) -> None:
        """Read an assigned partition again from ``offset`` (after a refused write)."""

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Record ``next offset to read`` per partition with the transport (advisory:
        the database holds the authoritative offsets)."""

    def lag(self) -> int | None:
        """Messages behind the end of the assigned partitions, if known."""

    def partition_lags(self) -> Mapping[TopicPartition, int]:
        """Messages behind the end of each assigned partition whose lag is known."""

    def close(self) -> None: ...
