"""Typed messages that workers and views post to the app (attributes down, messages up)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from textual.message import Message

from fleetwatch.tui import format as fmt
from fleetwatch.tui.snapshots import DrivingEventRow, EventDetail, Snapshot


@dataclass(frozen=True)
class RenderContext:
    """What every view needs besides its data: units and the clock reading of the refresh."""

    units: fmt.Units
    now: datetime
    loading_pct: float | None = None
    """Progress of the first-run history backfill; None once the history is stored."""
    live_key: str = "l"
    """The key that returns the vehicle view from a past moment to live (it can be remapped)."""


class SnapshotFetched(Message):
    """A refresh finished; ``seq`` tells a current result from a superseded one."""

    def __init__(self, seq: int, snapshot: Snapshot) -> None:
        super().__init__()
        self.seq = seq
        self.snapshot = snapshot


class RefreshFailed(Message):
    def __init__(self, seq: int, reason: str) -> None:
        super().__init__()
        self.seq = seq
        self.reason = reason


class StartupProgress(Message):
    """A start-up step (``starting database``, ``migrating``...) and its progress 0..1."""

    def __init__(self, step: str, fraction: float | None = None) -> None:
        super().__init__()
        self.step = step
        self.fraction = fraction


class ServicesReady(Message):
    pass


class ServicesFailed(Message):
    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class ActionDone(Message):
    """An acknowledgement, silence or export finished; ``text`` is shown to the user."""

    def __init__(self, text: str, *, path: Path | None = None) -> None:
        super().__init__()
        self.text = text
        self.path = path


class ActionFailed(Message):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class OpenVehicle(Message):
    """Show ``vehicle_id`` on the vehicle view, anchored at ``at`` when given."""

    def __init__(self, vehicle_id: str, at: datetime | None = None) -> None:
        super().__init__()
        self.vehicle_id = vehicle_id
        self.at = at


class OpenEvent(Message):
    """Show the detail of one driving event (as listed)."""

    def __init__(self, event: DrivingEventRow) -> None:
        super().__init__()
        self.event = event


class EventDetailFetched(Message):
    """The event detail's data, read by a worker; ``seq`` tells the current request."""

    def __init__(self, seq: int, detail: EventDetail) -> None:
        super().__init__()
        self.seq = seq
        self.detail = detail


class EventDetailFailed(Message):
    def __init__(self, seq: int, reason: str) -> None:
        super().__init__()
        self.seq = seq
        self.reason = reason
