"""Modal screens: acknowledge/silence an alert, the key help, and start-up progress."""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import OptionList, ProgressBar, Static
from textual.widgets.option_list import Option

from fleetwatch.tui import format as fmt

ACK_CHOICES: tuple[timedelta, ...] = (
    timedelta(minutes=15),
    timedelta(hours=1),
    timedelta(hours=4),
    timedelta(hours=24),
)
SILENCE_CHOICES: tuple[timedelta, ...] = (
    timedelta(minutes=15),
    timedelta(hours=1),
    timedelta(hours=4),
    timedelta(hours=24),
    timedelta(days=7),
)


class DurationModal(ModalScreen[timedelta | None]):
    """Asks for a duration (acknowledgement expiry, silence length); Esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="modal.cancel"),
        # The app's keys do not reach a dialog: help is bound here too.
        Binding("question_mark", "app.help", "Help", id="help", tooltip="Show every key"),
    ]

    def __init__(self, title: str, detail: str, choices: tuple[timedelta, ...]) -> None:
        super().__init__()
        self._title = title
        self._detail = detail
        self._choices = choices

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(self._title, style="bold"), classes="dialog-title")
            yield Static(self._detail, classes="dialog-detail")
            yield OptionList(
                *(Option(f"for {fmt.duration(c)}", id=str(i)) for i, c in enumerate(self._choices)),
                id="duration-choices",
            )
            yield Static("Enter chooses · Esc cancels · ? help", classes="dialog-hint")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        options.highlighted = 1 if len(self._choices) > 1 else 0
        options.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        index = int(event.option.id or 0)
        self.dismiss(self._choices[index])

    def action_cancel(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    """Every key of the current screen with its description, from the live bindings."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "close", "Close", id="help.close"),
    ]

    def __init__(self, rows: list[tuple[str, str, str]]) -> None:
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        text = Text()
        text.append("fleetwatch keys\n\n", style="bold")
        for keys, description, binding_id in self.rows:
            text.append(f"{keys:>11}", style="bold cyan")
            text.append(f"  {description}")
            if binding_id:
                text.append(f"  {binding_id}", style="dim")
            text.append("\n")
        text.append(
            "\nClick a column header to sort by it. Ctrl+P opens the command palette, "
            "which lists every action and the themes. Remap a key in the settings file "
            'by its id (dim), e.g. [ui] keys = {"window.cycle" = "t"}.',
            style="dim",
        )
        with Vertical(classes="dialog help"):
            with VerticalScroll():
                yield Static(text)
            yield Static("Esc closes", classes="dialog-hint")

    def action_close(self) -> None:
        self.dismiss(None)


class StartupPanel(Vertical):
    """Shown while the embedded services start: the current step and its progress."""

    def compose(self) -> ComposeResult:
        yield Static(Text("fleetwatch", style="bold"), id="startup-title")
        yield Static("starting…", id="startup-step")
        yield ProgressBar(total=100, show_eta=False, id="startup-progress")

    def show_step(self, step: str, fraction: float | None) -> None:
        self.query_one("#startup-step", Static).update(step)
        bar = self.query_one("#startup-progress", ProgressBar)
        if fraction is None:
            bar.update(total=None)
        else:
            bar.update(total=100, progress=round(fraction * 100))
