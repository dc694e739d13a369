"""The codec: round trips, reasons for bad input, and the ingestor's structs held to the models.

``ingest_decoder`` validates with msgspec structs first and leaves to the pydantic models
whatever the structs refuse. It may only be faster, never different: every message any
of these tests builds must come out of it exactly as ``decode`` (the models) decides —
the same values, or a rejection with the same reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import msgspec
import pytest

from fleetwatch import model as wire
from fleetwatch.model import (
    DRIVING_TOPIC,
    MAX_MESSAGE_BYTES,
    MODEL_BY_TOPIC,
    PERCEPTION_TOPIC,
    STRUCT_BY_MODEL,
    TELEMETRY_TOPIC,
    DecodeError,
    DrivingEvent,
    DrivingEventType,
    ObjectClass,
    PerceptionEvent,
    Telemetry,
    WireModel,
    WireStruct,
    decode,
    encode,
    ingest_decoder,
    to_struct,
)

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)
TIME = NOW - timedelta(minutes=1)
EVENT_ID = UUID("12345678-1234-5678-1234-567812345678")

SAMPLES: dict[str, WireModel] = {
    TELEMETRY_TOPIC: Telemetry(
        event_id=EVENT_ID,
        time=TIME,
        vehicle_id="AV-0001",
        speed_kmh=42.5,
        speed_limit_kmh=50.0,
        lat=37.77,
        lon=-122.41,
        heading_deg=90.0,
        battery_pct=55.0,
        range_km=210.0,
        odometer_km=12345.678,
        autopilot=True,
        city="San Francisco",
        route_id="sf-1",
        trip_id="t-1",
    ),
    PERCEPTION_TOPIC: PerceptionEvent(
        event_id=EVENT_ID,
        time=TIME,
        vehicle_id="AV-0001",
        object_class=ObjectClass.PEDESTRIAN,
        distance_m=12.0,
        closing_speed_mps=3.0,
        bearing_deg=-10.0,
        confidence=0.9,
    ),
    DRIVING_TOPIC: DrivingEvent(
        event_id=EVENT_ID,
        time=TIME,
        vehicle_id="AV-0001",
        type=DrivingEventType.INTERVENTION,
        cause="construction",
        lat=37.77,
        lon=-122.41,
        speed_kmh=20.0,
        autopilot=True,
    ),
}

# Values tried in every field: boundaries, wrong types, lax forms the models accept.
ANY_FIELD: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    0.5,
    -0.0,
    1e308,
    -1e308,
    "",
    "x",
    "1",
    "50.5",
    "true",
    [],
    {},
    [1.0],
]
PER_FIELD: dict[str, list[Any]] = {
    "schema_version": [1, 2, 1.0, "1", 0],
    "event_id": [
        str(EVENT_ID),
        str(EVENT_ID).upper(),
        EVENT_ID.hex,
        f"urn:uuid:{EVENT_ID}",
        f"{{{EVENT_ID}}}",
        str(EVENT_ID)[:-1],
        str(EVENT_ID) + "0",
        "not-a-uuid",
    ],
    "time": [
        "2026-05-01T11:59:00Z",
        "2026-05-01T11:59:00+00:00",
        "2026-05-01T11:59:00-00:00",
        "2026-05-01T13:59:00+02:00",
        "2026-05-01T06:59:00-05:00",
        "2026-05-01T11:59:00",
        "2026-05-01 11:59:00Z",
        "2026-05-01t11:59:00z",
        "2026-05-01T11:59:00.5Z",
        "2026-05-01T11:59:00.123456Z",
        "2026-05-01T11:59Z",
        "2026-05-01",
        "2026-05-01T25:00:00Z",
        "2026-02-30T11:59:00Z",
        "2026-05-01T11:59:60Z",
        "2026-05-01T11:59:00+24:00",
        "2026-05-01T12:10:00Z",  # beyond the allowed clock skew
        "2026-05-01T12:04:00Z",  # within it
        1777636740,
        "1777636740",
    ],
    "vehicle_id": [
        "AV-1\n",
        "\nAV-1",
        "AV 1",
        "AV_1.2:3",
        "a" * 32,
        "a" * 33,
        "é",
        "AV-0001",
        "AV-0002",  # valid, but not the key
    ],
    "speed_kmh": [250, 250.0, 250.0001, -0.0001, 249.9],
    "speed_limit_kmh": [250, 250.0001, -1e-9],
    "lat": [90, -90, 90.0001, -90.0001],
    "lon": [180, -180, 180.0001, -180.0001],
    "heading_deg": [359.999, 360, 360.0, -0.001],
    "battery_pct": [100, 100.0001, 0.0],
    "range_km": [2000, 2000.5],
    "odometer_km": [10_000_000, 10_000_000.5],
    "autopilot": [0, 1, "yes", "false", 1.0, 2],
    "city": ["a" * 200, "a" * 201, "é" * 200, "é" * 201, "Oak\u0000land", "\ud83d\ude97"],
    "route_id": ["a" * 201],
    "trip_id": ["a" * 200, "a" * 201],
    "object_class": [*(c.value for c in ObjectClass), "CAR", "Car", "tram", 1],
    "distance_m": [500, 500.0001],
    "closing_speed_mps": [-100, 100, 100.0001, -100.0001],
    "bearing_deg": [-180, 180, 180.5],
    "confidence": [1, 1.0001, -0.0001],
    "type": [*(t.value for t in DrivingEventType), "INTERVENTION", "teleported"],
    "cause": ["a" * 201, "", None],
    "detail": ["a" * 200, "a" * 201],
}


def _outcome(decode_one: Any, topic: str, value: bytes, key: bytes | None) -> Any:
    try:
        return decode_one(topic, value, key)
    except DecodeError as error:
        return ("rejected", error.reason)


def _variants(topic: str) -> Iterator[bytes]:
    good = json.loads(encode(SAMPLES[topic]))
    yield json.dumps(good).encode()
    for name in good:
        for value in [*ANY_FIELD, *PER_FIELD.get(name, [])]:
            yield json.dumps({**good, name: value}).encode()
        yield json.dumps({k: v for k, v in good.items() if k != name}).encode()
    for name in PER_FIELD:
        if name not in good:
            yield json.dumps({**good, name: 1}).encode()  # a field of another stream
    text = json.dumps(good)
    yield (text[:-1] + ', "vehicle_id": "AV-0001"}').encode()  # duplicate key, same value
    yield (text[:-1] + ', "vehicle_id": "AV-0002"}').encode()  # duplicate key, other value
    yield (text[:-1] + ', "autopilot": "on"}').encode()
    yield text.replace(": ", ":").encode()
    yield ("\n " + text + " \n").encode()
    yield (text + " x").encode()
    yield (text + text).encode()
    yield ("\ufeff" + text).encode()
    yield text.encode().replace(b"AV-0001", b"AV-\xff\xfe01")
    yield text.replace('"San Francisco"', '"\\ud83d lone"').encode()  # half a surrogate pair
    for first in good:
        if isinstance(good[first], float):
            yield text.replace(json.dumps(good[first]), "NaN", 1).encode()
            yield text.replace(json.dumps(good[first]), "Infinity", 1).encode()
            yield text.replace(json.dumps(good[first]), "1e400", 1).encode()
            break
    yield from (b"", b"null", b"[]", b"{}", b'"text"', b"1", b"{not json", b"[1, 2, 3]")
    yield b'{"x": "' + b"y" * MAX_MESSAGE_BYTES + b'"}'


@pytest.mark.parametrize("topic", list(SAMPLES))
def test_ingest_decoder_decides_exactly_as_the_models(topic: str) -> None:
    """Hundreds of variants per stream: the same values or the same reason, every time."""
    models = _decoder(NOW)
    structs = ingest_decoder(NOW)
    key = b"AV-0001"
    tried = accepted = fast = 0
    for value in _variants(topic):
        for k in (key, None):
            tried += 1
            expected = _outcome(models, topic, value, k)
            got = _outcome(structs, topic, value, k)
            if isinstance(expected, tuple):
                assert got == expected, value
                continue
            accepted += 1
            assert isinstance(got, STRUCT_BY_MODEL[type(expected)]), value
            assert _fields(got) == _fields(to_struct(expected)), value
            assert got.time.tzinfo is timezone.utc
            fast += _struct_alone_accepts(topic, value)
    assert tried > 300 and 20 < accepted < tried and fast > 10, (tried, accepted, fast)


def _decoder(now: datetime) -> Any:
    return lambda topic, value, key: decode(topic, value, key, now=now)


def _fields(message: WireStruct) -> dict[str, Any]:
    return {name: getattr(message, name) for name in type(message).__struct_fields__}


def _struct_alone_accepts(topic: str, value: bytes) -> bool:
    struct = STRUCT_BY_MODEL[MODEL_BY_TOPIC[topic]]
    try:
        msgspec.json.decode(value, type=struct)
    except msgspec.DecodeError:
        return False
    return True


def test_the_structs_have_the_models_fields() -> None:
    for model, struct in STRUCT_BY_MODEL.items():
        assert set(struct.__struct_fields__) == set(model.model_fields), model.__name__
        info = msgspec.inspect.type_info(struct)
        assert isinstance(info, msgspec.inspect.StructType)
        assert {f.name for f in info.fields if f.required} == {
            name for name, field in model.model_fields.items() if field.is_required()
        }, model.__name__


def test_sub_microsecond_digits_differ_by_at_most_a_microsecond() -> None:
    """The one known difference: the struct rounds what the model truncates."""
    good = json.loads(encode(SAMPLES[TELEMETRY_TOPIC]))
    value = json.dumps({**good, "time": "2026-05-01T11:59:00.1234567Z"}).encode()
    by_model = decode(TELEMETRY_TOPIC, value, now=NOW).time
    by_struct = ingest_decoder(NOW)(TELEMETRY_TOPIC, value, None).time
    assert by_model.microsecond == 123456
    assert abs(by_struct - by_model) <= timedelta(microseconds=1)


def test_vehicle_ids_checked_once_are_bounded_and_a_bad_one_never_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(wire, "_known_vehicles", {})
    monkeypatch.setattr(wire, "_KNOWN_VEHICLES_MAX", 2)
    good = json.loads(encode(SAMPLES[TELEMETRY_TOPIC]))
    decode_one = ingest_decoder(NOW)
    for vehicle in ("AV-1", "AV-2", "AV-3", "AV-1"):
        value = json.dumps({**good, "vehicle_id": vehicle}).encode()
        assert decode_one(TELEMETRY_TOPIC, value, vehicle.encode()).vehicle_id == vehicle
        assert 1 <= len(wire._known_vehicles) <= 2
    for _ in range(2):
        value = json.dumps({**good, "vehicle_id": "AV 4"}).encode()
        with pytest.raises(DecodeError, match="vehicle_id"):
            decode_one(TELEMETRY_TOPIC, value, None)
    assert "AV 4" not in wire._known_vehicles


@pytest.mark.parametrize("topic", list(SAMPLES))
def test_round_trip(topic: str) -> None:
    message = SAMPLES[topic]
    value = encode(message)
    assert decode(topic, value, b"AV-0001", now=NOW) == message
    assert ingest_decoder(NOW)(topic, value, b"AV-0001") == to_struct(message)


@pytest.mark.parametrize(
    ("change", "reason_has"),
    [
        ({"speed_kmh": "fast"}, "speed_kmh"),
        ({"speed_kmh": 300}, "speed_kmh"),
        ({"battery_pct": -1}, "battery_pct"),
        ({"lat": 91}, "lat"),
        ({"lon": "east"}, "lon"),
        ({"time": "2026-05-01T11:59:00"}, "timezone"),
        ({"time": "2026-05-02T12:00:00Z"}, "future"),
        ({"event_id": "nope"}, "event_id"),
        ({"vehicle_id": "AV 1"}, "vehicle_id"),
        ({"schema_version": 2}, "schema_version"),
        ({"extra": 1}, "extra"),
        ({"city": None}, "city"),
    ],
)
def test_bad_input_is_rejected_with_a_reason(change: dict[str, Any], reason_has: str) -> None:
    good = json.loads(encode(SAMPLES[TELEMETRY_TOPIC]))
    value = json.dumps({**good, **change}).encode()
    for decode_one in (_decoder(NOW), ingest_decoder(NOW)):
        with pytest.raises(DecodeError) as raised:
            decode_one(TELEMETRY_TOPIC, value, b"AV-0001")
        assert reason_has in raised.value.reason


def test_whole_message_mistakes_are_rejected_with_a_reason() -> None:
    cases = [
        ("unknown_topic", b"{}", "unknown topic"),
        (TELEMETRY_TOPIC, b"", "empty"),
        (TELEMETRY_TOPIC, b"{not json", "json"),
        (PERCEPTION_TOPIC, b"[1, 2, 3]", "object"),
        (TELEMETRY_TOPIC, b"{" + b" " * MAX_MESSAGE_BYTES + b"}", "exceeds"),
        (TELEMETRY_TOPIC, encode(SAMPLES[TELEMETRY_TOPIC]), "does not match"),
    ]
    for decode_one in (_decoder(NOW), ingest_decoder(NOW)):
        for topic, value, reason_has in cases:
            key = b"AV-OTHER" if "match" in reason_has else None
            with pytest.raises(DecodeError) as raised:
                decode_one(topic, value, key)
            assert reason_has in raised.value.reason.lower(), (topic, value[:20])
