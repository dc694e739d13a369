"""Wire models for the three streams and their JSON codec; no I/O.

Every message carries a unique ``event_id``, a ``schema_version``, a timezone-aware
UTC event ``time`` and the ``vehicle_id`` that is also its Kafka key, so one
vehicle's events stay ordered in one partition.

The pydantic models are the definition of the streams: the simulator builds and
encodes them, and :func:`decode` validates JSON bytes with them directly (no dict
round trip). The ingestor decodes tens of thousands of messages a second, where
pydantic's validation is the largest cost of the process; :func:`ingest_decoder`
checks each message first against msgspec structs that mirror the models field by
field (``TelemetryStruct``, ``PerceptionStruct``, ``DrivingStruct``: about twice as
fast, and untracked by the garbage collector) and hands whatever they refuse to the
pydantic model, which accepts it or gives the reason. So the models decide what is
valid; tests hold the structs to accepting nothing the models refuse, with the same
values. One difference is known and bounded: digits of a second beyond the
microsecond are rounded by the struct and truncated by the model.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Annotated, Final, Literal, TypeAlias
from uuid import UUID

import msgspec
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
)

SCHEMA_VERSION: Final = 1

TELEMETRY_TOPIC: Final = "vehicle_telemetry"
PERCEPTION_TOPIC: Final = "perception_events"
DRIVING_TOPIC: Final = "driving_events"
TOPICS: Final = (TELEMETRY_TOPIC, PERCEPTION_TOPIC, DRIVING_TOPIC)

KM_PER_MILE: Final = 1.609344
"""Every speed and distance is kept metric (km/h, km, m); miles convert at this."""

MAX_MESSAGE_BYTES: Final = 8192
"""Messages larger than this are rejected before they are parsed."""

MAX_FUTURE_SKEW: Final = timedelta(minutes=5)
"""An event time further than this ahead of the ingestor's clock is rejected."""


class ObjectClass(str, Enum):
    CAR = "car"
    TRUCK = "truck"
    PEDESTRIAN = "pedestrian"
    CYCLIST = "cyclist"
    MOTORCYCLE = "motorcycle"
    BUS = "bus"
    UNKNOWN = "unknown"


class DrivingEventType(str, Enum):
    INTERVENTION = "intervention"
    """The safety driver took over control."""
    DISENGAGEMENT = "disengagement"
    """The autonomy system left autonomous mode (by the system or the driver)."""
    ENGAGEMENT = "engagement"
    """Autonomous mode was (re-)engaged."""
    HARD_BRAKE = "hard_brake"
    EMERGENCY_STOP = "emergency_stop"
    TRIP_START = "trip_start"
    TRIP_END = "trip_end"
    CHARGING_START = "charging_start"
    CHARGING_END = "charging_end"


def _utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc)


UtcTime = Annotated[AwareDatetime, AfterValidator(_utc)]
VehicleId = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.:-]+$")]
Latitude = Annotated[float, Field(ge=-90.0, le=90.0)]
Longitude = Annotated[float, Field(ge=-180.0, le=180.0)]
SpeedKmh = Annotated[float, Field(ge=0.0, le=250.0)]
ShortText = Annotated[str, Field(max_length=200)]


class WireModel(BaseModel):
    """Base of the three stream messages: strict, frozen, no unknown fields."""

    # allow_inf_nan=False makes every float field reject NaN and infinities.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: UUID
    time: UtcTime
    vehicle_id: VehicleId


class Telemetry(WireModel):
    """One vehicle state sample (topic ``vehicle_telemetry``), normally at 1 Hz."""

    speed_kmh: SpeedKmh
    speed_limit_kmh: SpeedKmh
    lat: Latitude
    lon: Longitude
    heading_deg: Annotated[float, Field(ge=0.0, lt=360.0)]
    battery_pct: Annotated[float, Field(ge=0.0, le=100.0)]
    range_km: Annotated[float, Field(ge=0.0, le=2000.0)]
    odometer_km: Annotated[float, Field(ge=0.0, le=10_000_000.0)]
    autopilot: bool
    city: ShortText
    route_id: ShortText
    trip_id: ShortText | None = None


class PerceptionEvent(WireModel):
    """One tracked object reported by a vehicle's perception (topic ``perception_events``).

    ``closing_speed_mps`` is positive when the object and the vehicle approach each other.
    """

    object_class: ObjectClass
    distance_m: Annotated[float, Field(ge=0.0, le=500.0)]
    closing_speed_mps: Annotated[float, Field(ge=-100.0, le=100.0)]
    bearing_deg: Annotated[float, Field(ge=-180.0, le=180.0)]
    confidence: Annotated[float, Field(ge=0.0, le=1.0)]


