"""The test servers are the real thing: TimescaleDB hypertables and a Kafka consumer group."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import psycopg
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.polling import wait_until

PARTITIONS = 6
PER_PARTITION = 10
T0 = datetime(2025, 1, 6, 8, 0, tzinfo=timezone.utc)


# --------------------------------------------------------------------------- TimescaleDB


def _probe_table(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """A hypertable of our own, next to whatever schema the migrations put in the template."""
    conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    conn.execute(
        "CREATE TABLE probe_readings ("
        " time timestamptz NOT NULL, vehicle_id text NOT NULL, speed_kmh double precision)"
    )
    conn.execute("SELECT create_hypertable('probe_readings', by_range('time', INTERVAL '1 day'))")


def test_hypertable_is_created_and_listed(db_dsn: str) -> None:
    with psycopg.connect(db_dsn) as conn:
        _probe_table(conn)
        rows = [(T0 + timedelta(days=d), "AV-1", 50.0) for d in range(3)]
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO probe_readings VALUES (%s, %s, %s)", rows)

        hypertables = conn.execute(
            "SELECT hypertable_name, num_dimensions FROM timescaledb_information.hypertables"
            " WHERE hypertable_name = 'probe_readings'"
        ).fetchall()
        chunks = conn.execute(
            "SELECT count(*) FROM timescaledb_information.chunks "
            "WHERE hypertable_name = 'probe_readings'"
        ).fetchone()

    assert hypertables == [("probe_readings", 1)]
    assert chunks == (3,)  # one chunk per day of data


def test_time_bucket_groups_readings(db_dsn: str) -> None:
    readings = [
        (T0 + timedelta(seconds=10), 30.0),
        (T0 + timedelta(seconds=50), 50.0),
        (T0 + timedelta(minutes=1, seconds=5), 70.0),
        (T0 + timedelta(minutes=3), 10.0),
    ]
    with psycopg.connect(db_dsn) as conn:
        _probe_table(conn)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO probe_readings VALUES (%s, 'AV-1', %s)",
                readings,
            )
        buckets = conn.execute(
            "SELECT time_bucket(INTERVAL '1 minute', time) AS minute, count(*), avg(speed_kmh)"
            " FROM probe_readings GROUP BY minute ORDER BY minute"
        ).fetchall()

    assert buckets == [
        (T0, 2, 40.0),
        (T0 + timedelta(minutes=1), 1, 70.0),
        (T0 + timedelta(minutes=3), 1, 10.0),
    ]


def _tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
    return {str(row[0]) for row in rows}


def test_db_dsn_is_a_private_clone_of_the_template(
    db_dsn: str, pg_dsn: str, template_db: str
) -> None:
    with psycopg.connect(db_dsn) as conn:
        _probe_table(conn)
    other = f"fwtest_probe_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(other), sql.Identifier(template_db)
            )
        )
    try:
        fresh = _tables(make_conninfo(pg_dsn, dbname=other))
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(other)))

    assert "public.probe_readings" not in fresh
    assert _tables(db_dsn) - fresh == {"public.probe_readings"}


# --------------------------------------------------------------------------- Kafka


@contextmanager
def _consumer(bootstrap: str, group: str) -> Iterator[Consumer]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
        }
    )
    try:
        yield consumer
    finally:
        consumer.close()


def _poll(consumer: Consumer, received: dict[int, list[Message]]) -> None:
    message = consumer.poll(0.1)
    if message is None:
        return
    error = message.error()
    if error is not None and error.code() != KafkaError._PARTITION_EOF:
        raise AssertionError(f"consumer error: {error}")
    if error is None:
        received.setdefault(message.partition() or 0, []).append(message)


def _assigned(consumer: Consumer) -> set[int]:
    return {tp.partition for tp in consumer.assignment()}


def _produce(bootstrap: str, topic: str, batch: str, per_partition: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    failures: list[str] = []

    def delivered(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failures.append(str(error))

    for partition in range(PARTITIONS):
        for n in range(per_partition):
            value = f"{batch}:{partition}:{n}".encode()
            producer.produce(topic, value=value, partition=partition, on_delivery=delivered)
    assert producer.flush(30) == 0
    assert failures == []


def test_consumer_group_splits_partitions_and_resumes_from_commits(
    kafka_bootstrap: str, kafka_topic_factory: Callable[..., str]
) -> None:
    topic = kafka_topic_factory(PARTITIONS)
    group = f"fwtest-group-{uuid.uuid4().hex[:8]}"
    everything = set(range(PARTITIONS))

    with _consumer(kafka_bootstrap, group) as first, _consumer(kafka_bootstrap, group) as second:
        first.subscribe([topic])
        second.subscribe([topic])
        received: dict[Consumer, dict[int, list[Message]]] = {first: {}, second: {}}

        def split_settled() -> bool:
            for consumer, got in received.items():
                _poll(consumer, got)
            a, b = _assigned(first), _assigned(second)
            return bool(a) and bool(b) and not (a & b) and (a | b) == everything

        wait_until(split_settled, timeout_s=60, what="two consumers sharing all partitions")

        _produce(kafka_bootstrap, topic, "one", PER_PARTITION)

        def all_consumed() -> bool:
            for consumer, got in received.items():
                _poll(consumer, got)
            return sum(len(m) for got in received.values() for m in got.values()) >= (
                PARTITIONS * PER_PARTITION
            )

        wait_until(all_consumed, timeout_s=60, what="every produced message consumed")

        for consumer, got in received.items():
            assert set(got) == _assigned(consumer), "a consumer read outside its assignment"
        assert not set(received[first]) & set(received[second])
        assert set(received[first]) | set(received[second]) == everything
        values = sorted(
            m.value() or b"" for got in received.values() for ms in got.values() for m in ms
        )
        assert values == sorted(
            f"one:{p}:{n}".encode() for p in range(PARTITIONS) for n in range(PER_PARTITION)
        )
        first.commit(asynchronous=False)
        second.commit(asynchronous=False)

    _produce(kafka_bootstrap, topic, "two", 1)

    with _consumer(kafka_bootstrap, group) as restarted:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        committed = restarted.committed(partitions, timeout=30)
        assert [tp.offset for tp in committed] == [PER_PARTITION] * PARTITIONS

        restarted.subscribe([topic])
        resumed: dict[int, list[Message]] = {}

        def every_partition_read() -> bool:
            _poll(restarted, resumed)
            return set(resumed) == everything

        wait_until(
            every_partition_read,
            timeout_s=60,
            what="the restarted consumer reading every partition",
        )
        first_seen = {p: (msgs[0].offset(), msgs[0].value()) for p, msgs in resumed.items()}
        assert first_seen == {p: (PER_PARTITION, f"two:{p}:0".encode()) for p in everything}
