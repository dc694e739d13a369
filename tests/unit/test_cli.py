"""The command line: subcommand dispatch, flags before the command, errors as one sentence."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fleetwatch import __version__
from fleetwatch.cli import _split_command, main


@pytest.mark.parametrize(
    ("argv", "command", "reordered"),
    [
        ([], None, []),
        (["--vehicles", "10"], None, ["--vehicles", "10"]),
        (["report", "--window", "1h"], "report", ["report", "--window", "1h"]),
        (
            ["--db", "DSN", "report", "--window", "1h"],
            "report",
            ["report", "--db", "DSN", "--window", "1h"],
        ),
        (["--kafka", "h:1", "config"], "config", ["config", "--kafka", "h:1"]),
        # a flag's value that happens to be a command name is still the value
        (["--db", "report"], None, ["--db", "report"]),
    ],
)
def test_split_command(argv: list[str], command: str | None, reordered: list[str]) -> None:
    assert _split_command(argv) == (command, reordered)


def test_flags_before_the_command_reach_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--kafka", "broker:9092", "config"]) == 0
    out = capsys.readouterr().out
    assert "kafka.bootstrap" in out
    assert "broker:9092  (flag)" in out


def test_unknown_flag_is_reported_by_the_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["simulate", "--bogus"])
    assert raised.value.code == 2
    assert "fleetwatch simulate: error: unrecognized arguments: --bogus" in capsys.readouterr().err


def test_bad_setting_is_one_sentence(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEETWATCH_SIMULATOR__VEHICLES", "many")
    assert main(["config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fleetwatch: invalid setting simulator.vehicles")
    assert err.count("\n") == 1


def test_version_and_help_from_the_installed_script() -> None:
    version = subprocess.run(
        [sys.executable, "-m", "fleetwatch", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.strip() == f"fleetwatch {__version__}"
    helped = subprocess.run(
        [sys.executable, "-m", "fleetwatch", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("simulate", "ingest", "report", "db", "config"):
        assert command in helped.stdout


def test_closed_pipe_is_not_a_traceback() -> None:
    """`fleetwatch report | head` must stop quietly once the reader has gone."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "fleetwatch", "config"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 141
    assert done.stderr == ""


def test_a_negative_value_reaches_the_option_that_refuses_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # argparse alone takes "-1h" for an option and says "expected one argument".
    assert main(["report", "--window", "-1h"]) == 2
    assert "invalid window '-1h'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as raised:
        main(["simulate", "--kafka", "127.0.0.1:9", "--backfill", "-1m"])
    assert raised.value.code == 2
    assert "invalid duration '-1m'" in capsys.readouterr().err
