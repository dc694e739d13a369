"""The ingest loop over the in-process transport into a real TimescaleDB.

What goes in comes out exactly once, by event_id; restarts resume from the offsets
stored with the data; malformed messages end in ``rejects``; a database that drops
its connections or is unreachable for a while loses and duplicates nothing.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from fleetwatch.config import RuleSettings
from fleetwatch.model import TELEMETRY_TOPIC, TOPICS, Telemetry
from fleetwatch.pipeline.ingest import Ingestor, IngestParams
from fleetwatch.store.db import DatabaseUnavailable, connect
from fleetwatch.store.writer import Batch, OffsetConflict, copy_events, telemetry_row, write_batch
from fleetwatch.transport.local import LocalBroker
from tests.integration.ingest_helpers import (
    Running,
    malformed_corpus,
    produce,
    rejects,
    simulate,
    stored_event_ids,
)
from tests.polling import wait_until

GROUP = "test-ingest"


def ingestor(broker: LocalBroker, dsn: str, **params: Any) -> Ingestor:
    return Ingestor(
        IngestParams(group=GROUP, **params),
        broker.consumer(GROUP),
        lambda: connect(dsn),
    )


def end_offsets(broker: LocalBroker) -> dict[tuple[str, int], int]:
    return {
        (topic, p): end
        for topic in TOPICS
        for p, end in enumerate(broker.end_offsets(topic))
        if end
    }


def stored_offsets(conn: psycopg.Connection[tuple[object, ...]]) -> dict[tuple[str, int], int]:
    rows = conn.execute(
        "SELECT topic, partition, next_offset FROM ingest_offsets WHERE consumer_group = %s",
        (GROUP,),
    ).fetchall()
    conn.rollback()
    return {(str(t), int(str(p))): int(str(o)) for t, p, o in rows}


def test_every_event_is_stored_exactly_once(db_dsn: str) -> None:
    messages = simulate(vehicles=40, seconds=90)
    broker = LocalBroker(6)
    total = produce(broker.producer(), messages)
    with Running(ingestor(broker, db_dsn, batch_max=700)) as running:
        stats = running.wait_consumed(total)
    assert stats.stored == total
    assert stats.rejected == 0
    assert stats.batches > 1
    with connect(db_dsn) as conn:
        assert stored_event_ids(conn) == Counter(str(m.event_id) for m in messages)
        assert stored_offsets(conn) == end_offsets(broker)
        # step_km adds up to each vehicle's odometer travel: no distance lost or doubled.
        rows = conn.execute(
            "SELECT vehicle_id, sum(step_km), max(odometer_km) - min(odometer_km)"
            " FROM telemetry GROUP BY vehicle_id"
        ).fetchall()
        assert len(rows) == 40
        for vehicle, steps, travel in rows:
            assert steps == pytest.approx(travel, abs=1e-6), vehicle
        latest = conn.execute(
            "SELECT count(*) FROM vehicles v WHERE last_seen ="
            " (SELECT max(time) FROM telemetry t WHERE t.vehicle_id = v.vehicle_id)"
        ).fetchone()
        assert latest == (40,)


def test_restart_resumes_from_the_stored_offsets(db_dsn: str) -> None:
    messages = simulate(vehicles=20, seconds=60)
    first, second = messages[: len(messages) // 2], messages[len(messages) // 2 :]
    broker = LocalBroker(4)
    produce(broker.producer(), first)
    with Running(ingestor(broker, db_dsn, batch_max=300)) as running:
        running.wait_consumed(len(first))
    produce(broker.producer(), second)
    # A new consumer of the same group on this broker would start from offset 0: only the
    # offsets in the database keep it from reading the first half again.
    with Running(ingestor(broker, db_dsn, batch_max=300)) as running:
        stats = running.wait_consumed(len(second))
    assert stats.consumed == len(second)
    with connect(db_dsn) as conn:
        assert stored_event_ids(conn) == Counter(str(m.event_id) for m in messages)
        # The odometer of a vehicle seen before the restart continues from the stored row.
        rows = conn.execute(
            "SELECT vehicle_id, sum(step_km), max(odometer_km) - min(odometer_km)"
            " FROM telemetry GROUP BY vehicle_id"
        ).fetchall()
        for vehicle, steps, travel in rows:
            assert steps == pytest.approx(travel, abs=1e-6), vehicle


def test_a_vehicle_silent_since_before_a_restart_still_gets_its_silence_alert(
    db_dsn: str,
) -> None:
    """The vehicle sends nothing after the restart, so only the partition it is stored
    with tells the new consumer to watch it."""
    messages = simulate(vehicles=8, seconds=150)
    silent = messages[0].vehicle_id
    cut = min(m.time for m in messages) + timedelta(seconds=40)
    before = [m for m in messages if m.time < cut]
    after = [m for m in messages if m.time >= cut and m.vehicle_id != silent]
    last = max(m.time for m in before if m.vehicle_id == silent and isinstance(m, Telemetry))
    broker = LocalBroker(4)
    produce(broker.producer(), before)
    with Running(ingestor(broker, db_dsn, batch_max=300)) as running:
        running.wait_consumed(len(before))

    def silence_alerts() -> list[tuple[object, ...]]:
        with connect(db_dsn) as conn:
            rows = conn.execute(
                "SELECT vehicle_id, state, first_seen, fired_at FROM alerts"
                " WHERE rule = 'vehicle_silent'"
            ).fetchall()
            conn.rollback()
        return rows

    assert silence_alerts() == []
    produce(broker.producer(), after)
    with Running(ingestor(broker, db_dsn, batch_max=300)) as running:
        running.wait_consumed(len(after))
        # The watermark passes the silence once every partition has caught up.
        wait_until(lambda: bool(silence_alerts()), timeout_s=30, what="a silence alert")
    silent_after = timedelta(seconds=RuleSettings().silent_after_s)
    assert silence_alerts() == [(silent, "firing", last, last + silent_after)]


def test_malformed_messages_end_in_rejects_and_nothing_else_is_lost(db_dsn: str) -> None:
    messages = simulate(vehicles=10, seconds=30)
    sample = next(m for m in messages if isinstance(m, Telemetry))
    corpus = malformed_corpus(sample)
    broker = LocalBroker(3)
    producer = broker.producer()
    half = len(messages) // 2
    produce(producer, messages[:half])
    for bad in corpus:
        producer.produce(bad.topic, bad.key or b"", bad.value)
    produce(producer, messages[half:])
    total = len(messages) + len(corpus)
    with Running(ingestor(broker, db_dsn, batch_max=200)) as running:
        stats = running.wait_consumed(total)
    assert stats.rejected == len(corpus)
    assert stats.stored == len(messages)
    with connect(db_dsn) as conn:
        assert stored_event_ids(conn) == Counter(str(m.event_id) for m in messages)
        found = rejects(conn)
    assert len(found) == len(corpus)
    reasons = sorted(reason.lower() for _, _, reason, _ in found)
    for bad in corpus:
        assert any(bad.reason_has.lower() in r for r in reasons), bad.reason_has
    assert {size for _, _, _, size in found} == {len(bad.value) for bad in corpus}


def test_dropped_connections_lose_and_duplicate_nothing(db_dsn: str, pg_dsn: str) -> None:
    messages = simulate(vehicles=30, seconds=120)
    broker = LocalBroker(6)
    producer = broker.producer()
    pids: list[int] = []

    def factory() -> psycopg.Connection[Any]:
        conn = connect(db_dsn)
        pids.append(conn.info.backend_pid)
        return conn

    runner = Running(
        Ingestor(IngestParams(group=GROUP, batch_max=400), broker.consumer(GROUP), factory)
    )
    chunk = len(messages) // 4
    with runner, psycopg.connect(pg_dsn, autocommit=True) as admin:
        for i in range(4):
            produce(producer, messages[i * chunk : (i + 1) * chunk if i < 3 else None])
            wait_until(lambda: runner.stats().consumed > 0 and pids != [], what="a first batch")
            # Kill the ingestor's connection wherever it is: mid-COPY, idle or reading.
            admin.execute("SELECT pg_terminate_backend(%s)", (pids[-1],))
        runner.wait_consumed(len(messages))
    assert len(pids) >= 2, "the connection was never re-opened"
    with connect(db_dsn) as conn:
        assert stored_event_ids(conn) == Counter(str(m.event_id) for m in messages)
        assert stored_offsets(conn) == end_offsets(broker)


def test_unreachable_database_is_a_visible_state_and_recovers(db_dsn: str) -> None:
    messages = simulate(vehicles=10, seconds=20)
    broker = LocalBroker(2)
    produce(broker.producer(), messages)
    reachable = threading.Event()

    def factory() -> psycopg.Connection[Any]:
        if not reachable.is_set():
            raise DatabaseUnavailable("cannot connect to the database at test: refused")
        return connect(db_dsn)

    with Running(Ingestor(IngestParams(group=GROUP), broker.consumer(GROUP), factory)) as running:
        wait_until(lambda: running.stats().state == "db-down", what="state db-down")
        assert running.stats().stored == 0
        assert "refused" in (running.stats().last_error or "")
        reachable.set()
        stats = running.wait_consumed(len(messages))
        wait_until(lambda: running.stats().state == "running", what="state running")
    assert stats.stored == len(messages)
    with connect(db_dsn) as conn:
        assert stored_event_ids(conn) == Counter(str(m.event_id) for m in messages)


def test_a_write_with_moved_offsets_is_refused_whole(db_dsn: str) -> None:
    messages = [m for m in simulate(vehicles=2, seconds=5) if isinstance(m, Telemetry)]
    from fleetwatch.store.writer import telemetry_row

    tp = (TELEMETRY_TOPIC, 0)
    with connect(db_dsn) as conn:
        first = Batch(group=GROUP, offsets={tp: 5}, expected_offsets={tp: None})
        first.telemetry = [telemetry_row(m, 0.0) for m in messages[:5]]
        write_batch(conn, first)
        # A consumer that still believes nothing was stored must not write the same range.
        stale = Batch(group=GROUP, offsets={tp: 5}, expected_offsets={tp: None})
        stale.telemetry = [telemetry_row(m, 0.0) for m in messages[:5]]
        with pytest.raises(OffsetConflict):
            write_batch(conn, stale)
        count = conn.execute("SELECT count(*) FROM telemetry").fetchone()
        assert count == (5,)
        assert stored_offsets(conn) == {tp: 5}


def test_stats_count_what_is_committed(db_dsn: str) -> None:
    messages = simulate(vehicles=5, seconds=10)
    broker = LocalBroker(2)
    produce(broker.producer(), messages)
    started = datetime.now(timezone.utc)
    with Running(ingestor(broker, db_dsn)) as running:
        stats = running.wait_consumed(len(messages))
        wait_until(lambda: running.stats().lag == 0, what="lag 0")
        # Idle time grows once nothing arrives (--stop-when-idle relies on it).
        wait_until(lambda: running.stats().idle_s > 0.5, what="idle")
    assert stats.consumed == stats.stored + stats.rejected
    assert stats.events_per_s >= 0
    assert running.stats().state == "stopped"
    with connect(db_dsn) as conn:
        updated = conn.execute("SELECT min(updated_at) FROM ingest_offsets").fetchone()
        assert updated is not None and updated[0] >= started.replace(microsecond=0)


def test_two_consumers_owning_the_same_partitions_still_store_everything_once(
    db_dsn: str,
) -> None:
    """A consumer that lost its partitions without noticing (a zombie) keeps consuming
    them: the offset fence refuses its writes, it re-reads from the stored offsets, and
    the data stays exactly once."""
    messages = simulate(vehicles=40, seconds=60)
    broker = LocalBroker(4)
    producer = broker.producer()
    third = len(messages) // 3
    produce(producer, messages[:third])
    with (
        Running(ingestor(broker, db_dsn, batch_max=250)) as one,
        Running(ingestor(broker, db_dsn, batch_max=350)) as two,
    ):
        produce(producer, messages[third : 2 * third])
        produce(producer, messages[2 * third :])

        def all_stored() -> bool:
            with connect(db_dsn) as conn:
                return stored_offsets(conn) == end_offsets(broker)

        wait_until(all_stored, 120, "every partition's offset at its end")
        wait_until(lambda: one.stats().lag == 0 and two.stats().lag == 0, 60, "both caught up")
    # Between them they committed every event once (either may have won every race).
    assert one.stats().stored + two.stats().stored == len(messages)
    with connect(db_dsn) as conn:
        assert stored_event_ids(conn) == Counter(str(m.event_id) for m in messages)


def test_alerts_are_resumed_only_by_the_owner_of_their_stream(db_dsn: str) -> None:
    """A consumer that owns a vehicle's telemetry partition but not its perception
    partition must leave the vehicle's collision alert (driven by perception) alone."""
    telemetry = [m for m in simulate(vehicles=1, seconds=40) if isinstance(m, Telemetry)]
    vehicle = telemetry[0].vehicle_id
    with connect(db_dsn) as conn:
        conn.execute(
            "INSERT INTO alerts (vehicle_id, rule, state, severity, first_seen, last_seen,"
            " fired_at, value, summary) VALUES (%s, 'collision_risk', 'firing', 'critical',"
            " %s, %s, %s, 1.2, 'pedestrian TTC 1.2 s at 6 m')",
            (vehicle, telemetry[0].time, telemetry[0].time, telemetry[0].time),
        )
        conn.execute(
            "INSERT INTO alerts (vehicle_id, rule, state, severity, first_seen, last_seen,"
            " fired_at, value, summary) VALUES (%s, 'low_battery', 'firing', 'warning',"
            " %s, %s, %s, 15, 'battery 15 %%')",
            (vehicle, telemetry[0].time, telemetry[0].time, telemetry[0].time),
        )
        conn.commit()
    broker = LocalBroker(2)
    produce(broker.producer(), telemetry)
    only_telemetry = Ingestor(
        IngestParams(group=GROUP, topics={TELEMETRY_TOPIC: TELEMETRY_TOPIC}),
        broker.consumer(GROUP),
        lambda: connect(db_dsn),
    )
    with Running(only_telemetry) as running:
        running.wait_consumed(len(telemetry))
    with connect(db_dsn) as conn:
        states = dict(
            conn.execute(
                "SELECT rule, state FROM alerts WHERE vehicle_id = %s", (vehicle,)
            ).fetchall()
        )
    # Telemetry 40 s past the breach would resolve the collision alert (ttc_clear_s is
    # 5 s) if this consumer had resumed it; the simulated battery is well above 22 %,
    # so the low-battery alert, which telemetry drives, is resolved by this consumer.
    assert states == {"collision_risk": "firing", "low_battery": "resolved"}


