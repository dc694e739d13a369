"""`fleetwatch ingest` as a real process on real Kafka and TimescaleDB.

Killed with SIGKILL mid-stream and restarted, two processes sharing one consumer
group, malformed messages mixed in, SIGTERM, bad flags: every produced event is
stored exactly once (by event_id) and every malformed message is in ``rejects``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path

import psycopg
import pytest
from confluent_kafka.admin import AdminClient
from psycopg.conninfo import make_conninfo

from fleetwatch.model import TOPICS, Message, Telemetry
from fleetwatch.pipeline.ingest import Ingestor, IngestParams
from fleetwatch.store.db import connect
from fleetwatch.transport.kafka import KafkaConsumer, KafkaProducer, ensure_topics
from tests.integration.ingest_helpers import (
    Running,
    malformed_corpus,
    produce,
    rejects,
    simulate,
    stored_event_ids,
)
from tests.polling import wait_until

PARTITIONS = 6


@pytest.fixture
def prefix(kafka_bootstrap: str) -> Iterator[str]:
    """A topic prefix with the three topics created, deleted after the test."""
    name = f"fwtest-{uuid.uuid4().hex[:10]}-"
    topics = [name + t for t in TOPICS]
    ensure_topics(kafka_bootstrap, topics, PARTITIONS)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})

    def ready() -> bool:
        found = admin.list_topics(timeout=10).topics
        return all(
            t in found and all(p.leader >= 0 for p in found[t].partitions.values()) for t in topics
        )

    wait_until(ready, 30, "topics with leaders")
    yield name
    for future in admin.delete_topics(topics, operation_timeout=30).values():
        future.result(timeout=60)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of a child process: no user config, no FLEETWATCH_* overrides."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLEETWATCH_")}
    clean["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    clean["PYTHONUNBUFFERED"] = "1"
    return clean


def ingest(
    bootstrap: str, dsn: str, prefix: str, env: dict[str, str], *extra: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fleetwatch",
            "ingest",
            "--kafka",
            bootstrap,
            "--db",
            dsn,
            "--topic-prefix",
            prefix,
            "--group",
            f"{prefix}group",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def finish(process: subprocess.Popen[str], timeout_s: float = 120) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout_s)
    return process.returncode, out, err


def send(bootstrap: str, messages: Sequence[Message], prefix: str) -> None:
    producer = KafkaProducer(bootstrap)
    produce(producer, messages, prefix)
    assert producer.flush(60) == 0
    producer.close()


def stored_count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM telemetry) + (SELECT count(*) FROM perception_events)"
            " + (SELECT count(*) FROM driving_events)"
        ).fetchone()
    return int(str(row[0])) if row else 0


def more_than(dsn: str, count: int) -> bool:
    return stored_count(dsn) > count


def members_with_partitions(bootstrap: str, group: str, count: int) -> bool:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    description = admin.describe_consumer_groups([group])[group].result(timeout=10)
    owning = [m for m in description.members if m.assignment.topic_partitions]
    return len(owning) >= count


def consumed_of(stdout: str) -> int:
    match = re.search(r"done: consumed ([\d,]+) messages", stdout)
    assert match, stdout
    return int(match.group(1).replace(",", ""))


def expect_exactly(dsn: str, messages: Sequence[Message]) -> None:
    with psycopg.connect(dsn) as conn:
        stored = stored_event_ids(conn)
    expected = Counter(str(m.event_id) for m in messages)
    duplicates = {k: n for k, n in stored.items() if n > 1}
    missing = len(set(expected) - set(stored))
    assert not duplicates, f"{len(duplicates)} events stored twice"
    assert missing == 0, f"{missing} events missing"
    assert stored == expected


def test_sigkill_twice_mid_stream_loses_and_duplicates_nothing(
    kafka_bootstrap: str, db_dsn: str, prefix: str, env: dict[str, str]
) -> None:
    messages = simulate(vehicles=150, seconds=150)
    half = len(messages) // 2
    send(kafka_bootstrap, messages[:half], prefix)
    rest = threading.Thread(target=send, args=(kafka_bootstrap, messages[half:], prefix))
    last = 0
    for kill in range(2):
        process = ingest(kafka_bootstrap, db_dsn, prefix, env, "--batch-max", "300")
        wait_until(partial(more_than, db_dsn, last), 90, "more rows stored")
        if kill == 0:
            rest.start()  # the second half arrives while the ingestor runs and dies
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        last = stored_count(db_dsn)
    rest.join(120)
    assert last < len(messages), "the stream ended before the second kill"
    process = ingest(kafka_bootstrap, db_dsn, prefix, env, "--stop-when-idle", "4")
    code, out, err = finish(process)
    assert code == 0, err
    assert "Traceback" not in err
    expect_exactly(db_dsn, messages)


def test_two_ingestors_in_one_group_share_the_work(
    kafka_bootstrap: str, db_dsn: str, prefix: str, env: dict[str, str]
) -> None:
    messages = simulate(vehicles=120, seconds=150)
    chunks = [
        messages[i : i + len(messages) // 10] for i in range(0, len(messages), len(messages) // 10)
    ]
    send(kafka_bootstrap, chunks[0], prefix)
    first = ingest(
        kafka_bootstrap, db_dsn, prefix, env, "--stop-when-idle", "15", "--batch-max", "500"
    )
    second = ingest(
        kafka_bootstrap, db_dsn, prefix, env, "--stop-when-idle", "15", "--batch-max", "500"
    )
    # The rest of the stream goes out once both members hold partitions.
    wait_until(
        partial(members_with_partitions, kafka_bootstrap, f"{prefix}group", 2), 60, "2 members"
    )
    for chunk in chunks[1:]:
        # Pace the stream so the group rebalances while data is still arriving.
        before = stored_count(db_dsn)
        send(kafka_bootstrap, chunk, prefix)
        wait_until(partial(more_than, db_dsn, before), 90, "progress")
    results = [finish(first), finish(second)]
    for code, _, err in results:
        assert code == 0, err
    consumed = [consumed_of(out) for _, out, _ in results]
    assert sum(consumed) == len(messages)
    assert all(n > 0 for n in consumed), consumed
    expect_exactly(db_dsn, messages)


def test_malformed_messages_through_kafka_end_in_rejects(
    kafka_bootstrap: str, db_dsn: str, prefix: str, env: dict[str, str]
) -> None:
    messages = simulate(vehicles=20, seconds=30)
    sample = next(m for m in messages if isinstance(m, Telemetry))
    corpus = malformed_corpus(sample)
    producer = KafkaProducer(kafka_bootstrap)
    half = len(messages) // 2
    produce(producer, messages[:half], prefix)
    for bad in corpus:
        producer.produce(prefix + bad.topic, bad.key or b"", bad.value)
    produce(producer, messages[half:], prefix)
    assert producer.flush(60) == 0
    code, out, err = finish(ingest(kafka_bootstrap, db_dsn, prefix, env, "--stop-when-idle", "3"))
    assert code == 0, err
    assert f"rejected {len(corpus)}" in out
    expect_exactly(db_dsn, messages)
    with psycopg.connect(db_dsn) as conn:
        found = rejects(conn)
    assert len(found) == len(corpus)
    for bad in corpus:
        assert any(bad.reason_has.lower() in reason.lower() for _, _, reason, _ in found)


def test_sigterm_commits_the_current_batch_and_exits_0(
    kafka_bootstrap: str, db_dsn: str, prefix: str, env: dict[str, str]
) -> None:
    messages = simulate(vehicles=100, seconds=120)
    send(kafka_bootstrap, messages, prefix)
    process = ingest(kafka_bootstrap, db_dsn, prefix, env, "--batch-max", "200")
    wait_until(lambda: stored_count(db_dsn) > 0, 90, "rows stored")
    process.send_signal(signal.SIGTERM)
    code, out, err = finish(process)
    assert code == 0, err
    assert "done: consumed" in out
    # Everything it says it consumed is committed, offsets included.
    with psycopg.connect(db_dsn) as conn:
        row = conn.execute("SELECT coalesce(sum(next_offset), 0) FROM ingest_offsets").fetchone()
    assert row is not None and int(str(row[0])) == consumed_of(out) == stored_count(db_dsn)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--kafka", "nonsense", "--db", "dbname=x"], "invalid Kafka address"),
        (["--kafka", "127.0.0.1:9092"], "a database is needed"),
        # The broker is checked first; the password never shows.
        (["--kafka", "127.0.0.1:1", "--db", "postgresql://u:pw@127.0.0.1:1/x"], "cannot reach"),
        (["--stop-when-idle", "2m", "--group", ""], "invalid setting ingest.group"),
    ],
)
def test_bad_flags_and_unreachable_services_are_one_sentence(
    args: list[str], words: str, env: dict[str, str]
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fleetwatch", "ingest", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode != 0
    assert words in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "pw@" not in result.stderr


def test_unreachable_database_is_one_sentence(kafka_bootstrap: str, env: dict[str, str]) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleetwatch",
            "ingest",
            "--kafka",
            kafka_bootstrap,
            "--db",
            "postgresql://u:pw@127.0.0.1:1/x",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1
    assert "cannot connect" in result.stderr
    assert "pw@" not in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unreachable_broker_is_one_sentence(db_dsn: str, env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fleetwatch", "ingest", "--kafka", "127.0.0.1:1", "--db", db_dsn],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1
    assert "cannot reach the Kafka broker at 127.0.0.1:1" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    # What it is waiting for is said before the wait.
    assert result.stdout == "fleetwatch ingest: reaching Kafka at 127.0.0.1:1…\n"


def test_an_unreachable_broker_is_found_before_the_database_is_migrated(
    pg_dsn: str, env: dict[str, str]
) -> None:
    name = f"fwtest_empty_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        dsn = make_conninfo(pg_dsn, dbname=name)
        result = subprocess.run(
            [sys.executable, "-m", "fleetwatch", "ingest", "--kafka", "127.0.0.1:1", "--db", dsn],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert result.returncode == 1
        assert "cannot reach the Kafka broker" in result.stderr
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            assert row.fetchone() == (0,)
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_missing_topics_are_created_and_said_so(
    kafka_bootstrap: str, db_dsn: str, env: dict[str, str]
) -> None:
    """A mistyped --topic-prefix creates topics nobody produces to: the output says so."""
    typo = f"fwtest-{uuid.uuid4().hex[:10]}-typo."
    try:
        code, out, err = finish(ingest(kafka_bootstrap, db_dsn, typo, env, "--stop-when-idle", "2"))
        assert code == 0, err
        created = re.search(r"created the missing topics (.*); nothing has been produced", out)
        assert created is not None, out
        assert created.group(1).split(", ") == sorted(typo + t for t in TOPICS)
        # Run again: the topics exist now and nothing is said about them.
        code, out, err = finish(ingest(kafka_bootstrap, db_dsn, typo, env, "--stop-when-idle", "2"))
        assert code == 0, err
        assert "created the missing topics" not in out
    finally:
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        for future in admin.delete_topics([typo + t for t in TOPICS]).values():
            future.result(timeout=60)


def test_an_unreachable_broker_is_a_state_of_the_loop_not_a_crash(db_dsn: str) -> None:
    ingestor = Ingestor(
        IngestParams(group="fwtest-down"),
        KafkaConsumer("127.0.0.1:1", "fwtest-down"),
        lambda: connect(db_dsn),
    )
    with Running(ingestor) as running:
        wait_until(lambda: running.stats().state == "broker-down", 60, "state broker-down")
        assert running.stats().last_error
    assert running.stats().state == "stopped"


def test_a_second_group_on_the_same_database_is_refused(
    kafka_bootstrap: str, db_dsn: str, prefix: str, env: dict[str, str]
) -> None:
    messages = simulate(vehicles=20, seconds=20)
    send(kafka_bootstrap, messages, prefix)
    code, _, err = finish(ingest(kafka_bootstrap, db_dsn, prefix, env, "--stop-when-idle", "3"))
    assert code == 0, err
    # Each group keeps its own offsets: another group would store every event again.
    code, out, err = finish(
        ingest(kafka_bootstrap, db_dsn, prefix, env, "--group", f"{prefix}other"), 60
    )
    assert code == 2
    assert f"consumed by group '{prefix}group'" in err
    assert err.count("\n") == 1
    expect_exactly(db_dsn, messages)


GAPS_SQL = """
WITH steps AS (
    SELECT vehicle_id, time,
           lead(time) OVER (PARTITION BY vehicle_id ORDER BY time) AS next_time,
           max(time) OVER () AS stream_end
    FROM telemetry
)
SELECT vehicle_id, time FROM steps
WHERE coalesce(next_time, stream_end) - time >= interval '30 seconds'
ORDER BY vehicle_id, time
"""


def test_silent_alerts_match_real_gaps_when_a_backlog_is_consumed_unevenly(
    kafka_bootstrap: str, db_dsn: str, prefix: str, env: dict[str, str]
) -> None:
    """Kafka hands a backlog over partition by partition; vehicles of the partitions
    still waiting must not look silent. Every silent alert is a real gap of 30 s or more,
    and every such gap has its alert."""
    simulate_cmd = [
        sys.executable, "-m", "fleetwatch", "simulate", "--kafka", kafka_bootstrap,
        "--vehicles", "200", "--backfill", "30m", "--dropouts", "--seed", "11",
        "--topic-prefix", prefix, "--partitions", str(PARTITIONS),
    ]  # fmt: skip
    produced = subprocess.run(simulate_cmd, capture_output=True, text=True, env=env, timeout=300)
    assert produced.returncode == 0, produced.stderr
    code, _, err = finish(
        ingest(kafka_bootstrap, db_dsn, prefix, env, "--stop-when-idle", "4"), 300
    )
    assert code == 0, err
    with psycopg.connect(db_dsn) as conn:
        gaps = [(str(v), t) for v, t in conn.execute(GAPS_SQL).fetchall()]
        silences = [
            (str(v), t)
            for v, t in conn.execute(
                "SELECT vehicle_id, first_seen FROM alerts WHERE rule = 'vehicle_silent'"
                " ORDER BY vehicle_id, first_seen"
            ).fetchall()
        ]
    assert gaps, "the simulated fleet had no dropouts to detect"
    assert silences == gaps
