"""Unit tests of `fleetwatch simulate`'s flags and the errors it reports without a broker."""

from __future__ import annotations

import argparse
import os
from datetime import timedelta
from pathlib import Path

import pytest

from fleetwatch.cli import main
from fleetwatch.sim.command import parse_duration


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("FLEETWATCH_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("10m", timedelta(minutes=10)),
        ("24h", timedelta(hours=24)),
        ("2d", timedelta(days=2)),
        ("1h30m", timedelta(minutes=90)),
        ("1.5h", timedelta(minutes=90)),
        (" 5M ", timedelta(minutes=5)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "10", "h", "10x", "-5m", "5m10", "0s", "0.5s", "1h 30m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="invalid duration"):
        parse_duration(text)


def _error_of(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.err.strip()


def test_a_broker_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _error_of(capsys, ["simulate", "--duration", "10s"])
    assert code == 2
    assert err == (
        "fleetwatch simulate: a Kafka broker is needed: pass --kafka HOST:PORT "
        "or set FLEETWATCH_KAFKA"
    )


def test_a_malformed_broker_address_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _error_of(capsys, ["simulate", "--kafka", "localhost", "--duration", "10s"])
    assert code == 2
    assert "invalid Kafka address 'localhost'" in err
    assert len(err.splitlines()) == 1


def test_speedup_does_not_combine_with_backfill(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _error_of(
        capsys, ["simulate", "--kafka", "127.0.0.1:9", "--backfill", "1h", "--speedup", "10"]
    )
    assert code == 2
    assert "--speedup does not apply to --backfill" in err


def test_bad_topic_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _error_of(
        capsys, ["simulate", "--kafka", "127.0.0.1:9", "--topic-prefix", "no spaces"]
    )
    assert code == 2
    assert "invalid topic prefix" in err


def test_an_out_of_range_setting_is_one_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _error_of(capsys, ["simulate", "--kafka", "127.0.0.1:9", "--vehicles", "0"])
    assert code == 2
    assert err.startswith("fleetwatch: invalid setting simulator.vehicles (from flag)")
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["simulate", "--duration", "soon"],
        ["simulate", "--vehicles", "many"],
        ["simulate", "--duration", "1m", "--backfill", "1h"],
    ],
)
def test_bad_flags_exit_with_usage(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


def test_absurd_durations_are_refused() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="longer than 3660 days"):
        parse_duration("99999d")
