"""The Kafka transport against a real broker: topics, delivery, resume offsets, lag, errors."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence

import pytest
from confluent_kafka.admin import AdminClient

from fleetwatch.transport.base import Record, TopicPartition
from fleetwatch.transport.kafka import (
    KafkaConsumer,
    KafkaProducer,
    TransportError,
    ensure_topics,
    probe,
)
from tests.polling import wait_until


@pytest.fixture
def topic_name(kafka_bootstrap: str) -> Iterator[str]:
    """A unique topic name, deleted after the test if it was created."""
    name = f"fwtest-transport-{uuid.uuid4().hex[:10]}"
    yield name
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    if name in admin.list_topics(timeout=10).topics:
        for future in admin.delete_topics([name], operation_timeout=30).values():
            future.result(timeout=60)


def partition_count(bootstrap: str, topic: str) -> int:
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    return len(metadata.topics[topic].partitions)


class Resume:
    def __init__(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        self.offsets = dict(offsets or {})
        self.assigned: list[TopicPartition] = []
        self.revoked: list[TopicPartition] = []

    def on_assign(self, partitions: Sequence[TopicPartition]) -> Mapping[TopicPartition, int]:
        self.assigned.extend(partitions)
        return self.offsets

    def on_revoke(self, partitions: Sequence[TopicPartition]) -> None:
        self.revoked.extend(partitions)


def consume_all(consumer: KafkaConsumer, count: int, timeout_s: float = 60.0) -> list[Record]:
    got: list[Record] = []

    def enough() -> bool:
        got.extend(consumer.poll_batch(1000, 0.2))
        return len(got) >= count

    wait_until(enough, timeout_s, f"{count} records")
    return got


def test_ensure_topics_creates_missing_and_leaves_existing(
    kafka_bootstrap: str, topic_name: str
) -> None:
    assert ensure_topics(kafka_bootstrap, [topic_name], partitions=3) == [topic_name]
    wait_until(lambda: partition_count(kafka_bootstrap, topic_name) == 3, 30, "3 partitions")
    assert ensure_topics(kafka_bootstrap, [topic_name], partitions=5) == []  # exists: untouched
    assert partition_count(kafka_bootstrap, topic_name) == 3


def test_produce_consume_and_resume_from_given_offsets(
    kafka_bootstrap: str, topic_name: str
) -> None:
    ensure_topics(kafka_bootstrap, [topic_name], partitions=2)
    producer = KafkaProducer(kafka_bootstrap)
    keys = [f"AV-{i:04d}".encode() for i in range(20)]
    for i in range(200):
        producer.produce(topic_name, keys[i % 20], f"{i}".encode())
    assert producer.flush(30) == 0
    producer.close()

    group = f"fwtest-{uuid.uuid4().hex[:8]}"
    callbacks = Resume()
    consumer = KafkaConsumer(kafka_bootstrap, group)
    consumer.subscribe([topic_name], callbacks.on_assign, callbacks.on_revoke)
    records = consume_all(consumer, 200)
    assert sorted(int(r.value or b"") for r in records) == list(range(200))
    assert sorted(set(callbacks.assigned)) == [(topic_name, 0), (topic_name, 1)]
    # One key, one partition, in order.
    for key in keys:
        mine = [r for r in records if r.key == key]
        assert len({r.partition for r in mine}) == 1
        assert [int(r.value or b"") for r in mine] == sorted(int(r.value or b"") for r in mine)
    wait_until(lambda: consumer.lag() == 0, 30, "lag 0")
    consumer.commit({(r.topic, r.partition): r.offset + 1 for r in records})
    consumer.close()
    assert sorted(set(callbacks.revoked)) == [(topic_name, 0), (topic_name, 1)]

    # A new member of the same group resumes where on_assign says, not where Kafka was
    # told (the commit above), because the database is the authority.
    resume = {(topic_name, 0): 0, (topic_name, 1): 0}
    first_partition = [r for r in records if r.partition == 0]
    resume[(topic_name, 0)] = len(first_partition) - 3
    again = KafkaConsumer(kafka_bootstrap, group)
    again.subscribe([topic_name], Resume(resume).on_assign, Resume().on_revoke)
    expected = 3 + len(records) - len(first_partition)
    second = consume_all(again, expected)
    assert len(second) == expected
    assert sorted(r.offset for r in second if r.partition == 0) == [
        len(first_partition) - 3,
        len(first_partition) - 2,
        len(first_partition) - 1,
    ]
    again.close()


def test_lag_counts_unconsumed_records(kafka_bootstrap: str, topic_name: str) -> None:
    ensure_topics(kafka_bootstrap, [topic_name], partitions=1)
    producer = KafkaProducer(kafka_bootstrap)
    for i in range(50):
        producer.produce(topic_name, b"k", str(i).encode())
    producer.flush(30)
    consumer = KafkaConsumer(kafka_bootstrap, f"fwtest-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([topic_name], Resume({(topic_name, 0): 40}).on_assign, Resume().on_revoke)
    records = consume_all(consumer, 10)
    assert [r.offset for r in records] == list(range(40, 50))
    wait_until(lambda: consumer.lag() == 0, 30, "lag 0")
    consumer.seek(topic_name, 0, 45)
    assert [r.offset for r in consume_all(consumer, 5)] == list(range(45, 50))
    consumer.close()


def test_unreachable_broker_is_one_sentence() -> None:
    with pytest.raises(TransportError) as info:
        probe("127.0.0.1:1", timeout_s=2)
    assert "127.0.0.1:1" in str(info.value)
    assert "\n" not in str(info.value)
    with pytest.raises(TransportError):
        ensure_topics("127.0.0.1:1", ["x"], 1, timeout_s=2)


def test_consumer_reports_a_down_broker_as_state() -> None:
    consumer = KafkaConsumer("127.0.0.1:1", "fwtest-down")
    consumer.subscribe(["anything"], Resume().on_assign, Resume().on_revoke)
    wait_until(
        lambda: consumer.poll_batch(10, 0.2) == [] and consumer.broker_down, 30, "broker down"
    )
    assert consumer.last_error
    consumer.close()


def test_undeliverable_records_raise_on_flush(kafka_bootstrap: str) -> None:
    producer = KafkaProducer(kafka_bootstrap, {"message.timeout.ms": "1000"})
    # Topic names with spaces are invalid: the broker refuses every record.
    producer.produce("not a valid topic", b"k", b"v")
    with pytest.raises(TransportError) as info:
        producer.flush(20)
    assert "could not be delivered" in str(info.value)
