"""The fault harness: recording clients, a TCP fault proxy, and the invariant oracle.

Used by the fault-matrix, proxy and soak tests (``test_fault_matrix.py``,
``test_soak.py``) through the ``chaos`` fixture, and importable without pytest (a load
benchmark can drive :class:`Chaos` or call :func:`violations` on its own clients). The
oracle is research/reliability.md section 2's, checked at the end of every run:

1. every acknowledged op is in the history, at the version its ack named;
2. every ``(client, id)`` appears in the history at most once, and the history is one
   contiguous line of versions (no fork) whose replay is the server's text;
3. every client's text and version equal the server's;
4. every op a client sent was committed or answered with an ``error`` naming its id
   (nothing vanished silently), and no op in the history claims a client that never sent it;
5. on every connection, ops and first acks arrived in version order with no gap, each one
   equal to the history's entry at that version (a repeated ack answers a resend and
   names an earlier version of the same client's op).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from collab_client.connection import CollabClient
from collab_core import ot

Message = dict[str, Any]
Edit = Callable[[CollabClient, random.Random], None]


class StackLike(Protocol):
    """What the harness needs from a running system (tests' ``Stack``, or a benchmark's)."""

    def token(self, user: str = ...) -> str: ...
    def document(self, doc: str) -> dict[str, Any]: ...
    def history(self, doc: str) -> list[dict[str, Any]]: ...


class LedgerClient(CollabClient):
    """A :class:`CollabClient` that records every frame received and every op it sent."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.record = True
        self.sent: list[Message] = []

    def _send(self, messages: list[Message]) -> None:
        if self._ws is not None:
            self.sent.extend(m for m in messages if m.get("type") == "op")
        super()._send(messages)

    def welcomes(self) -> list[Message]:
        return [m for m in self.received if m.get("type") == "welcome"]


# -- the oracle ----------------------------------------------------------------------------


def replay(history: Sequence[Message]) -> str:
    text = ""
    for entry in history:
        text = ot.apply(text, entry["op"])
    return text


def ordering_violations(client: LedgerClient, by_version: dict[int, Message]) -> list[str]:
    """Invariant 5 for one client, over every connection it had (split at each welcome)."""
    problems: list[str] = []
    expected: int | None = None
    connection = 0
    name = client.client_id[:8]
    for m in client.received:
        kind = m.get("type")
        if kind == "welcome":
            connection += 1
            expected = int(m["version"])
            caught_up = [int(op["v"]) for op in m.get("ops") or []]
            if caught_up and caught_up != list(range(caught_up[0], expected)):
                problems.append(
                    f"{name}#{connection}: welcome ops {caught_up} end before {expected}"
                )
            continue
        if kind not in ("op", "ack") or expected is None:
            continue
        v = int(m["v"])
        committed = by_version.get(v)
        where = f"{name}#{connection}: {kind} {m.get('id')!r} at v {v}"
        if committed is None:
            problems.append(f"{where}: not in the history")
            continue
        if v == expected:
            expected += 1
        elif not (kind == "ack" and v < expected):
            problems.append(f"{where}: expected v {expected} (gap or reorder)")
            continue
        if committed["id"] != m["id"]:
            problems.append(f"{where}: the history has {committed['id']!r} there")
        elif kind == "ack" and committed["client"] != client.client_id:
            problems.append(f"{where}: acknowledges another client's op")
        elif kind == "op" and (committed["client"], committed["op"]) != (m["client"], m["op"]):
            problems.append(f"{where}: differs from the history")
    return problems


