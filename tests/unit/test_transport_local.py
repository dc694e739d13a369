"""The in-process transport behaves like Kafka as far as the ingestor can tell."""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence

import pytest

from fleetwatch.transport.base import Consumer, Producer, TopicPartition
from fleetwatch.transport.local import TRIM_CHUNK, LocalBroker, partition_for


class Callbacks:
    """Records assignments and revocations; resumes partitions from ``resume``."""

    def __init__(self, resume: Mapping[TopicPartition, int] | None = None) -> None:
        self.resume = dict(resume or {})
        self.assigned: list[list[TopicPartition]] = []
        self.revoked: list[list[TopicPartition]] = []

    def on_assign(self, partitions: Sequence[TopicPartition]) -> Mapping[TopicPartition, int]:
        self.assigned.append(list(partitions))
        return self.resume

    def on_revoke(self, partitions: Sequence[TopicPartition]) -> None:
        self.revoked.append(list(partitions))


def drain(consumer: Consumer, max_records: int = 1000) -> list[tuple[str, int, int, bytes]]:
    out: list[tuple[str, int, int, bytes]] = []
    while records := consumer.poll_batch(max_records, 0.0):
        out.extend((r.topic, r.partition, r.offset, r.value or b"") for r in records)
    return out


def test_partition_is_crc32_of_the_key_and_stable() -> None:
    assert partition_for(b"AV-00001", 6) == zlib.crc32(b"AV-00001") % 6
    assert {partition_for(f"AV-{i:05d}".encode(), 6) for i in range(100)} == set(range(6))


def test_implements_the_protocols() -> None:
    broker = LocalBroker(3)
    producer: Producer = broker.producer()
    consumer: Consumer = broker.consumer("g")
    assert producer.flush() == 0
    consumer.close()


def test_records_of_one_key_stay_ordered_in_one_partition() -> None:
    broker = LocalBroker(4)
    producer = broker.producer()
    for i in range(50):
        producer.produce("t", f"k{i % 5}".encode(), f"{i % 5}:{i}".encode())
    consumer = broker.consumer("g")
    callbacks = Callbacks()
    consumer.subscribe(["t"], callbacks.on_assign, callbacks.on_revoke)
    records = drain(consumer, max_records=7)
    assert len(records) == 50
    by_key: dict[str, list[int]] = {}
    partitions: dict[str, set[int]] = {}
    for _topic, partition, _offset, value in records:
        key, index = value.decode().split(":")
        by_key.setdefault(key, []).append(int(index))
        partitions.setdefault(key, set()).add(partition)
    assert all(values == sorted(values) for values in by_key.values())
    assert all(len(p) == 1 for p in partitions.values())
    assert callbacks.assigned == [[("t", p) for p in range(4)]]


def test_offsets_are_dense_per_partition() -> None:
    broker = LocalBroker(2)
    producer = broker.producer()
    for i in range(20):
        producer.produce("t", f"k{i}".encode(), b"v")
    consumer = broker.consumer("g")
    consumer.subscribe(["t"], Callbacks().on_assign, Callbacks().on_revoke)
    records = drain(consumer)
    for partition in (0, 1):
        offsets = [o for _, p, o, _ in records if p == partition]
        assert offsets == list(range(len(offsets)))
    assert broker.end_offsets("t") == [
        sum(1 for _, p, _, _ in records if p == 0),
        sum(1 for _, p, _, _ in records if p == 1),
    ]


def test_consumer_resumes_from_the_offsets_on_assign_returns() -> None:
    broker = LocalBroker(1)
    producer = broker.producer()
    for i in range(10):
        producer.produce("t", b"k", str(i).encode())
    consumer = broker.consumer("g")
    consumer.subscribe(["t"], Callbacks({("t", 0): 7}).on_assign, Callbacks().on_revoke)
    assert [v for _, _, _, v in drain(consumer)] == [b"7", b"8", b"9"]


def test_lag_is_end_minus_position() -> None:
    broker = LocalBroker(2)
    producer = broker.producer()
    consumer = broker.consumer("g")
    consumer.subscribe(["t"], Callbacks().on_assign, Callbacks().on_revoke)
    assert consumer.lag() is None  # not assigned before the first poll
    assert consumer.poll_batch(10, 0.0) == []
    assert consumer.lag() == 0
    for i in range(9):
        producer.produce("t", f"k{i}".encode(), b"v")
    assert consumer.lag() == 9
    got = consumer.poll_batch(4, 0.0)
    assert len(got) == 4
    assert consumer.lag() == 5


def test_poll_waits_for_records_from_another_thread() -> None:
    broker = LocalBroker(2)
    consumer = broker.consumer("g")
    consumer.subscribe(["t"], Callbacks().on_assign, Callbacks().on_revoke)
    assert consumer.poll_batch(10, 0.0) == []
    started = threading.Event()

    def produce() -> None:
        started.wait()
        broker.producer().produce("t", b"k", b"late")

    thread = threading.Thread(target=produce)
    thread.start()
    started.set()
    records = consumer.poll_batch(10, 30.0)
    thread.join()
    assert [r.value for r in records] == [b"late"]


def test_batches_are_spread_over_partitions() -> None:
    broker = LocalBroker(2)
    producer = broker.producer()
    keys = {partition_for(f"k{i}".encode(), 2): f"k{i}".encode() for i in range(20)}
    for _ in range(100):
        producer.produce("t", keys[0], b"v")
        producer.produce("t", keys[1], b"v")
    consumer = broker.consumer("g")
    consumer.subscribe(["t"], Callbacks().on_assign, Callbacks().on_revoke)
    records = consumer.poll_batch(10, 0.0)
    assert {r.partition for r in records} == {0, 1}


