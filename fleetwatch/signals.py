"""Clean stops on signals: a signal asks the running command to stop instead of killing it."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from types import FrameType


class Stopper:
    """Turns the first SIGINT/SIGTERM into a clean stop (``event`` is set); a second
    SIGINT interrupts at once."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.event.set()


@contextmanager
def stop_on_signals(
    stopper: Stopper, signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM)
) -> Iterator[None]:
    """Route ``signals`` (SIGINT and SIGTERM unless told) to ``stopper`` while the block runs."""
    previous = {signum: signal.signal(signum, stopper.handle) for signum in signals}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
