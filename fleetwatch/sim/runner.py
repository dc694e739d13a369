"""Drives a :class:`~fleetwatch.sim.fleet.Fleet` against a producer in one of three time modes.

* ``realtime``: each tick is produced once the clock has reached its event time, so a
  fleet whose start lies in the past first catches up as fast as it can and then
  runs at 1 Hz. (The app uses this for "a few hours of history, then live": a fleet
  started three hours ago and one call.)
* ``accelerated``: event time runs ``speedup`` times faster than the clock, but never
  ahead of it (the ingestor rejects events from the future), so start the fleet in
  the past: the run replays up to now and then continues in real time.
* ``backfill``: as fast as possible, up to the clock's now at the start of the run.

``duration`` (event time) ends any mode earlier; ``stop`` ends it at the next tick.
Either way the producer is flushed before :func:`run` returns the count per topic.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Protocol

from fleetwatch.model import TOPIC_BY_MODEL, TOPICS, encode
from fleetwatch.sim.fleet import Fleet
from fleetwatch.transport.base import Producer


class Clock(Protocol):
    def now(self) -> datetime:
        """The current UTC time (timezone-aware)."""

    def sleep(self, seconds: float, stop: threading.Event) -> None:
        """Wait ``seconds`` or until ``stop`` is set, whichever comes first."""


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def sleep(self, seconds: float, stop: threading.Event) -> None:
        stop.wait(seconds)


class Mode(str, Enum):
    REALTIME = "realtime"
    ACCELERATED = "accelerated"
    BACKFILL = "backfill"


@dataclass(frozen=True)
class Progress:
    """A snapshot handed to ``on_progress`` every ``progress_every`` of clock time."""

    counts: dict[str, int]
    """Messages produced so far, per topic."""
    ticks: int
    event_time: datetime | None
    """Event time of the last tick produced."""
    end_time: datetime | None
    """Where the run will stop on its own, if it will."""
    elapsed: timedelta
    """Clock time since the run started."""

    @property
    def total(self) -> int:
        return sum(self.counts.values())


MAX_SLEEP_S = 0.5
"""Longest single wait, so ``stop`` is noticed promptly even with a slow clock."""


def run(
    fleet: Fleet,
    producer: Producer,
    *,
    mode: Mode | str = Mode.REALTIME,
    duration: timedelta | None = None,
    speedup: float = 1.0,
    clock: Clock | None = None,
    stop: threading.Event | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    progress_every: timedelta = timedelta(seconds=5),
    flush_timeout_s: float = 30.0,
    topic_prefix: str = "",
) -> dict[str, int]:
    """Produce the fleet's ticks, keyed by vehicle id, until the mode's end, ``duration``
    of event time, or ``stop``; flush; return the number of messages per topic.

    Records go to ``topic_prefix`` + the stream's topic (the ingestor takes the same
    prefix); the returned counts are keyed by the stream's topic, without the prefix.
    Exceptions from the producer (a broker that stays down) propagate after nothing
    more is produced.
    """
    mode = Mode(mode)
    if speedup <= 0:
        raise ValueError("speedup must be positive")
    clock = clock if clock is not None else SystemClock()
    stop = stop if stop is not None else threading.Event()

    started = clock.now()
    event_start = fleet.next_time
    end_time = event_start + duration if duration is not None else None
    if mode is Mode.BACKFILL:
        # Ticks up to and including the current second.
        limit = started + timedelta(microseconds=1)
        end_time = limit if end_time is None else min(end_time, limit)

    counts = dict.fromkeys(TOPICS, 0)
    keys = {vehicle_id: vehicle_id.encode() for vehicle_id in fleet.vehicle_ids}
    topic_of = TOPIC_BY_MODEL
    physical = {topic: f"{topic_prefix}{topic}" for topic in TOPICS}
    produce = producer.produce
    # The in-process producer takes a whole tick under one lock.
    produce_many: Callable[[list[tuple[str, bytes, bytes]]], None] | None = getattr(
        producer, "produce_many", None
    )
    next_report = started + progress_every
    last_time: datetime | None = None
    ticks = 0

    def report() -> None:
        if on_progress is not None:
            on_progress(Progress(dict(counts), ticks, last_time, end_time, clock.now() - started))

    while not stop.is_set():
        tick_time = fleet.next_time
        if end_time is not None and tick_time >= end_time:
            break
        if mode is not Mode.BACKFILL:
            due = tick_time
            if mode is Mode.ACCELERATED:
                due = max(due, started + (tick_time - event_start) / speedup)
            now = clock.now()
            if now < due:
                clock.sleep(min((due - now).total_seconds(), MAX_SLEEP_S), stop)
                continue
        batch = fleet.step(tick_time)
        if produce_many is not None:
            records = [(physical[topic_of[type(m)]], keys[m.vehicle_id], encode(m)) for m in batch]
            produce_many(records)
            for message in batch:
                counts[topic_of[type(message)]] += 1
        else:
            for message in batch:
                topic = topic_of[type(message)]
                produce(physical[topic], keys[message.vehicle_id], encode(message))
                counts[topic] += 1
        last_time = tick_time
        ticks += 1
        if on_progress is not None:
            now = clock.now()
            if now >= next_report:
                next_report = now + progress_every
                report()

    producer.flush(flush_timeout_s)
    report()
    return counts
