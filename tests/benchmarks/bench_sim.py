"""Benchmark: simulator generation plus encoding, in messages per second on one core.

Target (DESIGN.md): a 10,000-vehicle fleet at 1 Hz must not be the bottleneck, so
generation plus ``fleetwatch.model.encode`` must exceed about 40,000 messages/s.

    .venv/bin/python tests/benchmarks/bench_sim.py [--ticks N] [--vehicles 1000,10000]
    .venv/bin/python tests/benchmarks/bench_sim.py --profile   # cProfile of 10 ticks
    .venv/bin/python tests/benchmarks/bench_sim.py --kafka HOST:PORT  # also into a real broker

Also measures the whole runner (:func:`fleetwatch.sim.run`, backfill mode) into a
producer that drops records, which adds the topic lookup, keys and counting.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from datetime import datetime, timedelta, timezone

from fleetwatch.model import encode
from fleetwatch.sim import Fleet, Mode, run

START = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)


class NullProducer:
    def produce(self, topic: str, key: bytes, value: bytes) -> None:
        pass

    def flush(self, timeout_s: float = 30.0) -> int:
        return 0

    def close(self) -> None:
        pass


class FixedClock:
    def __init__(self, now: datetime) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now

    def sleep(self, seconds: float, stop: object) -> None:
        self._now += timedelta(seconds=seconds)


def bench_step(vehicles: int, ticks: int) -> None:
    built = time.perf_counter()
    fleet = Fleet(vehicles, seed=1, start=START)
    built = time.perf_counter() - built
    fleet.step(fleet.next_time)  # warm-up
    messages = 0
    nbytes = 0
    generate_s = 0.0
    encode_s = 0.0
    for _ in range(ticks):
        t0 = time.perf_counter()
        batch = fleet.step(fleet.next_time)
        t1 = time.perf_counter()
        for message in batch:
            nbytes += len(encode(message))
        t2 = time.perf_counter()
        generate_s += t1 - t0
        encode_s += t2 - t1
        messages += len(batch)
    total = generate_s + encode_s
    print(
        f"{vehicles:>6} vehicles, {ticks} ticks: {messages:,} messages, "
        f"{messages / total:,.0f} msg/s generate+encode "
        f"(generate {messages / generate_s:,.0f}/s, encode {messages / encode_s:,.0f}/s), "
        f"{messages / ticks / vehicles:.2f} msg per vehicle-second, "
        f"{nbytes / messages:.0f} B/msg, {total / ticks * 1000:.0f} ms per tick, "
        f"fleet built in {built * 1000:.0f} ms"
    )


def bench_runner(vehicles: int, ticks: int) -> None:
    fleet = Fleet(vehicles, seed=1, start=START)
    clock = FixedClock(START + timedelta(seconds=ticks - 1))
    t0 = time.perf_counter()
    counts = run(fleet, NullProducer(), mode=Mode.BACKFILL, clock=clock)
    elapsed = time.perf_counter() - t0
    total = sum(counts.values())
    print(
        f"{vehicles:>6} vehicles, {ticks} ticks through run(backfill): "
        f"{total:,} messages, {total / elapsed:,.0f} msg/s"
    )


def bench_kafka(bootstrap: str, vehicles: int, ticks: int) -> None:
    """The whole runner into a real broker (topics under a throw-away prefix)."""
    import uuid

    from confluent_kafka.admin import AdminClient

    from fleetwatch.model import TOPICS
    from fleetwatch.transport.kafka import KafkaProducer, ensure_topics

    prefix = f"fwbench-{uuid.uuid4().hex[:8]}."
    topics = [prefix + t for t in TOPICS]
    ensure_topics(bootstrap, topics, 6)
    producer = KafkaProducer(bootstrap)
    try:
        fleet = Fleet(vehicles, seed=1, start=START)
        clock = FixedClock(START + timedelta(seconds=ticks - 1))
        t0 = time.perf_counter()
        counts = run(fleet, producer, mode=Mode.BACKFILL, clock=clock, topic_prefix=prefix)
        elapsed = time.perf_counter() - t0
    finally:
        producer.close()
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for future in admin.delete_topics(topics, operation_timeout=30).values():
            future.result(timeout=60)
    total = sum(counts.values())
    print(
        f"{vehicles:>6} vehicles, {ticks} ticks into Kafka at {bootstrap} (flushed): "
        f"{total:,} messages, {total / elapsed:,.0f} msg/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=20)
    parser.add_argument("--vehicles", default="1000,10000")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--kafka", metavar="HOST:PORT", help="also measure producing to Kafka")
    args = parser.parse_args()
    sizes = [int(v) for v in args.vehicles.split(",")]
    if args.profile:
        fleet = Fleet(sizes[-1], seed=1, start=START)
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(10):
            for message in fleet.step(fleet.next_time):
                encode(message)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
        return
    for vehicles in sizes:
        bench_step(vehicles, args.ticks)
    for vehicles in sizes:
        bench_runner(vehicles, args.ticks)
    if args.kafka:
        for vehicles in sizes:
            bench_kafka(args.kafka, vehicles, args.ticks)


if __name__ == "__main__":
    main()
