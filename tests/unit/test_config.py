"""Settings: precedence of file, environment and flags, validation and masking."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetwatch.config import ConfigError, describe, load_settings, mask_dsn


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "config.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_flags_beat_environment_beat_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[simulator]\nvehicles = 40\nseed = 3\n[ui]\nunits = 'mi'\n")
    environ = {"FLEETWATCH_SIMULATOR__VEHICLES": "50", "FLEETWATCH_SIMULATOR__SEED": "4"}
    settings, sources = load_settings(
        {"simulator.vehicles": 60, "simulator.seed": None}, path=path, environ=environ
    )
    assert settings.simulator.vehicles == 60
    assert settings.simulator.seed == 4
    assert settings.ui.units == "mi"
    assert sources["simulator.vehicles"] == "flag"
    assert sources["simulator.seed"] == "environment variable FLEETWATCH_SIMULATOR__SEED"
    assert sources["ui.units"] == f"file {path}"


def test_shortcuts_for_broker_and_database(tmp_path: Path) -> None:
    environ = {"FLEETWATCH_KAFKA": "k:9092", "FLEETWATCH_DB": "postgresql://a:b@h/d"}
    settings, _ = load_settings(path=tmp_path / "none.toml", environ=environ)
    assert settings.kafka.bootstrap == "k:9092"
    assert settings.database.dsn is not None
    assert settings.database.dsn.get_secret_value() == "postgresql://a:b@h/d"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"FLEETWATCH_SIMULATOR__VEHICLES": "abc"}, "FLEETWATCH_SIMULATOR__VEHICLES"),
        ({"FLEETWATCH_NOSUCH__X": "1"}, "invalid setting nosuch"),
        ({"FLEETWATCH_INGEST__GROUP": ""}, "ingest.group"),
        ({"FLEETWATCH_RULES__TTC_CLASSES": "car,dragon"}, "unknown object class 'dragon'"),
        ({"FLEETWATCH_RULES__BATTERY_FIRE_PCT": "50"}, "must not be below battery_fire_pct"),
    ],
)
def test_bad_environment_is_one_sentence_naming_the_variable(
    tmp_path: Path, environ: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(path=tmp_path / "none.toml", environ=environ)
    message = str(raised.value)
    assert expected in message
    assert "\n" not in message


def test_comma_separated_classes_are_accepted(tmp_path: Path) -> None:
    environ = {"FLEETWATCH_RULES__TTC_CLASSES": "car, pedestrian"}
    settings, _ = load_settings(path=tmp_path / "none.toml", environ=environ)
    assert settings.rules.ttc_classes == ("car", "pedestrian")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("[simulator\n", "cannot read the settings file"),
        (b"[ui]\nunits = '\xff'\n", "cannot read the settings file"),
        ("units = 'km'\n", "must be a table of settings"),
        ("[nosuch]\nx = 1\n", "invalid setting nosuch (from file"),
        ("[ui]\nunits = 'furlongs'\n", "invalid setting ui.units (from file"),
    ],
)
def test_bad_file_is_one_sentence(tmp_path: Path, content: str | bytes, expected: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(ConfigError, match=None) as raised:
        load_settings(path=path, environ={})
    assert expected in str(raised.value)


@pytest.mark.parametrize(
    ("dsn", "secret"),
    [
        ("postgresql://user:s3cret@host:5432/db", "s3cret"),
        ("postgresql://:s3cret@host/db", "s3cret"),
        ("host=db password=s3cret user=x", "s3cret"),
        ("host=db password='my s3cret' user=x", "s3cret"),
        ('in URI: "postgresql://u:s3cret@[bad"', "s3cret"),
    ],
)
def test_mask_dsn_hides_the_password(dsn: str, secret: str) -> None:
    masked = mask_dsn(dsn)
    assert secret not in masked
    assert "****" in masked


def test_describe_masks_secrets_and_names_sources(tmp_path: Path) -> None:
    settings, sources = load_settings(
        {"database.dsn": "postgresql://u:pw@h/d"}, path=tmp_path / "none.toml", environ={}
    )
    rows = {name: (value, source) for name, value, source in describe(settings, sources)}
    assert rows["database.dsn"] == ("postgresql://u:****@h/d", "flag")
    assert rows["simulator.vehicles"] == ("25", "default")
    # Values read as the settings file would write them.
    assert rows["simulator.enabled"] == ("true", "default")
    assert rows["rules.ttc_classes"][0].startswith('["car", "truck", "pedestrian"')
