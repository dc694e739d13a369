"""Terminal app benchmark: start to first populated frame, memory with 1,000 live
vehicles, and key-to-screen latency while ingesting.

Run: ``.venv/bin/python tests/benchmarks/bench_tui.py [--vehicles 1000] [--keys 40]``.

Everything runs as ``fleetwatch`` does with no configuration (embedded PostgreSQL,
in-process broker, simulator and ingestor threads), headless at 120x36, with the
embedded database in a temporary directory:

1. warm-up: initialise the database and store 15 minutes of a 25-vehicle fleet;
2. first frame: a fresh app over that initialised database, timed from before Textual
   is imported until the fleet table shows vehicles (target <= 1.5 s);
3. 1,000 live vehicles: resident memory of this process (app + simulator + ingestor)
   after the fleet has been live and redrawn for a while (target <= 200 MB), with the
   PostgreSQL server's memory shown apart;
4. key latency: while those 1,000 vehicles are ingested, the time from a key press to
   the screen showing its result: switching views (a query and a redraw) and
   switching units (a redraw only).
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import psutil  # type: ignore[import-untyped]  # noqa: E402

from fleetwatch.config import Settings  # noqa: E402

SIZE = (120, 36)


def settings_for(data_dir: Path, vehicles: int, backfill_hours: float) -> Settings:
    return Settings.model_validate(
        {
            "database": {"data_dir": str(data_dir)},
            "simulator": {"vehicles": vehicles, "backfill_hours": backfill_hours},
        }
    )


async def until(pilot: Any, condition: Callable[[], bool], timeout_s: float = 300.0) -> None:
    deadline = time.perf_counter() + timeout_s
    while not condition():
        if time.perf_counter() > deadline:
            raise RuntimeError("timed out waiting for the app")
        await pilot.pause(0.005)


def fleet_shown(app: Any, minimum: int = 1) -> Callable[[], bool]:
    def check() -> bool:
        snap = app.last_snapshot
        return (
            snap is not None
            and snap.fleet is not None
            and len(snap.fleet.vehicles) >= minimum
            and len(app.query_one("#fleet-table").shown_rows) >= minimum
        )

    return check


def warm_up(data_dir: Path) -> None:
    from fleetwatch.tui.runtime import AppServices

    services = AppServices(settings_for(data_dir, 25, 0.25))
    source, status = services.start(lambda _step, _fraction: None)
    try:
        deadline = time.monotonic() + 600
        while status.status().backfill_pct is not None or _vehicles(source) < 25:
            if time.monotonic() > deadline:
                raise RuntimeError("warm-up did not finish")
            time.sleep(0.2)
    finally:
        source.close()
        services.stop()


def _vehicles(source: Any) -> int:
    from datetime import datetime, timezone

    from fleetwatch.tui.snapshots import ViewRequest

    try:
        fleet = source.fetch(ViewRequest("fleet", "15m", datetime.now(timezone.utc))).fleet
    except Exception:
        return 0
    return 0 if fleet is None else len(fleet.vehicles)


def first_frame(data_dir: Path) -> float:
    """Seconds from the script's start (before Textual is imported) to a populated frame."""
    # As `fleetwatch` does: start the services, then import Textual and build the app.
    from fleetwatch.tui.runtime import AppServices, EarlyStart

    services = EarlyStart(AppServices(settings_for(data_dir, 25, 0.0)))
    from fleetwatch.tui.app import create_app

    app = create_app(settings_for(data_dir, 25, 0.0), services=services)
    elapsed: list[float] = []

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, fleet_shown(app, 25))
            await pilot.pause()
            elapsed.append(time.perf_counter() - STARTED)

    try:
        asyncio.run(main())
    finally:
        services.stop()
    return elapsed[0]


