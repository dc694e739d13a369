"""The services the app runs behind its screens: database (embedded or given), transport
(in-process or Kafka), simulator and ingestor as background threads.

:class:`AppServices` implements :class:`fleetwatch.tui.source.Services`: ``start`` runs
in a worker thread and reports each step; ``status`` is cheap and never blocks;
``stop`` lets the simulator flush and the ingestor commit its batch, then leaves the
embedded database. Nothing here imports Textual.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import psycopg

from fleetwatch.config import Settings
from fleetwatch.tui.database import DatabaseSource
from fleetwatch.tui.snapshots import BrokerState, DatabaseState, ServiceStatus
from fleetwatch.tui.source import ProgressCallback, SourceUnavailable

if TYPE_CHECKING:
    from fleetwatch.sim.fleet import VehicleState

log = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 30.0
FLEET_LOCK_KEY = 0x666C_6565_7466  # "fleetf": the advisory lock of an in-process fleet
VIEWING = "the fleet runs in another fleetwatch"
"""Shown for the broker of an app that found another one running the in-process fleet."""
CATCH_UP_SHOWN = timedelta(seconds=10)
"""A catch-up longer than this is shown as backfill progress."""


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def stored_fleet_state(conn: psycopg.Connection[Any]) -> dict[str, VehicleState]:
    """Each stored vehicle's latest state, with the event time of its last reading."""
    from fleetwatch.sim.fleet import VehicleState

    with conn.cursor() as cur:
        cur.execute(
            "SELECT vehicle_id, last_seen, route_id, lat, lon, battery_pct, odometer_km,"
            " autopilot, trip_id, speed_kmh FROM vehicles"
        )
        rows = cur.fetchall()
    return {
        str(vehicle_id): VehicleState(
            route_id=str(route_id),
            lat=float(lat),
            lon=float(lon),
            battery_pct=float(battery),
            odometer_km=float(odometer),
            autopilot=bool(autopilot),
            trip_id=None if trip is None else str(trip),
            speed_kmh=float(speed),
            time=seen,
        )
        for vehicle_id, seen, route_id, lat, lon, battery, odometer, autopilot, trip, speed in rows
    }


def resume_point(states: Mapping[str, VehicleState], vehicles: int) -> datetime | None:
    """The earliest last reading among the fleet's ``vehicles`` (None if none reported):
    partitions are ingested at their own pace, so vehicles are stored up to different
    times; the fleet starts after the earliest and each vehicle waits for its own."""
    from fleetwatch.sim.fleet import vehicle_id_of

    times = [
        state.time
        for index in range(vehicles)
        if (state := states.get(vehicle_id_of(index))) is not None and state.time is not None
    ]
    return min(times) if times else None


def simulation_start(now: datetime, last_seen: datetime | None, backfill: timedelta) -> datetime:
    """Where the simulator's event time starts: the second after ``last_seen`` (see
    :func:`resume_point`) if that lies within ``backfill`` of ``now``, so an interrupted
    backfill continues and a restart fills its gap; else ``now - backfill``."""
    earliest = now - backfill
    if last_seen is not None:
        following = last_seen.astimezone(timezone.utc).replace(microsecond=0) + timedelta(seconds=1)
        if following >= earliest:
            return following
    return earliest


