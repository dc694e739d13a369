"""Everything outside fleetwatch.tui must import without pulling in Textual.

Each module is imported in a fresh interpreter, so one module's imports cannot hide another's.
Modules are discovered from the package on disk, so new ones are covered without editing this.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import fleetwatch

UI_PACKAGE = "fleetwatch.tui"


def core_modules() -> list[str]:
    """Every module of the fleetwatch package outside fleetwatch.tui, without importing any.

    `__main__` is left out: importing it runs the program.

    pkgutil.walk_packages would import each subpackage to look inside it (fleetwatch.tui
    included), so the tree is walked with iter_modules and the UI package is pruned.
    """
    found = ["fleetwatch"]

    def walk(directory: Path, prefix: str) -> None:
        for module in pkgutil.iter_modules([str(directory)], prefix):
            if module.name == UI_PACKAGE or module.name.endswith(".__main__"):
                continue
            found.append(module.name)
            if module.ispkg:
                walk(directory / module.name.rsplit(".", 1)[-1], module.name + ".")

    walk(Path(fleetwatch.__file__).parent, "fleetwatch.")
    return sorted(found)


def test_discovery_sees_the_core_packages() -> None:
    modules = core_modules()
    assert "fleetwatch.cli" in modules
    assert not [m for m in modules if m == UI_PACKAGE or m.startswith(UI_PACKAGE + ".")]


@pytest.mark.parametrize("module", core_modules())
def test_module_does_not_import_textual(module: str) -> None:
    probe = (
        f"import importlib, sys; importlib.import_module({module!r}); "
        "leaked = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.')); "
        "print(' '.join(leaked[:5]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"importing {module} failed:\n{result.stderr}"
    assert result.stdout.strip() == "", f"{module} imports Textual: {result.stdout.strip()}"
