"""The ingest loop's garbage-collector setting: raised while running, restored after."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from fleetwatch.pipeline.ingest import (
    GC_YOUNG_THRESHOLD,
    Ingestor,
    IngestParams,
    fewer_collections,
    gc_threshold_for,
)
from fleetwatch.transport.local import LocalBroker


@pytest.fixture
def default_thresholds() -> Iterator[tuple[int, int, int]]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield gc.get_threshold()
    gc.set_threshold(*before)


def test_nested_uses_share_the_change_and_the_last_restores(
    default_thresholds: tuple[int, int, int],
) -> None:
    with fewer_collections():
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, 10, 10)
        with fewer_collections():
            assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
        assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
    assert gc.get_threshold() == default_thresholds


def test_run_raises_the_threshold_until_it_returns(
    default_thresholds: tuple[int, int, int],
) -> None:
    seen: list[tuple[int, int, int]] = []
    stop = threading.Event()

    def refuse_connections() -> object:
        seen.append(gc.get_threshold())
        stop.set()
        raise AssertionError("no database in this test")

    broker = LocalBroker(1)
    broker.producer().produce("vehicle_telemetry", b"AV-1", b"{}")
    ingestor = Ingestor(IngestParams(group="gc"), broker.consumer("gc"), refuse_connections)  # type: ignore[arg-type]
    with pytest.raises(AssertionError):
        ingestor.run(stop)
    assert seen and seen[0][0] == gc_threshold_for(IngestParams().batch_max) > GC_YOUNG_THRESHOLD
    assert gc.get_threshold() == default_thresholds
