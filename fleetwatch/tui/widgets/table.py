"""A data table that shows immutable rows, sorts by any column and filters by text.

Rows are re-rendered from a tuple of snapshot objects on every refresh; sorting and
filtering happen here, on those objects, so the cursor stays on the same row key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import DataTable

T = TypeVar("T")
Cell = str | Text


@dataclass(frozen=True)
class Column(Generic[T]):
    """One column: header label, how to render a row's cell, and how to sort by it."""

    key: str
    label: str
    render: Callable[[T], Cell]
    sort_key: Callable[[T], Any]
    width: int | None = None
    export: Callable[[T], Any] | None = None
    """The CSV value; defaults to the rendered cell's plain text."""


class SnapshotTable(DataTable[Cell], Generic[T]):
    """Sortable, filterable table over immutable row objects."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("o", "cycle_sort", "Sort", id="table.sort", tooltip="Sort by the next column"),
        Binding(
            "O",
            "reverse_sort",
            "Reverse",
            show=False,
            id="table.reverse",
            tooltip="Reverse the sort order",
        ),
    ]

    class RowChosen(Message):
        """Enter (or a click on a selected row) on a row: carries the row object."""

        def __init__(self, table: SnapshotTable[Any], row: Any) -> None:
            super().__init__()
            self.table = table
            self.row = row

        @property
        def control(self) -> SnapshotTable[Any]:
            return self.table

    def __init__(
        self,
        columns: Sequence[Column[T]],
        row_key: Callable[[T], str],
        *,
        search_text: Callable[[T], str] | None = None,
        sort_column: str | None = None,
        sort_reverse: bool = False,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(
            id=id,
            classes=classes,
            cursor_type="row",
            zebra_stripes=True,
            cursor_foreground_priority="renderable",
        )
        self.spec: tuple[Column[T], ...] = tuple(columns)
        self._row_key = row_key
        self._search_text = search_text
        self.sort_column = sort_column
        self.sort_reverse = sort_reverse
        self.filter_text = ""
        self._rows: tuple[T, ...] = ()
        self._shown: list[T] = []
        self._by_key: dict[str, T] = {}

    def on_mount(self) -> None:
        for column in self.spec:
            self.add_column(self._header(column), key=column.key, width=column.width)

    # -- data -----------------------------------------------------------------

    @property
    def shown_rows(self) -> tuple[T, ...]:
        """The rows as displayed: filtered and sorted."""
        return tuple(self._shown)

    def show_rows(self, rows: Sequence[T]) -> None:
        self._rows = tuple(rows)
        self._rebuild()

    def set_spec(self, columns: Sequence[Column[T]]) -> None:
        """Replace the column renderers (same keys), e.g. after a change of units."""
        self.spec = tuple(columns)
        if self.is_mounted:
            self._refresh_headers()

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        self._rebuild()

    def sort_by(self, column_key: str, *, reverse: bool | None = None) -> None:
        if reverse is None:
            reverse = not self.sort_reverse if column_key == self.sort_column else False
        self.sort_column = column_key
        self.sort_reverse = reverse
        self._refresh_headers()
        self._rebuild()

    def current_row(self) -> T | None:
        if not self._shown or self.cursor_row < 0 or self.cursor_row >= len(self._shown):
            return None
        return self._shown[self.cursor_row]

    def move_to_key(self, key: str) -> bool:
        for index, row in enumerate(self._shown):
            if self._row_key(row) == key:
                self.move_cursor(row=index, animate=False, scroll=True)
                return True
        return False

    def export_rows(self) -> tuple[list[str], list[list[Any]]]:
        """Header labels and the displayed rows as plain values, for CSV."""
        header = [column.label for column in self.spec]
        body: list[list[Any]] = []
        for row in self._shown:
            values: list[Any] = []
            for column in self.spec:
                if column.export is not None:
                    values.append(column.export(row))
                else:
                    cell = column.render(row)
                    values.append(cell.plain if isinstance(cell, Text) else cell)
            body.append(values)
        return header, body

    # -- actions ----------------------------------------------------------------

    def action_cycle_sort(self) -> None:
        keys = [column.key for column in self.spec]
        if self.sort_column not in keys:
            self.sort_by(keys[0], reverse=False)
            return
        index = (keys.index(self.sort_column) + 1) % len(keys)
        self.sort_by(keys[index], reverse=False)

    def action_reverse_sort(self) -> None:
        if self.sort_column is None:
            self.sort_by(self.spec[0].key, reverse=True)
        else:
            self.sort_by(self.sort_column, reverse=not self.sort_reverse)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(str(event.column_key.value))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        row = self._by_key.get(str(event.row_key.value))
        if row is not None:
            self.post_message(self.RowChosen(self, row))

    # -- internals ----------------------------------------------------------------

    def _header(self, column: Column[T]) -> Text:
        if column.key != self.sort_column:
            return Text(column.label)
        arrow = "▼" if self.sort_reverse else "▲"
        return Text.assemble(column.label, (f" {arrow}", "bold"))

    def _refresh_headers(self) -> None:
        for column in self.spec:
            found = self.columns.get(column.key)  # type: ignore[call-overload]
            if found is not None:
                found.label = self._header(column)
        self._require_update_dimensions = True
        self.refresh()

    def _matches(self, row: T) -> bool:
        if not self.filter_text:
            return True
        if self._search_text is not None:
            haystack = self._search_text(row)
        else:
            parts = []
            for column in self.spec:
                cell = column.render(row)
                parts.append(cell.plain if isinstance(cell, Text) else cell)
            haystack = " ".join(parts)
        haystack = haystack.lower()
        return all(word in haystack for word in self.filter_text.lower().split())

    def _rebuild(self) -> None:
        if not self.is_mounted:
            return
        shown = [row for row in self._rows if self._matches(row)]
        column = next((c for c in self.spec if c.key == self.sort_column), None)
        if column is not None:
            shown.sort(key=lambda row: (_none_last(column.sort_key(row)), self._row_key(row)))
            if self.sort_reverse:
                shown.reverse()
        previous = self.current_row()
        previous_key = self._row_key(previous) if previous is not None else None
        scroll_y = self.scroll_y
        self._shown = shown
        self._by_key = {self._row_key(row): row for row in shown}
        self.clear()
        for row in shown:
            self.add_row(*(c.render(row) for c in self.spec), key=self._row_key(row))
        if previous_key is not None:
            for index, row in enumerate(shown):
                if self._row_key(row) == previous_key:
                    self.move_cursor(row=index, animate=False, scroll=False)
                    break
        self.scroll_to(y=scroll_y, animate=False, immediate=True)


def _none_last(value: Any) -> tuple[int, Any]:
    """Sort key that puts None after every value (and works for mixed None/number)."""
    return (1, 0) if value is None else (0, value)