def test_seek_rereads_and_commit_is_recorded() -> None:
    broker = LocalBroker(1)
    producer = broker.producer()
    for i in range(5):
        producer.produce("t", b"k", str(i).encode())
    consumer = broker.consumer("g")
    consumer.subscribe(["t"], Callbacks().on_assign, Callbacks().on_revoke)
    assert len(drain(consumer)) == 5
    consumer.seek("t", 0, 3)
    assert [v for _, _, _, v in drain(consumer)] == [b"3", b"4"]
    consumer.commit({("t", 0): 5})
    assert broker.committed("g") == {("t", 0): 5}


def test_close_revokes_the_assignment() -> None:
    broker = LocalBroker(2)
    consumer = broker.consumer("g")
    callbacks = Callbacks()
    consumer.subscribe(["a", "b"], callbacks.on_assign, callbacks.on_revoke)
    consumer.poll_batch(1, 0.0)
    consumer.close()
    assert callbacks.revoked == [[("a", 0), ("a", 1), ("b", 0), ("b", 1)]]
    with pytest.raises(RuntimeError):
        consumer.poll_batch(1, 0.0)


def test_concurrent_producers_lose_nothing() -> None:
    broker = LocalBroker(3)

    def produce(worker: int) -> None:
        producer = broker.producer()
        for i in range(500):
            producer.produce("t", f"w{worker}-{i % 7}".encode(), f"{worker}:{i}".encode())

    threads = [threading.Thread(target=produce, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    consumer = broker.consumer("g")
    consumer.subscribe(["t"], Callbacks().on_assign, Callbacks().on_revoke)
    values = {v for _, _, _, v in drain(consumer)}
    assert values == {f"{w}:{i}".encode() for w in range(4) for i in range(500)}


def test_without_subscribers_only_the_newest_records_are_kept() -> None:
    broker = LocalBroker(1, retention=100)
    producer = broker.producer()
    for i in range(1000):
        producer.produce("t", b"k", str(i).encode())
    assert broker.retained("t") == 100
    assert broker.end_offsets("t") == [1000]
    consumer = broker.consumer("g")
    consumer.subscribe(["t"], Callbacks().on_assign, Callbacks().on_revoke)
    records = drain(consumer)
    # Resuming before the oldest kept record skips to it, like Kafka's earliest reset.
    assert [o for _, _, o, _ in records] == list(range(900, 1000))


def test_committed_records_are_dropped() -> None:
    broker = LocalBroker(1)
    producer = broker.producer()
    consumer = broker.consumer("g")
    consumer.subscribe(["t"], Callbacks().on_assign, Callbacks().on_revoke)
    for i in range(TRIM_CHUNK + 10):
        producer.produce("t", b"k", str(i).encode())
    assert len(drain(consumer)) == TRIM_CHUNK + 10
    assert broker.retained("t") == TRIM_CHUNK + 10
    consumer.commit({("t", 0): TRIM_CHUNK + 5})
    assert broker.retained("t") == 5
    assert consumer.lag() == 0
    consumer.seek("t", 0, 0)  # before the oldest kept record
    assert [o for _, _, o, _ in drain(consumer)] == list(range(TRIM_CHUNK + 5, TRIM_CHUNK + 10))


def test_a_producer_waits_for_a_lagging_group_and_resumes_on_commit() -> None:
    broker = LocalBroker(1, retention=10)
    consumer = broker.consumer("g")
    consumer.subscribe(["t"], Callbacks().on_assign, Callbacks().on_revoke)
    producer = broker.producer()

    def produce() -> None:
        for i in range(25):
            producer.produce("t", b"k", str(i).encode())

    thread = threading.Thread(target=produce)
    thread.start()
    wait_for(lambda: broker.end_offsets("t") == [10])
    thread.join(timeout=0.2)
    assert thread.is_alive()  # held back: the group is `retention` records behind
    assert broker.end_offsets("t") == [10]
    while thread.is_alive() or consumer.lag():
        records = consumer.poll_batch(100, 0.05)
        if records:
            consumer.commit({("t", 0): records[-1].offset + 1})
        thread.join(timeout=0.01)
    assert broker.end_offsets("t") == [25]


def test_closing_the_broker_releases_a_waiting_producer() -> None:
    broker = LocalBroker(1, retention=5)
    consumer = broker.consumer("g")
    consumer.subscribe(["t"], Callbacks().on_assign, Callbacks().on_revoke)
    producer = broker.producer()

    def produce() -> None:
        for _ in range(8):
            producer.produce("t", b"k", b"v")

    thread = threading.Thread(target=produce)
    thread.start()
    wait_for(lambda: broker.end_offsets("t") == [5])
    broker.close()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert broker.end_offsets("t") == [8]


def wait_for(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def test_a_resume_offset_beyond_the_end_starts_from_the_earliest_record() -> None:
    # Offsets stored by an earlier run against another (in-memory) broker.
    broker = LocalBroker(1)
    producer = broker.producer()
    for i in range(3):
        producer.produce("t", b"k", str(i).encode())
    consumer = broker.consumer("g")
    consumer.subscribe(["t"], Callbacks({("t", 0): 5000}).on_assign, Callbacks().on_revoke)
    assert [v for _, _, _, v in drain(consumer)] == [b"0", b"1", b"2"]
