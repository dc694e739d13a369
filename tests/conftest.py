"""Shared fixtures: the real PostgreSQL/TimescaleDB and Kafka servers, fresh databases and topics.

Where the servers come from, first match wins:
1. FLEETWATCH_TEST_DSN / FLEETWATCH_TEST_KAFKA from the environment (`tests/check.sh` sets them);
2. the servers `python tests/services.py up` provisioned, started here if they are built but
   stopped (a few seconds; they are left running, like `up` leaves them).
Otherwise a test that needs them is skipped with the reason, except under CI=true, where a
missing service fails the test: CI must never pass by skipping.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import NoReturn, Protocol

import psycopg
import pytest
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # re-exported
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

TEST_DB_PREFIX = "fwtest"
PG_FIXTURES = {"pg_dsn", "db_dsn", "template_db"}
KAFKA_FIXTURES = {"kafka_bootstrap", "kafka_topic_factory"}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _unavailable(reason: str) -> NoReturn:
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing service fails the run)", pytrace=False)
    pytest.skip(reason)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by the services they use, so `-m "not kafka"` works without extra marks."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & PG_FIXTURES:
            item.add_marker(pytest.mark.postgres)
        if names & KAFKA_FIXTURES:
            item.add_marker(pytest.mark.kafka)


# --------------------------------------------------------------------------- provisioning


@cache
def _services() -> ModuleType:
    path = Path(__file__).with_name("services.py")
    spec = importlib.util.spec_from_file_location("fleetwatch_test_services", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


@cache
def _provisioned() -> tuple[str, str] | str:
    """(dsn, bootstrap) of the locally provisioned servers, or why there are none."""
    services = _services()
    states = services.status()
    if set(states.values()) != {"running"}:
        foreign = sorted(name for name, state in states.items() if state == "foreign")
        if foreign:
            return (
                f"the {' and '.join(foreign)} test port is held by a process that "
                "tests/services.py did not start (see `python tests/services.py status`)"
            )
        if not services.is_built():
            return (
                "no test servers: run `python tests/services.py up` (or `bash tests/check.sh`), "
                "or set FLEETWATCH_TEST_DSN and FLEETWATCH_TEST_KAFKA"
            )
        try:
            services.up(build=False)
        except services.ServiceError as exc:
            return f"could not start the test servers: {exc}"
    s = services.settings()
    return str(s.pg_dsn), str(s.kafka_bootstrap)


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """DSN of a PostgreSQL server with TimescaleDB available, as a superuser."""
    dsn = os.environ.get("FLEETWATCH_TEST_DSN")
    if not dsn:
        found = _provisioned()
        if isinstance(found, str):
            _unavailable(found)
        dsn = found[0]
    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        pytest.fail(f"PostgreSQL at {dsn} does not answer: {exc}", pytrace=False)
    return dsn


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """bootstrap.servers of an Apache Kafka broker where tests may create topics."""
    bootstrap = os.environ.get("FLEETWATCH_TEST_KAFKA")
    if not bootstrap:
        found = _provisioned()
        if isinstance(found, str):
            _unavailable(found)
        bootstrap = found[1]
    try:
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=15)
    except Exception as exc:  # KafkaException, or a timeout
        pytest.fail(f"Kafka at {bootstrap} does not answer: {exc}", pytrace=False)
    return bootstrap


# --------------------------------------------------------------------------- databases


def _admin(pg_dsn: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(pg_dsn, autocommit=True)


def _drop_database(pg_dsn: str, name: str) -> None:
    with _admin(pg_dsn) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def _drop_leftovers(pg_dsn: str) -> None:
    """Drop test databases of earlier runs on this machine whose process is gone."""
    host = str(conninfo_to_dict(pg_dsn).get("host", ""))
    if host not in {"127.0.0.1", "localhost", "::1"} and not host.startswith("/"):
        return  # other machines' pids mean nothing here
    pattern = re.compile(rf"^{TEST_DB_PREFIX}_(\d+)_")
    with _admin(pg_dsn) as conn:
        names = [row[0] for row in conn.execute("SELECT datname FROM pg_database")]
    for name in names:
        m = pattern.match(str(name))
        if m and not Path(f"/proc/{m.group(1)}").exists():
            _drop_database(pg_dsn, str(name))


class _Migrator(Protocol):
    def __call__(self, conn: psycopg.Connection[tuple[object, ...]]) -> object: ...


def _migrations() -> _Migrator | None:
    """fleetwatch.store.migrate.apply_migrations, once that module exists."""
    if importlib.util.find_spec("fleetwatch.store.migrate") is None:
        return None
    apply: _Migrator = importlib.import_module("fleetwatch.store.migrate").apply_migrations
    return apply


@pytest.fixture(scope="session")
def template_db(pg_dsn: str) -> Iterator[str]:
    """Name of a database with the schema applied, cloned by `db_dsn` for every test."""
    _drop_leftovers(pg_dsn)
    name = f"{TEST_DB_PREFIX}_{os.getpid()}_tpl_{uuid.uuid4().hex[:8]}"
    with _admin(pg_dsn) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        apply_migrations = _migrations()
        if apply_migrations is not None:
            with psycopg.connect(make_conninfo(pg_dsn, dbname=name)) as conn:
                apply_migrations(conn)
        with _admin(pg_dsn) as conn:
            # No one may be connected to a template while it is cloned; TimescaleDB's
            # scheduler leaves databases that refuse connections alone.
            conn.execute(
                sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false").format(
                    sql.Identifier(name)
                )
            )
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                [name],
            )
        yield name
    finally:
        _drop_database(pg_dsn, name)


def _clone(pg_dsn: str, template: str, name: str, timeout_s: float = 30.0) -> None:
    statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
        sql.Identifier(name), sql.Identifier(template)
    )
    deadline = time.monotonic() + timeout_s
    with _admin(pg_dsn) as conn:
        while True:
            try:
                conn.execute(statement)
                return
            except psycopg.errors.ObjectInUse:
                # a background worker was still leaving the template
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


@pytest.fixture
def db_dsn(pg_dsn: str, template_db: str) -> Iterator[str]:
    """DSN of a fresh database with the schema applied, dropped after the test."""
    name = f"{TEST_DB_PREFIX}_{os.getpid()}_{uuid.uuid4().hex[:12]}"
    _clone(pg_dsn, template_db, name)
    try:
        yield make_conninfo(pg_dsn, dbname=name)
    finally:
        _drop_database(pg_dsn, name)


# --------------------------------------------------------------------------- Kafka topics


class TopicFactory(Protocol):
    def __call__(self, partitions: int = 6, *, config: dict[str, str] | None = None) -> str: ...


@pytest.fixture
def kafka_topic_factory(
    kafka_bootstrap: str, request: pytest.FixtureRequest
) -> Iterator[TopicFactory]:
    """Create uniquely named topics (`factory(partitions)` returns the name); deleted after."""
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    created: list[str] = []
    label = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-")[:60]

    def create(partitions: int = 6, *, config: dict[str, str] | None = None) -> str:
        name = f"{TEST_DB_PREFIX}-{label}-{uuid.uuid4().hex[:8]}"
        topic = NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})
        admin.create_topics([topic], operation_timeout=30)[name].result(timeout=60)
        created.append(name)
        _wait_until(
            lambda: _leaders_known(admin, name, partitions),
            timeout_s=30,
            what=f"all {partitions} partitions of {name} have a leader",
        )
        return name

    yield create
    if created:
        for future in admin.delete_topics(created, operation_timeout=30).values():
            future.result(timeout=60)


def _leaders_known(admin: AdminClient, topic: str, partitions: int) -> bool:
    metadata = admin.list_topics(topic=topic, timeout=5).topics.get(topic)
    if metadata is None or metadata.error is not None:
        return False
    found = metadata.partitions.values()
    return len(found) == partitions and all(p.leader >= 0 and p.error is None for p in found)


def _wait_until(condition: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s:.0f} s for: {what}")
        time.sleep(0.05)
