"""Reads the vehicles' last states from the end of a Kafka telemetry topic.

A restarted ``fleetwatch simulate`` passes them to ``Fleet(resume=...)``, so each
vehicle carries on where the previous run left it: same city, route, position,
battery and trip, and an odometer that does not jump (the ingestor ignores readings
below the last one, and distance is last minus first reading, so a jump back would
lose or distort distance).

Every vehicle reports telemetry every second, so its last reading lies within the
last few ticks' worth of records of its partition; only that tail is read.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Mapping

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from fleetwatch.model import TELEMETRY_TOPIC, DecodeError, Telemetry, decode
from fleetwatch.sim.fleet import VehicleState

log = logging.getLogger(__name__)


def last_odometers(
    bootstrap: str,
    topic: str,
    vehicles: int,
    client: Mapping[str, str] | None = None,
    timeout_s: float = 10.0,
) -> dict[str, float]:
    """Highest odometer per vehicle in the tail of ``topic``; see :func:`last_states`."""
    states = last_states(bootstrap, topic, vehicles, client, timeout_s)
    return {vehicle_id: state.odometer_km for vehicle_id, state in states.items()}


def last_states(
    bootstrap: str,
    topic: str,
    vehicles: int,
    client: Mapping[str, str] | None = None,
    timeout_s: float = 10.0,
) -> dict[str, VehicleState]:
    """Each vehicle's state in its reading with the highest odometer (its latest) in
    the tail of ``topic``; empty if it has none. The states carry no time, so a fleet
    resumed from them starts every vehicle at its own start.

    Reads about four ticks of ``vehicles`` per partition (at least 1,000 records) from
    the end of each partition. Records that do not decode are skipped. Raises
    ``KafkaException`` only if the broker cannot be asked at all.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "fleetwatch-simulate-resume",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "logger": logging.getLogger("fleetwatch.transport.librdkafka"),
            **dict(client or {}),
        }
    )
    found: dict[str, VehicleState] = {}
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            return found
        per_partition = max(1000, 4 * math.ceil(vehicles / len(metadata.partitions)))
        assignment = []
        remaining: set[int] = set()
        for partition in metadata.partitions:
            try:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=timeout_s
                )
            except KafkaException as failure:
                # A topic created a moment ago has no leaders yet, and nothing to read.
                log.info("no end offsets for %s[%d]: %s", topic, partition, failure)
                continue
            if high > low:
                assignment.append(TopicPartition(topic, partition, max(low, high - per_partition)))
                remaining.add(partition)
        if not assignment:
            return found
        consumer.assign(assignment)
        deadline = time.monotonic() + timeout_s
        while remaining and time.monotonic() < deadline:
            for record in consumer.consume(10_000, 0.5):
                error = record.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        remaining.discard(record.partition() or 0)
                    continue
                try:
                    message = decode(TELEMETRY_TOPIC, record.value(), record.key())
                except DecodeError:
                    continue
                if isinstance(message, Telemetry):
                    known = found.get(message.vehicle_id)
                    if known is None or message.odometer_km >= known.odometer_km:
                        found[message.vehicle_id] = VehicleState(
                            route_id=message.route_id,
                            lat=message.lat,
                            lon=message.lon,
                            battery_pct=message.battery_pct,
                            odometer_km=message.odometer_km,
                            autopilot=message.autopilot,
                            trip_id=message.trip_id,
                            speed_kmh=message.speed_kmh,
                        )
        if remaining:
            log.warning("read the end of %s only partly within %.0f s", topic, timeout_s)
        return found
    finally:
        with contextlib.suppress(KafkaException, RuntimeError):
            consumer.close()
