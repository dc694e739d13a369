"""Unit tests of the rollup aggregation in Python (the SQL merge is tested in integration)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, cast

import psycopg
import pytest

from fleetwatch.store import rollups, writer

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


class RecordingCursor:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Sequence[Any] | None]] = []

    def execute(self, query: str, params: Sequence[Any] | None = None) -> None:
        self.calls.append((query, params))


class Merged:
    """The per-table rows of one aggregated batch, as columns (lists of values)."""

    def __init__(self, result: rollups.Rollups) -> None:
        self.tables = {
            "vehicle_minute": result.vehicle_minute,
            "fleet_minute": result.fleet_minute,
            "perception_minute": result.perception_minute,
            "perception_hist_minute": result.perception_hist,
        }

    def params_of(self, table: str) -> list[list[Any]]:
        rows = self.tables[table]
        assert rows, f"expected rows for {table}"
        return [list(c) for c in zip(*rows, strict=True)]


def telemetry(
    vehicle: str,
    seconds: int,
    odometer: float,
    step: float,
    *,
    autopilot: bool = True,
    speed: float = 50.0,
    limit: float = 50.0,
    battery: float = 80.0,
) -> tuple[Any, ...]:
    return (
        T0 + timedelta(seconds=seconds),
        vehicle,
        uuid.uuid4(),
        speed,
        limit,
        48.0 + seconds / 1000,
        11.0,
        90.0,
        battery,
        300.0,
        odometer,
        autopilot,
        "Munich",
        "R1",
        None,
        step,
    )


def merge(
    tel: Sequence[tuple[Any, ...]] = (),
    per: Sequence[tuple[Any, ...]] = (),
    drv: Sequence[tuple[Any, ...]] = (),
) -> Merged:
    return Merged(rollups.aggregate(tel, per, drv))


def column(params: Sequence[Any], sql_column: str) -> list[Any]:
    return list(params[rollups.VEHICLE_MINUTE_COLUMNS.index(sql_column)])


def test_row_positions_match_the_writer_columns() -> None:
    t = writer.TELEMETRY_COLUMNS
    assert (t[rollups._T_TIME], t[rollups._T_VEHICLE], t[rollups._T_SPEED]) == (
        "time",
        "vehicle_id",
        "speed_kmh",
    )
    assert (t[rollups._T_LIMIT], t[rollups._T_LAT], t[rollups._T_LON]) == (
        "speed_limit_kmh",
        "lat",
        "lon",
    )
    assert (t[rollups._T_BATTERY], t[rollups._T_ODOMETER]) == ("battery_pct", "odometer_km")
    assert (t[rollups._T_AUTOPILOT], t[rollups._T_STEP]) == ("autopilot", "step_km")
    p = writer.PERCEPTION_COLUMNS
    assert (p[rollups._P_TIME], p[rollups._P_CLASS]) == ("time", "object_class")
    assert (p[rollups._P_DISTANCE], p[rollups._P_CLOSING]) == ("distance_m", "closing_speed_mps")
    d = writer.DRIVING_COLUMNS
    assert (d[rollups._D_TIME], d[rollups._D_TYPE]) == ("time", "type")


def test_vehicle_minute_first_and_last_follow_time_not_arrival_order() -> None:
    rows = [
        telemetry("A", 30, 100.30, 0.01, autopilot=False, battery=70.0),
        telemetry("A", 5, 100.05, 0.02, autopilot=True, battery=71.0),
        telemetry("A", 59, 100.59, 0.03, autopilot=True, battery=69.0, speed=0.5),
    ]
    params = merge(rows).params_of("vehicle_minute")
    assert column(params, "samples") == [3]
    assert column(params, "odometer_first") == [100.05]
    assert column(params, "odometer_last") == [100.59]
    assert column(params, "first_time") == [T0 + timedelta(seconds=5)]
    assert column(params, "last_time") == [T0 + timedelta(seconds=59)]
    assert column(params, "first_step_km") == [0.02]
    assert column(params, "first_autonomous_step_km") == [0.02]
    assert column(params, "distance_km") == [pytest.approx(0.06)]
    assert column(params, "autonomous_km") == [pytest.approx(0.05)]
    assert column(params, "autopilot_samples") == [2]
    assert column(params, "moving_samples") == [2]
    assert column(params, "battery_min_pct") == [69.0]
    assert column(params, "battery_last_pct") == [69.0]
    assert column(params, "autopilot_last") == [True]


def test_first_step_driven_manually_is_not_autonomous() -> None:
    params = merge([telemetry("A", 0, 5.0, 0.4, autopilot=False)]).params_of("vehicle_minute")
    assert column(params, "first_step_km") == [0.4]
    assert column(params, "first_autonomous_step_km") == [0.0]


def test_rows_are_grouped_per_vehicle_and_minute_in_key_order() -> None:
    rows = [
        telemetry("B", 61, 1.0, 0.1),
        telemetry("A", 0, 1.0, 0.1),
        telemetry("B", 0, 1.0, 0.1, speed=80.0),
    ]
    cur = merge(rows)
    params = cur.params_of("vehicle_minute")
    assert column(params, "vehicle_id") == ["A", "B", "B"]
    assert column(params, "bucket") == [T0, T0, T0 + timedelta(minutes=1)]
    assert column(params, "over_limit_samples") == [0, 1, 0]
    fleet = cur.params_of("fleet_minute")
    assert fleet[0] == [T0, T0 + timedelta(minutes=1)]
    assert fleet[1] == [2, 1]  # samples


def test_fleet_minute_counts_interventions_and_disengagements_only() -> None:
    def event(seconds: int, kind: str) -> tuple[Any, ...]:
        time = T0 + timedelta(seconds=seconds)
        return (time, "A", uuid.uuid4(), kind, "cause", None, 48.0, 11.0, 30.0, True)

    cur = merge(
        drv=[
            event(1, "intervention"),
            event(2, "intervention"),
            event(3, "disengagement"),
            event(4, "hard_brake"),
            event(60, "engagement"),
        ]
    )
    fleet = cur.params_of("fleet_minute")
    assert fleet[0] == [T0]
    assert (fleet[6], fleet[7]) == ([2], [1])
    assert cur.tables["vehicle_minute"] == []


def test_perception_histograms_use_the_sql_bin_convention() -> None:
    def seen(distance: float, closing: float, cls: str = "car") -> tuple[Any, ...]:
        return (T0, "A", uuid.uuid4(), cls, distance, closing, 0.0, 0.9, None)

    cur = merge(
        per=[seen(4.99, 5.0), seen(5.0, 0.0), seen(400.0, -2.0, "pedestrian"), seen(20.0, 10.0)]
    )
    classes = cur.params_of("perception_minute")
    assert classes[1] == ["car", "pedestrian"]
    assert classes[2] == [3, 1]  # events
    assert classes[3] == [2, 0]  # closing
    hist = cur.params_of("perception_hist_minute")
    counts = {(k, b): n for k, b, n in zip(hist[1], hist[2], hist[3], strict=True)}
    assert counts == {
        ("distance", 0): 1,  # 4.99 m in [0, 5)
        ("distance", 1): 1,  # 5 m in [5, 10)
        ("distance", 3): 1,  # 20 m in [20, 30)
        ("distance", len(rollups.DISTANCE_EDGES_M) - 1): 1,  # open last bin
        ("ttc", 1): 1,  # 4.99 / 5 = 0.998 s in [0.5, 1)
        ("ttc", 4): 1,  # 20 / 10 = 2 s in [2, 3)
    }


def test_empty_batch_writes_nothing() -> None:
    cur = RecordingCursor()
    rollups.merge(cast(psycopg.Cursor[Any], cur), [], [], [])
    assert cur.calls == []


def test_vehicle_minute_columns_are_the_merge_columns() -> None:
    assert rollups.VEHICLE_MINUTE_COLUMNS[:2] == ("bucket", "vehicle_id")
    assert rollups.STAGE_COLUMNS[: len(rollups.VEHICLE_MINUTE_COLUMNS)] == (
        rollups.VEHICLE_MINUTE_COLUMNS
    )
    row = merge([telemetry("A", 0, 5.0, 0.4)]).tables["vehicle_minute"][0]
    assert len(row) == len(rollups.STAGE_COLUMNS) == len(rollups._STAGE_TYPES)


def test_staged_vehicle_state_is_that_of_the_latest_sample_of_the_minute() -> None:
    early = telemetry("A", 10, 5.0, 0.4)
    late = (*telemetry("A", 20, 5.1, 0.1)[:12], "Berlin", "R9", "trip-2", 0.1)
    for rows in ([early, late], [late, early]):
        (staged,) = merge(rows).tables["vehicle_minute"]
        state = dict(zip(rollups.STAGE_COLUMNS, staged, strict=True))
        assert state["last_time"] == late[0]
        assert (state["city_last"], state["route_last"], state["trip_last"]) == (
            "Berlin",
            "R9",
            "trip-2",
        )
    (single,) = merge([late]).tables["vehicle_minute"]
    state = dict(zip(rollups.STAGE_COLUMNS, single, strict=True))
    assert (state["speed_limit_last_kmh"], state["heading_last_deg"]) == (late[4], late[7])
    assert (state["range_last_km"], state["city_last"]) == (late[9], "Berlin")


def test_time_to_collision() -> None:
    assert rollups.time_to_collision_s(20.0, 10.0) == 2.0
    assert rollups.time_to_collision_s(20.0, 0.0) is None
    assert rollups.time_to_collision_s(20.0, -3.0) is None
    assert rollups.histogram_bin(2.0, rollups.TTC_EDGES_S) == 4


@pytest.mark.parametrize("autopilot", [True, False])
@pytest.mark.parametrize("speed", [0.5, 45.0, 80.0])
def test_a_single_sample_minute_is_the_aggregate_of_one(autopilot: bool, speed: float) -> None:
    row = telemetry("A", 7, 12.5, 0.3, autopilot=autopilot, speed=speed, battery=55.5)
    (direct,) = merge([row]).tables["vehicle_minute"]
    aggregate = rollups._VehicleMinute(row)
    aggregate.add(row)
    minute = int(row[0].timestamp()) // 60
    assert [direct] == rollups._vehicle_minute_rows({("A", minute): aggregate})