class DrivingEvent(WireModel):
    """A discrete driving event (topic ``driving_events``): interventions, disengagements..."""

    type: DrivingEventType
    cause: ShortText | None = None
    detail: ShortText | None = None
    lat: Latitude
    lon: Longitude
    speed_kmh: SpeedKmh
    autopilot: bool
    """Whether autonomous mode was engaged just before the event."""


Message: TypeAlias = Telemetry | PerceptionEvent | DrivingEvent


# -- the ingestor's fast path: structs mirroring the models above ---------------------------

_Meta = msgspec.Meta
_VEHICLE_PATTERN: Final = r"^[A-Za-z0-9_.:-]+\Z"
"""VehicleId's pattern for Python's ``re``, whose ``$`` also matches before a final
newline (pydantic's regex engine does not)."""


class _Struct(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, gc=False):
    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: UUID
    time: Annotated[datetime, _Meta(tz=True)]
    vehicle_id: Annotated[str, _Meta(min_length=1, max_length=32)]
    """The pattern is checked by :func:`ingest_decoder`, once per distinct id."""


_StructText = Annotated[str, _Meta(max_length=200)]
_StructLat = Annotated[float, _Meta(ge=-90.0, le=90.0)]
_StructLon = Annotated[float, _Meta(ge=-180.0, le=180.0)]
_StructSpeed = Annotated[float, _Meta(ge=0.0, le=250.0)]


class TelemetryStruct(_Struct, frozen=True, kw_only=True, gc=False):
    """:class:`Telemetry` as the ingestor decodes it."""

    speed_kmh: _StructSpeed
    speed_limit_kmh: _StructSpeed
    lat: _StructLat
    lon: _StructLon
    heading_deg: Annotated[float, _Meta(ge=0.0, lt=360.0)]
    battery_pct: Annotated[float, _Meta(ge=0.0, le=100.0)]
    range_km: Annotated[float, _Meta(ge=0.0, le=2000.0)]
    odometer_km: Annotated[float, _Meta(ge=0.0, le=10_000_000.0)]
    autopilot: bool
    city: _StructText
    route_id: _StructText
    trip_id: _StructText | None = None


class PerceptionStruct(_Struct, frozen=True, kw_only=True, gc=False):
    """:class:`PerceptionEvent` as the ingestor decodes it."""

    object_class: ObjectClass
    distance_m: Annotated[float, _Meta(ge=0.0, le=500.0)]
    closing_speed_mps: Annotated[float, _Meta(ge=-100.0, le=100.0)]
    bearing_deg: Annotated[float, _Meta(ge=-180.0, le=180.0)]
    confidence: Annotated[float, _Meta(ge=0.0, le=1.0)]


class DrivingStruct(_Struct, frozen=True, kw_only=True, gc=False):
    """:class:`DrivingEvent` as the ingestor decodes it."""

    type: DrivingEventType
    cause: _StructText | None = None
    detail: _StructText | None = None
    lat: _StructLat
    lon: _StructLon
    speed_kmh: _StructSpeed
    autopilot: bool


AnyTelemetry: TypeAlias = Telemetry | TelemetryStruct
AnyPerception: TypeAlias = PerceptionEvent | PerceptionStruct
AnyDriving: TypeAlias = DrivingEvent | DrivingStruct

TELEMETRY_TYPES: Final = (Telemetry, TelemetryStruct)
PERCEPTION_TYPES: Final = (PerceptionEvent, PerceptionStruct)
DRIVING_TYPES: Final = (DrivingEvent, DrivingStruct)

WireStruct: TypeAlias = TelemetryStruct | PerceptionStruct | DrivingStruct
Decoded: TypeAlias = WireModel | WireStruct
"""A message as some decoder returned it: the model or its struct (the same fields)."""

STRUCT_BY_MODEL: Final[dict[type[WireModel], type[WireStruct]]] = {
    Telemetry: TelemetryStruct,
    PerceptionEvent: PerceptionStruct,
    DrivingEvent: DrivingStruct,
}


def to_struct(message: WireModel) -> WireStruct:
    """The struct of an already validated model (no validation is repeated)."""
    struct = STRUCT_BY_MODEL[type(message)]
    return struct(**{name: getattr(message, name) for name in struct.__struct_fields__})


MODEL_BY_TOPIC: Final[dict[str, type[WireModel]]] = {
    TELEMETRY_TOPIC: Telemetry,
    PERCEPTION_TOPIC: PerceptionEvent,
    DRIVING_TOPIC: DrivingEvent,
}

TOPIC_BY_MODEL: Final[dict[type[WireModel], str]] = {m: t for t, m in MODEL_BY_TOPIC.items()}


