"""The units, window and table orders the app remembers across restarts
(fleetwatch.tui.prefs)."""

from __future__ import annotations

import json
from pathlib import Path

from fleetwatch.config import Settings, load_settings
from fleetwatch.tui.prefs import remember, remembered_sorts, with_remembered


def _settings(tmp_path: Path, toml: str = "", environ: dict[str, str] | None = None) -> Settings:
    path = tmp_path / "config.toml"
    path.write_text(toml, encoding="utf-8")
    settings, _ = load_settings(path=path, environ=environ or {})
    return settings


def test_what_was_chosen_last_comes_back(tmp_path: Path) -> None:
    state = tmp_path / "data" / "ui-state.json"
    remember(state, "mi", "24h", {})
    assert json.loads(state.read_text()) == {"units": "mi", "window": "24h"}
    settings = with_remembered(_settings(tmp_path), state)
    assert (settings.ui.units, settings.ui.window) == ("mi", "24h")
    # The rest of the settings is untouched.
    assert settings.ui.refresh_s == _settings(tmp_path).ui.refresh_s


def test_an_explicit_setting_wins_over_what_was_remembered(tmp_path: Path) -> None:
    state = tmp_path / "ui-state.json"
    remember(state, "mi", "24h", {})
    from_file = with_remembered(_settings(tmp_path, '[ui]\nunits = "km"\n'), state)
    assert (from_file.ui.units, from_file.ui.window) == ("km", "24h")
    from_env = with_remembered(_settings(tmp_path, environ={"FLEETWATCH_UI__WINDOW": "6h"}), state)
    assert (from_env.ui.units, from_env.ui.window) == ("mi", "6h")


def test_a_missing_or_bad_file_changes_nothing(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    state = tmp_path / "ui-state.json"
    assert with_remembered(settings, state) is settings
    for text in ("not json", "[1, 2]", '{"units": "furlongs", "window": "1h"}'):
        state.write_text(text, encoding="utf-8")
        assert with_remembered(settings, state) is settings, text


def test_a_file_that_cannot_be_written_is_only_logged(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    # Its directory is a file: no exception.
    remember(blocker / "ui-state.json", "mi", "1h", {"fleet-table": ("speed", True)})
    assert not (blocker / "ui-state.json").exists()


def test_table_orders_come_back_and_odd_entries_are_left_out(tmp_path: Path) -> None:
    state = tmp_path / "ui-state.json"
    sorts = {"fleet-table": ("kmpi", False), "alerts-table": ("last", True)}
    remember(state, "km", "1h", sorts)
    assert remembered_sorts(state) == sorts
    assert with_remembered(_settings(tmp_path), state).ui.window == "1h"
    saved = json.loads(state.read_text())
    saved["sorts"]["odd"] = {"column": 3, "reverse": False}
    saved["sorts"]["odder"] = "speed"
    state.write_text(json.dumps(saved), encoding="utf-8")
    assert remembered_sorts(state) == sorts
    for text in ("not json", '{"sorts": [1]}', '{"units": "km"}'):
        state.write_text(text, encoding="utf-8")
        assert remembered_sorts(state) == {}, text
