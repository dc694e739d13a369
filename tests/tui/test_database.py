"""The app against the real database: data loaded by the real simulator, broker and
ingestor; every view read through the metrics queries; acknowledgements and silences
persisted; a dropped connection shown and recovered; the services started and stopped."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka.admin import AdminClient
from textual.pilot import Pilot

from fleetwatch.config import RuleSettings, Settings
from fleetwatch.model import PERCEPTION_TOPIC, TELEMETRY_TOPIC, TOPIC_BY_MODEL, TOPICS, encode
from fleetwatch.pipeline.ingest import Ingestor, IngestParams
from fleetwatch.pipeline.rules import AlertEngine
from fleetwatch.sim import Fleet, backfill
from fleetwatch.store.db import connect
from fleetwatch.transport.local import LocalBroker
from fleetwatch.tui.app import FleetwatchApp, create_app
from fleetwatch.tui.database import DatabaseSource
from fleetwatch.tui.runtime import VIEWING, AppServices
from fleetwatch.tui.screens.modals import DurationModal
from fleetwatch.tui.snapshots import AlertRow, ViewRequest
from fleetwatch.tui.source import SourceUnavailable
from tests import polling
from tests.tui.conftest import SIZE, quiet_settings, rendered, wait_for

wait_until = partial(polling.wait_until, timeout_s=120.0)

VEHICLES = 6
# Thresholds that make every vehicle raise a low-battery alert, so there is one to act on.
EAGER_RULES = RuleSettings(battery_fire_pct=99.0, battery_clear_pct=100.0)


def load_fleet(dsn: str, *, vehicles: int = VEHICLES, minutes: int = 10) -> datetime:
    """Simulate ``minutes`` of a fleet ending now and ingest it; returns the end time."""
    end = datetime.now(timezone.utc).replace(microsecond=0)
    fleet = Fleet(vehicles, 5, end - timedelta(minutes=minutes))
    broker = LocalBroker(3)
    producer = broker.producer()
    total = 0
    for tick in backfill(fleet, timedelta(minutes=minutes)):
        for message in tick:
            producer.produce(
                TOPIC_BY_MODEL[type(message)], message.vehicle_id.encode(), encode(message)
            )
            total += 1
    ingestor = Ingestor(
        IngestParams(group="tui-test"),
        broker.consumer("tui-test"),
        lambda: connect(dsn),
        AlertEngine(EAGER_RULES),
    )
    stop = threading.Event()
    thread = threading.Thread(target=ingestor.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_until(lambda: ingestor.stats().consumed >= total)
    finally:
        stop.set()
        ingestor.stop()
        thread.join(30)
    return end


@pytest.fixture
def loaded(db_dsn: str) -> Iterator[tuple[str, datetime]]:
    end = load_fleet(db_dsn)
    yield db_dsn, end


def test_every_view_reads_the_database(loaded: tuple[str, datetime]) -> None:
    dsn, end = loaded
    source = DatabaseSource(dsn, EAGER_RULES)
    try:
        fleet = source.fetch(ViewRequest("fleet", "1h", end)).fleet
        assert fleet is not None
        assert len(fleet.vehicles) == VEHICLES
        assert fleet.kpis.vehicles_total == VEHICLES
        assert fleet.kpis.distance_km > 0
        assert fleet.kpis.alerts_warning + fleet.kpis.alerts_critical > 0
        vehicle_id = fleet.vehicles[0].vehicle_id
        vehicle = source.fetch(ViewRequest("vehicle", "15m", end, vehicle_id)).vehicle
        assert vehicle is not None and vehicle.vehicle is not None
        assert vehicle.vehicle.vehicle_id == vehicle_id
        assert vehicle.series and vehicle.track
        assert vehicle.alerts
        alerts = source.fetch(ViewRequest("alerts", "1h", end)).alerts
        assert alerts is not None
        assert {a.rule for a in alerts.alerts} >= {"low_battery"}
        interventions = source.fetch(ViewRequest("interventions", "1h", end)).interventions
        assert interventions is not None
        assert len(interventions.buckets) > 1
        # Ranked: every vehicle with an intervention or disengagement in the window.
        ranked = {r.vehicle_id for r in interventions.ranking}
        assert ranked == {e.vehicle_id for e in interventions.events}
        perception = source.fetch(ViewRequest("perception", "1h", end)).perception
        assert perception is not None
        assert sum(c.count for c in perception.by_class) > 0
        assert sum(b.count for b in perception.distance_bins) > 0
    finally:
        source.close()


def run_app(app: FleetwatchApp, scenario: Callable[[Pilot[Any]], Any]) -> None:
    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, rendered(app, "fleet"), timeout_s=30)
            await scenario(pilot)

    asyncio.run(main())


def test_acknowledge_and_silence_are_stored(loaded: tuple[str, datetime], tmp_path: Path) -> None:
    dsn, _ = loaded
    app = create_app(
        quiet_settings(),
        source=DatabaseSource(dsn, EAGER_RULES),
        export_dir=tmp_path,
        user="night-shift",
        animate=False,
    )
    chosen: list[AlertRow] = []

    async def scenario(pilot: Pilot[Any]) -> None:
        await pilot.press("3")
        await wait_for(pilot, rendered(app, "alerts"), timeout_s=30)
        table = app.query_one("#alerts-table")
        row = table.current_row()  # type: ignore[attr-defined]
        assert isinstance(row, AlertRow) and row.state != "resolved"
        chosen.append(row)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, DurationModal))
        await pilot.press("enter")  # 1 hour
        await wait_for(
            pilot, lambda: any("Acknowledged" in n.message for n in app._notifications), 30
        )
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, DurationModal))
        await pilot.press("down", "enter")  # 4 hours
        await wait_for(pilot, lambda: any("Silenced" in n.message for n in app._notifications), 30)

    run_app(app, scenario)
    alert = chosen[0]
    with psycopg.connect(dsn) as conn:
        acked_by, ack_until = conn.execute(
            "SELECT acked_by, ack_until FROM alerts WHERE alert_id = %s", (alert.alert_id,)
        ).fetchone() or (None, None)
        assert acked_by == "night-shift"
        assert ack_until is not None
        remaining = ack_until - datetime.now(timezone.utc)
        assert timedelta(minutes=55) < remaining <= timedelta(hours=1)
        silence = conn.execute(
            "SELECT vehicle_id, rule, created_by, until FROM silences"
        ).fetchall()
        assert len(silence) == 1
        vehicle_id, rule, created_by, until = silence[0]
        assert (vehicle_id, rule, created_by) == (alert.vehicle_id, alert.rule, "night-shift")
        assert (
            timedelta(hours=3, minutes=55)
            < until - datetime.now(timezone.utc)
            <= timedelta(hours=4)
        )


def test_a_dropped_connection_is_shown_and_recovered(
    loaded: tuple[str, datetime], tmp_path: Path
) -> None:
    dsn, _ = loaded
    source = DatabaseSource(dsn, EAGER_RULES)
    app = create_app(quiet_settings(), source=source, export_dir=tmp_path, animate=False)

    async def scenario(pilot: Pilot[Any]) -> None:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = 'fleetwatch'"
            )
        app.request_refresh()
        await wait_for(pilot, lambda: app.refresh_error is not None, 30)
        notice = app.query_one("#view-fleet-notice")
        assert notice.has_class("-shown")
        assert "Database unavailable" in str(notice.render())
        app.request_refresh()
        await wait_for(pilot, lambda: app.refresh_error is None, 30)
        assert not notice.has_class("-shown")

    run_app(app, scenario)


def test_an_unreachable_database_is_one_sentence() -> None:
    source = DatabaseSource("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(SourceUnavailable, match="cannot connect to the database"):
        source.fetch(ViewRequest("fleet", "1h", datetime.now(timezone.utc)))


def test_services_run_simulator_and_ingestor_then_stop(db_dsn: str) -> None:
    settings = Settings.model_validate(
        {
            "database": {"dsn": db_dsn},
            "simulator": {"vehicles": 4, "backfill_hours": 0.05},
        }
    )
    services = AppServices(settings)
    steps: list[str] = []
    source, status = services.start(lambda step, _fraction: steps.append(step))
    try:
        assert steps[0] == "connecting to the database"
        assert "starting the in-process broker" in steps
        assert "starting the simulator" in steps

        def vehicles() -> int:
            fleet = source.fetch(ViewRequest("fleet", "15m", datetime.now(timezone.utc))).fleet
            return 0 if fleet is None else len(fleet.vehicles)

        wait_until(lambda: vehicles() == 4)
        wait_until(lambda: status.status().backfill_pct is None)
        current = status.status()
        assert current.mode == "connected"
        assert current.database == "up" and current.broker == "in-process"
    finally:
        source.close()
        services.stop()
    with psycopg.connect(db_dsn) as conn:
        stored = conn.execute("SELECT count(*) FROM telemetry").fetchone()
        offsets = conn.execute("SELECT count(*) FROM ingest_offsets").fetchone()
    assert stored is not None and stored[0] >= 4 * 180
    # The in-process broker is gone with the run: so are its offsets, so that the next
    # run's new broker is read from its start.
    assert offsets == (0,)


def test_services_with_kafka_use_the_topic_prefix_and_group(
    db_dsn: str, kafka_bootstrap: str
) -> None:
    """`fleetwatch --kafka … --db … --topic-prefix P --group G`: the built-in simulator
    produces to P + each topic and the built-in ingestor consumes them as G."""
    prefix = f"fwtest-app-{uuid.uuid4().hex[:8]}."
    group = f"fwtest-app-{uuid.uuid4().hex[:8]}"
    settings = Settings.model_validate(
        {
            "database": {"dsn": db_dsn},
            "kafka": {"bootstrap": kafka_bootstrap, "topic_prefix": prefix, "partitions": 2},
            "ingest": {"group": group},
            "simulator": {"vehicles": 3, "backfill_hours": 0.02},
        }
    )
    services = AppServices(settings)
    source, status = services.start(lambda _step, _fraction: None)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    try:

        def vehicles() -> int:
            fleet = source.fetch(ViewRequest("fleet", "15m", datetime.now(timezone.utc))).fleet
            return 0 if fleet is None else len(fleet.vehicles)

        wait_until(lambda: vehicles() == 3)
        assert status.status().broker == "up"
        existing = admin.list_topics(timeout=10).topics
        assert {f"{prefix}{topic}" for topic in TOPICS} <= set(existing)
    finally:
        source.close()
        services.stop()
        ours = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
        for future in admin.delete_topics(ours, operation_timeout=30).values():
            future.result(timeout=60)
    with psycopg.connect(db_dsn) as conn:
        rows = conn.execute(
            "SELECT DISTINCT consumer_group, topic FROM ingest_offsets ORDER BY 2"
        ).fetchall()
    # Driving events are rare: a run this short may have none.
    assert (
        {(group, f"{prefix}{TELEMETRY_TOPIC}"), (group, f"{prefix}{PERCEPTION_TOPIC}")}
        <= set(rows)
        <= {(group, f"{prefix}{topic}") for topic in TOPICS}
    )


def test_a_second_app_on_the_same_database_views_the_fleet_the_first_runs(
    db_dsn: str,
) -> None:
    """Two apps on one database with the in-process fleet (two SSH sessions): the
    second neither simulates nor ingests, so no vehicle reports twice; it shows why."""
    settings = Settings.model_validate(
        {"database": {"dsn": db_dsn}, "simulator": {"vehicles": 3, "backfill_hours": 0.01}}
    )
    first, second = AppServices(settings), AppServices(settings)
    source, status = first.start(lambda _step, _fraction: None)
    try:
        viewer_source, viewer = second.start(lambda _step, _fraction: None)
        try:
            assert second.viewing and not first.viewing
            shown = viewer.status()
            assert (shown.broker, shown.broker_detail) == ("none", VIEWING)
            assert shown.ingest_rate_per_s is None

            def reporting() -> int:
                request = ViewRequest("fleet", "15m", datetime.now(timezone.utc))
                fleet = viewer_source.fetch(request).fleet
                return 0 if fleet is None else fleet.kpis.vehicles_reporting

            wait_until(lambda: reporting() == 3)  # the first app's fleet, seen by the second
            wait_until(lambda: status.status().backfill_pct is None)
        finally:
            viewer_source.close()
            second.stop()
        # The viewer left the first app's run alone: still ingesting, offsets kept.
        assert first._ingestor is not None and not first._stop.is_set()
    finally:
        source.close()
        first.stop()
    with psycopg.connect(db_dsn) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT (vehicle_id, time)) FROM telemetry"
        ).fetchone()
    assert row is not None and row[0] == row[1] > 0  # one sample per vehicle and second
    # With the first app gone, the next one runs the fleet again.
    third = AppServices(settings)
    source, _ = third.start(lambda _step, _fraction: None)
    try:
        assert not third.viewing
    finally:
        source.close()
        third.stop()


def test_embedded_mode_starts_a_private_database_and_stops_it(tmp_path: Path) -> None:
    """What `fleetwatch` does with no configuration: embedded PostgreSQL, in-process
    broker, simulator with a short first-run backfill, ingestor; then a clean stop."""
    from fleetwatch.store.embedded import EmbeddedPostgres

    data_dir = tmp_path / "postgres"
    settings = Settings.model_validate(
        {
            "database": {"data_dir": str(data_dir)},
            "simulator": {"vehicles": 3, "backfill_hours": 0.02},
        }
    )
    services = AppServices(settings)
    steps: list[str] = []
    source, status = services.start(lambda step, _fraction: steps.append(step))
    try:
        assert steps[:2] == ["starting the embedded database", "migrating the schema"]

        def reporting() -> int:
            fleet = source.fetch(ViewRequest("fleet", "15m", datetime.now(timezone.utc))).fleet
            return 0 if fleet is None else fleet.kpis.vehicles_reporting

        wait_until(lambda: reporting() == 3)
        assert status.status().mode == "embedded"
    finally:
        source.close()
        services.stop()
    assert EmbeddedPostgres(data_dir).running_pid() is None
