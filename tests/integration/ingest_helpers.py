"""Shared helpers of the ingest integration tests: simulated streams, a malformed corpus,
what the database holds, and waiting on conditions."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import psycopg

from fleetwatch.model import (
    DRIVING_TOPIC,
    MAX_MESSAGE_BYTES,
    PERCEPTION_TOPIC,
    TELEMETRY_TOPIC,
    Message,
    Telemetry,
    WireModel,
    encode,
)
from fleetwatch.pipeline.ingest import Ingestor, IngestStats
from fleetwatch.sim import Fleet, backfill
from fleetwatch.transport.base import Producer
from tests.polling import wait_until

EVENT_TABLES = ("telemetry", "perception_events", "driving_events")
TOPIC_OF = {"Telemetry": TELEMETRY_TOPIC, "PerceptionEvent": PERCEPTION_TOPIC}


def topic_of(message: WireModel) -> str:
    return TOPIC_OF.get(type(message).__name__, DRIVING_TOPIC)


def simulate(vehicles: int, seconds: int, seed: int = 11) -> list[Message]:
    """``seconds`` of a simulated fleet, ending a few minutes before now."""
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=seconds + 300)
    fleet = Fleet(vehicles, seed, start)
    return [m for tick in backfill(fleet, timedelta(seconds=seconds)) for m in tick]


def produce(producer: Producer, messages: Iterable[WireModel], prefix: str = "") -> int:
    count = 0
    for message in messages:
        producer.produce(prefix + topic_of(message), message.vehicle_id.encode(), encode(message))
        count += 1
    return count


@dataclass(frozen=True)
class Bad:
    """A malformed record and a word its reject reason must contain."""

    topic: str
    key: bytes | None
    value: bytes
    reason_has: str


def malformed_corpus(sample: Telemetry) -> list[Bad]:
    """One record for each kind of mistake a gateway could make."""
    good = json.loads(encode(sample))
    key = sample.vehicle_id.encode()

    def variant(**changes: object) -> bytes:
        return json.dumps({**good, **changes}).encode()

    future = (datetime.now(timezone.utc) + timedelta(days=2)).isoformat()
    return [
        Bad(TELEMETRY_TOPIC, key, b"{this is not json", "json"),
        Bad(TELEMETRY_TOPIC, key, variant(speed_kmh="fast"), "speed_kmh"),
        Bad(TELEMETRY_TOPIC, key, variant(battery_pct=float("nan")), "battery_pct"),
        Bad(TELEMETRY_TOPIC, key, variant(lat=123.0), "lat"),
        Bad(DRIVING_TOPIC, key, variant(type="teleported"), "type"),
        Bad(TELEMETRY_TOPIC, key, variant(time=future), "future"),
        Bad(TELEMETRY_TOPIC, key, b'{"x": "' + b"y" * (MAX_MESSAGE_BYTES + 10) + b'"}', "exceeds"),
        Bad(TELEMETRY_TOPIC, b"AV-OTHER", variant(), "does not match"),
        Bad(TELEMETRY_TOPIC, key, b"", "empty"),
        Bad(TELEMETRY_TOPIC, key, variant(unexpected=1), "unexpected"),
        Bad(TELEMETRY_TOPIC, key, variant(city="Oak\x00land"), "NUL"),
        Bad(PERCEPTION_TOPIC, key, b"[1, 2, 3]", "object"),
    ]


def stored_event_ids(conn: psycopg.Connection[tuple[object, ...]]) -> Counter[str]:
    """How many times each event_id is stored, over the three event tables."""
    found: Counter[str] = Counter()
    for table in EVENT_TABLES:
        for (event_id,) in conn.execute(f"SELECT event_id FROM {table}"):  # fixed names
            found[str(event_id)] += 1
    conn.rollback()
    return found


def rejects(conn: psycopg.Connection[tuple[object, ...]]) -> list[tuple[str, int, str, int]]:
    """(topic, offset, reason, raw_size) of every reject."""
    rows = conn.execute(
        'SELECT topic, "offset", reason, raw_size FROM rejects ORDER BY topic, "offset"'
    ).fetchall()
    conn.rollback()
    return [(str(t), int(str(o)), str(r), int(str(s))) for t, o, r, s in rows]


class Running:
    """An ingestor on a background thread, stopped and joined on exit."""

    def __init__(self, ingestor: Ingestor) -> None:
        self.ingestor = ingestor
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="test-ingest")

    def _run(self) -> None:
        try:
            self.ingestor.run(self.stop)
        except BaseException as error:  # surfaced by the test
            self.error = error

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def stats(self) -> IngestStats:
        if self.error is not None:
            raise self.error
        return self.ingestor.stats()

    def wait_consumed(self, count: int, timeout_s: float = 120.0) -> IngestStats:
        wait_until(lambda: self.stats().consumed >= count, timeout_s, f"{count} messages consumed")
        return self.stats()

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the ingestor did not stop"
        if self.error is not None:
            raise self.error
