"""The perception view: objects by class, distance and time-to-collision histograms,
and the near-miss list."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal

from fleetwatch.tui import format as fmt
from fleetwatch.tui.messages import OpenVehicle, RenderContext
from fleetwatch.tui.screens.common import FilterBox, View
from fleetwatch.tui.snapshots import NearMiss, Snapshot
from fleetwatch.tui.widgets.barlist import BarItem, BarList
from fleetwatch.tui.widgets.charts import BarChart, histogram_data
from fleetwatch.tui.widgets.table import Column, SnapshotTable


def near_miss_columns(context: RenderContext, *, dated: bool = True) -> list[Column[NearMiss]]:
    """Near misses, with times without the date when every one is from today, and
    distances and closing speeds in the chosen units."""
    units = context.units
    return [
        Column(
            "time",
            "Time",
            lambda n: fmt.when(n.time, dated=dated),
            lambda n: n.time,
            export=lambda n: n.time.isoformat(),
            export_label="Time (UTC)",
            width=8,
            fit=True,
        ),
        Column("vehicle", "Vehicle", lambda n: n.vehicle_id, lambda n: n.vehicle_id, width=9),
        Column("class", "Object", lambda n: n.object_class, lambda n: n.object_class, width=10),
        Column(
            "distance",
            "Distance",
            lambda n: Text(fmt.object_distance(n.distance_m, units), justify="right"),
            lambda n: n.distance_m,
            export=lambda n: round(fmt.object_distance_value(n.distance_m, units), 2),
            export_label=f"Distance ({fmt.object_distance_unit(units)})",
            width=9,
        ),
        Column(
            "closing",
            "Closing",
            lambda n: Text(fmt.closing_speed(n.closing_speed_mps, units), justify="right"),
            lambda n: n.closing_speed_mps,
            export=lambda n: round(fmt.closing_speed_value(n.closing_speed_mps, units), 2),
            export_label=f"Closing speed ({fmt.closing_speed_unit(units)})",
            width=10,
        ),
        Column(
            "ttc",
            "TTC",
            lambda n: Text(
                f"{n.ttc_s:.2f} s", style="bold red" if n.ttc_s < 1.0 else "yellow", justify="right"
            ),
            lambda n: n.ttc_s,
            export=lambda n: round(n.ttc_s, 3),
            export_label="TTC (s)",
            width=7,
        ),
    ]


class PerceptionPane(View):
    title = "Perception"

    def compose(self) -> ComposeResult:
        yield from self.compose_notice()
        with Horizontal(id="perception-charts"):
            yield BarList("objects by class", id="chart-classes")
            yield BarChart("distance", id="chart-distance")
            yield BarChart("time to collision", id="chart-ttc")
        yield FilterBox(placeholder="filter near misses (vehicle, class…)", id="perception-filter")
        yield SnapshotTable(
            near_miss_columns(self._render_context),
            row_key=lambda n: f"{n.time.isoformat()}/{n.vehicle_id}/{n.object_class}",
            sort_column="ttc",
            id="near-miss-table",
        )

    def main_table(self) -> SnapshotTable[Any]:
        return self.query_one("#near-miss-table", SnapshotTable)

    def filter_box(self) -> FilterBox:
        return self.query_one("#perception-filter", FilterBox)

    def show(self, snapshot: Snapshot, context: RenderContext) -> None:
        view = snapshot.perception
        if view is None:
            return
        by_count = sorted(view.by_class, key=lambda c: (-c.count, c.object_class))
        self.query_one("#chart-classes", BarList).set_data(
            [BarItem(c.object_class, float(c.count), fmt.count(c.count)) for c in by_count]
        )
        self.query_one("#chart-distance", BarChart).set_data(
            histogram_data(
                view.distance_bins,
                fmt.object_distance_unit(context.units),
                "green",
                scale=fmt.object_distance_value(1.0, context.units),
            )
        )
        self.query_one("#chart-ttc", BarChart).set_data(histogram_data(view.ttc_bins, "s", "red"))
        table = self.main_table()
        dated = not fmt.all_today((n.time for n in view.near_misses), context.now)
        table.set_spec(near_miss_columns(context, dated=dated))
        table.show_rows(view.near_misses)
        self.set_notice("" if view.by_class else "No perception events in this window.")

    def on_snapshot_table_row_chosen(self, event: SnapshotTable.RowChosen) -> None:
        event.stop()
        row: NearMiss = event.row
        self.post_message(OpenVehicle(row.vehicle_id, at=row.time))
