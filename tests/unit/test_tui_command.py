"""`fleetwatch` refuses, in one sentence, a setup in which nothing would produce data."""

from __future__ import annotations

import pytest

from fleetwatch.cli import main
from fleetwatch.config import Settings
from fleetwatch.tui.command import no_producer


def test_no_simulator_without_kafka_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLEETWATCH_KAFKA", raising=False)
    code = main(["--db", "postgresql://nobody@127.0.0.1:1/none", "--no-simulator"])
    err = capsys.readouterr().err
    assert code == 2
    assert "nothing would produce data: pass --kafka HOST:PORT" in err
    assert "Traceback" not in err


def test_setups_that_get_data_are_accepted() -> None:
    def settings(**sections: dict[str, object]) -> Settings:
        return Settings.model_validate(sections)

    assert no_producer(settings(simulator={"enabled": False}))
    assert not no_producer(settings())
    assert not no_producer(settings(simulator={"enabled": False}, kafka={"bootstrap": "h:9092"}))
    assert not no_producer(settings(simulator={"enabled": False}, ingest={"enabled": False}))
