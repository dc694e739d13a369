"""Ingest throughput: raw COPY of pre-built rows versus the full Kafka -> database path.

For each fleet size (about 2 events per vehicle-second from the simulator; the same
number of events for every size, 400,000 by default, so that the batches in flight at
the start and the end weigh little) it prints:

(a) raw COPY: the same rows, pre-built, binary-COPYed into the same tables in
    transactions of ``--batch`` rows (no decoding, rules, rollups or offsets);
(b) the batch writer: the same pre-built rows through the ingestor's writer, which
    also updates each vehicle's latest state and the minute rollups (no Kafka,
    decoding or rules): the ceiling of the full path;
(c) full path: the messages produced to fresh Kafka topics first (a backlog), then one
    in-process ingestor (the code ``fleetwatch ingest`` runs) from its first partition
    assignment until every message is committed.

Each run uses a fresh database (migrated, dropped afterwards) and fresh topics. Wall-clock
rates swing with whatever else the machine runs, so each line also gives the CPU time
per event of this process (all its threads, librdkafka's included) and of the database
server processes serving it (read from /proc when the server is local). The simulated
backlog, which this process holds and a real ingestor does not, is frozen out of the
garbage collector's sight. With ``--repeat N`` both are run N times and the medians
follow: on a shared 2-CPU machine single runs vary by a fifth or more.

    .venv/bin/python tests/benchmarks/bench_ingest.py [--vehicles 1000 10000] [--seconds 200]
        [--repeat 3]

Servers: --db/--kafka, else FLEETWATCH_TEST_DSN/FLEETWATCH_TEST_KAFKA, else the ones
``tests/services.py`` provisioned.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka.admin import AdminClient
from psycopg import sql
from psycopg.conninfo import make_conninfo

from fleetwatch.config import IngestSettings
from fleetwatch.model import (
    DRIVING_TOPIC,
    PERCEPTION_TOPIC,
    TELEMETRY_TOPIC,
    TOPICS,
    Message,
    PerceptionEvent,
    Telemetry,
    encode,
)
from fleetwatch.pipeline.ingest import Ingestor, IngestParams, add_rows
from fleetwatch.sim import Fleet, backfill
from fleetwatch.store.db import connect
from fleetwatch.store.migrate import apply_migrations
from fleetwatch.store.writer import Batch, copy_events, write_batch
from fleetwatch.transport.kafka import KafkaConsumer, KafkaProducer, ensure_topics

REPO = Path(__file__).resolve().parents[2]


def servers(args: argparse.Namespace) -> tuple[str, str]:
    dsn = args.db or os.environ.get("FLEETWATCH_TEST_DSN")
    kafka = args.kafka or os.environ.get("FLEETWATCH_TEST_KAFKA")
    if not (dsn and kafka):
        out = subprocess.run(
            [sys.executable, str(REPO / "tests" / "services.py"), "env"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        found = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        dsn = dsn or found["FLEETWATCH_TEST_DSN"]
        kafka = kafka or found["FLEETWATCH_TEST_KAFKA"]
    return dsn, kafka


def parse_with_servers(parser: argparse.ArgumentParser) -> tuple[argparse.Namespace, str, str]:
    """Parse the command line with ``--db`` and ``--kafka`` added: (arguments, database
    server DSN, Kafka bootstrap)."""
    parser.add_argument("--db")
    parser.add_argument("--kafka")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    server_dsn, bootstrap = servers(args)
    return args, server_dsn, bootstrap


def machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPUs, load average {load}"


@contextmanager
def fresh_database(server_dsn: str) -> Iterator[str]:
    name = f"fwbench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = make_conninfo(server_dsn, dbname=name)
    try:
        with connect(dsn) as conn:
            apply_migrations(conn)
        yield dsn
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def fresh_topics(bootstrap: str, partitions: int) -> Iterator[str]:
    prefix = f"fwbench-{uuid.uuid4().hex[:8]}-"
    topics = [prefix + t for t in TOPICS]
    ensure_topics(bootstrap, topics, partitions)
    try:
        yield prefix
    finally:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for future in admin.delete_topics(topics, operation_timeout=30).values():
            future.result(timeout=60)


def simulate(vehicles: int, seconds: int) -> list[Message]:
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=seconds + 600)
    fleet = Fleet(vehicles, 7, start)
    return [m for tick in backfill(fleet, timedelta(seconds=seconds)) for m in tick]


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a local process, NaN if it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Cpu:
    """CPU seconds used by this process and by the database backends it connected to."""

    def __init__(self) -> None:
        self.backends: list[int] = []
        self._start: tuple[float, dict[int, float]] = (time.process_time(), {})

    def connected(self, conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
        self.backends.append(conn.info.backend_pid)
        return conn

    def start(self) -> None:
        self._start = (time.process_time(), {p: _cpu_s(p) for p in self.backends})

    def used(self) -> tuple[float, float]:
        """(this process, the database backends) since :meth:`start`."""
        own, before = self._start
        db = sum(_cpu_s(p) - before.get(p, 0.0) for p in self.backends)
        return time.process_time() - own, db


def _cpu_line(cpu: tuple[float, float], events: int) -> str:
    own, db = cpu
    return f"CPU per event: {own / events * 1e6:5.1f} us here, {db / events * 1e6:5.1f} us database"


def _prebuilt(messages: list[Message], batch_size: int) -> list[Batch]:
    """The rows of ``messages`` in batches of ``batch_size``, built before any timing."""
    batches: list[Batch] = []
    odometer: dict[str, float] = {}
    for i in range(0, len(messages), batch_size):
        batch = Batch(group="bench")
        add_rows(batch, ((("", 0), m) for m in messages[i : i + batch_size]), odometer)
        batches.append(batch)
    return batches


def _timed_writes(
    dsn: str,
    messages: list[Message],
    batch_size: int,
    write: Callable[[psycopg.Connection[Any], Batch], object],
) -> tuple[float, tuple[float, float]]:
    """Events per second of ``write`` over the pre-built batches, and the CPU seconds it
    took (this process, the database backend)."""
    batches = _prebuilt(messages, batch_size)
    cpu = Cpu()
    with cpu.connected(connect(dsn)) as conn:
        cpu.start()
        started = time.perf_counter()
        for batch in batches:
            write(conn, batch)
        elapsed = time.perf_counter() - started
        used = cpu.used()
    return len(messages) / elapsed, used


def _copy_only(conn: psycopg.Connection[Any], batch: Batch) -> None:
    with conn.transaction(), conn.cursor() as cur:
        copy_events(cur, batch.telemetry, batch.perception, batch.driving)


def raw_copy(
    dsn: str, messages: list[Message], batch_size: int
) -> tuple[float, tuple[float, float]]:
    """Binary COPY of pre-built rows, one transaction per batch: the ceiling."""
    return _timed_writes(dsn, messages, batch_size, _copy_only)


def writer_only(
    dsn: str, messages: list[Message], batch_size: int
) -> tuple[float, tuple[float, float]]:
    """The batch writer given pre-built rows: the rows, each vehicle's latest state and
    the rollups in one transaction per batch (no Kafka, no decoding, no rules)."""
    return _timed_writes(dsn, messages, batch_size, write_batch)


def produce(bootstrap: str, prefix: str, messages: list[Message]) -> float:
    producer = KafkaProducer(bootstrap)
    started = time.perf_counter()
    for m in messages:
        if isinstance(m, Telemetry):
            name = TELEMETRY_TOPIC
        elif isinstance(m, PerceptionEvent):
            name = PERCEPTION_TOPIC
        else:
            name = DRIVING_TOPIC
        producer.produce(prefix + name, m.vehicle_id.encode(), encode(m))
    producer.flush(120)
    producer.close()
    return len(messages) / (time.perf_counter() - started)


def full_path(
    bootstrap: str, dsn: str, prefix: str, total: int, batch_max: int
) -> tuple[float, float, tuple[float, float]]:
    """(events/s from first assignment to the last commit, seconds to join the group,
    CPU seconds of this process and of the database backends meanwhile)."""
    settings = IngestSettings(batch_max=batch_max, group=f"{prefix}bench")
    params = IngestParams.from_settings(settings, topic_prefix=prefix)
    consumer = KafkaConsumer(bootstrap, params.group)
    cpu = Cpu()
    ingestor = Ingestor(params, consumer, lambda: cpu.connected(connect(dsn)))
    stop = threading.Event()
    thread = threading.Thread(target=ingestor.run, args=(stop,))
    launched = time.perf_counter()
    thread.start()
    while not consumer.assignment():
        time.sleep(0.005)
    assigned = time.perf_counter()
    cpu.start()
    while ingestor.stats().consumed < total:
        if not thread.is_alive():
            raise RuntimeError("the ingestor stopped early")
        time.sleep(0.01)
    done = time.perf_counter()
    used = cpu.used()
    stop.set()
    thread.join()
    stats = ingestor.stats()
    assert stats.stored == total, stats
    return total / (done - assigned), assigned - launched, used


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument(
        "--seconds",
        type=int,
        default=200,
        help="event time simulated for 1,000 vehicles (scaled down for larger fleets)",
    )
    parser.add_argument(
        "--batch", type=int, default=IngestSettings().batch_max, help="rows per transaction"
    )
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of (a) and (b) per fleet; medians follow"
    )
    args, server_dsn, bootstrap = parse_with_servers(parser)
    print(f"batch {args.batch} rows, {args.partitions} partitions, {machine()}")
    for vehicles in args.vehicles:
        # The same number of events for every fleet size.
        seconds = max(10, args.seconds * 1000 // vehicles)
        started = time.perf_counter()
        messages = simulate(vehicles, seconds)
        sim_s = time.perf_counter() - started
        # The backlog held here is not the ingestor's: keep the cyclic collector (which
        # the ingest loop runs rarely, see gc_threshold_for) from scanning it again.
        gc.freeze()
        per_vs = len(messages) / (vehicles * seconds)
        print(
            f"\n{vehicles:,} vehicles x {seconds} s: {len(messages):,} events "
            f"({per_vs:.2f} per vehicle-second; simulated in {sim_s:.1f} s)"
        )
        ratios = []
        for _ in range(args.repeat):
            with fresh_database(server_dsn) as dsn:
                copy_rate, copy_cpu = raw_copy(dsn, messages, args.batch)
            print(f"  (a) raw COPY of pre-built rows:        {copy_rate:>10,.0f} events/s")
            print(f"      {_cpu_line(copy_cpu, len(messages))}")
            with fresh_database(server_dsn) as dsn:
                writer_rate, writer_cpu = writer_only(dsn, messages, args.batch)
            print(
                f"  (b) the batch writer, pre-built rows:  {writer_rate:>10,.0f} events/s "
                "(with vehicle state and rollups)"
            )
            print(f"      {_cpu_line(writer_cpu, len(messages))}")
            with (
                fresh_database(server_dsn) as dsn,
                fresh_topics(bootstrap, args.partitions) as prefix,
            ):
                produce_rate = produce(bootstrap, prefix, messages)
                rate, join_s, cpu = full_path(bootstrap, dsn, prefix, len(messages), args.batch)
            print(f"      (producing the backlog:            {produce_rate:>10,.0f} events/s)")
            print(
                f"  (c) full path Kafka -> committed rows: {rate:>10,.0f} events/s "
                f"({rate / copy_rate:.0%} of raw COPY; joining the group took {join_s:.1f} s)"
            )
            print(f"      {_cpu_line(cpu, len(messages))}")
            ratios.append((copy_rate, rate, rate / copy_rate))
        if len(ratios) > 1:
            copy_med = statistics.median(r[0] for r in ratios)
            rate_med = statistics.median(r[1] for r in ratios)
            share_med = statistics.median(r[2] for r in ratios)
            print(
                f"  median of {len(ratios)}: raw COPY {copy_med:,.0f}, full path "
                f"{rate_med:,.0f} events/s; share {share_med:.0%} "
                f"(from {min(r[2] for r in ratios):.0%} to {max(r[2] for r in ratios):.0%})"
            )
        gc.unfreeze()
        del messages
    return 0


if __name__ == "__main__":
    sys.exit(main())
