"""Live ingest: a fleet at 1 Hz through Kafka, and whether one ingestor keeps up with it.

``fleetwatch simulate`` runs in real time in its own process (as a gateway would
send), one in-process ingestor (the code ``fleetwatch ingest`` runs) consumes its
topics, and after a warm-up the script samples four times a second:

- the consumer lag: messages produced and not yet committed by the ingestor;
- the age of the newest stored telemetry: how far behind the wall clock the database
  is, which is the best the app's live view can show. The simulator sends each
  vehicle's sample once a second, so this age saws between the pipeline's delay and
  that plus one second.

It prints their median, 95th percentile and maximum, the rate ingested against the
rate produced, the batches written, and the CPU per event of this process (the
ingestor; the simulator is another process) and of the database.

    .venv/bin/python tests/benchmarks/bench_live.py [--vehicles 10000] [--seconds 60]

Servers: --db/--kafka, else FLEETWATCH_TEST_DSN/FLEETWATCH_TEST_KAFKA, else the ones
``tests/services.py`` provisioned.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

from bench_ingest import Cpu, fresh_database, fresh_topics, machine, parse_with_servers

from fleetwatch.config import IngestSettings
from fleetwatch.pipeline.ingest import Ingestor, IngestParams
from fleetwatch.store.db import connect
from fleetwatch.transport.kafka import KafkaConsumer

SAMPLE_EVERY_S = 0.25


def percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"median {statistics.median(ordered):,.2f}, p95 {p95:,.2f}, max {ordered[-1]:,.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=60, help="measured, after the warm-up")
    parser.add_argument("--warmup", type=int, default=20, help="seconds before measuring")
    parser.add_argument("--partitions", type=int, default=6)
    args, server_dsn, bootstrap = parse_with_servers(parser)
    print(f"{args.vehicles:,} vehicles at 1 Hz, {args.partitions} partitions, {machine()}")
    duration_s = args.warmup + args.seconds + 5
    with fresh_database(server_dsn) as dsn, fresh_topics(bootstrap, args.partitions) as prefix:
        settings = IngestSettings(group=f"{prefix}live")
        params = IngestParams.from_settings(settings, topic_prefix=prefix)
        consumer = KafkaConsumer(bootstrap, params.group)
        cpu = Cpu()
        ingestor = Ingestor(params, consumer, lambda: cpu.connected(connect(dsn)))
        stop = threading.Event()
        thread = threading.Thread(target=ingestor.run, args=(stop,))
        thread.start()
        simulator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fleetwatch",
                "simulate",
                "--kafka",
                bootstrap,
                "--vehicles",
                str(args.vehicles),
                "--duration",
                f"{duration_s}s",
                "--topic-prefix",
                prefix,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            lags: list[float] = []
            ages: list[float] = []
            with connect(dsn) as probe:
                probe.autocommit = True
                time.sleep(args.warmup)
                if simulator.poll() is not None:
                    _, error = simulator.communicate()
                    raise RuntimeError(f"the simulator stopped: {error}")
                before = ingestor.stats()
                cpu.start()
                started = time.perf_counter()
                while time.perf_counter() - started < args.seconds:
                    stats = ingestor.stats()
                    if stats.lag is not None:
                        lags.append(stats.lag)
                    row = probe.execute("SELECT max(time) FROM telemetry").fetchone()
                    if row and row[0] is not None:
                        ages.append((datetime.now(timezone.utc) - row[0]).total_seconds())
                    if not thread.is_alive():
                        raise RuntimeError("the ingestor stopped early")
                    time.sleep(SAMPLE_EVERY_S)
                elapsed = time.perf_counter() - started
                used = cpu.used()
                after = ingestor.stats()
        finally:
            simulator.terminate()
            simulator.wait(30)
            stop.set()
            thread.join()
    stored = after.stored - before.stored
    batches = after.batches - before.batches
    own, db = used
    produced = stored + (after.lag or 0) - (before.lag or 0)
    print(f"  produced:            {produced / elapsed:>10,.0f} events/s over {elapsed:.0f} s")
    print(f"  ingested:            {stored / elapsed:>10,.0f} events/s")
    per_batch = stored / max(1, batches)
    print(f"  batches:             {batches / elapsed:>10,.1f} per s, {per_batch:,.0f} events each")
    print(f"  consumer lag:        {percentiles(lags)} messages")
    print(f"  newest telemetry age: {percentiles(ages)} s")
    print(
        f"  CPU per event: {own / stored * 1e6:5.1f} us ingestor, "
        f"{db / stored * 1e6:5.1f} us database; busy {own / elapsed:.0%} and "
        f"{db / elapsed:.0%} of one core"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
