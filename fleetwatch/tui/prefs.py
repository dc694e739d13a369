"""The units and time window an operator last chose, remembered across restarts.

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
from pathlib import Path
from typing import Final

from pydantic import ValidationError

from fleetwatch.config import Settings, UiSettings, data_dir

log = logging.getLogger(__name__)

PREFS_FILE: Final = "ui-state.json"
REMEMBERED: Final = ("units", "window")
"""The ``ui`` settings the app remembers."""


def prefs_path() -> Path:
    return data_dir() / PREFS_FILE


def with_remembered(settings: Settings, path: Path) -> Settings:
    """``settings`` with the remembered units and window, where none was given explicitly."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return settings
    if not isinstance(saved, dict):
        return settings
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


def remember(path: Path, units: str, window: str) -> None:
    """Write the units and window to ``path`` (atomically; a failure is only logged)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps({"units": units, "window": window}), encoding="utf-8")
        temporary.replace(path)
    except OSError as error:
        log.warning("could not remember the units and window in %s: %s", path, error)
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
