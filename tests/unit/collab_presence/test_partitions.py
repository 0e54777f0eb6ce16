"""Presence replicas split the ingress shards: every document's updates reach one replica."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from collab_core import keys
from collab_presence.settings import PresenceSettings
from collab_presence.worker import Worker

ENV = {"COLLAB_JWT_SECRET": "x" * 40}


def worker(partition: int, partitions: int, shards: int = 8) -> Worker:
    # The client never connects: only the streams this worker would read are looked at.
    return Worker(Redis(), consumer="p", shards=shards, partition=partition, partitions=partitions)


def test_partitions_own_disjoint_shards_that_cover_all() -> None:
    owned = [worker(p, 3).streams for p in range(3)]
    flat = [s for streams in owned for s in streams]
    assert sorted(flat) == sorted(keys.presence_ingress(n) for n in range(8))
    assert len(flat) == len(set(flat))
    assert owned[1] == [
        keys.presence_ingress(1),
        keys.presence_ingress(4),
        keys.presence_ingress(7),
    ]


def test_a_partition_without_shards_is_refused() -> None:
    with pytest.raises(ValueError, match="owns none"):
        worker(5, 6, shards=4)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"COLLAB_PRESENCE_PARTITION": "2", "COLLAB_PRESENCE_PARTITIONS": "2"}, "below"),
        ({"COLLAB_PRESENCE_PARTITIONS": "5", "COLLAB_INGRESS_SHARDS": "4"}, "exceed"),
    ],
)
def test_settings_refuse_impossible_partitions(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in {**ENV, **env}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        PresenceSettings()