class AppServices:
    """Starts and stops what ``settings`` asks for; see the module docstring."""

    def __init__(self, settings: Settings, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings
        self.clock = clock
        self.dsn: str | None = None
        self._embedded: Any = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._ingestor: Any = None
        self._consumer: Any = None
        self._producer: Any = None
        self._backfill: _Backfill | None = None
        self._sim_error: str | None = None
        self._database: DatabaseState = "starting"
        # The in-process broker starts empty at offset 0 every run, so its consumer group
        # must not resume from offsets a previous run stored: it gets a group of its own
        # (removed again on stop). With Kafka the configured group resumes as it should.
        if settings.kafka.bootstrap is None:
            suffix = uuid.uuid4().hex[:12]
            self._group = f"{settings.ingest.group}-inprocess-{suffix}"
        else:
            self._group = settings.ingest.group
        self._database_detail = ""
        # Held while this app runs the in-process fleet (simulator and ingestor) on its
        # database: a second app on the same database views that fleet instead of
        # simulating the same vehicles again (every vehicle would report twice).
        self._fleet_lock: psycopg.Connection[Any] | None = None
        self.viewing = False

    @property
    def mode(self) -> str:
        return "connected" if self.settings.database.dsn is not None else "embedded"

    # ------------------------------------------------------------------ start

    def start(self, progress: ProgressCallback) -> tuple[DatabaseSource, AppServices]:
        try:
            return self._start(progress)
        except SourceUnavailable:
            self.stop()
            raise
        except Exception as error:
            log.exception("start-up failed")
            self.stop()
            raise SourceUnavailable(f"start-up failed: {error}") from None

    def _start(self, progress: ProgressCallback) -> tuple[DatabaseSource, AppServices]:
        from fleetwatch.store.db import DatabaseUnavailable, connect
        from fleetwatch.store.migrate import apply_migrations

        settings = self.settings
        if settings.database.dsn is not None:
            progress("connecting to the database", None)
            dsn = settings.database.dsn.get_secret_value()
        else:
            from fleetwatch.store.embedded import EmbeddedError, EmbeddedPostgres

            progress("starting the embedded database", None)
            self._embedded = EmbeddedPostgres(settings.database.data_dir)
            try:
                dsn = self._embedded.start()
            except EmbeddedError as error:
                raise SourceUnavailable(str(error)) from None
        self.dsn = dsn
        progress("migrating the schema", None)
        try:
            with connect(dsn) as conn:
                apply_migrations(conn)
                resume = stored_fleet_state(conn)
                conn.rollback()
        except DatabaseUnavailable as error:
            raise SourceUnavailable(str(error)) from None
        self._database = "up"

        runs_fleet = settings.ingest.enabled or settings.simulator.enabled
        if settings.kafka.bootstrap is None and runs_fleet and not self._claim_fleet(dsn):
            log.info("%s on this database: viewing it", VIEWING)
            self.viewing = True
            return DatabaseSource(dsn, settings.rules), self
        if settings.ingest.enabled or settings.simulator.enabled:
            bootstrap = settings.kafka.bootstrap
            progress(
                "starting the in-process broker"
                if bootstrap is None
                else f"connecting to Kafka at {bootstrap}",
                None,
            )
            self._open_transport()
        if settings.ingest.enabled:
            progress("starting the ingestor", None)
            self._start_ingestor(dsn)
        if settings.simulator.enabled:
            progress("starting the simulator", None)
            self._start_simulator(resume)
        return DatabaseSource(dsn, settings.rules), self

    def _claim_fleet(self, dsn: str) -> bool:
        """Take the database's in-process fleet lock for as long as this app runs; False
        if another app holds it. A session lock: it goes with a process that dies."""
        from fleetwatch.store.db import DatabaseUnavailable, connect

        try:
            conn = connect(dsn)
            conn.autocommit = True
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (FLEET_LOCK_KEY,)).fetchone()
        except DatabaseUnavailable as error:
            raise SourceUnavailable(str(error)) from None
        if row is not None and row[0]:
            self._fleet_lock = conn
            return True
        conn.close()
        return False

    def _open_transport(self) -> None:
        settings = self.settings
        bootstrap = settings.kafka.bootstrap
        group = self._group
        if bootstrap is None:
            from fleetwatch.transport.local import LocalBroker

            broker = LocalBroker(settings.kafka.partitions)
            self._producer = broker.producer() if settings.simulator.enabled else None
            self._consumer = broker.consumer(group) if settings.ingest.enabled else None
            return
        from fleetwatch.model import TOPICS
        from fleetwatch.transport.kafka import (
            KafkaConsumer,
            KafkaProducer,
            TransportError,
            ensure_topics,
        )

        topics = [f"{settings.kafka.topic_prefix}{topic}" for topic in TOPICS]
        try:
            ensure_topics(bootstrap, topics, settings.kafka.partitions, settings.kafka.client)
            if settings.simulator.enabled:
                self._producer = KafkaProducer(bootstrap, settings.kafka.client)
            if settings.ingest.enabled:
                self._consumer = KafkaConsumer(bootstrap, group, settings.kafka.client)
        except TransportError as error:
            raise SourceUnavailable(str(error)) from None

    def _start_ingestor(self, dsn: str) -> None:
        from fleetwatch.pipeline.ingest import Ingestor, IngestParams
        from fleetwatch.pipeline.rules import AlertEngine
        from fleetwatch.store.db import connect

        settings = self.settings
        params = replace(
            IngestParams.from_settings(settings.ingest, topic_prefix=settings.kafka.topic_prefix),
            group=self._group,
        )
        self._ingestor = Ingestor(
            params,
            self._consumer,
            lambda: connect(dsn),
            AlertEngine(settings.rules),
        )
        ingestor = self._ingestor

        def work() -> None:
            try:
                ingestor.run(self._stop)
            except Exception:
                log.exception("the ingestor stopped")

        self._spawn("ingest", work)

    def _start_simulator(self, resume: dict[str, VehicleState]) -> None:
        """Run the fleet in real time from :func:`simulation_start`: each vehicle
        resumes its stored state, and the runner catches up to the clock at full speed
        (shown as the backfill progress) before it runs at 1 Hz."""
        from fleetwatch.sim.fleet import Fleet
        from fleetwatch.sim.runner import Mode, Progress, run

        sim = self.settings.simulator
        now = self.clock().replace(microsecond=0)
        last_seen = resume_point(resume, sim.vehicles)
        start = simulation_start(now, last_seen, timedelta(hours=sim.backfill_hours))
        fleet = Fleet(sim.vehicles, sim.seed, start, resume=resume)
        if now - start > CATCH_UP_SHOWN:
            self._backfill = _Backfill(now, now - start)
        log.info("simulating %d vehicles from %s (%d resumed)", sim.vehicles, start, len(resume))

        def on_progress(progress: Progress) -> None:
            if self._backfill is not None:
                self._backfill.produced(progress)

        producer = self._producer

        def work() -> None:
            try:
                run(
                    fleet,
                    producer,
                    mode=Mode.REALTIME if sim.speedup == 1.0 else Mode.ACCELERATED,
                    speedup=sim.speedup,
                    stop=self._stop,
                    on_progress=on_progress,
                    progress_every=timedelta(seconds=1),
                    topic_prefix=self.settings.kafka.topic_prefix,
                )
            except Exception as error:
                log.exception("the simulator stopped")
                self._sim_error = str(error)
            finally:
                if self._backfill is not None:
                    self._backfill.producer_done = True

        self._spawn("simulator", work)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"fleetwatch-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    # ------------------------------------------------------------------ status

    def status(self) -> ServiceStatus:
        database: DatabaseState = self._database
        database_detail = self._database_detail
        broker: BrokerState
        broker_detail = ""
        if self.settings.kafka.bootstrap is None:
            broker = "in-process" if self._consumer or self._producer else "none"
            if self.viewing:
                broker_detail = VIEWING
        else:
            broker = "up"
        rate = lag = rejects = None
        backfill_pct = None
        if self._ingestor is not None:
            stats = self._ingestor.stats()
            rate, lag, rejects = stats.events_per_s, stats.lag, stats.rejected
            if self._backfill is not None:
                backfill_pct = self._backfill.percent(stats.consumed)
                if backfill_pct is None:
                    self._backfill = None
            if stats.state == "db-down":
                database, database_detail = "down", "ingest retrying"
            elif stats.state == "broker-down":
                broker, broker_detail = "down", "retrying"
        producer_down = getattr(self._producer, "broker_down", False)
        if producer_down or self._sim_error:
            broker, broker_detail = "down", "simulator"
        return ServiceStatus(
            mode="connected" if self.mode == "connected" else "embedded",
            database=database,
            broker=broker,
            database_detail=database_detail,
            broker_detail=broker_detail,
            ingest_rate_per_s=rate,
            consumer_lag=lag,
            rejects=rejects,
            backfill_pct=backfill_pct,
        )

    # ------------------------------------------------------------------ stop

    def _forget_offsets(self, dsn: str) -> None:
        """Drop this run's in-process offsets: no later run can resume from them."""
        from fleetwatch.store.db import DatabaseUnavailable, connect

        try:
            with connect(dsn) as conn:
                conn.execute("DELETE FROM ingest_offsets WHERE consumer_group = %s", (self._group,))
                conn.commit()
        except (DatabaseUnavailable, psycopg.Error):
            log.warning("could not remove the offsets of %s", self._group, exc_info=True)

    def stop(self) -> None:
        """Stop the simulator and ingestor (the batch in hand is committed), close the
        transport and leave the embedded database. Safe to call twice."""
        self._stop.set()
        if self._ingestor is not None:
            self._ingestor.stop()
        for thread in self._threads:
            thread.join(JOIN_TIMEOUT_S)
            if thread.is_alive():
                log.warning("%s did not stop within %.0f s", thread.name, JOIN_TIMEOUT_S)
        self._threads.clear()
        for closable in (self._consumer, self._producer):
            if closable is not None:
                try:
                    closable.close()
                except Exception:
                    log.exception("closing the transport failed")
        self._consumer = self._producer = None
        if self.settings.kafka.bootstrap is None and self.dsn is not None and not self.viewing:
            self._forget_offsets(self.dsn)
        if self._fleet_lock is not None:
            self._fleet_lock.close()  # releases the lock
            self._fleet_lock = None
        if self._embedded is not None:
            try:
                self._embedded.stop()
            except Exception:
                log.exception("stopping the embedded database failed")
            self._embedded = None


