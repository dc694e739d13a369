"""The private Kafka's cluster id (tests/services.py) never starts with "-"."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests import services


def test_a_cluster_id_never_starts_with_a_dash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 0xf8 encodes to "-" first in URL-safe base64: the storage tool would take it for an
    # option. The first id drawn is such an id; the second is not.
    drawn = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x10" + bytes(15))])
    monkeypatch.setattr("uuid.uuid4", lambda: next(drawn))
    settings = services.Settings(
        cache=tmp_path, pg_port=1, kafka_port=2, kafka_controller_port=3, pg_bindir=tmp_path
    )
    settings.kafka_cluster_id_file.parent.mkdir(parents=True)
    cluster_id = services._kafka_cluster_id(settings)
    assert cluster_id == "EAAAAAAAAAAAAAAAAAAAAA"
    # A stored id that starts with "-" (it cannot have formatted anything) is replaced.
    settings.kafka_cluster_id_file.write_text("-bad")
    drawn = iter([uuid.UUID(bytes=b"\x20" + bytes(15))])
    assert not services._kafka_cluster_id(settings).startswith("-")