def _store_old_telemetry(dsn: str, sample: Telemetry, age: timedelta) -> None:
    """One telemetry row ``age`` old, written directly (no offsets, no rollups)."""
    old = sample.model_copy(update={"time": sample.time - age, "event_id": uuid.uuid4()})
    with connect(dsn) as conn, conn.transaction(), conn.cursor() as cur:
        copy_events(cur, [telemetry_row(old, 0.0)], [], [])


def _old_rows(dsn: str, age: timedelta) -> int:
    with connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM telemetry WHERE time < now() - %s::interval", (age,)
        ).fetchone()
        conn.rollback()
    assert row is not None
    return int(row[0])


def test_the_loop_drops_raw_events_past_the_retention_periodically(db_dsn: str) -> None:
    messages = simulate(vehicles=5, seconds=20)
    sample = next(m for m in messages if isinstance(m, Telemetry))
    age = timedelta(days=40)
    _store_old_telemetry(db_dsn, sample, age)
    broker = LocalBroker(2)
    total = produce(broker.producer(), messages)
    params = {"retention_days": 30, "retention_every_s": 0.2}
    with Running(ingestor(broker, db_dsn, **params)) as running:
        running.wait_consumed(total)
        wait_until(lambda: _old_rows(db_dsn, timedelta(days=30)) == 0, what="retention")
        # And again later: it is periodic, not only at start.
        _store_old_telemetry(db_dsn, sample, age)
        wait_until(lambda: _old_rows(db_dsn, timedelta(days=30)) == 0, what="second retention")
    with connect(db_dsn) as conn:
        assert stored_event_ids(conn) == Counter(str(m.event_id) for m in messages)


def test_without_a_retention_the_loop_keeps_old_events(db_dsn: str) -> None:
    messages = simulate(vehicles=3, seconds=10)
    sample = next(m for m in messages if isinstance(m, Telemetry))
    _store_old_telemetry(db_dsn, sample, timedelta(days=400))
    broker = LocalBroker(2)
    total = produce(broker.producer(), messages)
    with Running(ingestor(broker, db_dsn, retention_every_s=0.0)) as running:
        running.wait_consumed(total)
    assert _old_rows(db_dsn, timedelta(days=30)) == 1