def violations(
    clients: Sequence[LedgerClient], history: Sequence[Message], document: Message
) -> list[str]:
    """Every broken invariant (module docstring), as readable lines; empty when all hold."""
    problems: list[str] = []
    versions = [int(entry["v"]) for entry in history]
    if versions != list(range(len(history))):
        problems.append(f"history versions are not 0..{len(history) - 1}: a gap or a fork")
    if document["version"] != len(history):
        problems.append(f"document at {document['version']} but {len(history)} ops in history")
    if replay(history) != document["text"]:
        problems.append("replaying the history does not give the document's text")
    twice = [key for key, n in Counter((e["client"], e["id"]) for e in history).items() if n > 1]
    if twice:
        problems.append(f"applied more than once: {twice[:5]}")
    by_version = {int(entry["v"]): entry for entry in history}
    committed = {(entry["client"], entry["id"]) for entry in history}
    for client in clients:
        name = client.client_id[:8]
        for op_id, v in client.acks:
            entry = by_version.get(v)
            if entry is None or (entry["client"], entry["id"]) != (client.client_id, op_id):
                problems.append(f"{name}: ack {op_id!r} at v {v} is not its op in the history")
        if client.text != document["text"] or client.version != document["version"]:
            problems.append(
                f"{name}: at v {client.version} with {len(client.text)} chars, server at "
                f"v {document['version']} with {len(document['text'])}"
            )
        refused = {m.get("id") for m in client.received if m.get("type") == "error"}
        sent = {m["id"] for m in client.sent}
        lost = sorted(
            i for i in sent if (client.client_id, i) not in committed and i not in refused
        )
        if lost:
            problems.append(f"{name}: ops neither committed nor refused: {lost[:10]}")
        forged = [
            e["id"] for e in history if e["client"] == client.client_id and e["id"] not in sent
        ]
        if forged:
            problems.append(f"{name}: ops in the history it never sent: {forged[:10]}")
        problems.extend(ordering_violations(client, by_version))
    return problems


# -- the harness ---------------------------------------------------------------------------


class Chaos:
    """``clients`` recording clients on one document, each given a list of URLs to cycle.

    ``urls(i)`` returns client ``i``'s URLs (e.g. every gateway, starting at a different one,
    or fault proxies in front of them). Drive it with :meth:`load`, inject faults in between,
    and end with :meth:`settle`, which waits for quiescence and asserts the oracle.
    """

    def __init__(
        self,
        stack: StackLike,
        doc: str,
        urls: Callable[[int], list[str]],
        *,
        edit: Edit,
        clients: int = 6,
        seed: int = 0,
        tokens: Callable[[int], Any] | None = None,
        **client_options: Any,
    ) -> None:
        self.stack = stack
        self.doc = doc
        self.edit = edit
        self.rng = random.Random(seed)
        client_options.setdefault("backoff_max", 0.5)
        # ``tokens(i)``: client i's token, or a function minting one per connection.
        token = tokens or (lambda i: stack.token(f"u{i}"))
        self.clients = [LedgerClient(urls(i), token(i), **client_options) for i in range(clients)]

    async def start(self, timeout: float = 20) -> Chaos:
        for client in self.clients:
            client.start()
        await asyncio.gather(*(c.synced(timeout=timeout) for c in self.clients))
        return self

    async def __aenter__(self) -> Chaos:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.clients))

    @property
    def acked(self) -> int:
        return sum(len(c.acks) for c in self.clients)

    async def load(self, seconds: float, *, pause: float = 0.005, drops: float = 0.0) -> int:
        """Random edits by connected clients for ``seconds``; ``drops``: chance per step that
        a random client loses its connection. Returns the number of edits made."""
        edits = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            client = self.rng.choice(self.clients)
            if client.connected:
                self.edit(client, self.rng)
                edits += 1
            if drops and self.rng.random() < drops:
                self.rng.choice(self.clients).drop()
            await asyncio.sleep(pause)
        return edits

    async def until(self, predicate: Callable[[], bool], timeout: float, *, load: bool = True):
        """Keep the load going until ``predicate()`` holds; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not reached under load")
            if load:
                await self.load(0.1)
            else:
                await asyncio.sleep(0.05)

    async def settle(self, timeout: float = 60) -> Message:
        """Wait until every client is acknowledged and caught up, then assert the oracle."""
        await asyncio.gather(*(c.synced(timeout=timeout) for c in self.clients))
        document = self.stack.document(self.doc)
        await asyncio.gather(
            *(c.reaches(document["version"], timeout=timeout) for c in self.clients)
        )
        history = self.stack.history(self.doc)
        problems = violations(self.clients, history, document)
        assert not problems, "\n".join(problems[:40])
        return document


# -- processes -----------------------------------------------------------------------------


def process_state(pid: int) -> str:
    """The state letter of a process from /proc (``T`` stopped, ``Z`` zombie, ``S`` …)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "X"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError(f"no VmRSS for {pid}")


