"""`fleetwatch ingest`: consume the Kafka topics into the database, headless.

Checks that the broker answers, applies the migrations, creates missing topics (and
says so: a topic nobody produces to is usually a mistyped ``--topic-prefix``), then
runs the ingest loop in a worker thread while the main thread prints a status line every
``ingest.status_every_s`` seconds and a summary at the end. SIGINT or SIGTERM finish
the current batch, commit it and exit 0; a second SIGINT interrupts at once. Bad
flags or unreachable services give one sentence and a non-zero exit.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import threading
import time
from typing import TYPE_CHECKING

from fleetwatch import durations
from fleetwatch.cli import add_topic_prefix_flag
from fleetwatch.config import IngestSettings, Settings
from fleetwatch.signals import Stopper, stop_on_signals

if TYPE_CHECKING:
    from fleetwatch.pipeline.ingest import IngestStats

PROG = "fleetwatch ingest"


def _idle_seconds(text: str) -> float:
    """SECONDS as a plain number, or a duration such as 30s or 2m."""
    try:
        seconds = float(text)
    except ValueError:
        try:
            return durations.parse_duration(text).total_seconds()
        except durations.DurationError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    if not 0 < seconds < math.inf:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: must be a positive number")
    return seconds


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kafka",
        dest="kafka.bootstrap",
        metavar="HOST:PORT",
        help="Kafka bootstrap servers (required here; or FLEETWATCH_KAFKA)",
    )
    parser.add_argument(
        "--db",
        dest="database.dsn",
        metavar="DSN",
        help="PostgreSQL/TimescaleDB connection string (required here; or FLEETWATCH_DB)",
    )
    parser.add_argument(
        "--group",
        dest="ingest.group",
        metavar="G",
        help="consumer group; ingestors of one group share the partitions (default: settings)",
    )
    parser.add_argument(
        "--batch-max",
        dest="ingest.batch_max",
        type=int,
        metavar="N",
        help=(
            "most messages written in one transaction "
            f"(default: settings, {IngestSettings().batch_max})"
        ),
    )
    parser.add_argument(
        "--stop-when-idle",
        type=_idle_seconds,
        metavar="SECONDS",
        help="exit 0 once no message has arrived for SECONDS (or a duration: 30s, 2m)",
    )
    add_topic_prefix_flag(parser, "consume")


def _fail(sentence: str, code: int = 2) -> int:
    print(f"{PROG}: {sentence}", file=sys.stderr, flush=True)
    return code


def _setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
    root = logging.getLogger("fleetwatch")
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    # librdkafka repeats every reconnect attempt; the loop reports state changes itself.
    logging.getLogger("fleetwatch.transport.librdkafka").setLevel(logging.CRITICAL)


def run(args: argparse.Namespace, settings: Settings) -> int:
    # Imported here so `fleetwatch ingest --help` loads neither librdkafka nor psycopg.
    from confluent_kafka import KafkaException

    from fleetwatch.pipeline.ingest import Ingestor, IngestParams
    from fleetwatch.pipeline.rules import AlertEngine
    from fleetwatch.store.capabilities import detect
    from fleetwatch.store.db import DatabaseUnavailable, connect
    from fleetwatch.store.migrate import apply_migrations
    from fleetwatch.store.offsets import other_groups
    from fleetwatch.transport.kafka import KafkaConsumer, TransportError, ensure_topics, probe

    bootstrap = settings.kafka.bootstrap
    if not bootstrap:
        return _fail("a Kafka broker is needed: pass --kafka HOST:PORT or set FLEETWATCH_KAFKA")
    if settings.database.dsn is None:
        return _fail("a database is needed: pass --db DSN or set FLEETWATCH_DB")
    dsn = settings.database.dsn.get_secret_value()
    prefix = settings.kafka.topic_prefix
    idle_limit: float | None = args.stop_when_idle
    _setup_logging()

    params = IngestParams.from_settings(
        settings.ingest, topic_prefix=prefix, retention_days=settings.database.retention_days
    )
    # Said first: an unreachable broker takes the probe's whole timeout to tell.
    print(f"{PROG}: reaching Kafka at {bootstrap}…", flush=True)
    try:  # before the database is touched: nothing to migrate for a broker that is not there
        probe(bootstrap, settings.kafka.client)
    except TransportError as error:
        return _fail(str(error), code=1)
    except KafkaException as error:
        return _fail(f"cannot use the Kafka settings for {bootstrap}: {error}", code=1)
    try:
        with connect(dsn) as conn:
            applied = apply_migrations(conn)
            capabilities = detect(conn)
            others = other_groups(conn, params.group, list(params.topics))
            conn.rollback()
    except DatabaseUnavailable as error:
        return _fail(str(error), code=1)
    except Exception as error:  # a failed migration: say which, without a traceback
        return _fail(f"cannot prepare the database schema: {error}", code=1)
    if others:
        return _fail(
            f"this database already holds these topics as consumed by group {others[0]!r}; "
            f"a second group would store every event again: use --group {others[0]} "
            "(or delete that group's rows from ingest_offsets if it is gone for good)"
        )
    try:
        created = ensure_topics(
            bootstrap, list(params.topics), settings.kafka.partitions, settings.kafka.client
        )
        consumer = KafkaConsumer(bootstrap, params.group, settings.kafka.client)
    except TransportError as error:
        return _fail(str(error), code=1)
    except KafkaException as error:
        return _fail(f"cannot use the Kafka settings for {bootstrap}: {error}", code=1)

    migrated = f", applied {', '.join(applied)}" if applied else ""
    print(
        f"{PROG}: group {params.group}, Kafka at {bootstrap}, "
        f"{capabilities.describe()}{migrated}",
        flush=True,
    )
    if created:
        print(
            f"{PROG}: created the missing topics {', '.join(created)}; nothing has been "
            "produced to them yet (check --topic-prefix if a producer should be writing)",
            flush=True,
        )
    ingestor = Ingestor(
        params,
        consumer,
        lambda: connect(dsn),
        AlertEngine(settings.rules),
    )
    stopper = Stopper()
    failure: list[BaseException] = []

    def work() -> None:
        try:
            ingestor.run(stopper.event)
        except BaseException as error:  # reported by the main thread
            failure.append(error)
            stopper.event.set()

    # A daemon, so that a second Ctrl-C ends the process even in the middle of a batch.
    worker = threading.Thread(target=work, name="ingest", daemon=True)
    every = settings.ingest.status_every_s
    with stop_on_signals(stopper):
        worker.start()
        next_status = time.monotonic() + every
        told = False
        while worker.is_alive():
            worker.join(timeout=min(0.25, every))
            if stopper.event.is_set() and not told and not failure:
                told = True
                print(f"{PROG}: stopping after the current batch", flush=True)
            stats = ingestor.stats()
            if idle_limit is not None and stats.idle_s >= idle_limit and stats.state == "running":
                stopper.event.set()
            if time.monotonic() >= next_status:
                next_status += every
                print(f"{PROG}: {_status(stats)}", flush=True)
    stats = ingestor.stats()
    if failure:
        return _fail(f"stopped by an unexpected error: {failure[0]!r}", code=1)
    print(
        f"{PROG}: done: consumed {stats.consumed:,} messages, stored {stats.stored:,} events, "
        f"rejected {stats.rejected:,}, alerts fired {stats.alerts_fired:,}, "
        f"in {stats.batches:,} batch{'' if stats.batches == 1 else 'es'}",
        flush=True,
    )
    return 0


def _status(stats: IngestStats) -> str:
    lag = "unknown" if stats.lag is None else f"{stats.lag:,}"
    state = "" if stats.state == "running" else f" [{stats.state}: {stats.last_error or ''}]"
    return (
        f"{stats.events_per_s:,.0f} events/s, stored {stats.stored:,}, "
        f"rejected {stats.rejected:,}, alerts fired {stats.alerts_fired:,}, lag {lag}{state}"
    )
