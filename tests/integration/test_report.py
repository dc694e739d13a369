"""`fleetwatch report` and `fleetwatch db` against a real database and the embedded one."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from fleetwatch import cli
from fleetwatch.config import Settings, load_settings
from fleetwatch.model import KM_PER_MILE, DrivingEvent, DrivingEventType, Telemetry
from fleetwatch.store import command, report, rollups, writer
from fleetwatch.store.embedded import EmbeddedPostgres
from fleetwatch.store.migrate import migrations

T0 = datetime(2026, 2, 2, 9, 0, tzinfo=timezone.utc)
AT = "2026-02-02T09:59:30Z"


def _telemetry(vehicle: str, seconds: int, odometer: float, autopilot: bool) -> Telemetry:
    return Telemetry(
        event_id=uuid.uuid4(),
        time=T0 + timedelta(seconds=seconds),
        vehicle_id=vehicle,
        speed_kmh=36.0,
        speed_limit_kmh=50.0,
        lat=48.1,
        lon=11.5,
        heading_deg=0.0,
        battery_pct=75.0,
        range_km=200.0,
        odometer_km=odometer,
        autopilot=autopilot,
        city="Munich",
        route_id="R7",
    )


def _event(vehicle: str, seconds: int, kind: DrivingEventType) -> DrivingEvent:
    return DrivingEvent(
        event_id=uuid.uuid4(),
        time=T0 + timedelta(seconds=seconds),
        vehicle_id=vehicle,
        type=kind,
        cause="construction zone",
        lat=48.1,
        lon=11.5,
        speed_kmh=20.0,
        autopilot=True,
    )


def _load(dsn: str) -> None:
    """AV-1 drives 10 km per 1,000 s (autonomous), AV-2 5 km manually; AV-1 has two
    interventions, AV-2 none."""
    tel: list[tuple[Any, ...]] = []
    for vehicle, km_per_s, autopilot in (("AV-1", 0.01, True), ("AV-2", 0.005, False)):
        for s in range(0, 1001, 10):
            odometer = 1000.0 + s * km_per_s
            tel.append(
                writer.telemetry_row(
                    _telemetry(vehicle, s, odometer, autopilot), 0.0 if s == 0 else km_per_s * 10
                )
            )
    drv = [
        writer.driving_row(_event("AV-1", 100, DrivingEventType.INTERVENTION)),
        writer.driving_row(_event("AV-1", 200, DrivingEventType.INTERVENTION)),
        writer.driving_row(_event("AV-1", 300, DrivingEventType.DISENGAGEMENT)),
    ]
    with psycopg.connect(dsn) as conn:
        writer.write_batch(
            conn, writer.Batch(group="report-test", telemetry=tel, driving=drv), merge=rollups.merge
        )


@pytest.fixture
def loaded_dsn(db_dsn: str) -> str:
    _load(db_dsn)
    return db_dsn


def _settings(**flags: Any) -> Settings:
    settings, _ = load_settings(flags, path=Path("/nonexistent/config.toml"), environ={})
    return settings


def _run(module: Any, argv: list[str], **extra: Any) -> tuple[int, str]:
    command_name = argv[0]
    parser = cli.build_parser(command_name)
    args = parser.parse_args(argv)
    flags = {k: v for k, v in vars(args).items() if "." in k}
    flags.update(extra)
    out = io.StringIO()
    code = module.run(args, _settings(**flags), out=out)
    return code, out.getvalue()


def test_json_report_numbers_and_stable_names(loaded_dsn: str) -> None:
    code, text = _run(
        report, ["report", "--db", loaded_dsn, "--window", "1h", "--at", AT, "--format", "json"]
    )
    assert code == 0
    data = json.loads(text)
    assert data["window"] == {
        "start": "2026-02-02T09:00:00+00:00",
        "end": "2026-02-02T10:00:00+00:00",
        "label": "1h",
    }
    fleet = data["fleet"]
    assert fleet["distance_km"] == pytest.approx(15.0)
    assert fleet["autonomous_distance_km"] == pytest.approx(10.0)
    assert (fleet["interventions"], fleet["disengagements"]) == (2, 1)
    assert fleet["km_per_intervention"] == pytest.approx(7.5)
    assert fleet["km_per_disengagement"] == pytest.approx(15.0)
    assert fleet["interventions_per_1000km"] == pytest.approx(2000 / 15, rel=1e-4)
    assert fleet["autopilot_distance_pct"] == pytest.approx(66.67, abs=0.01)
    assert fleet["alerts_open"] == {"critical": 0, "warning": 0, "info": 0}
    by_id = {v["vehicle_id"]: v for v in data["vehicles"]}
    assert by_id["AV-1"]["km_per_intervention"] == pytest.approx(5.0)
    assert by_id["AV-2"]["km_per_intervention"] is None
    assert by_id["AV-2"]["distance_km"] == pytest.approx(5.0)
    assert set(by_id["AV-1"]) >= {"last_seen", "speed_kmh", "odometer_km", "autopilot", "city"}


def test_miles_rename_and_convert(loaded_dsn: str) -> None:
    code, text = _run(
        report,
        ["report", "--db", loaded_dsn, "--at", AT, "--format", "json", "--units", "mi"],
    )
    assert code == 0
    fleet = json.loads(text)["fleet"]
    assert "distance_km" not in fleet
    assert fleet["distance_mi"] == pytest.approx(15.0 / KM_PER_MILE, abs=1e-3)
    assert fleet["mi_per_intervention"] == pytest.approx(7.5 / KM_PER_MILE, abs=1e-3)
    vehicle = json.loads(text)["vehicles"][0]
    assert vehicle["speed_mph"] == pytest.approx(36.0 / KM_PER_MILE, abs=0.1)


def test_a_past_moment_shows_the_state_and_the_open_alerts_of_that_moment(
    loaded_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(loaded_dsn) as conn:
        conn.execute(
            "INSERT INTO alerts (vehicle_id, rule, state, severity, first_seen, last_seen,"
            " fired_at, resolved_at) VALUES ('AV-1', 'speed_violation', 'resolved', 'warning',"
            " %(t)s + interval '120 s', %(t)s + interval '400 s', %(t)s + interval '130 s',"
            " %(t)s + interval '420 s')",
            {"t": T0},
        )
    # Five minutes in: each vehicle as its sample at 300 s showed it, the alert open.
    code, text = _run(
        report, ["report", "--db", loaded_dsn, "--at", "2026-02-02T09:05:00Z", "--format", "json"]
    )
    assert code == 0
    data = json.loads(text)
    by_id = {v["vehicle_id"]: v for v in data["vehicles"]}
    assert by_id["AV-1"]["last_seen"] == "2026-02-02T09:05:00+00:00"
    assert by_id["AV-1"]["odometer_km"] == pytest.approx(1003.0)
    assert by_id["AV-2"]["odometer_km"] == pytest.approx(1001.5)
    assert by_id["AV-1"]["reporting"] and by_id["AV-1"]["alerts_open"] == 1
    assert by_id["AV-1"]["worst_severity"] == "warning"
    assert data["fleet"]["vehicles_reporting"] == 2
    assert data["fleet"]["alerts_open"] == {"critical": 0, "warning": 1, "info": 0}
    assert data["fleet"]["alerts_firing"] == 1
    # Two minutes in, the alert was not firing yet; at the end it is resolved.
    code, text = _run(
        report, ["report", "--db", loaded_dsn, "--at", "2026-02-02T09:02:05Z", "--format", "json"]
    )
    assert json.loads(text)["fleet"]["alerts_pending"] == 1
    code, text = _run(report, ["report", "--db", loaded_dsn, "--at", AT, "--format", "json"])
    data = json.loads(text)
    assert data["fleet"]["alerts_open"]["warning"] == 0
    assert {v["vehicle_id"]: v["odometer_km"] for v in data["vehicles"]} == {
        "AV-1": pytest.approx(1010.0),
        "AV-2": pytest.approx(1005.0),
    }
    assert data["fleet"]["vehicles_reporting"] == 0  # silent since 09:16:40
    # Before the first sample there was no fleet yet.
    code, text = _run(
        report, ["report", "--db", loaded_dsn, "--at", "2026-02-02T08:50:00Z", "--format", "json"]
    )
    assert json.loads(text)["vehicles"] == []
    code, _ = _run(
        report, ["report", "--db", loaded_dsn, "--at", "2026-02-02T08:50:00Z", "--vehicle", "AV-1"]
    )
    assert code == 1
    assert "no vehicle 'AV-1' in the database by 2026-02-02T08:50:00" in capsys.readouterr().err


def test_a_past_moment_after_retention_uses_the_minute_rollups(loaded_dsn: str) -> None:
    with psycopg.connect(loaded_dsn) as conn:
        conn.execute("DELETE FROM telemetry")
    code, text = _run(
        report, ["report", "--db", loaded_dsn, "--at", "2026-02-02T09:05:30Z", "--format", "json"]
    )
    assert code == 0
    by_id = {v["vehicle_id"]: v for v in json.loads(text)["vehicles"]}
    # The last whole minute before 09:05:30 is 09:04; its last sample is at 09:04:50.
    assert by_id["AV-1"]["last_seen"] == "2026-02-02T09:04:50+00:00"
    assert by_id["AV-1"]["odometer_km"] == pytest.approx(1002.9)


def test_a_moment_on_a_minute_boundary_ends_the_window_there(loaded_dsn: str) -> None:
    code, text = _run(
        report,
        [
            *("report", "--db", loaded_dsn, "--window", "5m"),
            *("--at", "2026-02-02T09:05:00Z", "--format", "json"),
        ],
    )
    assert code == 0
    data = json.loads(text)
    assert (data["window"]["start"], data["window"]["end"]) == (
        "2026-02-02T09:00:00+00:00",
        "2026-02-02T09:05:00+00:00",
    )
    # AV-1's interventions at 100 s and 200 s count, its disengagement at 300 s
    # (09:05:00, not before the moment asked for) does not.
    assert (data["fleet"]["interventions"], data["fleet"]["disengagements"]) == (2, 0)


def test_per_vehicle_distance_per_disengagement_in_json_and_csv(loaded_dsn: str) -> None:
    code, text = _run(report, ["report", "--db", loaded_dsn, "--at", AT, "--format", "json"])
    by_id = {v["vehicle_id"]: v for v in json.loads(text)["vehicles"]}
    assert by_id["AV-1"]["km_per_disengagement"] == pytest.approx(10.0)
    assert by_id["AV-2"]["km_per_disengagement"] is None
    code, text = _run(report, ["report", "--db", loaded_dsn, "--at", AT, "--format", "csv"])
    rows = {r["vehicle_id"]: r for r in csv.DictReader(io.StringIO(text))}
    assert float(rows["AV-1"]["km_per_disengagement"]) == pytest.approx(10.0)


def test_table_report_says_no_interventions_and_shows_units(loaded_dsn: str) -> None:
    code, text = _run(report, ["report", "--db", loaded_dsn, "--at", AT, "--vehicle", "AV-2"])
    assert code == 0
    assert "vehicle AV-2" in text
    assert "no interventions" in text
    assert "5.0 km" in text
    assert "AV-1" not in text


def test_csv_report_has_a_fleet_row_then_vehicles(loaded_dsn: str) -> None:
    code, text = _run(report, ["report", "--db", loaded_dsn, "--at", AT, "--format", "csv"])
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["scope"] for r in rows] == ["fleet", "vehicle", "vehicle"]
    assert float(rows[0]["distance_km"]) == pytest.approx(15.0)
    assert rows[0]["km_per_disengagement"] == "15.0"
    assert rows[2]["vehicle_id"] == "AV-2" and rows[2]["km_per_intervention"] == ""
    assert rows[1]["autopilot"] == "true"


def test_report_errors_are_one_sentence(
    loaded_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = _run(report, ["report", "--db", loaded_dsn, "--at", AT, "--vehicle", "nope"])
    assert code == 1
    assert capsys.readouterr().err.strip() == (
        "fleetwatch: no vehicle 'nope' in the database by 2026-02-02T09:59:30+00:00"
    )
    with pytest.raises(cli.CliError, match="is in the future"):
        _run(report, ["report", "--db", loaded_dsn, "--at", "2099-01-01T00:00"])
    with pytest.raises(cli.CliError, match="invalid window"):
        _run(report, ["report", "--db", loaded_dsn, "--window", "soon"])
    code, _ = _run(report, ["report", "--db", "postgresql://nobody@127.0.0.1:1/x"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("fleetwatch: cannot connect") and "\n" not in err


def test_db_status_and_migrate(loaded_dsn: str) -> None:
    code, text = _run(command, ["db", "--db", loaded_dsn, "status"])
    assert code == 0
    assert "password=****" in text and "password=fleetwatch" not in text
    assert "TimescaleDB" in text
    assert f"version {migrations()[-1].version}" in text  # the latest migration
    assert "rows in telemetry" in text and "202" in text
    code, text = _run(command, ["db", "migrate", "--db", loaded_dsn])
    assert code == 0 and "up to date" in text


def test_db_reset_refuses_a_server_database(loaded_dsn: str) -> None:
    for argv in (
        ["db", "--db", loaded_dsn, "reset", "--yes"],
        ["db", "reset", "--yes", "--db", loaded_dsn],
    ):
        with pytest.raises(cli.CliError, match="only deletes the embedded database"):
            _run(command, argv)
    with psycopg.connect(loaded_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM telemetry").fetchone() == (202,)


@pytest.fixture
def embedded_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "embedded"
    yield path
    server = EmbeddedPostgres(path)
    if server.running_pid() is not None:
        server.start()
        server.stop()


def test_embedded_migrate_report_status_and_reset(
    embedded_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = {"database.data_dir": str(embedded_dir)}
    # Before the app ever ran: the report says so and creates nothing.
    with pytest.raises(cli.CliError, match="no fleet data yet"):
        _run(report, ["report"], **extra)
    assert not EmbeddedPostgres(embedded_dir).initialized()
    code, _text = _run(command, ["db", "status"], **extra)
    assert code == 1 and not EmbeddedPostgres(embedded_dir).initialized()
    assert "there is no embedded database" in capsys.readouterr().err
    code, text = _run(command, ["db", "migrate"], **extra)
    assert code == 0 and "applied 001_core.sql" in text
    code, text = _run(command, ["db", "status"], **extra)
    assert code == 0
    assert f"embedded at {embedded_dir}" in text and "no TimescaleDB" in text
    code, text = _run(report, ["report", "--format", "json"], **extra)
    assert code == 0 and json.loads(text)["vehicles"] == []
    assert EmbeddedPostgres(embedded_dir).running_pid() is None, "stopped after each command"
    code, text = _run(command, ["db", "reset", "--yes"], **extra)
    assert code == 0 and "deleted" in text
    assert not EmbeddedPostgres(embedded_dir).initialized()
