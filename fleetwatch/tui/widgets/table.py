"""A data table that shows immutable rows, sorts by any column and filters by text.

Rows are re-rendered from a tuple of snapshot objects on every refresh; sorting and
filtering happen here, on those objects, so the cursor stays on the same row key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Generic, TypeVar

from rich.text import Text
from textual._two_way_dict import TwoWayDict
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets.data_table import RowKey

T = TypeVar("T")

FIT_NARROW_AFTER: Final = 10
"""Row sets in a row (refreshes, about one a second) a ``fit`` column must measure
narrower before it narrows."""
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
    export_label: str | None = None
    """The CSV header when it needs more than the label, such as the unit."""
    drop: int = 0
    """On a narrow table, columns give way highest ``drop`` first (0: never). The column
    the table is sorted by never gives way: the order must have a visible column."""
    flex: bool = False
    """Takes the width the other shown columns leave, but never less than ``width``."""
    fit: bool = False
    """As wide as its widest cell among the rows given and its header (with the sort
    arrow), but never less than ``width``: a state column needs room for "firing ack" only
    while an alert is acknowledged, a time column for a date only when one is shown. It
    widens at once and narrows only after :data:`FIT_NARROW_AFTER` narrower row sets."""


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
        # The rows are what moves here: Home and End go to the first and last row (the
        # table's own keys scroll to the first and last column).
        Binding("home", "scroll_top", "First row", show=False, id="table.first"),
        Binding("end", "scroll_bottom", "Last row", show=False, id="table.last"),
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

    class Sorted(Message):
        """The operator sorted the table: by ``column`` (a column key), reversed or not."""

        def __init__(self, table: SnapshotTable[Any], column: str, reverse: bool) -> None:
            super().__init__()
            self.table = table
            self.column = column
            self.reverse = reverse

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
        self.default_sort = (sort_column, sort_reverse)
        """The order the table starts in."""
        self.filter_text = ""
        self._rows: tuple[T, ...] = ()
        self._shown: list[T] = []
        self._by_key: dict[str, T] = {}
        self._cells_by_key: dict[str, list[Cell]] = {}
        self._visible: tuple[Column[T], ...] = self.spec
        self._widths: dict[str, int | None] = {}
        self._fitted: dict[str, int] = {}
        """The widths of the ``fit`` columns' widest cells (see :meth:`_sticky_fit`)."""
        self._narrower: dict[str, int] = {}
        """Per ``fit`` column, how many row sets in a row measured narrower than it is."""
        self._overflows = True
        """Whether the rows overflow the table's height (and need a scrollbar)."""

    def on_mount(self) -> None:
        self._add_columns()

    def on_resize(self) -> None:
        self._fit()

    def _add_columns(self) -> None:
        for column in self._visible:
            width = self._widths.get(column.key, column.width)
            self.add_column(self._header(column), key=column.key, width=width)

    def _fit(self) -> bool:
        """Choose the columns (and the flexible column's width) for the table's width;
        True when the columns changed (and the table was rebuilt)."""
        # Room for the vertical scrollbar only when the rows overflow (a short table, such
        # as a vehicle's few alerts, has none).
        self._overflows = self._rows_overflow()
        scrollbar = self.styles.scrollbar_size_vertical if self._overflows else 0
        available = self.size.width - scrollbar
        if available <= 0:
            return False
        pad = 2 * self.cell_padding
        shown = list(self.spec)
        base = {c.key: self._base_width(c) for c in self.spec}

        def total() -> int:
            return sum((base[c.key] or len(c.label) + 2) + pad for c in shown)

        droppable = (c for c in self.spec if c.drop and c.key != self.sort_column)
        for column in sorted(droppable, key=lambda c: -c.drop):
            if total() <= available:
                break
            shown.remove(column)
        widths: dict[str, int | None] = {c.key: base[c.key] for c in shown}
        for column in shown:
            if column.flex and column.width is not None:
                widths[column.key] = max(column.width, column.width + available - total())
        if tuple(shown) == self._visible and widths == self._widths:
            return False
        previous = self.current_row()
        self._visible = tuple(shown)
        self._widths = widths
        self.clear(columns=True)
        self._cells_by_key = {}
        self._add_columns()
        self._rebuild()
        if previous is not None:
            self.move_to_key(self._row_key(previous))
        return True

    # -- data -----------------------------------------------------------------

    @property
    def shown_rows(self) -> tuple[T, ...]:
        """The rows as displayed: filtered and sorted."""
        return tuple(self._shown)

    @property
    def row_total(self) -> int:
        """Every row given, before filtering."""
        return len(self._rows)

    def show_rows(self, rows: Sequence[T]) -> None:
        self._rows = tuple(rows)
        fitted = self._sticky_fit(
            {
                column.key: max((_cell_width(column.render(row)) for row in self._rows), default=0)
                for column in self.spec
                if column.fit
            }
        )
        if fitted != self._fitted or self._rows_overflow() != self._overflows:
            self._fitted = fitted
            if self.is_mounted and self._fit():
                return  # the columns were rebuilt with the rows
        self._rebuild()

    def _sticky_fit(self, measured: dict[str, int]) -> dict[str, int]:
        """The ``fit`` columns' widths for ``measured`` (their widest cells now): a column
        widens at once but narrows only once it has measured narrower for
        :data:`FIT_NARROW_AFTER` row sets in a row, so a live table's columns do not shift
        with every refresh that happens to lack its longest value."""
        fitted = {}
        for key, width in measured.items():
            current = self._fitted.get(key)
            if current is None or width >= current:
                self._narrower.pop(key, None)
                fitted[key] = width
                continue
            seen = self._narrower.get(key, 0) + 1
            if seen >= FIT_NARROW_AFTER:
                self._narrower.pop(key, None)
                fitted[key] = width
            else:
                self._narrower[key] = seen
                fitted[key] = current
        return fitted

    def _rows_overflow(self) -> bool:
        header = self.header_height if self.show_header else 0
        return len(self._rows) + header > self.size.height

    def set_spec(self, columns: Sequence[Column[T]]) -> None:
        """Replace the column renderers (same keys), e.g. after a change of units; new
        widths take effect with the next :meth:`show_rows`."""
        self.spec = tuple(columns)
        keys = {c.key for c in self._visible}
        self._visible = tuple(c for c in self.spec if c.key in keys)
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
        if self.is_mounted and self._fit():
            return  # a column given way to is back (or another gave way): all rebuilt
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
        header = [column.export_label or column.label for column in self.spec]
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

    def restore_sort(self, column_key: str, reverse: bool) -> bool:
        """Sort as remembered from an earlier session, if the table still has that column."""
        if column_key not in {column.key for column in self.spec}:
            return False
        self.sort_by(column_key, reverse=reverse)
        return True

    def _sort_chosen(self, column_key: str, *, reverse: bool | None = None) -> None:
        self.sort_by(column_key, reverse=reverse)
        assert self.sort_column is not None
        self.post_message(self.Sorted(self, self.sort_column, self.sort_reverse))

    def action_cycle_sort(self) -> None:
        # Every column, including those a narrow table hides: sorting by one shows it.
        keys = [column.key for column in self.spec]
        if self.sort_column not in keys:
            self._sort_chosen(keys[0], reverse=False)
            return
        index = (keys.index(self.sort_column) + 1) % len(keys)
        self._sort_chosen(keys[index], reverse=False)

    def action_reverse_sort(self) -> None:
        if self.sort_column is None:
            self._sort_chosen(self.spec[0].key, reverse=True)
        else:
            self._sort_chosen(self.sort_column, reverse=not self.sort_reverse)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self._sort_chosen(str(event.column_key.value))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        row = self._by_key.get(str(event.row_key.value))
        if row is not None:
            self.post_message(self.RowChosen(self, row))

    # -- internals ----------------------------------------------------------------

    def _base_width(self, column: Column[T]) -> int | None:
        """The column's width before a flexible column takes what is left."""
        if not column.fit:
            return column.width
        header = len(column.label) + (2 if column.key == self.sort_column else 0)
        return max(column.width or 0, header, self._fitted.get(column.key, 0))

    def _header(self, column: Column[T]) -> Text:
        if column.key != self.sort_column:
            return Text(column.label)
        arrow = "▼" if self.sort_reverse else "▲"
        label = column.label
        width = self._base_width(column)
        if width is not None and len(label) + 2 > width:
            # The header is cut to the column's width: shorten the label, keep the arrow.
            label = label[: max(width - 3, 0)] + "…"
        return Text.assemble(label, (f" {arrow}", "bold"))

    def _refresh_headers(self) -> None:
        """Relabel changed headers (sort arrow, units). Only columns without a fixed width
        are re-measured, and only when a label changed: re-measuring means every cell."""
        changed = False
        remeasure = False
        for column in self._visible:
            found = self.columns.get(column.key)  # type: ignore[call-overload]
            label = self._header(column)
            if found is not None and found.label != label:
                found.label = label
                changed = True
                remeasure = remeasure or column.width is None
        if remeasure:
            self._require_update_dimensions = True
        if changed:
            self._update_count += 1
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

    def _cells(self, row: T) -> list[Cell]:
        # Text cells skip DataTable's markup parsing of plain strings; a cell wider than
        # its column ends in "…" rather than being cut mid-word without a sign.
        cells: list[Cell] = []
        for column in self._visible:
            cell = column.render(row)
            text = cell if isinstance(cell, Text) else Text(cell)
            text.no_wrap = True
            text.overflow = "ellipsis"
            cells.append(text)
        return cells

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
        keys = [self._row_key(row) for row in shown]
        self._shown = shown
        self._by_key = dict(zip(keys, shown, strict=True))
        if set(keys) == set(self._cells_by_key) and len(keys) == len(self._cells_by_key):
            self._update_in_place(keys, shown)
        else:
            self._replace_all(keys, shown)
        if previous_key is not None and previous_key in self._by_key:
            index = keys.index(previous_key)
            if index != self.cursor_row:
                self.move_cursor(row=index, animate=False, scroll=False)

    def _replace_all(self, keys: list[str], shown: list[T]) -> None:
        """New or removed rows: clear and add every row (measures every cell)."""
        scroll_y = self.scroll_y
        self.clear()
        self._cells_by_key = {}
        for key, row in zip(keys, shown, strict=True):
            cells = self._cells(row)
            self._cells_by_key[key] = cells
            self.add_row(*cells, key=key)
        self.scroll_to(y=scroll_y, animate=False, immediate=True)

    def _update_in_place(self, keys: list[str], shown: list[T]) -> None:
        """The same rows as shown: update only the cells that changed, then reorder.

        A 1,000-row refresh then costs a few hundred cell updates instead of re-adding
        and re-measuring 9,000 cells, which keeps keys answered while data streams in.
        """
        widths = {str(column.key.value): column.content_width for column in self.columns.values()}
        for key, row in zip(keys, shown, strict=True):
            old = self._cells_by_key[key]
            new = self._cells(row)
            for index, (before, after) in enumerate(zip(old, new, strict=True)):
                if before != after:
                    column_key = self._visible[index].key
                    wider = after.cell_len > widths.get(column_key, 0)  # type: ignore[union-attr]
                    self.update_cell(key, column_key, after, update_width=wider)
            self._cells_by_key[key] = new
        current = [row_key.value for row_key in self._row_order()]
        if current != keys:
            self._reorder(keys)

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        """DataTable measures every cell of new rows to size auto-width columns; with
        every column at a fixed width (and one-line rows) only the virtual size is
        needed, which saves a few hundred milliseconds per 1,000 new rows.
        (Overrides a DataTable internal; Textual is pinned exactly.)"""
        if any(column.width is None for column in self.spec):
            super()._update_dimensions(new_rows)
            return
        width = sum(column.get_render_width(self) for column in self.columns.values())
        header_height = self.header_height if self.show_header else 0
        self.virtual_size = Size(
            width + self._row_label_column_width, self._total_row_height + header_height
        )

    def _row_order(self) -> list[RowKey]:
        return [self._row_locations.get_key(index) for index in range(self.row_count)]  # type: ignore[misc]

    def _reorder(self, keys: list[str]) -> None:
        # What DataTable.sort does once it has the order (Textual is pinned exactly).
        self._row_locations = TwoWayDict({RowKey(key): index for index, key in enumerate(keys)})
        self._update_count += 1
        self.refresh()


def _cell_width(cell: Cell) -> int:
    return cell.cell_len if isinstance(cell, Text) else Text(cell).cell_len


def _none_last(value: Any) -> tuple[int, Any]:
    """Sort key that puts None after every value (and works for mixed None/number)."""
    return (1, 0) if value is None else (0, value)
