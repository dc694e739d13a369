"""The units, time window and table orders an operator last chose, remembered across
restarts.

They are kept in ``ui-state.json`` in the user data directory and written when the app
stops. A setting given explicitly (the settings file, an environment variable or a flag)
wins over what is remembered; a file that cannot be read or holds something else is
ignored, so it can never keep the app from starting.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from fleetwatch.config import Settings, UiSettings, data_dir

log = logging.getLogger(__name__)

PREFS_FILE: Final = "ui-state.json"
REMEMBERED: Final = ("units", "window")
"""The ``ui`` settings the app remembers."""

Sorts = dict[str, tuple[str, bool]]
"""Per table id, the key of the column it is sorted by and whether in reverse: only the
tables sorted otherwise than they start."""


def prefs_path() -> Path:
    return data_dir() / PREFS_FILE


def _read(path: Path) -> dict[str, Any]:
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


def with_remembered(settings: Settings, path: Path) -> Settings:
    """``settings`` with the remembered units and window, where none was given explicitly."""
    saved = _read(path)
    explicit = settings.ui.model_fields_set
    chosen = {k: saved[k] for k in REMEMBERED if k in saved and k not in explicit}
    if not chosen:
        return settings
    try:
        ui = UiSettings.model_validate({**settings.ui.model_dump(), **chosen})
    except ValidationError:
        log.warning("ignoring %s: it does not hold valid units and window", path)
        return settings
    return settings.model_copy(update={"ui": ui})


def remembered_sorts(path: Path) -> Sorts:
    """The table orders remembered in ``path``; entries of another shape are left out."""
    saved = _read(path).get("sorts")
    if not isinstance(saved, dict):
        return {}
    return {
        table: (order["column"], order["reverse"])
        for table, order in saved.items()
        if isinstance(order, dict)
        and isinstance(order.get("column"), str)
        and isinstance(order.get("reverse"), bool)
    }


def remember(path: Path, units: str, window: str, sorts: Mapping[str, tuple[str, bool]]) -> None:
    """Write the units, window and table orders to ``path`` (atomically; a failure is only
    logged)."""
    state: dict[str, Any] = {"units": units, "window": window}
    if sorts:
        state["sorts"] = {
            table: {"column": column, "reverse": reverse}
            for table, (column, reverse) in sorted(sorts.items())
        }
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps(state), encoding="utf-8")
        temporary.replace(path)
    except OSError as error:
        log.warning("could not remember the units, window and sorts in %s: %s", path, error)
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