class DecodeError(ValueError):
    """A message that cannot be decoded or validated; ``reason`` is one readable sentence."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def encode(message: WireModel) -> bytes:
    """Serialise a message to compact JSON bytes."""
    return message.model_dump_json().encode()


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False)[:3]:
        where = ".".join(str(p) for p in item["loc"]) or "message"
        parts.append(f"{where}: {item['msg']}")
    more = error.error_count() - len(parts)
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


Decoder: TypeAlias = Callable[[str, bytes | None, bytes | None], WireModel]
"""``decode_one(topic, value, key)``: :func:`decode` with ``now`` fixed."""

IngestDecoder: TypeAlias = Callable[[str, bytes | None, bytes | None], WireStruct]


def _check(message: Decoded, latest: datetime | None, key: bytes | None, encoded_id: bytes) -> None:
    if latest is not None and message.time > latest:
        raise DecodeError(f"event time {message.time.isoformat()} is in the future")
    if key is not None and key != encoded_id:
        raise DecodeError(f"key {key!r} does not match vehicle_id {message.vehicle_id!r}")


def decoder(now: datetime | None = None) -> Decoder:
    """:func:`decode` for many messages with one ``now`` (the per-message work only)."""
    latest = None if now is None else now + MAX_FUTURE_SKEW
    validators = {t: m.__pydantic_validator__.validate_json for t, m in MODEL_BY_TOPIC.items()}

    def decode_one(topic: str, value: bytes | None, key: bytes | None) -> WireModel:
        validate = validators.get(topic)
        if validate is None:
            raise DecodeError(f"unknown topic {topic!r}")
        if not value:
            raise DecodeError("empty message")
        if len(value) > MAX_MESSAGE_BYTES:
            raise DecodeError(f"message of {len(value)} bytes exceeds {MAX_MESSAGE_BYTES} bytes")
        try:
            message: WireModel = validate(value)
        except ValidationError as error:
            raise DecodeError(_describe(error)) from None
        _check(message, latest, key, message.vehicle_id.encode())
        return message

    return decode_one


_vehicle_id_matches = re.compile(_VEHICLE_PATTERN).match
_KNOWN_VEHICLES_MAX: Final = 100_000
_known_vehicles: dict[str, bytes] = {}
"""Vehicle ids that matched the pattern, encoded as their Kafka key. A fleet has few ids
and each sends many messages: the pattern (half a microsecond) runs once per id."""


def _known_vehicle(vehicle_id: str) -> bytes | None:
    """``vehicle_id`` encoded if it matches :data:`_VEHICLE_PATTERN`, else None."""
    if not _vehicle_id_matches(vehicle_id):
        return None
    if len(_known_vehicles) >= _KNOWN_VEHICLES_MAX:
        _known_vehicles.clear()
    encoded = _known_vehicles[vehicle_id] = vehicle_id.encode()
    return encoded


def ingest_decoder(now: datetime | None = None) -> IngestDecoder:
    """:func:`decoder` returning structs: what the models accept, at the structs' speed.

    A message the struct refuses, whose vehicle id does not match the pattern, or whose
    time is not in UTC, goes to the model, which rejects it with its reason or accepts it
    (a value the struct is stricter about, such as a number in a string); the model's
    result is then turned into the struct.
    """
    latest = None if now is None else now + MAX_FUTURE_SKEW
    fast = {t: msgspec.json.Decoder(STRUCT_BY_MODEL[m]).decode for t, m in MODEL_BY_TOPIC.items()}
    slow = decoder(now)
    utc = timezone.utc
    known = _known_vehicles

    def decode_one(topic: str, value: bytes | None, key: bytes | None) -> WireStruct:
        decode = fast.get(topic)
        if decode is not None and value and len(value) <= MAX_MESSAGE_BYTES:
            try:
                message: WireStruct = decode(value)
            except ValueError:  # msgspec's DecodeError, ValidationError; bad UTF-8
                pass
            else:
                vehicle_id = message.vehicle_id
                encoded = known.get(vehicle_id) or _known_vehicle(vehicle_id)
                if encoded is not None and message.time.tzinfo is utc:
                    _check(message, latest, key, encoded)
                    return message
        return to_struct(slow(topic, value, key))

    return decode_one


def decode(
    topic: str,
    value: bytes | None,
    key: bytes | None = None,
    *,
    now: datetime | None = None,
) -> WireModel:
    """Decode and validate one message from ``topic``.

    Raises :class:`DecodeError` with a readable reason for anything a gateway could
    send by mistake: an unknown topic, an empty or oversized payload, bad JSON, wrong
    types, missing or extra fields, values out of range, NaN/inf, an event time more
    than ``MAX_FUTURE_SKEW`` ahead of ``now``, or a key that differs from ``vehicle_id``.
    """
    return decoder(now)(topic, value, key)
