"""`fleetwatch ingest` across a real broker restart and a real database restart.

The shared test servers are in use by other test runs, so this module starts a private
PostgreSQL/TimescaleDB cluster and a private Kafka broker (``tests/services.py``, from
the same builds, on free loopback ports in a temporary directory) and stops, crashes
and restarts those while an ingestor process works through a simulated backlog and
more events arrive. Afterwards the database holds exactly the produced events (by
event_id), every malformed message once in ``rejects``, and the ingestor's log shows
one line for each state change and no traceback.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import psycopg
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from psycopg import sql
from psycopg.conninfo import make_conninfo

from fleetwatch.model import TOPICS, Message, Telemetry
from fleetwatch.sim import Fleet, backfill
from fleetwatch.transport.kafka import KafkaProducer
from tests.integration.ingest_helpers import malformed_corpus, produce, stored_event_ids
from tests.polling import wait_until

VEHICLES = 300
BACKFILL = "2m"
DOWNTIME_S = 4.0  # the deliberate outage
BROKER_DOWN = "Kafka broker unavailable, retrying"
BROKER_UP = "broker up again, ingesting"
DB_DOWN = "database unavailable, retrying"
DB_UP = "database up again, ingesting"


# --------------------------------------------------------------------------- private servers


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _unavailable(reason: str) -> NoReturn:
    if _in_ci():
        pytest.fail(f"{reason} (CI=true: a missing service fails the run)", pytrace=False)
    pytest.skip(reason)


def _services() -> ModuleType:
    """tests/services.py, loaded once under the name conftest gives it."""
    name = "fleetwatch_test_services"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "services.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclasses.dataclass(frozen=True)
class Servers:
    """A private PostgreSQL cluster and Kafka broker that tests may stop and crash."""

    services: ModuleType
    settings: Any  # services.Settings, with home and ports of its own

    @property
    def dsn(self) -> str:
        return str(self.settings.pg_dsn)

    @property
    def bootstrap(self) -> str:
        return str(self.settings.kafka_bootstrap)

    def stop_broker(self, *, kill: bool) -> None:
        self.services.stop_kafka(self.settings, kill=kill)

    def start_broker(self) -> None:
        self.services.start_kafka(self.settings)

    def stop_database(self, mode: str) -> None:
        self.services.stop_pg(self.settings, mode)

    def start_database(self) -> None:
        self.services.start_pg(self.settings)


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    services = _services()
    base = services.settings()
    try:
        base.cache.mkdir(parents=True, exist_ok=True)
        # Inside the cache, which the postgres user can already traverse.
        home = Path(tempfile.mkdtemp(prefix="restarts-", dir=base.cache))
    except OSError as error:
        _unavailable(f"no place for private test servers: {error}")
    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(_free_port())
    pg_port, kafka_port, controller_port = sorted(ports)
    s = dataclasses.replace(
        base,
        home=home,
        pg_port=pg_port,
        kafka_port=kafka_port,
        kafka_controller_port=controller_port,
    )
    try:
        try:
            services.start_private(s)
        except (services.ServiceError, OSError, psycopg.Error) as error:
            _unavailable(f"could not start private test servers: {error}")
        yield Servers(services, s)
    finally:
        try:
            services.down(s)
        finally:
            shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def db(servers: Servers) -> str:
    """DSN of a new, empty database on the private cluster (ingest applies the schema)."""
    # Both servers up, even if an earlier test failed during an outage.
    servers.start_broker()
    servers.start_database()
    name = f"restart_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(servers.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_conninfo(servers.dsn, dbname=name)


@pytest.fixture
def prefix() -> str:
    return f"restart-{uuid.uuid4().hex[:8]}-"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A child's environment: no user config, no FLEETWATCH_* overrides, a status line
    every half second (it shows ``Ingestor.stats()``, as the app's status bar does)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLEETWATCH_")}
    clean["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    clean["PYTHONUNBUFFERED"] = "1"
    clean["FLEETWATCH_INGEST__STATUS_EVERY_S"] = "0.5"
    return clean


# --------------------------------------------------------------------------- processes


def fleetwatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "fleetwatch", *args]


class Ingest:
    """`fleetwatch ingest` as a process whose output lines are collected as they come."""

    def __init__(self, command: Sequence[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def log(self) -> str:
        return "\n".join(self.err)

    def wait_for(self, text: str, timeout_s: float) -> None:
        def seen() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"ingest exited early:\n{self.log()}")
            return any(text in line for line in self.err)

        try:
            wait_until(seen, timeout_s, f"{text!r} in the ingest log")
        except AssertionError as error:
            tail = "\n".join([*self.out[-15:], "--- stderr:", *self.err[-30:]])
            raise AssertionError(f"{error}; ingest said:\n{tail}") from None

    def wait_progress(self, dsn: str, count: int, timeout_s: float) -> None:
        """Wait until the database holds more than ``count`` events."""

        def more() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"ingest exited early:\n{self.log()}")
            return stored_count(dsn) > count

        wait_until(more, timeout_s, f"more than {count} events stored")

    def finish(self, timeout_s: float) -> int:
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)
            raise AssertionError(f"ingest did not stop by itself:\n{self.log()}") from None
        for reader in self._readers:
            reader.join(10)
        print("\n".join(["ingest stdout:", *self.out, "ingest stderr:", *self.err]))  # on failure
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)


StartIngest = Callable[[float], Ingest]


@pytest.fixture
def start_ingest(
    db: str, prefix: str, env: dict[str, str], servers: Servers
) -> Iterator[StartIngest]:
    """Starts `fleetwatch ingest` on the test's topics and database; killed after the test."""
    started: list[Ingest] = []

    def start(idle_s: float) -> Ingest:
        process = Ingest(
            fleetwatch(
                "ingest",
                "--kafka",
                servers.bootstrap,
                "--db",
                db,
                "--topic-prefix",
                prefix,
                "--group",
                f"{prefix}group",
                "--batch-max",
                "500",
                "--stop-when-idle",
                f"{idle_s:g}",
            ),
            env,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def simulate_backlog(servers: Servers, prefix: str, env: dict[str, str]) -> int:
    """A backfill through `fleetwatch simulate`; returns how many messages it produced."""
    result = subprocess.run(
        fleetwatch(
            "simulate",
            "--kafka",
            servers.bootstrap,
            "--vehicles",
            str(VEHICLES),
            "--backfill",
            BACKFILL,
            "--seed",
            "101",
            "--topic-prefix",
            prefix,
        ),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    match = re.search(
        r"produced ([\d,]+) telemetry, ([\d,]+) perception, ([\d,]+) driving", result.stdout
    )
    assert match, result.stdout
    return sum(int(n.replace(",", "")) for n in match.groups())


def topic_event_ids(bootstrap: str, prefix: str, skip: frozenset[bytes]) -> Counter[str]:
    """The event_id of every record in the three topics, read back from the broker, except
    the records whose value is in ``skip``."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{prefix}readback",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        topics = [prefix + t for t in TOPICS]
        metadata = consumer.list_topics(timeout=30).topics
        partitions = [
            TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in metadata[t].partitions
        ]
        ends = {}
        for tp in partitions:
            low, high = consumer.get_watermark_offsets(tp, timeout=30)
            if high > low:
                ends[(tp.topic, tp.partition)] = high
        consumer.assign(partitions)
        found: Counter[str] = Counter()
        done: set[tuple[str, int]] = set()
        deadline = time.monotonic() + 120
        while len(done) < len(ends):
            assert time.monotonic() < deadline, "reading the topics back took too long"
            for message in consumer.consume(10_000, 1.0):
                if message.error() is not None:
                    continue
                key = (message.topic() or "", message.partition() or 0)
                value = message.value() or b""
                if value not in skip:
                    found[str(json.loads(value)["event_id"])] += 1
                if (message.offset() or 0) + 1 >= ends.get(key, 0):
                    done.add(key)
        return found
    finally:
        consumer.close()


def expect_exactly(dsn: str, expected: Counter[str]) -> None:
    with psycopg.connect(dsn) as conn:
        stored = stored_event_ids(conn)
    duplicates = {k: n for k, n in stored.items() if n > 1}
    missing = set(expected) - set(stored)
    extra = set(stored) - set(expected)
    assert not duplicates, f"{len(duplicates)} events stored twice"
    assert not missing, f"{len(missing)} of {len(expected)} events missing"
    assert not extra, f"{len(extra)} events stored that were never produced"
    assert sum(stored.values()) == sum(expected.values())


def stored_count(dsn: str) -> int:
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM telemetry) + (SELECT count(*) FROM perception_events)"
                " + (SELECT count(*) FROM driving_events)"
            ).fetchone()
    except psycopg.errors.UndefinedTable:
        return 0  # the ingestor has not applied the schema yet
    return int(str(row[0])) if row else 0


def stored_some(dsn: str) -> bool:
    return stored_count(dsn) > 0


def status_states(ingest: Ingest) -> list[str]:
    """The state shown by each status line, in order, with repeats collapsed."""
    states: list[str] = []
    for line in ingest.out:
        if "events/s" not in line:
            continue
        match = re.search(r"\[([a-z-]+): ", line)
        state = match.group(1) if match else "running"
        if state == "stopped":  # the line printed while stopping
            continue
        if not states or states[-1] != state:
            states.append(state)
    return states


def check_log(ingest: Ingest, down: str, up: str, state: str) -> None:
    """One line per state change (a server that is starting or stopping may answer now
    and then, so there may be more than one outage), ending with the recovery; no
    traceback; the status line went to ``state`` and back to running."""
    log = ingest.log()
    assert "Traceback" not in log, log
    changes = [line for line in ingest.err if down in line or up in line]
    assert changes, log
    expected = [down if i % 2 == 0 else up for i in range(len(changes))]
    assert [down if down in line else up for line in changes] == expected, log
    assert up in changes[-1], log
    states = status_states(ingest)
    assert state in states, "\n".join(ingest.out)
    assert states[-1] == "running", "\n".join(ingest.out)
    assert any(line.startswith("fleetwatch ingest: done: consumed") for line in ingest.out)


# --------------------------------------------------------------------------- tests


class LiveStream:
    """A live fleet on a thread: one simulated second of 50 vehicles every 0.2 s, through
    an outage too (the producer buffers while the broker is down), until :meth:`stop`."""

    TICK_S = 0.2

    def __init__(self, bootstrap: str, prefix: str, seed: int = 202) -> None:
        start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=5)
        self._ticks = backfill(Fleet(50, seed, start), timedelta(minutes=4))
        self._prefix = prefix
        self.producer = KafkaProducer(bootstrap)
        self.sent: list[Message] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-stream", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for tick in self._ticks:
                produce(self.producer, tick, self._prefix)
                self.sent.extend(tick)
                if self._stop.wait(self.TICK_S):
                    return
        except BaseException as error:  # raised again by stop()
            self.error = error

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> Counter[str]:
        """Stop, deliver everything and return the event_ids sent."""
        self._stop.set()
        self._thread.join(30)
        if self.error is not None:
            raise self.error
        assert self.producer.flush(60) == 0
        self.producer.close()
        return Counter(str(m.event_id) for m in self.sent)


def topics_hold(
    servers: Servers,
    prefix: str,
    produced: int,
    live: Counter[str],
    malformed: frozenset[bytes] = frozenset(),
) -> Counter[str]:
    """The events the topics hold, checked against what was produced: the backlog plus
    the live stream, each event once (``malformed`` records left out)."""
    found = topic_event_ids(servers.bootstrap, prefix, malformed)
    assert max(found.values()) == 1, "an event is in the topics twice"
    assert sum(found.values()) == produced + sum(live.values())
    assert not set(live) - set(found), "live events are missing from the topics"
    return found


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_broker_restart_mid_ingest_loses_and_duplicates_nothing(
    servers: Servers,
    db: str,
    prefix: str,
    env: dict[str, str],
    start_ingest: StartIngest,
    kill: bool,
) -> None:
    produced = simulate_backlog(servers, prefix, env)
    live = LiveStream(servers.bootstrap, prefix)
    # A restarted broker answers some seconds before it serves the group again (about
    # 10 s after a crash): that is not idleness.
    ingest = start_ingest(20)
    wait_until(lambda: stored_some(db), 60, "the first rows stored")

    servers.stop_broker(kill=kill)
    ingest.wait_for(BROKER_DOWN, 60)
    time.sleep(DOWNTIME_S)  # the deliberate outage
    servers.start_broker()
    before = stored_count(db)
    ingest.wait_for(BROKER_UP, 90)
    ingest.wait_progress(db, before, 90)
    assert live.running, "the live stream ended before the broker was back"
    sent = live.stop()

    assert ingest.finish(120) == 0, ingest.log()
    expect_exactly(db, topics_hold(servers, prefix, produced, sent))
    check_log(ingest, BROKER_DOWN, BROKER_UP, "broker-down")


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_database_restart_mid_ingest_loses_and_duplicates_nothing(
    servers: Servers,
    db: str,
    prefix: str,
    env: dict[str, str],
    start_ingest: StartIngest,
    mode: str,
) -> None:
    produced = simulate_backlog(servers, prefix, env)
    live = LiveStream(servers.bootstrap, prefix)
    ingest = start_ingest(5)
    wait_until(lambda: stored_some(db), 60, "the first rows stored")

    servers.stop_database(mode)
    ingest.wait_for(DB_DOWN, 60)
    # Malformed messages arrive during the outage too.
    sample = next(m for m in live.sent if isinstance(m, Telemetry))
    corpus = malformed_corpus(sample)
    producer = KafkaProducer(servers.bootstrap)
    for bad in corpus:
        producer.produce(prefix + bad.topic, bad.key or b"", bad.value)
    assert producer.flush(60) == 0
    producer.close()
    time.sleep(DOWNTIME_S)  # the deliberate outage
    servers.start_database()
    before = stored_count(db)
    ingest.wait_for(DB_UP, 90)
    ingest.wait_progress(db, before, 90)
    assert live.running, "the live stream ended before the database was back"
    sent = live.stop()

    assert ingest.finish(120) == 0, ingest.log()
    malformed = frozenset(bad.value for bad in corpus)
    expect_exactly(db, topics_hold(servers, prefix, produced, sent, malformed))
    with psycopg.connect(db) as conn:
        reasons = [str(r) for (r,) in conn.execute("SELECT reason FROM rejects")]
    assert len(reasons) == len(corpus), reasons
    for bad in corpus:
        assert any(bad.reason_has.lower() in reason.lower() for reason in reasons), bad
    check_log(ingest, DB_DOWN, DB_UP, "db-down")
