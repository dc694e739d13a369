"""The fleet view: KPI tiles and the sortable, filterable vehicle table."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal

from fleetwatch.tui import format as fmt
from fleetwatch.tui.messages import OpenVehicle, RenderContext
from fleetwatch.tui.screens.common import SEVERITY_STYLE, STATUS_STYLE, FilterBox, View, styled
from fleetwatch.tui.snapshots import FleetKpis, Snapshot, VehicleRow
from fleetwatch.tui.widgets.bars import KpiTile
from fleetwatch.tui.widgets.table import Column, SnapshotTable


def vehicle_columns(context: RenderContext) -> list[Column[VehicleRow]]:
    units = context.units
    return [
        Column(
            "vehicle", "Vehicle", lambda v: v.vehicle_id, lambda v: v.vehicle_id, width=7, fit=True
        ),
        Column(
            "status",
            "Status",
            lambda v: styled(_status(v, context), STATUS_STYLE),
            lambda v: _status(v, context),
            width=9,
        ),
        Column(
            "speed",
            "Speed",
            lambda v: _speed_cell(v, units),
            lambda v: v.speed_kmh,
            export=lambda v: round(fmt.speed_value(v.speed_kmh, units), 1),
            export_label=f"Speed ({fmt.speed_unit(units)})",
            width=9,
        ),
        Column(
            "battery",
            "Battery",
            _battery_cell,
            lambda v: v.battery_pct,
            export=lambda v: round(v.battery_pct, 1),
            export_label="Battery (%)",
            width=11,
            drop=2,
        ),
        Column(
            "autopilot",
            "Autopilot",
            lambda v: Text("on", style="green") if v.autopilot else Text("off", style="yellow"),
            lambda v: v.autopilot,
            width=9,
            drop=1,
        ),
        Column(
            "last_seen",
            "Last seen",
            lambda v: fmt.age(v.last_seen, context.now),
            lambda v: -v.last_seen.timestamp(),
            export=lambda v: v.last_seen.isoformat(),
            export_label="Last seen (UTC)",
            width=9,
            # Gives way before the battery: a vehicle not heard from lately says "silent".
            drop=3,
        ),
        Column(
            "alerts",
            "Alerts",
            lambda v: Text(str(v.open_alerts), style="bold red") if v.open_alerts else Text("0"),
            lambda v: v.open_alerts,
            width=6,
        ),
        Column(
            "kmpi",
            f"{units}/interv.",
            lambda v: _kmpi_cell(v, units),
            lambda v: v.km_per_intervention,
            export=lambda v: (
                ""
                if v.km_per_intervention is None
                else round(fmt.distance_value(v.km_per_intervention, units), 2)
            ),
            width=11,
            drop=1,
        ),
        Column("city", "City", lambda v: v.city, lambda v: v.city, width=16, drop=4),
    ]


def _status(vehicle: VehicleRow, context: RenderContext) -> str:
    """A vehicle whose data is still being backfilled is loading, not silent."""
    if vehicle.status == "silent" and context.loading_pct is not None:
        return "loading"
    return vehicle.status


def _speed_cell(vehicle: VehicleRow, units: fmt.Units) -> Text:
    text = fmt.speed(vehicle.speed_kmh, units)
    over = vehicle.speed_kmh > vehicle.speed_limit_kmh + 0.5
    return Text(text, style="bold red" if over else "", justify="right")


def _battery_cell(vehicle: VehicleRow) -> Text:
    pct = vehicle.battery_pct
    style = "bold red" if pct < 20 else "yellow" if pct < 35 else "green"
    bar = "█" * int(pct // 20) + "░" * (5 - int(pct // 20))
    return Text.assemble((bar, style), f" {pct:3.0f} %")


def _kmpi_cell(vehicle: VehicleRow, units: fmt.Units) -> Text:
    value = vehicle.km_per_intervention
    if value is None:
        return Text("no interv.", style="dim", justify="right")
    return Text(fmt.distance(value, units), justify="right")


class FleetPane(View):
    title = "Fleet"

    def compose(self) -> ComposeResult:
        yield from self.compose_notice()
        with Horizontal(id="kpis"):
            for name in ("vehicles", "distance", "interventions", "disengagements", "alerts"):
                yield KpiTile(id=f"kpi-{name}", classes="kpi")
        yield FilterBox(placeholder="filter vehicles (id, status, city…)", id="fleet-filter")
        yield SnapshotTable(
            vehicle_columns(self._render_context),
            row_key=lambda v: v.vehicle_id,
            sort_column="vehicle",
            id="fleet-table",
        )

    def main_table(self) -> SnapshotTable[Any]:
        return self.query_one("#fleet-table", SnapshotTable)

    def filter_box(self) -> FilterBox:
        return self.query_one("#fleet-filter", FilterBox)

    def show(self, snapshot: Snapshot, context: RenderContext) -> None:
        self._render_context = context
        fleet = snapshot.fleet
        if fleet is None:
            return
        self._show_kpis(fleet.kpis, context)
        table = self.main_table()
        table.set_spec(vehicle_columns(context))
        table.show_rows(fleet.vehicles)
        self.set_notice("" if fleet.vehicles else "No vehicle has reported yet.")

    def _show_kpis(self, kpis: FleetKpis, context: RenderContext) -> None:
        units = context.units
        # While history loads, vehicles whose data has not reached the present yet are
        # loading, not silent: the count of those reporting says little then.
        loading = context.loading_pct is not None and kpis.vehicles_reporting < kpis.vehicles_total
        self.query_one("#kpi-vehicles", KpiTile).show(
            "Reporting",
            f"{kpis.vehicles_reporting} / {kpis.vehicles_total}",
            "others loading" if loading else f"{kpis.vehicles_moving} moving",
        )
        self.query_one("#kpi-distance", KpiTile).show(
            "Distance",
            fmt.distance(kpis.distance_km, units),
            (fmt.distance(kpis.autonomous_km, units), "autonomous"),
        )
        self.query_one("#kpi-interventions", KpiTile).show(
            "Interventions",
            fmt.count(kpis.interventions),
            _per(kpis.km_per_intervention, units, "interventions"),
        )
        self.query_one("#kpi-disengagements", KpiTile).show(
            "Disengagements",
            fmt.count(kpis.disengagements),
            _per(kpis.km_per_disengagement, units, "disengagements"),
        )
        counts = {
            "critical": kpis.alerts_critical,
            "warning": kpis.alerts_warning,
            "info": kpis.alerts_info,
        }
        alerts = tuple(
            Text(
                f"{count} {fmt.SHORT_SEVERITY[severity]}",
                style=SEVERITY_STYLE[severity] if count else "",
            )
            for severity, count in counts.items()
        )
        total = sum(counts.values())
        # The words of the alerts table's state column for acknowledged and silenced.
        handled = f"{kpis.alerts_handled} ack/muted" if kpis.alerts_handled else None
        self.query_one("#kpi-alerts", KpiTile).show("Open alerts", f"{total}", alerts, note=handled)

    def on_snapshot_table_row_chosen(self, event: SnapshotTable.RowChosen) -> None:
        event.stop()
        row: VehicleRow = event.row
        self.post_message(OpenVehicle(row.vehicle_id))


def _per(value: float | None, units: fmt.Units, what: str) -> tuple[str, str]:
    """``1 per 406.4 km``: distance per event as a ratio of totals, or ``no interventions``;
    as two phrases, so a narrow tile breaks the line between them."""
    if value is None:
        return ("no", what)
    return ("1 per", fmt.distance(value, units))
