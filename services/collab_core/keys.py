"""Every Redis key and stream name the services use, built only here.

A document's keys all carry its hash tag ``{d:<id>}`` so that one script or multi-key
command touches one Redis Cluster slot (DESIGN.md, "Redis"). Document ids cannot contain
``{`` or ``}`` (PROTOCOL.md's id pattern), so the tag is exactly the id.

Layout::

    collab:epoch                       store identity, created once; see Epoch in store.py
    collab:{d:<id>}:head               hash: version, length (code points)
    collab:{d:<id>}:log                stream: one entry per committed op, entry id <v+1>-0
    collab:{d:<id>}:snap:<v>           string: the text at version v (every N ops)
    collab:{d:<id>}:snaps              sorted set: versions that have a snapshot
    collab:{d:<id>}:ids                hash: [author, client, op id] -> version committed
    collab:{d:<id>}:roster             hash: session -> participant JSON (presence)
    collab:{d:<id>}:presence           stream: join / leave / presence events for gateways
    collab:{d:<id>}:gateways           sorted set: gateway hosting the document -> expiry
    collab:{ingress:<n>}:ops           stream: submitted ops, shard n (edit-transform group)
    collab:{ingress:<n>}:dead          stream: ingress entries that failed every delivery
    collab:{ingress:<n>}:presence      stream: presence updates, shard n (presence group)
    collab:{gw:<gateway>}:inbox        stream: replies to one gateway (errors, duplicate acks)
    collab:gateways                    sorted set: gateway id -> last report time
    collab:gateway:<gateway>           hash with TTL: a gateway's load report
"""

from __future__ import annotations

import json
import zlib

PREFIX = "collab"
EPOCH = f"{PREFIX}:epoch"
GATEWAYS = f"{PREFIX}:gateways"

#: Consumer group names (one per consuming service).
TRANSFORM_GROUP = "edit-transform"
PRESENCE_GROUP = "presence"


def _doc(document_id: str) -> str:
    return f"{PREFIX}:{{d:{document_id}}}"


def head(document_id: str) -> str:
    return f"{_doc(document_id)}:head"


def log(document_id: str) -> str:
    return f"{_doc(document_id)}:log"


def snapshot(document_id: str, version: int) -> str:
    return f"{_doc(document_id)}:snap:{version}"


def snapshots(document_id: str) -> str:
    return f"{_doc(document_id)}:snaps"


def op_ids(document_id: str) -> str:
    return f"{_doc(document_id)}:ids"


def op_id_field(author: str, client: str, op_id: str) -> str:
    """Field of :func:`op_ids`: JSON, so no separator can make two triples collide."""
    return json.dumps([author, client, op_id], separators=(",", ":"))


def roster(document_id: str) -> str:
    return f"{_doc(document_id)}:roster"


def presence(document_id: str) -> str:
    return f"{_doc(document_id)}:presence"


def hosts(document_id: str) -> str:
    return f"{_doc(document_id)}:gateways"


def shard_of(document_id: str, shards: int) -> int:
    """The ingress shard of a document: stable across processes and restarts."""
    return zlib.crc32(document_id.encode()) % shards


def op_ingress(shard: int) -> str:
    return f"{PREFIX}:{{ingress:{shard}}}:ops"


def op_dead_letter(shard: int) -> str:
    return f"{PREFIX}:{{ingress:{shard}}}:dead"


def presence_ingress(shard: int) -> str:
    return f"{PREFIX}:{{ingress:{shard}}}:presence"


def presence_lease(shard: int) -> str:
    """Which presence process owns the shard's presence ingress (its consumer name)."""
    return f"{PREFIX}:{{ingress:{shard}}}:presence-owner"


def inbox(gateway_id: str) -> str:
    return f"{PREFIX}:{{gw:{gateway_id}}}:inbox"


def gateway_load(gateway_id: str) -> str:
    return f"{PREFIX}:gateway:{gateway_id}"


def log_entry_id(version: int) -> str:
    """Stream entry id of the op committed at ``version`` (ids must be above 0-0)."""
    return f"{version + 1}-0"


def version_of_entry(entry_id: str | bytes) -> int:
    raw = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(raw.partition("-")[0]) - 1
