"""The key footer, fitted to the terminal's width so the help key is always on it."""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len
from textual.app import ComposeResult
from textual.binding import Binding
from textual.events import Resize
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

PALETTE_WIDTH = 12
"""The command palette key on the right (``▏^p palette``) with its border and padding."""


class KeyFooter(Footer):
    """Textual's footer, but never cut on the right: when the keys do not all fit, it
    packs them closer, then leaves out the keys of ``give_way`` in that order, then any
    other key from the right, until the rest fit. ``keep`` (help) always stays. A key left
    out still works and is listed in the help screen; the keys shown are the live bindings,
    so remapped keys show as remapped. (Binding groups are not drawn as groups.)"""

    def __init__(
        self,
        *,
        give_way: Sequence[str] = (),
        keep: Sequence[str] = ("help",),
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.give_way = tuple(give_way)
        self.keep = tuple(keep)
        self._composed_width = 0
        self.shown_ids: tuple[str, ...] = ()
        """The ids of the keys on the footer (tests and the help screen)."""

    def compose(self) -> ComposeResult:
        if not self._bindings_ready:
            return
        width = self.size.width or self.app.size.width
        self._composed_width = width
        keys = self._keys()
        compact, shown = fit(
            [(self.app.get_key_display(b), b.description, b.id or "") for b, _e, _t in keys],
            width - PALETTE_WIDTH,
            self.give_way,
            self.keep,
        )
        self.set_reactive(Footer.compact, compact)
        self.set_class(compact, "-compact")
        self.shown_ids = tuple(keys[index][0].id or "" for index in shown)
        for index in shown:
            binding, enabled, tooltip = keys[index]
            yield FooterKey(
                binding.key,
                self.app.get_key_display(binding),
                binding.description,
                binding.action,
                disabled=not enabled,
                tooltip=tooltip or binding.tooltip,
            ).data_bind(compact=Footer.compact)
        if self.show_command_palette and self.app.ENABLE_COMMAND_PALETTE:
            found = self.screen.active_bindings.get(self.app.COMMAND_PALETTE_BINDING)
            if found is not None:
                _node, binding, enabled, tooltip = found
                yield FooterKey(
                    binding.key,
                    self.app.get_key_display(binding),
                    binding.description,
                    binding.action,
                    classes="-command-palette",
                    disabled=not enabled,
                    tooltip=binding.tooltip or binding.description,
                )

    def _keys(self) -> list[tuple[Binding, bool, str]]:
        """The shown bindings in the screen's order, one per action (as Textual does)."""
        keys: dict[str, tuple[Binding, bool, str]] = {}
        for _node, binding, enabled, tooltip in self.screen.active_bindings.values():
            if binding.show and binding.action not in keys:
                keys[binding.action] = (binding, enabled, tooltip)
        return list(keys.values())

    def on_resize(self, event: Resize) -> None:
        if self._bindings_ready and event.size.width != self._composed_width:
            self.call_after_refresh(self.recompose)


def key_width(key: str, description: str, *, compact: bool) -> int:
    """Columns one footer key takes: `` k desc `` spaced, ``k desc`` and a gap compact."""
    return cell_len(key) + cell_len(description) + (2 if compact else 3)


def fit(
    keys: Sequence[tuple[str, str, str]],
    room: int,
    give_way: Sequence[str],
    keep: Sequence[str],
) -> tuple[bool, list[int]]:
    """Whether to pack the keys (key, description, binding id) compactly, and the indexes
    of those shown in ``room`` columns: all of them spaced if they fit, else compact, the
    ids of ``give_way`` leaving first, in order, then other keys from the right."""

    def total(shown: list[int], compact: bool) -> int:
        return sum(key_width(keys[i][0], keys[i][1], compact=compact) for i in shown)

    shown = list(range(len(keys)))
    if total(shown, compact=False) <= room:
        return False, shown
    order = [i for binding_id in give_way for i in shown if keys[i][2] == binding_id]
    order += [i for i in reversed(shown) if i not in order and keys[i][2] not in keep]
    for index in order:
        if total(shown, compact=True) <= room:
            break
        shown.remove(index)
    return True, shown
