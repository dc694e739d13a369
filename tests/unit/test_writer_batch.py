"""Batch assembly: decoding records into rows and rejects, offsets, step_km, TTC."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from fleetwatch.config import IngestSettings
from fleetwatch.model import (
    DRIVING_TOPIC,
    PERCEPTION_TOPIC,
    TELEMETRY_TOPIC,
    TOPICS,
    DrivingEvent,
    DrivingEventType,
    ObjectClass,
    PerceptionEvent,
    Telemetry,
    encode,
    to_struct,
)
from fleetwatch.pipeline.ingest import IngestParams, add_rows, decode_records
from fleetwatch.store.writer import (
    DRIVING_COLUMNS,
    PERCEPTION_COLUMNS,
    TELEMETRY_COLUMNS,
    Batch,
    driving_row,
    perception_row,
    telemetry_row,
    ttc_s,
)
from fleetwatch.transport.base import Record

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)
STREAMS = {t: t for t in TOPICS}


def telemetry(vehicle: str = "AV-1", seconds: float = 0, odometer_km: float = 100.0) -> Telemetry:
    return Telemetry(
        event_id=uuid.uuid4(),
        time=NOW + timedelta(seconds=seconds),
        vehicle_id=vehicle,
        speed_kmh=42.0,
        speed_limit_kmh=50.0,
        lat=37.77,
        lon=-122.42,
        heading_deg=90.0,
        battery_pct=80.0,
        range_km=300.0,
        odometer_km=odometer_km,
        autopilot=True,
        city="San Francisco",
        route_id="sf-1",
    )


def perception(vehicle: str = "AV-1", seconds: float = 0, closing: float = 4.0) -> PerceptionEvent:
    return PerceptionEvent(
        event_id=uuid.uuid4(),
        time=NOW + timedelta(seconds=seconds),
        vehicle_id=vehicle,
        object_class=ObjectClass.PEDESTRIAN,
        distance_m=10.0,
        closing_speed_mps=closing,
        bearing_deg=5.0,
        confidence=0.9,
    )


def driving(vehicle: str = "AV-1", seconds: float = 0) -> DrivingEvent:
    return DrivingEvent(
        event_id=uuid.uuid4(),
        time=NOW + timedelta(seconds=seconds),
        vehicle_id=vehicle,
        type=DrivingEventType.INTERVENTION,
        cause="construction",
        lat=37.77,
        lon=-122.42,
        speed_kmh=20.0,
        autopilot=True,
    )


def record(
    topic: str, value: bytes | None, offset: int, partition: int = 0, key: bytes | None = None
) -> Record:
    return Record(topic, partition, offset, key if key is not None else b"AV-1", value)


def test_rows_follow_the_column_order() -> None:
    t = telemetry()
    row = telemetry_row(t, 0.25)
    assert len(row) == len(TELEMETRY_COLUMNS)
    assert dict(zip(TELEMETRY_COLUMNS, row, strict=True)) == {
        **{c: getattr(t, c) for c in TELEMETRY_COLUMNS if c != "step_km"},
        "step_km": 0.25,
    }
    p = perception()
    prow = dict(zip(PERCEPTION_COLUMNS, perception_row(p), strict=True))
    assert prow["object_class"] == "pedestrian"
    assert prow["ttc_s"] == pytest.approx(2.5)
    d = dict(zip(DRIVING_COLUMNS, driving_row(driving()), strict=True))
    assert d["type"] == "intervention"
    assert d["cause"] == "construction"


@pytest.mark.parametrize(
    ("distance_m", "closing_mps", "expected"),
    [(10.0, 4.0, 2.5), (10.0, 0.0, None), (10.0, -3.0, None), (0.0, 5.0, 0.0)],
)
def test_ttc_only_while_closing(distance_m: float, closing_mps: float, expected: float) -> None:
    assert ttc_s(distance_m, closing_mps) == expected


def test_decode_sorts_valid_messages_by_event_time_and_rejects_the_rest() -> None:
    late = telemetry(seconds=2)
    early = perception(seconds=1)
    records = [
        record(TELEMETRY_TOPIC, encode(late), 0),
        record(TELEMETRY_TOPIC, b"{not json", 1),
        record(PERCEPTION_TOPIC, encode(early), 0, partition=1),
        record(PERCEPTION_TOPIC, None, 1, partition=1),
    ]
    batch = Batch(group="g")
    messages = decode_records(records, STREAMS, NOW, batch)
    assert [m for _, m in messages] == [to_struct(early), to_struct(late)]
    assert [tp for tp, _ in messages] == [(PERCEPTION_TOPIC, 1), (TELEMETRY_TOPIC, 0)]
    assert [(r.topic, r.offset) for r in batch.rejects] == [
        (TELEMETRY_TOPIC, 1),
        (PERCEPTION_TOPIC, 1),
    ]
    assert batch.rejects[0].raw == b"{not json"
    assert "empty" in batch.rejects[1].reason
    # Every record, rejected or not, moves its partition's offset past it.
    assert batch.offsets == {(TELEMETRY_TOPIC, 0): 2, (PERCEPTION_TOPIC, 1): 2}


def test_decode_maps_prefixed_topics_to_their_stream() -> None:
    params = IngestParams.from_settings(IngestSettings(), topic_prefix="x-")
    batch = Batch(group="g")
    messages = decode_records(
        [record("x-" + DRIVING_TOPIC, encode(driving()), 0)], params.topics, NOW, batch
    )
    assert len(messages) == 1
    assert batch.rejects == []


def test_text_with_nul_is_rejected_not_written() -> None:
    payload = json.loads(encode(telemetry()))
    payload["city"] = "Oak\x00land"
    batch = Batch(group="g")
    messages = decode_records(
        [record(TELEMETRY_TOPIC, json.dumps(payload).encode(), 0)], STREAMS, NOW, batch
    )
    assert messages == []
    assert batch.rejects[0].reason == "a text field contains a NUL character"


def test_future_and_key_mismatch_are_rejected() -> None:
    future = telemetry(seconds=3600)
    batch = Batch(group="g")
    decode_records(
        [
            record(TELEMETRY_TOPIC, encode(future), 0),
            record(TELEMETRY_TOPIC, encode(telemetry()), 1, key=b"AV-2"),
        ],
        STREAMS,
        NOW,
        batch,
    )
    reasons = [r.reason for r in batch.rejects]
    assert "future" in reasons[0]
    assert "does not match" in reasons[1]


def test_step_km_is_the_odometer_increase_per_vehicle() -> None:
    odometer = {"AV-1": 99.5}
    messages = [
        (("t", 0), telemetry("AV-1", 0, 100.0)),
        (("t", 1), telemetry("AV-2", 0, 500.0)),
        (("p", 0), perception("AV-1", 0)),
        (("t", 0), telemetry("AV-1", 1, 100.25)),
        (("t", 1), telemetry("AV-2", 1, 500.5)),
        (("t", 0), telemetry("AV-1", 2, 100.0)),  # lower reading: no negative distance
        (("t", 0), telemetry("AV-1", 3, 100.5)),
        (("d", 0), driving("AV-2", 1)),
    ]
    batch = Batch(group="g")
    add_rows(batch, messages, odometer)
    steps = [(row[1], row[-1]) for row in batch.telemetry]
    assert steps == [
        ("AV-1", pytest.approx(0.5)),
        ("AV-2", 0.0),  # first sight of a vehicle with no stored reading
        ("AV-1", pytest.approx(0.25)),
        ("AV-2", pytest.approx(0.5)),
        ("AV-1", 0.0),
        ("AV-1", pytest.approx(0.25)),
    ]
    assert odometer == {"AV-1": 100.5, "AV-2": 500.5}
    assert len(batch.perception) == 1
    assert len(batch.driving) == 1
    assert batch.events == 8
