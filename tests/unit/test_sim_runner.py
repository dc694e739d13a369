"""Unit tests of the simulator runner: time modes, stop, keys and topics, progress."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from fleetwatch.model import TOPICS, WireModel, decode
from fleetwatch.sim import Fleet, Mode, Progress, run
from fleetwatch.transport.local import LocalBroker

NOW = datetime(2026, 3, 2, 12, 0, 0, tzinfo=timezone.utc)


class FakeClock:
    """A clock that only moves when the runner sleeps (or a test moves it)."""

    def __init__(self, now: datetime) -> None:
        self.time = now
        self.slept_s = 0.0

    def now(self) -> datetime:
        return self.time

    def sleep(self, seconds: float, stop: threading.Event) -> None:
        assert seconds > 0
        self.slept_s += seconds
        self.time += timedelta(seconds=seconds)


class RecordingProducer:
    """Records what was produced and when (by the fake clock)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.records: list[tuple[str, bytes, bytes, datetime]] = []
        self.flushes = 0

    def produce(self, topic: str, key: bytes, value: bytes) -> None:
        self.records.append((topic, key, value, self.clock.now()))

    def flush(self, timeout_s: float = 30.0) -> int:
        self.flushes += 1
        return 0

    def close(self) -> None:
        pass

    def decoded(self) -> list[tuple[str, datetime, WireModel]]:
        return [
            (topic, produced_at, decode(topic, value, key))
            for topic, key, value, produced_at in self.records
        ]


def test_backfill_produces_history_up_to_now_without_waiting() -> None:
    clock = FakeClock(NOW)
    producer = RecordingProducer(clock)
    fleet = Fleet(4, seed=1, start=NOW - timedelta(minutes=2))
    counts = run(fleet, producer, mode=Mode.BACKFILL, clock=clock)
    assert clock.slept_s == 0
    times = sorted({m.time for _, _, m in producer.decoded()})
    assert times[0] == NOW - timedelta(minutes=2)
    assert times[-1] == NOW
    assert len(times) == 121
    assert counts["vehicle_telemetry"] == 4 * 121
    assert sum(counts.values()) == len(producer.records)
    assert producer.flushes == 1


def test_backfill_duration_ends_earlier() -> None:
    clock = FakeClock(NOW)
    fleet = Fleet(2, seed=1, start=NOW - timedelta(hours=1))
    counts = run(
        fleet,
        RecordingProducer(clock),
        mode="backfill",
        duration=timedelta(seconds=30),
        clock=clock,
    )
    assert counts["vehicle_telemetry"] == 2 * 30


def test_records_are_keyed_by_vehicle_and_on_their_stream_topic() -> None:
    clock = FakeClock(NOW)
    producer = RecordingProducer(clock)
    run(Fleet(5, seed=2, start=NOW - timedelta(minutes=5)), producer, mode="backfill", clock=clock)
    topics = Counter(topic for topic, *_ in producer.records)
    assert set(topics) == set(TOPICS) or set(topics) == set(TOPICS[:2])
    for topic, key, value, _ in producer.records:
        message = decode(topic, value, key)  # raises if the key is not the vehicle id
        assert key == message.vehicle_id.encode()


def test_topic_prefix_is_prepended() -> None:
    clock = FakeClock(NOW)
    producer = RecordingProducer(clock)
    counts = run(
        Fleet(2, seed=2, start=NOW - timedelta(seconds=10)),
        producer,
        mode="backfill",
        clock=clock,
        topic_prefix="staging.",
    )
    assert {t for t, *_ in producer.records} >= {"staging.vehicle_telemetry"}
    assert all(t.startswith("staging.") for t, *_ in producer.records)
    assert set(counts) == set(TOPICS)


def test_realtime_never_produces_ahead_of_the_clock_and_catches_up() -> None:
    clock = FakeClock(NOW)
    producer = RecordingProducer(clock)
    # Started 20 s ago: the first 21 ticks are produced at once, then one per second.
    fleet = Fleet(3, seed=1, start=NOW - timedelta(seconds=20))
    counts = run(fleet, producer, mode=Mode.REALTIME, duration=timedelta(seconds=60), clock=clock)
    assert counts["vehicle_telemetry"] == 3 * 60
    decoded = producer.decoded()
    assert all(produced_at >= m.time for _, produced_at, m in decoded)
    caught_up = [m for _, produced_at, m in decoded if produced_at == NOW]
    assert {m.time for m in caught_up} == {
        NOW - timedelta(seconds=20) + timedelta(seconds=i) for i in range(21)
    }
    assert clock.slept_s == pytest.approx(39, abs=1)


