"""Apache Kafka transport (confluent-kafka): producer, consumer and topic creation.

The producer is idempotent, compresses with lz4 and batches with a short linger; it
reports only failed deliveries, counts them and raises them on :meth:`KafkaProducer.flush`.
The consumer never lets Kafka decide where a partition resumes: on every assignment
it asks the ingestor (which keeps offsets in the database with the data) and
commits to Kafka only as a courtesy for monitoring tools. Broker trouble is kept as
state (:attr:`KafkaConsumer.broker_down`) rather than raised, so the ingest loop
goes on and recovers by itself.

``client`` mappings (``KafkaSettings.client``) are passed through to librdkafka, for
TLS and SASL settings.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
)
from confluent_kafka import TopicPartition as KafkaTopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    NewTopic,
)

from fleetwatch.transport.base import (
    AssignCallback,
    Record,
    RevokeCallback,
    TopicPartition,
)

log = logging.getLogger(__name__)

_EMPTY: Mapping[str, str] = {}

_BROKER_DOWN_CODES = frozenset({KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT})


class TransportError(Exception):
    """The broker cannot be used; the message is one sentence meant for the user."""


def _librdkafka_logger() -> logging.Logger:
    # librdkafka prints to stderr unless given a logger; its chatter goes to our log.
    return logging.getLogger("fleetwatch.transport.librdkafka")


def _config(bootstrap: str, client: Mapping[str, str], **defaults: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, **defaults}
    config.update(client)
    config["logger"] = _librdkafka_logger()
    return config


def _describe(error: KafkaError | KafkaException | BaseException) -> str:
    if isinstance(error, KafkaException) and error.args:
        inner = error.args[0]
        if isinstance(inner, KafkaError):
            return str(inner.str())
    if isinstance(error, KafkaError):
        return str(error.str())
    return str(error)


def probe(bootstrap: str, client: Mapping[str, str] = _EMPTY, timeout_s: float = 10.0) -> None:
    """Raise :class:`TransportError` unless the cluster at ``bootstrap`` answers."""
    admin = AdminClient(_config(bootstrap, client))
    try:
        admin.list_topics(timeout=timeout_s)
    except KafkaException as error:
        raise TransportError(
            f"cannot reach the Kafka broker at {bootstrap} ({_describe(error)})"
        ) from None


def ensure_topics(
    bootstrap: str,
    topics: Sequence[str],
    partitions: int,
    client: Mapping[str, str] = _EMPTY,
    timeout_s: float = 15.0,
) -> list[str]:
    """Create the missing ``topics`` with ``partitions`` partitions; leave existing ones alone.

    Returns the topics this call created (not those another process created meanwhile).
    """
    admin = AdminClient(_config(bootstrap, client))
    try:
        existing = admin.list_topics(timeout=timeout_s).topics
    except KafkaException as error:
        raise TransportError(
            f"cannot reach the Kafka broker at {bootstrap} ({_describe(error)})"
        ) from None
    missing = [t for t in topics if t not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=partitions, replication_factor=-1) for t in missing],
        operation_timeout=timeout_s,
        request_timeout=timeout_s,
    )
    created = []
    for topic, future in futures.items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as error:
            inner = error.args[0] if error.args else None
            if isinstance(inner, KafkaError) and inner.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue  # created concurrently by another process
            raise TransportError(
                f"cannot create the Kafka topic {topic} at {bootstrap} ({_describe(error)})"
            ) from None
        except TimeoutError:
            raise TransportError(
                f"the Kafka broker at {bootstrap} did not create topic {topic} "
                f"within {timeout_s:g} s"
            ) from None
        created.append(topic)
    return sorted(created)


class KafkaProducer:
    """Producer protocol over confluent-kafka: idempotent, lz4-compressed, batched."""

    def __init__(self, bootstrap: str, client: Mapping[str, str] = _EMPTY) -> None:
        self.bootstrap = bootstrap
        self._lock = threading.Lock()
        self.delivery_failures = 0
        self._first_failure: str | None = None
        self.broker_down = False
        self._since_poll = 0
        self._producer = Producer(
            _config(
                bootstrap,
                client,
                **{
                    "enable.idempotence": True,
                    "compression.type": "lz4",
                    "linger.ms": 20,
                    "batch.size": 1_000_000,
                    "queue.buffering.max.messages": 500_000,
                    "queue.buffering.max.kbytes": 512 * 1024,
                    "delivery.report.only.error": True,
                    "on_delivery": self._on_delivery,
                    "error_cb": self._on_error,
                },
            )
        )

    def _on_delivery(self, error: KafkaError | None, _message: Any) -> None:
        if error is None:
            return
        with self._lock:
            self.delivery_failures += 1
            if self._first_failure is None:
                self._first_failure = _describe(error)

    def _on_error(self, error: KafkaError) -> None:
        down = error.code() in _BROKER_DOWN_CODES
        if down != self.broker_down:
            self.broker_down = down
            log.warning("Kafka producer: %s", _describe(error))

    def produce(self, topic: str, key: bytes, value: bytes) -> None:
        producer = self._producer
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                # Local queue full: serve delivery reports until there is room.
                producer.poll(0.05)
        self._since_poll += 1
        if self._since_poll >= 1000:
            self._since_poll = 0
            producer.poll(0)

    def flush(self, timeout_s: float = 30.0) -> int:
        """Wait for delivery; raise :class:`TransportError` if any record failed."""
        remaining = int(self._producer.flush(timeout_s))
        with self._lock:
            failures, first = self.delivery_failures, self._first_failure
            self.delivery_failures, self._first_failure = 0, None
        if failures:
            raise TransportError(
                f"{failures} records could not be delivered to Kafka at {self.bootstrap} "
                f"(first error: {first})"
            )
        if remaining and self.broker_down:
            raise TransportError(
                f"the Kafka broker at {self.bootstrap} is unreachable; "
                f"{remaining} records are still queued"
            )
        return remaining

    def close(self) -> None:
        self._producer.flush(5.0)


_new_record: Final = tuple.__new__


class KafkaConsumer:
    """Consumer protocol over confluent-kafka with offsets owned by the caller.

    ``broker_down`` and ``last_error`` describe the broker as last seen; errors never
    escape :meth:`poll_batch` except those raised by the caller's own callbacks.
    """

    def __init__(self, bootstrap: str, group: str, client: Mapping[str, str] = _EMPTY) -> None:
        self.bootstrap = bootstrap
        self.group = group
        self.broker_down = False
        self.last_error: str | None = None
        self._assigned: set[TopicPartition] = set()
        self._on_assign: AssignCallback | None = None
        self._on_revoke: RevokeCallback | None = None
        self._closed = False
        self._last_probe = 0.0
        self._consumer = Consumer(
            _config(
                bootstrap,
                client,
                **{
                    "group.id": group,
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "auto.offset.reset": "earliest",
                    "partition.assignment.strategy": "cooperative-sticky",
                    # A killed ingestor's partitions move to the others after 10 s, not 45.
                    "session.timeout.ms": 10_000,
                    "heartbeat.interval.ms": 2_000,
                    "enable.partition.eof": False,
                    "fetch.wait.max.ms": 100,
                    "fetch.min.bytes": 1,
                    "queued.max.messages.kbytes": 64 * 1024,
                    "error_cb": self._on_error,
                },
            )
        )

    def _on_error(self, error: KafkaError) -> None:
        # Only a broker that answers clears the flag (poll_batch): other errors arrive
        # while it is down too. Logged at INFO: the ingest loop reports the state change.
        self.last_error = _describe(error)
        if error.code() in _BROKER_DOWN_CODES and not self.broker_down:
            log.info("Kafka consumer: %s", self.last_error)
            self.broker_down = True

    def subscribe(
        self,
        topics: Sequence[str],
        on_assign: AssignCallback,
        on_revoke: RevokeCallback,
    ) -> None:
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._consumer.subscribe(
            list(topics),
            on_assign=self._assign_cb,
            on_revoke=self._revoke_cb,
            on_lost=self._lost_cb,
        )

    def assignment(self) -> list[TopicPartition]:
        return sorted(self._assigned)

    def _assign_cb(self, consumer: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        resume = self._on_assign(tps) if self._on_assign is not None and tps else {}
        for p in partitions:
            offset = resume.get((p.topic, p.partition))
            p.offset = OFFSET_BEGINNING if offset is None else int(offset)
        consumer.incremental_assign(partitions)
        self._assigned.update(tps)
        if tps:
            log.info("assigned %s", ", ".join(f"{t}[{p}]" for t, p in sorted(tps)))

    def _revoke_cb(self, consumer: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        try:
            if self._on_revoke is not None and tps:
                self._on_revoke(tps)
        finally:
            consumer.incremental_unassign(partitions)
            self._assigned.difference_update(tps)
        if tps:
            log.info("revoked %s", ", ".join(f"{t}[{p}]" for t, p in sorted(tps)))

    def _lost_cb(self, consumer: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        # Lost (not revoked): another member may already own them, so nothing may be
        # written for them; the caller's revoke handler drops their pending state.
        self._revoke_cb(consumer, partitions)

    def poll_batch(self, max_records: int, timeout_s: float) -> list[Record]:
        if self._closed:
            raise RuntimeError("poll_batch() on a closed consumer")
        try:
            messages = self._consumer.consume(max(1, max_records), max(0.0, timeout_s))
        except KafkaException as error:
            self.last_error = _describe(error)
            return []
        out: list[Record] = []
        append = out.append
        new = _new_record  # half the cost of Record(...), whose __new__ is Python code
        for m in messages:
            problem = m.error()
            if problem is not None:
                if problem.code() != KafkaError._PARTITION_EOF:
                    self._on_error(problem)
                continue
            ts_type, ts = m.timestamp()
            append(
                new(
                    Record,
                    (
                        m.topic() or "",
                        m.partition() or 0,
                        m.offset() or 0,
                        m.key(),
                        m.value(),
                        ts if ts_type else None,
                    ),
                )
            )
        # Records may come from the local prefetch queue while the broker is gone: only an
        # answer from the broker means it is back.
        if self.broker_down and self._broker_answers():
            log.info("Kafka consumer: broker reachable again")
            self.broker_down = False
        return out

    def _broker_answers(self) -> bool:
        # librdkafka reports a broker going down, not coming back: ask, at most every 2 s.
        now = time.monotonic()
        if now - self._last_probe < 2.0:
            return False
        self._last_probe = now
        try:
            self._consumer.list_topics(timeout=1.0)
        except KafkaException:
            return False
        return True

    def seek(self, topic: str, partition: int, offset: int) -> None:
        if (topic, partition) not in self._assigned:
            return
        try:
            self._consumer.seek(KafkaTopicPartition(topic, partition, offset))
        except KafkaException as error:
            self.last_error = _describe(error)

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if not offsets:
            return
        try:
            self._consumer.commit(
                offsets=[KafkaTopicPartition(t, p, o) for (t, p), o in offsets.items()],
                asynchronous=True,
            )
        except KafkaException as error:
            # Advisory only: the database holds the offsets that count.
            self.last_error = _describe(error)

    def lag(self) -> int | None:
        if not self._assigned:
            return None
        lags = self._lags()
        return None if lags is None else sum(lags.values())

    def partition_lags(self) -> dict[TopicPartition, int]:
        return self._lags() or {}

    def _lags(self) -> dict[TopicPartition, int] | None:
        """Known lags only (a partition not fetched yet has no cached end offset);
        None when the positions cannot be read."""
        tps = [KafkaTopicPartition(t, p) for t, p in self._assigned]
        try:
            positions = self._consumer.position(tps)
        except KafkaException:
            return None
        lags: dict[TopicPartition, int] = {}
        for tp in positions:
            try:
                low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            position = tp.offset if tp.offset >= 0 else low
            if high < 0 or position < 0:
                continue  # nothing fetched yet for this partition
            lags[(tp.topic, tp.partition)] = max(0, high - position)
        return lags

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._consumer.close()
        except (KafkaException, RuntimeError) as error:
            log.warning("closing the Kafka consumer: %s", _describe(error))
