"""`fleetwatch report`: print the fleet KPIs and the vehicle table as text, JSON or CSV.

    fleetwatch report [--db DSN] [--window 24h] [--at TIME] [--vehicle ID]
                      [--format table|json|csv] [--units km|mi]

The numbers are those of the TUI (:mod:`fleetwatch.store.queries`, whose docstring
defines them). The window is ``--window`` long (in whole minutes) and ends at ``--at``
(default: now), or with the minute ``--at`` falls in when it is not on a minute
boundary; the vehicles' state (last seen, reporting, speed, battery...)
and the open alerts are those at ``--at``. With ``--vehicle`` the KPIs and the table
cover that vehicle.

JSON (one object; field names are stable, new fields may be added). Every
distance-bearing name ends in the unit asked for with ``--units``: ``_km`` or
``_mi`` (``distance_km`` / ``distance_mi``, ``km_per_intervention`` /
``mi_per_intervention``, ``interventions_per_1000km`` / ``interventions_per_1000mi``,
``speed_kmh`` / ``speed_mph``). A ratio without events is ``null``.

- ``window``: ``start``, ``end`` (ISO 8601 UTC, end exclusive), ``label``.
- ``units``: ``"km"`` or ``"mi"``.
- ``fleet``: ``vehicle_id`` (null for the whole fleet), ``vehicles_total``,
  ``vehicles_reporting``, ``vehicles_moving``, ``vehicles_autonomous``, ``distance_*``,
  ``autonomous_distance_*``, ``interventions``, ``disengagements``,
  ``*_per_intervention``, ``*_per_disengagement``, ``interventions_per_1000*``,
  ``disengagements_per_1000*``, ``autopilot_distance_pct``, ``autopilot_time_pct``,
  ``telemetry_samples``, ``speed_violations``, ``collision_risks``, ``near_misses``,
  ``alerts_open`` (``critical``, ``warning``, ``info``), ``alerts_firing``,
  ``alerts_pending``, ``alerts_handled`` (open and acknowledged or silenced),
  ``rejects``.
- ``vehicles``: a list of ``vehicle_id``, ``last_seen``, ``reporting``, ``moving``,
  ``speed_*``, ``battery_pct``, ``odometer_*``, ``autopilot``, ``city``, ``route_id``,
  ``trip_id``, ``alerts_open``, ``worst_severity``, ``distance_*``,
  ``autonomous_distance_*``, ``interventions``, ``disengagements``,
  ``*_per_intervention``, ``*_per_disengagement``.

CSV: a header, then one row with ``scope`` = ``fleet``, then one row per vehicle
(``scope`` = ``vehicle``); columns are the vehicle fields above, empty where they do
not apply (the fleet's counts of reporting and moving vehicles are in the JSON and
table formats); an empty cell for a ratio means no events.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Final, TextIO

import psycopg

from fleetwatch.cli import CliError
from fleetwatch.config import Settings
from fleetwatch.store import queries
from fleetwatch.store.db import DatabaseUnavailable, connect
from fleetwatch.store.embedded import EmbeddedError, EmbeddedPostgres, database_dsn
from fleetwatch.store.queries import FleetKpis, Units, VehicleRow, Window


def _vehicle_id(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("a vehicle id cannot be empty")
    return text


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        dest="database.dsn",
        metavar="DSN",
        help="PostgreSQL/TimescaleDB connection string (default: the embedded database)",
    )
    parser.add_argument(
        "--window",
        default="24h",
        metavar="SPAN",
        help=(
            "how far back: 15m, 1h, 6h, 24h, 7d or any <n>s|m|h|d, in whole minutes (the"
            " figures are kept per minute; default: 24h)"
        ),
    )
    parser.add_argument(
        "--at",
        metavar="TIME",
        help=(
            "the moment to report on, ISO 8601 (default: now; without a zone, UTC); the"
            " window ends with the minute that holds it"
        ),
    )
    parser.add_argument("--vehicle", type=_vehicle_id, metavar="ID", help="report on one vehicle")
    parser.add_argument(
        "--format", choices=("table", "json", "csv"), default="table", help="output format"
    )
    parser.add_argument(
        "--units",
        dest="ui.units",
        choices=("km", "mi"),
        help="distance units (default: the ui.units setting)",
    )


NO_EMBEDDED_DATA: Final = (
    "there is no fleet data yet: the built-in database fills when 'fleetwatch' runs;"
    " give --db DSN to report on a server"
)


FUTURE_SLACK: Final = timedelta(minutes=1)
"""How far ahead of this machine's clock --at may be (another machine's clock may run
a little ahead)."""


def _parse_at(text: str | None) -> datetime:
    if text is None:
        return datetime.now(timezone.utc)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(
            f"cannot read the time {text!r}; use ISO 8601 such as 2026-03-01T12:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    moment = moment.astimezone(timezone.utc)
    if moment > datetime.now(timezone.utc) + FUTURE_SLACK:
        raise CliError(f"the time {text!r} is in the future; leave --at out to report on now")
    return moment


def run(args: argparse.Namespace, settings: Settings, out: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout
    units = Units(settings.ui.units)
    try:
        window = queries.Window.until(args.window, _parse_at(args.at))
    except queries.WindowError as error:
        raise CliError(str(error)) from None
    dsn = settings.database.dsn.get_secret_value() if settings.database.dsn else None
    if dsn is None and not EmbeddedPostgres(settings.database.data_dir).initialized():
        raise CliError(NO_EMBEDDED_DATA)
    try:
        with database_dsn(dsn, settings.database.data_dir) as target, connect(target) as conn:
            if not _has_schema(conn):
                raise CliError(
                    NO_EMBEDDED_DATA
                    if dsn is None
                    else "the database has no fleetwatch schema yet; run 'fleetwatch db migrate'"
                )
            kpis, rows = collect(conn, window, args.vehicle, settings)
    except (DatabaseUnavailable, EmbeddedError) as error:
        print(f"fleetwatch: {error}", file=sys.stderr)
        return 1
    except psycopg.Error as error:
        first = str(error).strip().splitlines()
        print(
            f"fleetwatch: the report query failed: {first[0] if first else error}", file=sys.stderr
        )
        return 1
    if args.vehicle and not rows:
        by = f" by {window.now.isoformat()}" if args.at else ""
        print(f"fleetwatch: no vehicle {args.vehicle!r} in the database{by}", file=sys.stderr)
        return 1
    if args.format == "json":
        json.dump(as_json(kpis, rows, units), out, indent=2)
        out.write("\n")
    elif args.format == "csv":
        write_csv(kpis, rows, units, out)
    else:
        out.write(as_table(kpis, rows, units))
    return 0


def _has_schema(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(
        "SELECT to_regclass('vehicles') IS NOT NULL AND to_regclass('fleet_minute') IS NOT NULL"
    ).fetchone()
    return bool(row and row[0])


def collect(
    conn: psycopg.Connection[Any], window: Window, vehicle_id: str | None, settings: Settings
) -> tuple[FleetKpis, tuple[VehicleRow, ...]]:
    reporting_s = settings.rules.silent_after_s
    kpis = queries.fleet_kpis(
        conn,
        window,
        vehicle_id,
        reporting_s=reporting_s,
        ttc_threshold_s=settings.rules.ttc_threshold_s,
    )
    rows = queries.vehicle_table(
        conn, window, vehicle_id, reporting_s=reporting_s, with_autonomous_km=True
    )
    return kpis, rows


# --------------------------------------------------------------------------- JSON


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _names(units: Units) -> dict[str, str]:
    u = units.distance_label
    return {
        "distance": f"distance_{u}",
        "autonomous": f"autonomous_distance_{u}",
        "per_intervention": f"{u}_per_intervention",
        "per_disengagement": f"{u}_per_disengagement",
        "interventions_rate": f"interventions_per_1000{u}",
        "disengagements_rate": f"disengagements_per_1000{u}",
        "speed": "speed_kmh" if units is Units.KM else "speed_mph",
        "odometer": f"odometer_{u}",
    }


def _per_event(units: Units, value_km: float | None) -> float | None:
    return None if value_km is None else _round(units.distance(value_km))


def _rate(units: Units, per_1000_km: float | None) -> float | None:
    return None if per_1000_km is None else _round(units.per_1000(per_1000_km), 4)


def fleet_json(k: FleetKpis, units: Units) -> dict[str, Any]:
    n = _names(units)
    return {
        "vehicle_id": k.vehicle_id,
        "vehicles_total": k.vehicles_total,
        "vehicles_reporting": k.vehicles_reporting,
        "vehicles_moving": k.vehicles_moving,
        "vehicles_autonomous": k.vehicles_autonomous,
        n["distance"]: _round(units.distance(k.distance_km)),
        n["autonomous"]: _round(units.distance(k.autonomous_km)),
        "interventions": k.interventions,
        "disengagements": k.disengagements,
        n["per_intervention"]: _per_event(units, k.km_per_intervention),
        n["per_disengagement"]: _per_event(units, k.km_per_disengagement),
        n["interventions_rate"]: _rate(units, k.interventions_per_1000km),
        n["disengagements_rate"]: _rate(units, k.disengagements_per_1000km),
        "autopilot_distance_pct": _round(k.autopilot_distance_pct, 2),
        "autopilot_time_pct": _round(k.autopilot_time_pct, 2),
        "telemetry_samples": k.telemetry_samples,
        "speed_violations": k.speed_violations,
        "collision_risks": k.collision_risks,
        "near_misses": k.near_misses,
        "alerts_open": {
            "critical": k.alerts_open_critical,
            "warning": k.alerts_open_warning,
            "info": k.alerts_open_info,
        },
        "alerts_firing": k.alerts_firing,
        "alerts_pending": k.alerts_pending,
        "alerts_handled": k.alerts_handled,
        "rejects": k.rejects,
    }


def vehicle_json(r: VehicleRow, units: Units) -> dict[str, Any]:
    n = _names(units)
    return {
        "vehicle_id": r.vehicle_id,
        "last_seen": r.last_seen.astimezone(timezone.utc).isoformat(),
        "reporting": r.reporting,
        "moving": r.moving,
        n["speed"]: _round(units.speed(r.speed_kmh), 1),
        "battery_pct": _round(r.battery_pct, 1),
        n["odometer"]: _round(units.distance(r.odometer_km)),
        "autopilot": r.autopilot,
        "city": r.city,
        "route_id": r.route_id,
        "trip_id": r.trip_id,
        "alerts_open": r.alerts_open,
        "worst_severity": r.worst_severity,
        n["distance"]: _round(units.distance(r.distance_km)),
        n["autonomous"]: _round(units.distance(r.autonomous_km)),
        "interventions": r.interventions,
        "disengagements": r.disengagements,
        n["per_intervention"]: _per_event(units, r.km_per_intervention),
        n["per_disengagement"]: _per_event(
            units, queries.km_per_event(r.distance_km, r.disengagements)
        ),
    }


def as_json(kpis: FleetKpis, rows: Sequence[VehicleRow], units: Units) -> dict[str, Any]:
    w = kpis.window
    return {
        "window": {"start": w.start.isoformat(), "end": w.end.isoformat(), "label": w.label},
        "units": units.value,
        "fleet": fleet_json(kpis, units),
        "vehicles": [vehicle_json(r, units) for r in rows],
    }


# --------------------------------------------------------------------------- CSV


def write_csv(kpis: FleetKpis, rows: Sequence[VehicleRow], units: Units, out: TextIO) -> None:
    fleet = fleet_json(kpis, units)
    vehicles = [vehicle_json(r, units) for r in rows]
    columns = ["scope", *vehicle_json_columns(units)]
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    shared = {key: fleet[key] for key in columns if key in fleet and key != "alerts_open"}
    shared["alerts_open"] = kpis.alerts_open
    writer.writerow(_csv_cells({"scope": "fleet", **shared}))
    for v in vehicles:
        writer.writerow(_csv_cells({"scope": "vehicle", **v}))


def vehicle_json_columns(units: Units) -> list[str]:
    n = _names(units)
    return [
        "vehicle_id",
        "last_seen",
        "reporting",
        "moving",
        n["speed"],
        "battery_pct",
        n["odometer"],
        "autopilot",
        "city",
        "route_id",
        "trip_id",
        "alerts_open",
        "worst_severity",
        n["distance"],
        n["autonomous"],
        "interventions",
        "disengagements",
        n["per_intervention"],
        n["per_disengagement"],
    ]


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else many or one + 's'}"


def _csv_cells(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: ("" if v is None else str(v).lower() if isinstance(v, bool) else v)
        for k, v in row.items()
    }


# --------------------------------------------------------------------------- table


def as_table(kpis: FleetKpis, rows: Sequence[VehicleRow], units: Units) -> str:
    w = kpis.window
    u = units
    subject = f"vehicle {kpis.vehicle_id}" if kpis.vehicle_id else "fleet"
    lines = [
        f"fleetwatch report: {subject}, {w.label} window "
        f"({w.start:%Y-%m-%d %H:%M} to {w.end:%Y-%m-%d %H:%M} UTC)",
        "",
    ]
    pairs = [
        (
            "vehicles",
            f"{kpis.vehicles_total} total, {kpis.vehicles_reporting} reporting, "
            f"{kpis.vehicles_moving} moving, {kpis.vehicles_autonomous} autonomous",
        ),
        (
            "distance",
            f"{queries.format_distance(kpis.distance_km, u)} "
            f"({queries.format_distance(kpis.autonomous_km, u)} autonomous)",
        ),
        ("interventions", str(kpis.interventions)),
        (
            queries.per_event_label(u, "interventions"),
            queries.format_km_per_event(kpis.km_per_intervention, u, "interventions"),
        ),
        (
            "intervention rate",
            queries.format_rate_per_1000(kpis.interventions_per_1000km, u, "interventions"),
        ),
        ("disengagements", str(kpis.disengagements)),
        (
            queries.per_event_label(u, "disengagements"),
            queries.format_km_per_event(kpis.km_per_disengagement, u, "disengagements"),
        ),
        (
            "disengagement rate",
            queries.format_rate_per_1000(kpis.disengagements_per_1000km, u, "disengagements"),
        ),
        (
            "autopilot share",
            f"{queries.format_pct(kpis.autopilot_distance_pct)} of distance, "
            f"{queries.format_pct(kpis.autopilot_time_pct)} of time",
        ),
        (
            "safety",
            f"{_count(kpis.speed_violations, 'speed violation')}, "
            f"{_count(kpis.collision_risks, 'collision risk')}, "
            f"{_count(kpis.near_misses, 'near miss', 'near misses')}",
        ),
        (
            "open alerts",
            f"{kpis.alerts_open_critical} critical, {kpis.alerts_open_warning} warning, "
            f"{kpis.alerts_open_info} info ({kpis.alerts_firing} firing, "
            f"{kpis.alerts_pending} pending; {kpis.alerts_handled} acknowledged or silenced)",
        ),
    ]
    if kpis.vehicle_id is None:
        pairs.append(("rejected messages", str(kpis.rejects)))
    width = max(len(k) for k, _ in pairs)
    lines += [f"  {k:<{width}}  {v}" for k, v in pairs]
    lines.append("")
    header = (
        "vehicle",
        "last seen",
        "speed",
        "battery",
        "odometer",
        "autopilot",
        "city",
        "route",
        "alerts",
        "distance",
        "interv.",
        u.distance_label + "/interv.",
    )
    table = [header]
    for r in rows:
        table.append(
            (
                r.vehicle_id,
                f"{r.last_seen.astimezone(timezone.utc):%H:%M:%S}"
                + ("" if r.reporting else " (silent)"),
                queries.format_speed(r.speed_kmh, u),
                f"{r.battery_pct:.0f}%",
                queries.format_distance(r.odometer_km, u, 0),
                "on" if r.autopilot else "off",
                r.city,
                r.route_id,
                f"{r.alerts_open}" + (f" {r.worst_severity}" if r.worst_severity else ""),
                queries.format_distance(r.distance_km, u),
                str(r.interventions),
                queries.format_km_per_event(r.km_per_intervention, u, "interventions"),
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    right = {2, 3, 4, 8, 9, 10, 11}
    for row in table:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    if not rows:
        lines.append("(no vehicles)")
    return "\n".join(lines) + "\n"
