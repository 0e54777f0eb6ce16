"""Reading the gateways' load reports from Redis.

The key names come from ``collab_core.keys``, where the gateway takes them too:
``gateway_load(<id>)`` holds a report (JSON, with a TTL) and the sorted set ``GATEWAYS``
the time of each gateway's last report. The operator asks only for the gateways that are
pods of the pool's Deployment (the chart sets each gateway's id to its pod name), one GET
per key in a pipeline: the report keys have no common hash tag, so one MGET would be
refused by Redis Cluster (CROSSSLOT).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from collab_core import keys
from collab_operator import report
from collab_operator.report import LoadReport

log = logging.getLogger("collab.operator")


@dataclass(frozen=True, slots=True)
class Sighting:
    """What Redis knows about one gateway."""

    report: LoadReport | None
    #: Its last report time from ``GATEWAYS``, even after the report itself expired.
    last_seen: float | None


async def read(redis: Redis, gateways: Sequence[str]) -> dict[str, Sighting]:
    """The latest report and report time of each of ``gateways``.

    A report that does not parse counts as missing (and is logged): a stale or missing
    report never lowers the count, so a broken gateway cannot shrink the pool.
    """
    if not gateways:
        return {}
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zmscore(keys.GATEWAYS, list(gateways))
        for gateway in gateways:
            pipe.get(keys.gateway_load(gateway))
        scores, *raws = await pipe.execute()
    sightings: dict[str, Sighting] = {}
    for gateway, score, raw in zip(gateways, scores, raws, strict=True):
        parsed: LoadReport | None = None
        if raw is not None:
            try:
                parsed = report.parse(raw)
            except ValueError as exc:
                log.warning("ignoring the load report of %s: %s", gateway, exc)
            else:
                if parsed.gateway != gateway:
                    log.warning("ignoring a load report of %s under %s", parsed.gateway, gateway)
                    parsed = None
        sightings[gateway] = Sighting(parsed, float(score) if score is not None else None)
    return sightings
