"""Telling gateways that a document's streams moved on.

A gateway does not block on the streams of its rooms: Redis Cluster refuses a read across
slots, and every document has its own slot, so one blocking read over all rooms cannot
exist there. Instead each gateway blocks on its own inbox, and whoever appends to a
document's log or presence stream (edit-transform, presence) then writes a ``doc``
notification to the inbox of every gateway hosting that document. The gateway reads the
documents it was told about with single-slot reads, pipelined (a cluster client sends
each node its share in one round trip).

Hosting is a sorted set per document (``keys.hosts``), gateway id -> expiry time, that
gateways refresh with their load reports. A notification is sent after the append and
before the ingress entry is acknowledged, so a crash in between is followed by a
redelivery that notifies again; the gateway also re-reads all its rooms every few
seconds, which bounds the delay of a notification lost any other way.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from redis.asyncio import Redis

from collab_core import keys

#: Inbox entries a gateway keeps; it reads far faster than they arrive.
INBOX_MAXLEN = 10_000
#: The inbox entry kind of a notification.
DOC = b"doc"


def host_ttl(report_seconds: float) -> float:
    """How long a gateway's hosting entry lives: three missed load reports, at least 15 s."""
    return max(3 * report_seconds, 15.0)


async def live_hosts(redis: Redis, docs: Iterable[str]) -> dict[str, list[str]]:
    """The gateways currently hosting each of ``docs``."""
    docs = list(docs)
    if not docs:
        return {}
    now = time.time()
    async with redis.pipeline(transaction=False) as pipe:
        for doc in docs:
            pipe.zrangebyscore(keys.hosts(doc), now, "+inf")
        found = await pipe.execute()
    return {doc: [g.decode() for g in gateways] for doc, gateways in zip(docs, found, strict=True)}


async def notify(
    redis: Redis, hosts: Mapping[str, Iterable[str | bytes]], visible: int | None = None
) -> None:
    """Write a ``doc`` notification to the inbox of every gateway hosting each document;
    ``visible``: the document's ops below it may be read (None: only presence moved)."""
    async with redis.pipeline(transaction=False) as pipe:
        count = 0
        for doc, gateways in hosts.items():
            fields: dict[str, str | bytes | int] = {"kind": DOC, "doc": doc}
            if visible is not None:
                fields["v"] = visible
            for gateway in gateways:
                name = gateway.decode() if isinstance(gateway, bytes) else gateway
                pipe.xadd(
                    keys.inbox(name),
                    fields,  # type: ignore[arg-type]
                    maxlen=INBOX_MAXLEN,
                    approximate=True,
                )
                count += 1
        if count:
            await pipe.execute()
