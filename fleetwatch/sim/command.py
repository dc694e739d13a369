"""`fleetwatch simulate`: run the fleet simulator as a headless Kafka producer.

Creates the three topics if they are missing, continues each vehicle from its last
state at the end of the telemetry topic (same city, route, position and battery; an
odometer a restart never winds back), produces
every message keyed by its vehicle id, prints a progress line every few seconds and
the count per topic at the end. Ctrl-C (or SIGTERM) stops at the next tick, flushes
and exits 0.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from fleetwatch import durations
from fleetwatch.cli import add_topic_prefix_flag
from fleetwatch.config import Settings, SimulatorSettings
from fleetwatch.model import DRIVING_TOPIC, PERCEPTION_TOPIC, TELEMETRY_TOPIC, TOPICS
from fleetwatch.signals import Stopper, stop_on_signals
from fleetwatch.sim.fleet import TICK, Fleet
from fleetwatch.sim.runner import Mode, Progress, SystemClock
from fleetwatch.sim.runner import run as run_fleet

if TYPE_CHECKING:
    from fleetwatch.transport.kafka import KafkaProducer

PROGRESS_EVERY = timedelta(seconds=5)


def parse_duration(text: str) -> timedelta:
    """``90s``, ``10m``, ``24h``, ``2d`` or combinations such as ``1h30m`` (argparse type)."""
    try:
        return durations.parse_duration(text)
    except durations.DurationError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return (
        "".join(f"{n}{u}" for n, u in ((hours, "h"), (minutes, "m"), (seconds, "s")) if n) or "0s"
    )


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kafka",
        dest="kafka.bootstrap",
        metavar="HOST:PORT",
        help="Kafka bootstrap servers (required here; or FLEETWATCH_KAFKA)",
    )
    parser.add_argument(
        "--vehicles",
        dest="simulator.vehicles",
        type=int,
        metavar="N",
        help="number of vehicles (default: settings, 25)",
    )
    parser.add_argument(
        "--seed",
        dest="simulator.seed",
        type=int,
        metavar="S",
        help="random seed; a seed and a start time reproduce the same stream",
    )
    span = parser.add_mutually_exclusive_group()
    span.add_argument(
        "--duration",
        type=parse_duration,
        metavar="D",
        help="stop after D of event time (90s, 10m, 24h); default: run until Ctrl-C",
    )
    span.add_argument(
        "--backfill",
        type=parse_duration,
        metavar="D",
        help="generate the last D of history as fast as possible, then stop",
    )
    parser.add_argument(
        "--speedup",
        dest="simulator.speedup",
        type=float,
        metavar="X",
        help=(
            "replay recent history X times faster than real time: start D ago (D from "
            "--duration, else the simulator.backfill_hours setting, "
            f"{SimulatorSettings().backfill_hours:g}h) and, without --duration, go on "
            "live once caught up"
        ),
    )
    parser.add_argument(
        "--partitions",
        dest="kafka.partitions",
        type=int,
        metavar="P",
        help="partitions for topics created here (default: settings, 6)",
    )
    parser.add_argument(
        "--dropouts",
        action="store_true",
        help="let vehicles lose contact now and then (40-180 s), so silent-vehicle alerts happen",
    )
    add_topic_prefix_flag(parser, "produce to")


def _counts_line(counts: dict[str, int]) -> str:
    return (
        f"{counts[TELEMETRY_TOPIC]:,} telemetry, {counts[PERCEPTION_TOPIC]:,} perception, "
        f"{counts[DRIVING_TOPIC]:,} driving events"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    # Imported here so `fleetwatch simulate --help` does not load librdkafka.
    from confluent_kafka import KafkaException

    from fleetwatch.transport.kafka import KafkaProducer, TransportError, ensure_topics

    bootstrap = settings.kafka.bootstrap
    if not bootstrap:
        return _fail("a Kafka broker is needed: pass --kafka HOST:PORT or set FLEETWATCH_KAFKA")
    sim = settings.simulator
    duration: timedelta | None = args.duration
    backfill: timedelta | None = args.backfill
    speedup_flag = getattr(args, "simulator.speedup", None)
    if backfill is not None and speedup_flag is not None:
        return _fail("--speedup does not apply to --backfill, which runs as fast as it can")

    prefix = settings.kafka.topic_prefix
    topics = [f"{prefix}{topic}" for topic in TOPICS]
    clock = SystemClock()
    now = clock.now().replace(microsecond=0)
    if backfill is not None:
        mode, start = Mode.BACKFILL, now - backfill
        plan = f"backfilling {_format_duration(backfill)} of history up to now"
    elif sim.speedup != 1.0:
        lead = duration if duration is not None else timedelta(hours=sim.backfill_hours)
        mode, start = Mode.ACCELERATED, now - lead
        plan = f"replaying the last {_format_duration(lead)} at {sim.speedup:g}x" + (
            "" if duration is not None else ", then live"
        )
    else:
        mode, start = Mode.REALTIME, now
        plan = "live at 1 Hz" + (f" for {_format_duration(duration)}" if duration else "")

    # From here on, Ctrl-C or SIGTERM asks for a clean stop: whatever was produced is
    # flushed and the command exits 0 (a second Ctrl-C interrupts at once).
    stopper = Stopper()
    with stop_on_signals(stopper):
        # Said first: an unreachable broker takes the whole timeout to tell.
        print(f"fleetwatch simulate: reaching Kafka at {bootstrap}…", flush=True)
        try:
            ensure_topics(
                bootstrap, topics, settings.kafka.partitions, settings.kafka.client, timeout_s=10.0
            )
            producer = KafkaProducer(bootstrap, settings.kafka.client)
        except TransportError as error:
            return _fail(str(error), code=1)
        except KafkaException as error:
            return _fail(f"cannot use the Kafka settings for {bootstrap}: {error}", code=1)
        try:
            counts = _produce(args, settings, producer, stopper, mode, start, plan, clock)
        except TransportError as error:
            return _fail(str(error), code=1)
        finally:
            producer.close()
    stopped = " (stopped)" if stopper.event.is_set() else ""
    print(f"fleetwatch simulate: produced {_counts_line(counts)}{stopped}", flush=True)
    return 0


def _produce(
    args: argparse.Namespace,
    settings: Settings,
    producer: KafkaProducer,
    stopper: Stopper,
    mode: Mode,
    start: datetime,
    plan: str,
    clock: SystemClock,
) -> dict[str, int]:
    from confluent_kafka import KafkaException

    from fleetwatch.sim.resume import last_states

    sim = settings.simulator
    bootstrap = producer.bootstrap
    prefix = settings.kafka.topic_prefix
    telemetry_topic = f"{prefix}{TELEMETRY_TOPIC}"
    try:
        states = last_states(bootstrap, telemetry_topic, sim.vehicles, settings.kafka.client)
    except KafkaException as error:
        print(
            f"fleetwatch simulate: cannot read the vehicles' last states from {telemetry_topic} "
            f"({error}); starting new ones",
            file=sys.stderr,
        )
        states = {}
    fleet = Fleet(sim.vehicles, sim.seed, start, resume=states, dropouts=args.dropouts)
    print(
        f"fleetwatch simulate: {sim.vehicles} vehicles, seed {sim.seed}, {plan}, "
        f"to Kafka at {bootstrap}",
        flush=True,
    )
    continued = sum(1 for vehicle_id in fleet.vehicle_ids if vehicle_id in states)
    if continued:
        print(
            f"  continuing the odometers of {continued} vehicles, with their city, route, "
            f"position and battery, from {telemetry_topic}",
            flush=True,
        )

    def progress(p: Progress) -> None:
        seconds = max(p.elapsed.total_seconds(), 1e-9)
        when = p.event_time.strftime("%Y-%m-%d %H:%M:%S") if p.event_time else "-"
        warning = " (broker unreachable, buffering)" if producer.broker_down else ""
        print(
            f"  event time {when}Z: {_counts_line(p.counts)} ({p.total / seconds:,.0f}/s)"
            f"{warning}",
            flush=True,
        )

    return run_fleet(
        fleet,
        producer,
        mode=mode,
        # A backfill ends with the second the command started in, however long the
        # topics took to create: the same number of ticks on a busy machine.
        duration=args.duration if args.backfill is None else args.backfill + TICK,
        speedup=sim.speedup,
        clock=clock,
        stop=stopper.event,
        on_progress=progress,
        progress_every=PROGRESS_EVERY,
        topic_prefix=prefix,
    )


def _fail(sentence: str, code: int = 2) -> int:
    print(f"fleetwatch simulate: {sentence}", file=sys.stderr)
    return code
