"""Benchmark: latency of every TUI refresh query at 10 million telemetry rows, and the
cost of the rollup merge per ingested batch.

    python tests/benchmarks/bench_queries.py [--dsn DSN] [--vehicles 1000] [--hours 3]
        [--reuse] [--repeat 30] [--plain]
    python tests/benchmarks/bench_queries.py --embedded   # embedded start-up times only

Loads a seeded simulated fleet (the simulator's backfill: telemetry, perception and
driving events) into a database of its own on the server of ``--dsn`` (default:
the test server, ``tests/services.py env``) through the same path as the ingestor:
binary COPY plus the vehicles upsert plus ``rollups.merge`` per batch. With
``--reuse`` an already loaded database of the same size is kept. ``--plain`` loads
into a database without TimescaleDB. Prints the median and p95 latency of each query.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from fleetwatch.model import DrivingEvent, PerceptionEvent, Telemetry
from fleetwatch.sim.fleet import Fleet
from fleetwatch.store import migrate, queries, rollups, writer
from fleetwatch.store.queries import Window

START = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)
TICKS_PER_BATCH = 5  # 5 s of a 1,000-vehicle fleet: ~10,000 events, an ingestor batch


def _default_dsn() -> str:
    env = os.environ.get("FLEETWATCH_TEST_DSN")
    if env:
        return env
    services = Path(__file__).resolve().parents[1] / "services.py"
    out = subprocess.run(
        [sys.executable, str(services), "env"], capture_output=True, text=True, check=True
    ).stdout
    for line in out.splitlines():
        if line.startswith("FLEETWATCH_TEST_DSN="):
            return line.split("=", 1)[1]
    raise SystemExit("no test database: run tests/services.py up or pass --dsn")


def _database(server_dsn: str, name: str, fresh: bool, plain: bool) -> str:
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists and fresh:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            exists = None
        if not exists:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = make_conninfo(server_dsn, dbname=name)
    with psycopg.connect(dsn) as conn:
        if plain:
            if not migrate.applied_migrations(conn):
                for m in migrate.migrations():
                    conn.execute(sql.SQL(m.text))  # a trusted file of the package
                conn.execute("CREATE TABLE schema_migrations (version text, name text)")
                for m in migrate.migrations():
                    conn.execute(
                        "INSERT INTO schema_migrations VALUES (%s, %s)", (m.version, m.name)
                    )
                conn.commit()
        else:
            migrate.apply_migrations(conn)
    return dsn


def load(dsn: str, vehicles: int, hours: float) -> None:
    fleet = Fleet(vehicles, 7, START)
    ticks = int(hours * 3600)
    last_odometer: dict[str, float] = {}
    merge_s: list[float] = []
    merge_events: list[int] = []
    started = time.perf_counter()
    events = 0
    with psycopg.connect(dsn) as conn:
        for tick in range(0, ticks, TICKS_PER_BATCH):
            tel: list[tuple[Any, ...]] = []
            per: list[tuple[Any, ...]] = []
            drv: list[tuple[Any, ...]] = []
            for _ in range(min(TICKS_PER_BATCH, ticks - tick)):
                for m in fleet.step(fleet.next_time):
                    if isinstance(m, Telemetry):
                        previous = last_odometer.get(m.vehicle_id)
                        step = 0.0 if previous is None else max(0.0, m.odometer_km - previous)
                        last_odometer[m.vehicle_id] = m.odometer_km
                        tel.append(writer.telemetry_row(m, step))
                    elif isinstance(m, PerceptionEvent):
                        per.append(writer.perception_row(m))
                    elif isinstance(m, DrivingEvent):
                        drv.append(writer.driving_row(m))
            with conn.transaction(), conn.cursor() as cur:
                writer.copy_events(cur, tel, per, drv)
                t = time.perf_counter()
                rollups.merge(cur, tel, per, drv)
                merge_s.append(time.perf_counter() - t)
                merge_events.append(len(tel) + len(per) + len(drv))
            events += len(tel) + len(per) + len(drv)
            if (tick // TICKS_PER_BATCH) % 120 == 0:
                elapsed = time.perf_counter() - started
                print(
                    f"  loaded {tick / 3600:5.2f} h of {hours} h, {events:,} events, "
                    f"{events / elapsed:,.0f} events/s",
                    flush=True,
                )
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    total_merge = sum(merge_s)
    batch = statistics.median(merge_events)
    print(
        f"rollup merge: median {statistics.median(merge_s) * 1000:.1f} ms per batch of "
        f"{batch:,.0f} events, p95 {_p95(merge_s) * 1000:.1f} ms; "
        f"{sum(merge_events) / total_merge:,.0f} events/s of merge alone "
        f"({total_merge / sum(merge_events) * 1e6:.1f} us per event)"
    )


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def bench(dsn: str, repeat: int, end: datetime) -> None:
    now = end - timedelta(seconds=1)
    w15, w1, w24 = (Window.last(s, now) for s in ("15m", "1h", "24h"))
    with psycopg.connect(dsn) as conn:
        vehicle = conn.execute("SELECT min(vehicle_id) FROM vehicles").fetchone()
        assert vehicle is not None
        vid = str(vehicle[0])
        rows = conn.execute("SELECT count(*) FROM telemetry").fetchone()
        print(f"telemetry rows: {rows[0] if rows else 0:,}")
        # The event detail opens one event at a time: each call takes the next of the
        # latest driving events of many vehicles, so few of its pages are cached.
        events = itertools.cycle(
            conn.execute(
                "SELECT vehicle_id, time, event_id::text, type FROM driving_events"
                " WHERE time > %s ORDER BY time DESC LIMIT 200",
                (now - timedelta(hours=1),),
            ).fetchall()
        )
        conn.rollback()

        def event_context() -> object:
            vehicle_id, at, event_id, kind = next(events)
            return queries.event_context(conn, vehicle_id, at, event_id=event_id, event_type=kind)

        cases: list[tuple[str, Callable[[], object]]] = [
            ("fleet_kpis 15m", lambda: queries.fleet_kpis(conn, w15)),
            ("fleet_kpis 1h", lambda: queries.fleet_kpis(conn, w1)),
            ("fleet_kpis 24h", lambda: queries.fleet_kpis(conn, w24)),
            ("fleet_kpis 1h one vehicle", lambda: queries.fleet_kpis(conn, w1, vid)),
            ("vehicle_table 1h", lambda: queries.vehicle_table(conn, w1)),
            ("vehicle_table 24h", lambda: queries.vehicle_table(conn, w24)),
            ("vehicle_series 15m x120", lambda: queries.vehicle_series(conn, vid, w15, 120)),
            ("vehicle_series 1h x120", lambda: queries.vehicle_series(conn, vid, w1, 120)),
            ("vehicle_series 24h x120", lambda: queries.vehicle_series(conn, vid, w24, 120)),
            ("route_track 1h", lambda: queries.route_track(conn, vid, w1, 500)),
            ("route_track 24h", lambda: queries.route_track(conn, vid, w24, 500)),
            ("events_over_time 24h x60", lambda: queries.events_over_time(conn, w24, 60)),
            ("events_over_time 1h vehicle", lambda: queries.events_over_time(conn, w1, 60, vid)),
            ("events_by_cause 24h", lambda: queries.events_by_cause(conn, w24)),
            ("events_by_vehicle 24h", lambda: queries.events_by_vehicle(conn, w24)),
            ("worst_vehicles 24h", lambda: queries.worst_vehicles(conn, w24)),
            ("driving_events 24h", lambda: queries.driving_events(conn, w24)),
            ("perception_summary 1h", lambda: queries.perception_summary(conn, w1)),
            ("perception_summary 24h", lambda: queries.perception_summary(conn, w24)),
            ("perception_summary 1h vehicle", lambda: queries.perception_summary(conn, w1, vid)),
            ("near_misses 1h", lambda: queries.near_misses(conn, w1)),
            ("near_misses 24h", lambda: queries.near_misses(conn, w24)),
            ("alerts open", lambda: queries.alerts(conn, now)),
        ]
        # Not a refresh query: read once when an event's detail opens, mostly from pages
        # not in memory (each event's 61 telemetry rows lie on as many pages).
        opened: list[tuple[str, Callable[[], object]]] = [
            ("event_context, a new event each", event_context),
        ]
        print(f"{'query':32} {'median ms':>10} {'p95 ms':>10}")
        worst = 0.0
        for name, call in cases + opened:
            call()  # warm the cache and the plan
            times = []
            for _ in range(repeat):
                t = time.perf_counter()
                call()
                times.append(time.perf_counter() - t)
                conn.rollback()
            median, p95 = statistics.median(times) * 1000, _p95(times) * 1000
            refresh = (name, call) in cases
            if refresh:
                worst = max(worst, p95)
            flag = "" if p95 < 50 or not refresh else "  over 50 ms"
            print(f"{name:32} {median:10.1f} {p95:10.1f}{flag}", flush=True)
        print(f"slowest p95 of the refresh queries: {worst:.1f} ms")


def bench_embedded() -> None:
    from fleetwatch.store.embedded import EmbeddedPostgres

    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedPostgres(Path(tmp) / "pg")
        t = time.perf_counter()
        server.start()
        cold = time.perf_counter() - t
        server.stop()
        warm = []
        for _ in range(5):
            t = time.perf_counter()
            server.start()
            warm.append(time.perf_counter() - t)
            server.stop()
        server.start()
        joined = EmbeddedPostgres(Path(tmp) / "pg")
        t = time.perf_counter()
        joined.start()
        join = time.perf_counter() - t
        joined.stop()
        server.stop()
    print(f"embedded start, cold (initdb + start): {cold * 1000:.0f} ms")
    print(f"embedded start, warm (server stopped): median {statistics.median(warm) * 1000:.0f} ms")
    print(f"embedded start, joining a running server: {join * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="a server where the benchmark may create a database")
    parser.add_argument("--vehicles", type=int, default=1000)
    parser.add_argument("--hours", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--reuse", action="store_true", help="keep an already loaded database")
    parser.add_argument("--plain", action="store_true", help="plain PostgreSQL, no TimescaleDB")
    parser.add_argument("--embedded", action="store_true", help="embedded start-up times only")
    args = parser.parse_args()
    if args.embedded:
        bench_embedded()
        return
    server = args.dsn or _default_dsn()
    kind = "plain" if args.plain else "tsdb"
    name = f"fwbench_{kind}_{args.vehicles}v_{str(args.hours).replace('.', '_')}h"
    dsn = _database(server, name, fresh=not args.reuse, plain=args.plain)
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM vehicles").fetchone()
    if not (args.reuse and row and row[0] == args.vehicles):
        if args.reuse:
            dsn = _database(server, name, fresh=True, plain=args.plain)
        print(f"loading {args.vehicles} vehicles x {args.hours} h into {name} ...", flush=True)
        t = time.perf_counter()
        load(dsn, args.vehicles, args.hours)
        print(f"loaded in {time.perf_counter() - t:.0f} s")
    bench(dsn, args.repeat, START + timedelta(hours=args.hours))


if __name__ == "__main__":
    main()