def _timed(owner: Any, name: str, into: dict[str, list[float]], label: Callable[..., str]) -> None:
    """Wrap ``owner.name`` to record how long each call takes, grouped by ``label(args)``."""
    original = getattr(owner, name)

    def wrapper(self: Any, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(self, *args)
        finally:
            ms = (time.perf_counter() - started) * 1000
            into.setdefault(label(*args), []).append(ms)

    setattr(owner, name, wrapper)


def live_fleet(data_dir: Path, vehicles: int, keys: int) -> dict[str, Any]:
    from fleetwatch.tui.app import FleetwatchApp, create_app
    from fleetwatch.tui.database import DatabaseSource
    from fleetwatch.tui.runtime import AppServices
    from fleetwatch.tui.widgets.table import SnapshotTable

    fetch_ms: dict[str, list[float]] = {}
    render_ms: dict[str, list[float]] = {}
    _timed(DatabaseSource, "fetch", fetch_ms, lambda request: request.view)
    _timed(FleetwatchApp, "_render_snapshot", render_ms, lambda snapshot: snapshot.request.view)

    settings = settings_for(data_dir, vehicles, 0.0)
    services = AppServices(settings)
    app = create_app(settings, services=services)
    result: dict[str, Any] = {}
    process = psutil.Process()

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, fleet_shown(app, vehicles))
            # A minute of live data and redraws, for memory to reach its working size.
            deadline = time.perf_counter() + 60
            refreshes = 0
            last = None
            while time.perf_counter() < deadline:
                await pilot.pause(0.25)
                if app.last_snapshot is not last:
                    last = app.last_snapshot
                    refreshes += 1
            result["refreshes"] = refreshes
            result["rss_mb"] = process.memory_info().rss / 2**20
            status = app.status
            result["ingest_rate"] = status.ingest_rate_per_s if status else None
            result["lag"] = status.consumer_lag if status else None

            # Keys are posted as the terminal driver does (not through the test pilot,
            # whose waits for idle would be part of the figure); the time runs until the
            # result is in the widgets, which the next paint (at most 1/60 s) shows.
            async def key_until(key: str, condition: Callable[[], bool]) -> float:
                started = time.perf_counter()
                app.simulate_key(key)
                deadline = started + 60
                while not condition():
                    if time.perf_counter() > deadline:
                        raise RuntimeError(f"no answer to {key!r}")
                    await asyncio.sleep(0.002)
                return (time.perf_counter() - started) * 1000

            view_ms: list[float] = []
            units_ms: list[float] = []
            order = ["3", "4", "5", "1"]
            names = {"1": "fleet", "3": "alerts", "4": "interventions", "5": "perception"}
            for i in range(keys):
                key = order[i % len(order)]
                view_ms.append(
                    await key_until(
                        key,
                        lambda key=key: app.last_snapshot is not None  # type: ignore[misc]
                        and app.last_snapshot.request.view == names[key],
                    )
                )
                await pilot.pause(0.2)
                if key == "1":
                    table = app.query_one("#fleet-table", SnapshotTable)
                    before = str(table.get_row_at(0)[2])
                    units_ms.append(
                        await key_until(
                            "u",
                            lambda before=before, table=table: str(table.get_row_at(0)[2])
                            != before,  # type: ignore[misc]
                        )
                    )
                    await pilot.pause(0.2)
            result["view_ms"] = view_ms
            result["fetch_ms"] = fetch_ms
            result["render_ms"] = render_ms
            result["units_ms"] = units_ms
            result["lag_after"] = app.status.consumer_lag if app.status else None

    try:
        asyncio.run(main())
        result["postgres_rss_mb"] = _postgres_rss(data_dir)
    finally:
        services.stop()
    return result


def _postgres_rss(data_dir: Path) -> float:
    total = 0
    for proc in psutil.process_iter(["name", "cmdline", "memory_info"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if "postgres" in (proc.info.get("name") or "") and str(data_dir) in cmdline:
            try:
                for member in [proc, *proc.children(recursive=True)]:
                    total += member.memory_info().rss
            except psutil.Error:
                pass
    return total / 2**20


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return f"median {statistics.median(ordered):.0f} ms, p95 {p95:.0f} ms, max {ordered[-1]:.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=1000)
    parser.add_argument("--keys", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleetwatch-bench-tui-") as tmp:
        data_dir = Path(tmp) / "postgres"
        warm_started = time.perf_counter()
        warm_up(data_dir)
        warm_s = time.perf_counter() - warm_started
        global STARTED
        STARTED = time.perf_counter()
        first = first_frame(data_dir)
        print(f"warm-up (initdb + 15 min of 25 vehicles): {warm_s:.1f} s")
        print(
            "first populated frame (database initialised, imports included): "
            f"{first:.2f} s  [target <= 1.5 s]"
        )
        live = live_fleet(data_dir, args.vehicles, args.keys)
        print(
            f"{args.vehicles} live vehicles: resident memory {live['rss_mb']:.0f} MB "
            f"(app + simulator + ingestor)  [target <= 200 MB]; "
            f"PostgreSQL {live['postgres_rss_mb']:.0f} MB apart"
        )
        print(
            f"  ingest {live['ingest_rate'] or 0:,.0f} events/s, lag {live['lag']}, "
            f"{live['refreshes']} refreshes in 60 s"
        )
        print(f"key -> view switch on screen while ingesting: {summary(live['view_ms'])}")
        print(f"key -> units redraw on screen while ingesting: {summary(live['units_ms'])}")
        print(f"  lag after the key test: {live['lag_after']}")
        for view, values in sorted(live["fetch_ms"].items()):
            rendered = live["render_ms"].get(view, [0.0])
            print(
                f"  {view:>13}: queries {summary(values)}; "
                f"render {summary(rendered)} (UI thread)"
            )


if __name__ == "__main__":
    main()
