"""The interventions view: interventions and disengagements over time, km per
intervention by vehicle, and the event list."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal

from fleetwatch.tui import format as fmt
from fleetwatch.tui.messages import OpenEvent, RenderContext
from fleetwatch.tui.screens.common import FilterBox, View, cause_column, event_type_column
from fleetwatch.tui.snapshots import DrivingEventRow, InterventionsView, Snapshot
from fleetwatch.tui.widgets.barlist import BarItem, BarList
from fleetwatch.tui.widgets.charts import BarChart, BarData, day_ticks
from fleetwatch.tui.widgets.table import Column, SnapshotTable

RANKING_BARS = 10
CAUSE_WIDTH = 21
"""The longest causes in words: "unexpected pedestrian", "traffic light misread"."""


def intervention_columns(
    context: RenderContext, *, dated: bool = True
) -> list[Column[DrivingEventRow]]:
    """The events table: times without the date when every event is from today, so the
    cause, the column that explains the event, has room for its words."""
    return [
        Column(
            "time",
            "Time",
            lambda e: fmt.when(e.time, dated=dated),
            lambda e: e.time,
            export=lambda e: e.time.isoformat(),
            export_label="Time (UTC)",
            width=8,
            fit=True,
        ),
        Column(
            "vehicle", "Vehicle", lambda e: e.vehicle_id, lambda e: e.vehicle_id, width=7, fit=True
        ),
        event_type_column(),
        cause_column(CAUSE_WIDTH),
        Column(
            "place",
            "Place",
            lambda e: f"{e.lat:.4f}, {e.lon:.4f}",
            lambda e: (e.lat, e.lon),
            width=20,
            drop=3,
        ),
        Column(
            "speed",
            "Speed",
            lambda e: Text(fmt.speed(e.speed_kmh, context.units), justify="right"),
            lambda e: e.speed_kmh,
            export=lambda e: round(fmt.speed_value(e.speed_kmh, context.units), 1),
            export_label=f"Speed ({fmt.speed_unit(context.units)})",
            width=9,
            drop=1,
        ),
        Column(
            "autopilot",
            "Autopilot",
            lambda e: "on" if e.autopilot else "off",
            lambda e: e.autopilot,
            width=9,
            drop=2,
        ),
    ]


def over_time_data(view: InterventionsView) -> BarData:
    long = view.bucket_width >= timedelta(days=1)
    labels = tuple(b.start.strftime("%m-%d" if long else "%H:%M") for b in view.buckets)
    span = view.bucket_width * len(view.buckets)
    # Over more than a day, bars of a few hours labelled with clock times would seem to
    # run backwards (19:40 16:40 13:40…): the axis shows dates at midnight instead.
    ticks = (
        day_ticks(view.buckets[0].start, view.bucket_width, len(view.buckets))
        if view.buckets and span > timedelta(days=1)
        else ()
    )
    return BarData(
        labels=labels,
        ticks=ticks,
        values=(
            tuple(float(b.interventions) for b in view.buckets),
            tuple(float(b.disengagements) for b in view.buckets),
        ),
        names=("interventions", "disengagements"),
        colors=("red", "orange"),
        markers=("sd", "▒"),
    )


def ranking_data(view: InterventionsView, units: fmt.Units) -> list[BarItem]:
    """The vehicles with the fewest kilometres per intervention, the worst on top."""
    ranked = [r for r in view.ranking if r.km_per_intervention is not None]
    ranked.sort(key=lambda r: (r.km_per_intervention or 0.0, r.vehicle_id))
    return [
        BarItem(
            r.vehicle_id,
            fmt.distance_value(r.km_per_intervention or 0.0, units),
            fmt.distance(r.km_per_intervention or 0.0, units),
        )
        for r in ranked[:RANKING_BARS]
    ]


class InterventionsPane(View):
    title = "Interventions"

    def compose(self) -> ComposeResult:
        yield from self.compose_notice()
        with Horizontal(id="interventions-charts"):
            yield BarChart("interventions & disengagements over time", id="chart-over-time")
            yield BarList("lowest km per intervention", id="chart-ranking")
        yield FilterBox(placeholder="filter events (vehicle, cause…)", id="interventions-filter")
        yield SnapshotTable(
            intervention_columns(self._render_context),
            row_key=lambda e: f"{e.time.isoformat()}/{e.vehicle_id}/{e.type}",
            sort_column="time",
            sort_reverse=True,
            id="interventions-table",
        )

    def main_table(self) -> SnapshotTable[Any]:
        return self.query_one("#interventions-table", SnapshotTable)

    def filter_box(self) -> FilterBox:
        return self.query_one("#interventions-filter", FilterBox)

    def show(self, snapshot: Snapshot, context: RenderContext) -> None:
        self._render_context = context
        view = snapshot.interventions
        if view is None:
            return
        self.query_one("#chart-over-time", BarChart).set_data(over_time_data(view))
        ranking = self.query_one("#chart-ranking", BarList)
        ranking.chart_title = f"lowest {context.units} per intervention"
        ranking.empty_text = "no interventions in this window"
        ranking.set_data(ranking_data(view, context.units))
        table = self.main_table()
        dated = not fmt.all_today((e.time for e in view.events), context.now)
        table.set_spec(intervention_columns(context, dated=dated))
        table.show_rows(view.events)
        self.set_notice("" if view.events else "No interventions or disengagements in this window.")

    def on_snapshot_table_row_chosen(self, event: SnapshotTable.RowChosen) -> None:
        event.stop()
        row: DrivingEventRow = event.row
        self.post_message(OpenEvent(row))