def metric(text: str, name: str) -> float:
    """The value of an unlabelled sample (or the sum over labels) in Prometheus text."""
    total = 0.0
    found = False
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{"):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    if not found:
        raise KeyError(name)
    return total


# -- the fault proxy -----------------------------------------------------------------------


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), not a FIN: a connection reset mid-stream."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Link:
    """One proxied connection: a client side and a server side, pumped both ways."""

    def __init__(
        self,
        proxy: FaultProxy,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        server: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.proxy = proxy
        self.client = client
        self.server = server
        self.flowing = asyncio.Event()
        self.flowing.set()

    def reset(self) -> None:
        _reset(self.client[1])
        _reset(self.server[1])

    async def run(self) -> None:
        try:
            await asyncio.gather(
                self._pump(self.client[0], self.server[1], upstream=True),
                self._pump(self.server[0], self.client[1], upstream=False),
            )
        finally:
            for writer in (self.client[1], self.server[1]):
                writer.transport.abort()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        proxy = self.proxy
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                if upstream and proxy._cuts > 0:
                    proxy._cuts -= 1
                    writer.write(data[: max(1, len(data) // 2)])
                    await writer.drain()
                    self.reset()
                    return
                delay = proxy.latency + proxy.rng.uniform(0, proxy.jitter)
                if delay > 0:
                    await asyncio.sleep(delay)
                await self.flowing.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            self.reset()


class FaultProxy:
    """A TCP proxy on loopback in front of one server, with faults switched on at will.

    It runs its own event loop in a thread, so the test's blocking calls (HTTP requests,
    process waits) never stall the traffic it carries. Faults: ``latency`` and ``jitter``
    (seconds added to every chunk, order kept), :meth:`stall` (the connections open now stop
    carrying anything, without FIN or RST: a half-open network), :meth:`reset` (RST on every
    open connection) and :meth:`cut_next` (the next chunk from a client is forwarded only in
    part, then both sides are reset: a connection lost mid-frame). New connections after a
    stall or reset work normally.
    """

    def __init__(self, target_port: int, *, seed: int = 0) -> None:
        self.target_port = target_port
        self.latency = 0.0
        self.jitter = 0.0
        self.rng = random.Random(seed)
        self.port = 0
        self.accepted = 0
        self._cuts = 0
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            self._loop.close()
            return
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def url(self, path: str, scheme: str = "ws") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    @property
    def connections(self) -> int:
        return len(self._links)

    def stall(self) -> None:
        self._call(self._each(lambda link: link.flowing.clear()))

    def resume(self) -> None:
        self._call(self._each(lambda link: link.flowing.set()))

    def reset(self) -> None:
        self._call(self._each(_Link.reset))

    def cut_next(self, count: int = 1) -> None:
        self._call(self._set_cuts(count))

    # Inside the proxy's loop.

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _set_cuts(self, count: int) -> None:
        self._cuts = count

    async def _each(self, action: Callable[[_Link], object]) -> None:
        for link in list(self._links):
            action(link)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.reset()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            server = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            _reset(writer)
            return
        link = _Link(self, (reader, writer), server)
        self._links.add(link)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            await link.run()
        finally:
            self._links.discard(link)
            self._tasks.discard(task)  # type: ignore[arg-type]
