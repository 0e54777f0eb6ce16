"""Convergence under concurrency, reconnects, and several gateways and workers."""

from __future__ import annotations

import asyncio
import random

from collab_client.connection import CollabClient


async def converge(stack, doc: str, clients: list[CollabClient]) -> dict[str, object]:
    await asyncio.gather(*(c.synced(timeout=60) for c in clients))
    final = stack.document(doc)
    await asyncio.gather(*(c.reaches(final["version"], timeout=30) for c in clients))
    return final


async def storm(clients: list[CollabClient], edit, rng: random.Random, steps: int, drops: float):
    for _ in range(steps):
        client = rng.choice(clients)
        if client.connected:
            edit(client, rng)
        if rng.random() < drops:
            rng.choice(clients).drop()
        await asyncio.sleep(rng.random() * 0.004)


async def test_twelve_clients_random_edits_and_reconnects_converge(stack, edit, check_acks):
    doc = "storm"
    clients = [CollabClient(stack.ws_url(doc), stack.token(f"u{i}")) for i in range(12)]
    for client in clients:
        client.start()
    try:
        await asyncio.gather(*(c.synced() for c in clients))
        await storm(clients, edit, random.Random(12), steps=300, drops=0.03)
        final = await converge(stack, doc, clients)
        assert {c.text for c in clients} == {final["text"]}
        assert sum(c.connections for c in clients) > len(clients), "no reconnect happened"
        check_acks(clients, stack.history(doc))
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def test_two_gateways_two_workers_share_documents_without_forks(
    stack_factory, edit, check_acks
):
    stack = stack_factory(gateways=2, transforms=2)
    gateways = stack.of("gateway")
    docs = ["shared-a", "shared-b"]
    clients = [
        CollabClient(
            [stack.ws_url(doc, gateways[i % 2]), stack.ws_url(doc, gateways[(i + 1) % 2])],
            stack.token(f"u{i}"),
        )
        for doc in docs
        for i in range(6)
    ]
    for client in clients:
        client.start()
    try:
        await asyncio.gather(*(c.synced() for c in clients))
        await storm(clients, edit, random.Random(22), steps=400, drops=0.02)
        for doc in docs:
            members = [c for c in clients if c.urls[0].endswith("/" + doc)]
            final = await converge(stack, doc, members)
            assert {c.text for c in members} == {final["text"]}
            history = stack.history(doc)
            assert len(history) == final["version"]
            check_acks(members, history)
    finally:
        await asyncio.gather(*(c.close() for c in clients))
