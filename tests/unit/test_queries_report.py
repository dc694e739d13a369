"""Unit tests of the report's rendering: labels, units, and "no interventions"."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timezone

from fleetwatch.store import report
from fleetwatch.store.queries import FleetKpis, Units, VehicleRow, Window

NOW = datetime(2026, 3, 1, 12, 0, 30, tzinfo=timezone.utc)
WINDOW = Window.last("24h", NOW)


def kpis(interventions: int, distance_km: float) -> FleetKpis:
    return FleetKpis(
        window=WINDOW, vehicle_id=None, vehicles_total=2, vehicles_reporting=1,
        vehicles_moving=1, vehicles_autonomous=1, distance_km=distance_km,
        autonomous_km=distance_km / 2, interventions=interventions, disengagements=0,
        km_per_intervention=distance_km / interventions if interventions else None,
        km_per_disengagement=None,
        interventions_per_1000km=1000 * interventions / distance_km if distance_km else None,
        disengagements_per_1000km=0.0 if distance_km else None, autopilot_distance_pct=50.0,
        autopilot_time_pct=40.0, telemetry_samples=100, speed_violations=1, collision_risks=0,
        near_misses=2, alerts_open_critical=1, alerts_open_warning=0, alerts_open_info=0,
        alerts_firing=1, alerts_pending=0, alerts_handled=1, rejects=3,
    )  # fmt: skip


ROW = VehicleRow(
    vehicle_id="AV-0007", last_seen=NOW, age_s=0.0, reporting=True, moving=True,
    speed_kmh=80.0, speed_limit_kmh=100.0, battery_pct=55.4, range_km=250.0,
    odometer_km=12345.6, autopilot=True, lat=48.1, lon=11.5, heading_deg=90.0, city="Munich",
    route_id="R1", trip_id=None, alerts_open=1, worst_severity="critical", distance_km=0.0,
    autonomous_km=0.0, interventions=0, disengagements=0, km_per_intervention=None,
)  # fmt: skip


def test_table_shows_ratios_with_units_and_says_no_interventions() -> None:
    text = report.as_table(kpis(4, 100.0), [ROW], Units.KM)
    assert re.search(r"km per intervention +25\.0 km\n", text)
    assert "no disengagements" in text
    assert "40.00 interventions per 1,000 km" in text
    assert "AV-0007" in text and "no interventions" in text and "1 critical" in text
    assert re.search(r"rejected messages +3\n", text)
    assert "(1 firing, 0 pending; 1 acknowledged or silenced)" in text


def test_table_in_miles() -> None:
    text = report.as_table(kpis(1, 160.9344), [ROW], Units.MI)
    assert re.search(r"mi per intervention +100\.0 mi\n", text)
    assert "50 mph" in text
    assert " km" not in text


def test_json_names_carry_the_unit() -> None:
    data = report.as_json(kpis(0, 10.0), [ROW], Units.MI)
    fleet = data["fleet"]
    assert fleet["mi_per_intervention"] is None
    assert "km_per_intervention" not in fleet
    assert fleet["alerts_handled"] == 1
    assert data["vehicles"][0]["speed_mph"] == 49.7
    assert data["window"]["end"] == "2026-03-01T12:01:00+00:00"


def test_csv_leaves_missing_ratios_empty() -> None:
    out = io.StringIO()
    report.write_csv(kpis(0, 0.0), [ROW], Units.KM, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert rows[0]["scope"] == "fleet" and rows[0]["km_per_intervention"] == ""
    assert rows[0]["alerts_open"] == "1"
    assert rows[1]["worst_severity"] == "critical" and rows[1]["trip_id"] == ""