class _Backfill:
    """Progress of the catch-up (the first run's history, or the gap since the last
    run): messages stored over messages to store.

    The simulator produces the history much faster than it is ingested, so progress is
    measured on the ingest side; the total is extrapolated from the share of event
    time produced so far until the simulator has caught up with the clock.
    """

    def __init__(self, until: datetime, span: timedelta) -> None:
        self.until = until
        self.span = span
        self.expected: float | None = None
        self.total: int | None = None
        self.producer_done = False

    def produced(self, progress: Any) -> None:
        if self.total is not None or progress.event_time is None:
            return
        behind = self.until - progress.event_time
        if behind <= timedelta(seconds=1):
            self.total = progress.total
            return
        share = 1 - behind / self.span
        if share > 0:
            self.expected = progress.total / share

    def percent(self, consumed: int) -> float | None:
        """0..100 while backfilling; None once the history is stored."""
        total = self.total if self.total is not None else self.expected
        if total is None or total <= 0:
            return None if self.producer_done else 0.0
        if self.total is not None and consumed >= self.total:
            return None
        return min(99.0, 100.0 * consumed / total)


class EarlyStart:
    """Starts ``services`` in a thread right away, so the database comes up while Textual
    is imported and the screens are built; ``start`` then waits for that result and
    replays the progress reported so far. Implements :class:`~fleetwatch.tui.source.Services`.
    """

    def __init__(self, services: AppServices) -> None:
        self.services = services
        self._lock = threading.Lock()
        self._steps: list[tuple[str, float | None]] = []
        self._listener: ProgressCallback | None = None
        self._done = threading.Event()
        self._result: tuple[DatabaseSource, AppServices] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fleetwatch-start", daemon=True)
        self._thread.start()

    def _progress(self, step: str, fraction: float | None) -> None:
        with self._lock:
            self._steps.append((step, fraction))
            listener = self._listener
        if listener is not None:
            listener(step, fraction)

    def _run(self) -> None:
        try:
            self._result = self.services.start(self._progress)
        except BaseException as error:  # handed to the caller of start()
            self._error = error
        finally:
            self._done.set()

    def start(self, progress: ProgressCallback) -> tuple[DatabaseSource, AppServices]:
        with self._lock:
            replay = list(self._steps)
            self._listener = progress
        for step, fraction in replay:
            progress(step, fraction)
        self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def stop(self) -> None:
        self._done.wait(JOIN_TIMEOUT_S)
        self.services.stop()
