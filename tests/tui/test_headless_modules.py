"""The app's data side (snapshots, sources, formatting, database reader, services) must
not import Textual: it is shared with headless code and tested without a terminal."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEADLESS = (
    "fleetwatch.tui.snapshots",
    "fleetwatch.tui.source",
    "fleetwatch.tui.format",
    "fleetwatch.tui.database",
    "fleetwatch.tui.runtime",
    "fleetwatch.tui.command",
)


@pytest.mark.parametrize("module", HEADLESS)
def test_module_does_not_import_textual(module: str) -> None:
    code = f"import sys, {module}; sys.exit('textual' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, f"{module} imports textual: {result.stderr}"
