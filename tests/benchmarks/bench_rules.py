"""Benchmark of the alert engine: observe() calls per second on a 1 Hz fleet.

Run: .venv/bin/python tests/benchmarks/bench_rules.py [--vehicles N] [--seconds S]

Prints the rate for the common path (no breach, no open alert), for a realistic mix
(a few percent of samples breaching, perception events with near misses) and the
time of one tick over the whole fleet.
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from datetime import datetime, timedelta, timezone

from fleetwatch.config import RuleSettings
from fleetwatch.model import ObjectClass, PerceptionEvent, Telemetry, WireModel
from fleetwatch.pipeline.rules import AlertEngine

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def make_messages(
    vehicles: int, seconds: int, rng: random.Random, *, breach_share: float
) -> list[WireModel]:
    messages: list[WireModel] = []
    classes = list(ObjectClass)
    for s in range(seconds):
        now = T0 + timedelta(seconds=s)
        for v in range(vehicles):
            vehicle_id = f"veh-{v:05d}"
            speeding = rng.random() < breach_share
            messages.append(
                Telemetry(
                    event_id=uuid.uuid4(),
                    time=now,
                    vehicle_id=vehicle_id,
                    speed_kmh=75.0 if speeding else 45.0,
                    speed_limit_kmh=50.0,
                    lat=52.5,
                    lon=13.4,
                    heading_deg=90.0,
                    battery_pct=15.0 if rng.random() < breach_share else 60.0,
                    range_km=200.0,
                    odometer_km=1000.0 + s / 100,
                    autopilot=True,
                    city="Berlin",
                    route_id="r1",
                )
            )
            if breach_share and rng.random() < 0.3:
                messages.append(
                    PerceptionEvent(
                        event_id=uuid.uuid4(),
                        time=now + timedelta(milliseconds=500),
                        vehicle_id=vehicle_id,
                        object_class=rng.choice(classes),
                        distance_m=rng.uniform(2.0, 80.0),
                        closing_speed_mps=rng.uniform(-5.0, 10.0),
                        bearing_deg=0.0,
                        confidence=0.9,
                    )
                )
    return messages


def measure(label: str, messages: list[WireModel], vehicles: int, seconds: int) -> None:
    engine = AlertEngine(RuleSettings())
    per_second = len(messages) // seconds
    started = time.perf_counter()
    for i, message in enumerate(messages):
        engine.observe(message)
        if i % per_second == per_second - 1:
            engine.take_changes()
    elapsed = time.perf_counter() - started
    tick_started = time.perf_counter()
    engine.tick(T0 + timedelta(seconds=seconds))
    tick_ms = (time.perf_counter() - tick_started) * 1000
    alerts, transitions = engine.take_changes()
    print(
        f"{label:<12} {len(messages):>9,} messages  {len(messages) / elapsed:>11,.0f} observe/s  "
        f"{elapsed / len(messages) * 1e6:5.2f} us each  tick over {vehicles:,} vehicles "
        f"{tick_ms:6.2f} ms  open alerts {engine.open_count():,}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    rng = random.Random(7)
    common = make_messages(args.vehicles, args.seconds, rng, breach_share=0.0)
    measure("common path", common, args.vehicles, args.seconds)
    mixed = make_messages(args.vehicles, args.seconds, rng, breach_share=0.03)
    measure("mixed", mixed, args.vehicles, args.seconds)


if __name__ == "__main__":
    main()