def test_accelerated_runs_faster_than_the_clock_but_never_ahead_of_it() -> None:
    clock = FakeClock(NOW)
    producer = RecordingProducer(clock)
    fleet = Fleet(2, seed=1, start=NOW - timedelta(minutes=10))
    counts = run(
        fleet,
        producer,
        mode=Mode.ACCELERATED,
        speedup=60.0,
        duration=timedelta(minutes=10),
        clock=clock,
    )
    assert counts["vehicle_telemetry"] == 2 * 600
    # Ten minutes of event time in about ten seconds of clock time.
    assert clock.slept_s == pytest.approx(10, abs=1)
    decoded = producer.decoded()
    assert all(produced_at >= m.time for _, produced_at, m in decoded)


def test_accelerated_continues_in_real_time_once_caught_up() -> None:
    clock = FakeClock(NOW)
    producer = RecordingProducer(clock)
    fleet = Fleet(1, seed=1, start=NOW - timedelta(seconds=100))
    run(
        fleet,
        producer,
        mode=Mode.ACCELERATED,
        speedup=10.0,
        duration=timedelta(seconds=200),
        clock=clock,
    )
    # Event time runs 10x until it meets the clock (about 11 s in), then at 1 Hz up
    # to the last tick, 99 s after the start.
    assert clock.slept_s == pytest.approx(99, abs=1)
    produced = {m.time: at for _, at, m in producer.decoded()}
    assert produced[NOW - timedelta(seconds=50)] == pytest.approx(
        NOW + timedelta(seconds=5), abs=timedelta(seconds=1)
    )
    assert produced[NOW + timedelta(seconds=50)] == NOW + timedelta(seconds=50)
    assert all(at >= event_time for event_time, at in produced.items())


def test_stop_ends_the_run_at_the_next_tick_and_flushes() -> None:
    clock = FakeClock(NOW)
    stop = threading.Event()
    seen: list[Progress] = []

    class StoppingProducer(RecordingProducer):
        def produce(self, topic: str, key: bytes, value: bytes) -> None:
            super().produce(topic, key, value)
            if len(self.records) == 50:
                stop.set()

    producer = StoppingProducer(clock)
    counts = run(
        Fleet(10, seed=1, start=NOW),
        producer,
        mode=Mode.REALTIME,
        clock=clock,
        stop=stop,
        on_progress=seen.append,
    )
    assert producer.flushes == 1
    assert 50 <= sum(counts.values()) == len(producer.records) < 100
    assert seen and seen[-1].total == len(producer.records)


def test_progress_is_reported_every_interval() -> None:
    clock = FakeClock(NOW)
    seen: list[Progress] = []
    run(
        Fleet(2, seed=1, start=NOW),
        RecordingProducer(clock),
        mode=Mode.REALTIME,
        duration=timedelta(seconds=30),
        clock=clock,
        on_progress=seen.append,
        progress_every=timedelta(seconds=10),
    )
    assert 3 <= len(seen) <= 4
    assert [p.ticks for p in seen] == sorted(p.ticks for p in seen)
    assert seen[-1].ticks == 30
    assert seen[-1].event_time == NOW + timedelta(seconds=29)
    assert seen[-1].end_time == NOW + timedelta(seconds=30)


def test_runs_against_the_in_process_broker() -> None:
    broker = LocalBroker(partitions=3)
    fleet = Fleet(6, seed=3, start=NOW - timedelta(minutes=1))
    counts = run(fleet, broker.producer(), mode=Mode.BACKFILL, clock=FakeClock(NOW))
    assert {t: sum(broker.end_offsets(t)) for t in TOPICS} == counts
    consumer = broker.consumer("test")
    consumer.subscribe(TOPICS, lambda _tps: {}, lambda _tps: None)
    seen: Counter[str] = Counter()
    partitions: dict[tuple[str, bytes | None], set[int]] = {}
    while records := consumer.poll_batch(10_000, timeout_s=0):
        for r in records:
            message = decode(r.topic, r.value, r.key)
            assert message.vehicle_id in fleet.vehicle_ids
            seen[r.topic] += 1
            partitions.setdefault((r.topic, r.key), set()).add(r.partition)
    assert dict(seen) == {t: n for t, n in counts.items() if n}
    # Each vehicle's records of a topic stay in one partition, so they stay ordered.
    assert all(len(p) == 1 for p in partitions.values())
    assert len({next(iter(p)) for p in partitions.values()}) > 1


def test_bad_arguments_are_refused() -> None:
    clock = FakeClock(NOW)
    with pytest.raises(ValueError):
        run(Fleet(1, seed=1, start=NOW), RecordingProducer(clock), mode="sometimes", clock=clock)
    with pytest.raises(ValueError):
        run(Fleet(1, seed=1, start=NOW), RecordingProducer(clock), speedup=0, clock=clock)
