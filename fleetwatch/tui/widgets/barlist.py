"""Labelled horizontal bars drawn as text: one row per bar, its name on the left and its
value on the right, so a name and its bar never part at any size (plotext spreads
horizontal bars over the rows it has, which put bars on rows without a name)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.cells import cell_len
from rich.text import Text
from textual.widget import Widget

EIGHTHS = " ▏▎▍▌▋▊▉"
"""Partial blocks for the end of a bar, in eighths of a column."""


@dataclass(frozen=True)
class BarItem:
    label: str
    value: float
    shown: str
    """The value as written at the bar's end, with its unit."""


class BarList(Widget):
    """A title and one bar per item, top to bottom in the order given. When there are more
    items than rows, the last row says how many more there are."""

    DEFAULT_CSS = """
    BarList {
        height: 1fr;
        width: 1fr;
        min-height: 6;
        padding: 0 1;
    }
    """

    def __init__(
        self,
        title: str = "",
        *,
        color: str = "cyan",
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.chart_title = title
        self.color = color
        self.empty_text = "no data in this window"
        self.items: tuple[BarItem, ...] = ()

    def set_data(self, items: Sequence[BarItem]) -> None:
        self.items = tuple(items)
        self.refresh()

    def render(self) -> Text:
        width, height = self.content_size.width, self.content_size.height
        text = Text(self.chart_title.center(width).rstrip(), no_wrap=True, overflow="ellipsis")
        rows = max(height - 1, 1)
        if not self.items or not any(item.value > 0 for item in self.items):
            text.append("\n" * max(rows // 2, 1))
            text.append(self.empty_text.center(width).rstrip(), style="dim")
            return text
        shown = self.items if len(self.items) <= rows else self.items[: rows - 1]
        label_width = min(max(cell_len(item.label) for item in shown), max(width // 3, 4))
        value_width = max(cell_len(item.shown) for item in shown)
        bar_width = max(width - label_width - value_width - 2, 1)
        top = max(item.value for item in shown) or 1.0
        for item in shown:
            text.append("\n")
            label = Text(item.label)
            label.truncate(label_width, overflow="ellipsis", pad=True)
            text.append_text(label)
            text.append(" ")
            text.append(bar(item.value / top, bar_width).ljust(bar_width), style=self.color)
            text.append(" ")
            text.append(item.shown.rjust(value_width))
        if len(shown) < len(self.items):
            text.append(f"\n… {len(self.items) - len(shown)} more", style="dim")
        return text

    def on_resize(self) -> None:
        self.refresh()


def bar(fraction: float, width: int) -> str:
    """A bar of ``fraction`` of ``width`` columns, to an eighth of a column; a value above
    zero shows at least a sliver."""
    eighths = round(max(0.0, min(fraction, 1.0)) * width * 8)
    if fraction > 0 and eighths == 0:
        eighths = 1
    full, rest = divmod(eighths, 8)
    return "█" * full + (EIGHTHS[rest] if rest else "")
