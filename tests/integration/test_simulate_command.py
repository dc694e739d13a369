"""`fleetwatch simulate` as a subprocess against the real Kafka broker: produce, consume, count."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from fleetwatch.model import TOPICS, Telemetry, decode

REPO = Path(__file__).resolve().parents[2]
FINAL = re.compile(r"produced ([\d,]+) telemetry, ([\d,]+) perception, ([\d,]+) driving events")


@pytest.fixture
def topic_prefix(kafka_bootstrap: str) -> Iterator[str]:
    """A unique prefix for the three topics; the topics are deleted afterwards."""
    prefix = f"fwtest-sim-{uuid.uuid4().hex[:8]}."
    yield prefix
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    existing = admin.list_topics(timeout=10).topics
    ours = [t for t in existing if t.startswith(prefix)]
    if ours:
        for future in admin.delete_topics(ours, operation_timeout=30).values():
            future.result(timeout=60)


def _simulate(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETWATCH_")}
    env["XDG_CONFIG_HOME"] = str(REPO / "tests" / "no-such-config-dir")
    return subprocess.Popen(
        [sys.executable, "-m", "fleetwatch", "simulate", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _final_counts(stdout: str) -> dict[str, int]:
    match = FINAL.search(stdout)
    assert match, stdout
    return {topic: int(n.replace(",", "")) for topic, n in zip(TOPICS, match.groups(), strict=True)}


def _consume(
    bootstrap: str, prefix: str, until: Callable[[Counter[str]], bool], timeout_s: float = 60.0
) -> tuple[Counter[str], list[tuple[str, int, bytes | None, bytes | None]]]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{prefix}check-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([f"{prefix}{t}" for t in TOPICS])
    counts: Counter[str] = Counter()
    records: list[tuple[str, int, bytes | None, bytes | None]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while not until(counts) and time.monotonic() < deadline:
            for m in consumer.consume(10_000, 0.5):
                if m.error() is not None:
                    continue
                topic = (m.topic() or "").removeprefix(prefix)
                counts[topic] += 1
                records.append((topic, m.partition() or 0, m.key(), m.value()))
    finally:
        consumer.close()
    assert until(counts), f"gave up after {timeout_s:.0f} s with {dict(counts)}"
    return counts, records


def _wait_for_topics(bootstrap: str, prefix: str, timeout_s: float = 30.0) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    wanted = {f"{prefix}{t}" for t in TOPICS}
    deadline = time.monotonic() + timeout_s
    while not wanted <= set(admin.list_topics(timeout=5).topics):
        assert time.monotonic() < deadline, f"topics {sorted(wanted)} never appeared"
        time.sleep(0.1)


def test_backfill_produces_every_message_keyed_by_vehicle(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    process = _simulate(
        "--kafka", kafka_bootstrap, "--vehicles", "20", "--seed", "3",
        "--backfill", "3m", "--partitions", "3", "--topic-prefix", topic_prefix,
    )  # fmt: skip
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    expected = _final_counts(stdout)
    assert expected["vehicle_telemetry"] == 20 * (3 * 60 + 1)
    assert expected["perception_events"] > 0

    counts, records = _consume(kafka_bootstrap, topic_prefix, lambda c: c == Counter(expected))
    assert dict(counts) == {t: n for t, n in expected.items() if n}
    partitions: dict[tuple[str, bytes | None], set[int]] = {}
    vehicles = set()
    for topic, partition, key, value in records:
        message = decode(topic, value, key)  # also checks that the key is the vehicle id
        vehicles.add(message.vehicle_id)
        partitions.setdefault((topic, key), set()).add(partition)
    assert len(vehicles) == 20
    assert all(len(p) == 1 for p in partitions.values())
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    metadata = admin.list_topics(timeout=10).topics
    assert all(len(metadata[f"{topic_prefix}{t}"].partitions) == 3 for t in TOPICS)


def test_a_second_run_continues_each_vehicle(kafka_bootstrap: str, topic_prefix: str) -> None:
    """Another seed, but every vehicle stays in its city and its odometer never goes back."""
    totals: Counter[str] = Counter()
    outputs = []
    for seed in ("1", "2"):
        process = _simulate(
            "--kafka", kafka_bootstrap, "--vehicles", "12", "--seed", seed,
            "--backfill", "1m", "--topic-prefix", topic_prefix,
        )  # fmt: skip
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        outputs.append(stdout)
        totals.update(_final_counts(stdout))
    assert "continuing the odometers of 12 vehicles" in outputs[1]
    _, records = _consume(
        kafka_bootstrap,
        topic_prefix,
        lambda c: c["vehicle_telemetry"] == totals["vehicle_telemetry"],
    )
    # Per vehicle, in the order produced (one partition per key): the odometer never
    # goes back, across the two runs too.
    last: dict[str, float] = {}
    cities: dict[str, set[str]] = {}
    for topic, _partition, key, value in records:
        if topic != "vehicle_telemetry":
            continue
        message = decode(topic, value, key)
        assert isinstance(message, Telemetry)
        assert message.odometer_km >= last.get(message.vehicle_id, 0.0)
        last[message.vehicle_id] = message.odometer_km
        cities.setdefault(message.vehicle_id, set()).add(message.city)
    assert len(last) == 12
    assert all(len(names) == 1 for names in cities.values())


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_cleanly_and_everything_counted_arrives(
    kafka_bootstrap: str, topic_prefix: str, signum: signal.Signals
) -> None:
    process = _simulate(
        "--kafka", kafka_bootstrap, "--vehicles", "5", "--topic-prefix", topic_prefix,
    )  # fmt: skip
    try:
        # Live at 1 Hz: wait until records arrive, then interrupt.
        _wait_for_topics(kafka_bootstrap, topic_prefix)
        _consume(kafka_bootstrap, topic_prefix, lambda c: c["vehicle_telemetry"] >= 10)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    expected = _final_counts(stdout)
    assert "(stopped)" in stdout
    assert expected["vehicle_telemetry"] >= 10
    counts, _ = _consume(kafka_bootstrap, topic_prefix, lambda c: c == Counter(expected))
    assert dict(counts) == {t: n for t, n in expected.items() if n}


def test_broker_down_is_one_sentence() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port once the socket is closed.
    process = _simulate("--kafka", f"127.0.0.1:{port}", "--duration", "10s")
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 1
    lines = [line for line in stderr.splitlines() if line.startswith("fleetwatch")]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(
        f"fleetwatch simulate: cannot reach the Kafka broker at 127.0.0.1:{port}"
    )
    assert "Traceback" not in stderr
    assert "produced" not in stdout
