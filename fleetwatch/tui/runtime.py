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
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from fleetwatch.config import Settings
from fleetwatch.tui.database import DatabaseSource
from fleetwatch.tui.snapshots import BrokerState, DatabaseState, ServiceStatus
from fleetwatch.tui.source import ProgressCallback, SourceUnavailable

log = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 30.0


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


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
        self._backfill_pct: float | None = None
        self._sim_error: str | None = None
        self._database: DatabaseState = "starting"
        self._database_detail = ""

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
                with conn.cursor() as cur:
                    cur.execute("SELECT count(*) FROM vehicles")
                    row = cur.fetchone()
                conn.rollback()
        except DatabaseUnavailable as error:
            raise SourceUnavailable(str(error)) from None
        first_run = row is None or int(row[0]) == 0
        self._database = "up"

        if settings.ingest.enabled or settings.simulator.enabled:
            progress("connecting the transport", None)
            self._open_transport()
        if settings.ingest.enabled:
            progress("starting the ingestor", None)
            self._start_ingestor(dsn)
        if settings.simulator.enabled:
            progress("starting the simulator", None)
            self._start_simulator(first_run)
        return DatabaseSource(dsn, settings.rules), self

    def _open_transport(self) -> None:
        settings = self.settings
        bootstrap = settings.kafka.bootstrap
        group = settings.ingest.group
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

        try:
            ensure_topics(bootstrap, list(TOPICS), settings.kafka.partitions, settings.kafka.client)
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
        self._ingestor = Ingestor(
            IngestParams.from_settings(settings.ingest),
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

    def _start_simulator(self, first_run: bool) -> None:
        from fleetwatch.sim.fleet import Fleet
        from fleetwatch.sim.runner import Mode, Progress, run

        sim = self.settings.simulator
        now = self.clock().replace(microsecond=0)
        backfill = timedelta(hours=sim.backfill_hours) if first_run else timedelta(0)
        start = now - backfill
        fleet = Fleet(sim.vehicles, sim.seed, start)
        if backfill > timedelta(0):
            self._backfill_pct = 0.0

        def on_progress(progress: Progress) -> None:
            if self._backfill_pct is None or progress.event_time is None:
                return
            behind = now - progress.event_time
            if behind <= timedelta(seconds=2):
                self._backfill_pct = None
            else:
                self._backfill_pct = 100.0 * (1 - behind / backfill)

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
                )
            except Exception as error:
                log.exception("the simulator stopped")
                self._sim_error = str(error)
            finally:
                self._backfill_pct = None

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
        if self.settings.kafka.bootstrap is None:
            broker = "in-process" if self._consumer or self._producer else "none"
        else:
            broker = "up"
        rate = lag = rejects = None
        broker_detail = ""
        if self._ingestor is not None:
            stats = self._ingestor.stats()
            rate, lag, rejects = stats.events_per_s, stats.lag, stats.rejected
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
            backfill_pct=self._backfill_pct,
        )

    # ------------------------------------------------------------------ stop

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
        if self._embedded is not None:
            try:
                self._embedded.stop()
            except Exception:
                log.exception("stopping the embedded database failed")
            self._embedded = None
