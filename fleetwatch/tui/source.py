"""The seam between the terminal app and its data: what a data source must provide.

The app only ever talks to a :class:`DataSource` (from worker threads) and a
:class:`StatusSource` (cheap, in memory). The real ones read the database through the
metrics queries and the embedded services; tests and screenshots pass fixed ones.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from fleetwatch.tui.snapshots import (
    DrivingEventRow,
    EventDetail,
    ServiceStatus,
    Snapshot,
    ViewRequest,
)

Clock = Callable[[], datetime]
"""Returns the current time, timezone-aware UTC."""


class SourceUnavailable(Exception):
    """The data behind the app cannot be reached right now; the message is one sentence."""


class DataSource(Protocol):
    def fetch(self, request: ViewRequest) -> Snapshot:
        """Run the queries for ``request``; raises :class:`SourceUnavailable`."""

    def event_detail(self, event: DrivingEventRow) -> EventDetail:
        """One driving event (as listed) with what surrounded it: the vehicle's telemetry,
        perception and open alerts around its moment; raises :class:`SourceUnavailable`."""

    def acknowledge(self, alert_id: int, until: datetime, by: str) -> None:
        """Acknowledge an alert until ``until``; raises :class:`SourceUnavailable`."""

    def silence(self, vehicle_id: str, rule: str, until: datetime, by: str) -> None:
        """Silence ``rule`` for ``vehicle_id`` until ``until``.

        Raises :class:`SourceUnavailable`."""

    def close(self) -> None: ...


class StatusSource(Protocol):
    def status(self) -> ServiceStatus:
        """The services' state right now; must not block."""


ProgressCallback = Callable[[str, "float | None"], None]
"""Called with a start-up step ("starting database") and its progress 0..1 if known."""


class Services(Protocol):
    """Whatever must run before there is data: embedded database, simulator, ingestor."""

    def start(self, progress: ProgressCallback) -> tuple[DataSource, StatusSource]:
        """Blocking; called from a worker thread. Raises :class:`SourceUnavailable`."""

    def stop(self) -> None:
        """Stop everything started, letting the ingestor commit its batch."""
