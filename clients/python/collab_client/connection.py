"""The asyncio client: a WebSocket around :class:`~collab_client.state.ClientState`.

It connects, says ``hello`` (with ``since`` when it resumes), resends pending ops after a
reconnect, reconnects with jittered exponential backoff when the connection drops
(1006), the gateway drains (1012, or a ``reconnect`` message) or is busy (1013), or the
client fell behind (4009 ``slow_consumer``), and stops for good on errors a retry cannot
fix (4001 unauthorized, 4003 forbidden document, 4000 bad request). The token can be a
function, called for every connection: then a 4001 on a connection that was welcomed (the
token expired) is followed by one more connection with a fresh token.

Typical use::

    async with CollabClient(url, token) as doc:
        await doc.synced()
        doc.insert(0, "hello")
        await doc.synced()
        print(doc.text)
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import random
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from collab_client.state import (
    ClientState,
    Event,
    OpRejected,
    ReconnectRequested,
    ResyncNeeded,
)
from collab_core import ot

#: Close codes after which reconnecting cannot help.
FATAL_CLOSE_CODES = frozenset({4000, 4001, 4003})
UNAUTHORIZED = 4001

#: A token, or a function returning one (maybe a coroutine function), called per connection.
TokenSource = str | Callable[[], str | Awaitable[str]]


class ConnectionFailed(RuntimeError):
    """The client stopped for good: the server refused it (``code`` is the close code)."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"connection refused ({code}): {reason}")
        self.code = code
        self.reason = reason


class CollabClient:
    """One document, edited over one WebSocket at a time, reconnecting as needed."""

    def __init__(
        self,
        url: str | Sequence[str],
        token: TokenSource,
        *,
        client_id: str | None = None,
        reconnect: bool = True,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        on_event: Callable[[Event], None] | None = None,
        on_message: Callable[[dict[str, Any]], None] | None = None,
        open_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        close_timeout: float = 10.0,
    ) -> None:
        # Several gateway URLs: each reconnect tries the next one.
        self.urls = [url] if isinstance(url, str) else list(url)
        self.acks: list[tuple[str, int]] = []
        self.token = token
        self.state = ClientState(client_id or uuid.uuid4().hex)
        self.reconnect = reconnect
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.on_event = on_event
        #: Called with every message received, before the state machine sees it.
        self.on_message = on_message
        self.open_timeout = open_timeout
        # A half-open connection (lost network, frozen gateway) answers nothing: only our
        # own pings notice it, and then we reconnect and resend (PROTOCOL.md, "Liveness").
        self.ping_interval = ping_interval
        self.close_timeout = close_timeout
        self.received: list[dict[str, Any]] = []
        self.record = False
        self.failure: ConnectionFailed | None = None
        self.connections = 0
        # Counts attempts, not successes: a URL that refuses connections must not be
        # tried again and again while the others are up.
        self._attempts = 0
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._closing = False
        self._retry_after: float | None = None
        self._outgoing: asyncio.Queue[str | None] = asyncio.Queue()
        self._retry: asyncio.Task[None] | None = None
        self._retry_delay = backoff_initial

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> CollabClient:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"collab-client-{self.client_id}")

    async def close(self) -> None:
        """Close the connection and stop reconnecting."""
        self._closing = True
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        if self._retry is not None:
            self._retry.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def drop(self) -> None:
        """Abort the TCP connection without a close frame (a lost network); it reconnects."""
        ws = self._ws
        if ws is not None:
            ws.transport.abort()

    # -- accessors ---------------------------------------------------------------------

    @property
    def client_id(self) -> str:
        return self.state.client_id

    @property
    def text(self) -> str:
        return self.state.text

    @property
    def version(self) -> int | None:
        return self.state.version

    @property
    def connected(self) -> bool:
        return self._ws is not None and self.state.phase == "open"

    # -- editing -----------------------------------------------------------------------

    def edit(self, op: Sequence[ot.Component]) -> None:
        """Apply ``op`` locally and send it when the protocol allows."""
        self.state.local_edit(op)
        self._pump()

    def insert(self, position: int, text: str) -> None:
        self.edit([position, text] if position else [text])

    def delete(self, position: int, count: int) -> None:
        self.edit([position, {"d": count}] if position else [{"d": count}])

    def set_cursor(self, anchor: int, head: int | None = None, **meta: Any) -> None:
        self.state.set_cursor(anchor, head, meta=meta or None)
        self._pump()

    def send_raw(self, message: dict[str, Any]) -> None:
        """Send a message the state machine does not produce (heartbeats, tests)."""
        self._send([message])

    # -- waiting -----------------------------------------------------------------------

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate()`` holds, re-checking after every received message."""
        async with asyncio.timeout(timeout):
            while not predicate():
                if self.failure is not None:
                    raise self.failure
                self._changed.clear()
                await self._changed.wait()

    async def connected_and_welcomed(self, timeout: float = 10.0) -> None:
        await self.wait_for(lambda: self.connected, timeout)

    async def synced(self, timeout: float = 10.0) -> None:
        """Wait until connected and every local edit is acknowledged."""
        await self.wait_for(lambda: self.connected and self.state.synced, timeout)

    async def reaches(self, version: int, timeout: float = 10.0) -> None:
        await self.wait_for(
            lambda: self.state.version is not None and self.state.version >= version, timeout
        )

    # -- internals ---------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()

    def _send(self, messages: list[dict[str, Any]]) -> None:
        if self._ws is None:
            return
        for message in messages:
            self._outgoing.put_nowait(json.dumps(message, ensure_ascii=False))

    def _pump(self) -> None:
        self._send(self.state.messages_to_send())
        for event in self.state.events_received():
            self._handle_event(event)
        self._notify()

    def _handle_event(self, event: Event) -> None:
        if isinstance(event, ReconnectRequested):
            self._retry_after = event.retry_after_ms / 1000
        elif isinstance(event, OpRejected) and event.retry:
            # Nothing was committed (internal, rate_limited): send the same op again later.
            if self._retry is None or self._retry.done():
                self._retry = asyncio.create_task(self._resend_later())
        elif isinstance(event, ResyncNeeded):
            self._retry_after = 0.0
            if self._ws is not None:
                self._outgoing.put_nowait(None)  # the sender closes; we reconnect with since
        if self.on_event is not None:
            self.on_event(event)

    async def _token(self) -> str:
        if not callable(self.token):
            return self.token
        token = self.token()
        if inspect.isawaitable(token):
            token = await token
        return token

    async def _resend_later(self) -> None:
        await asyncio.sleep(random.uniform(0.5, 1.0) * self._retry_delay)
        self._retry_delay = min(self._retry_delay * 2, self.backoff_max)
        self.state.resend()
        self._pump()

    async def _run(self) -> None:
        delay = self.backoff_initial
        while not self._closing:
            code: int | None = None
            reason = ""
            welcomed = False
            try:
                url = self.urls[self._attempts % len(self.urls)]
                self._attempts += 1
                async with websockets.connect(
                    url,
                    open_timeout=self.open_timeout,
                    compression=None,
                    max_size=None,
                    ping_interval=self.ping_interval,
                    ping_timeout=self.ping_interval,
                    close_timeout=self.close_timeout,
                ) as ws:
                    self._ws = ws
                    self.connections += 1
                    self._outgoing = asyncio.Queue()
                    sender = asyncio.create_task(_sender(ws, self._outgoing))
                    try:
                        self.state.connect(await self._token())
                        self._pump()
                        async for frame in ws:
                            message = json.loads(frame)
                            if self.on_message is not None:
                                self.on_message(message)
                            if self.record:
                                self.received.append(message)
                            if message.get("type") == "ack":
                                self.acks.append((message["id"], message["v"]))
                                self._retry_delay = self.backoff_initial
                            self.state.receive(message)
                            if self.state.phase == "open":
                                delay = self.backoff_initial
                                welcomed = True
                            self._pump()
                    finally:
                        sender.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await sender
                code, reason = ws.close_code, ws.close_reason or ""
            except ConnectionClosed as exc:
                rcvd = exc.rcvd
                code, reason = (rcvd.code, rcvd.reason) if rcvd else (1006, "")
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                code, reason = 1006, str(exc)
                if isinstance(exc, InvalidStatus) and exc.response.status_code == 403:
                    code = 4003
            finally:
                self._ws = None
                if self.state.phase != "closed":
                    self.state.connection_lost()
                self._notify()
            if self._closing:
                return
            # An expired token is renewed by a token function: one more try, which must
            # be welcomed to earn another.
            renewable = code == UNAUTHORIZED and callable(self.token) and welcomed
            if (code in FATAL_CLOSE_CODES and not renewable) or not self.reconnect:
                self.failure = ConnectionFailed(code, reason)
                self._notify()
                return
            wait = self._retry_after if self._retry_after is not None else delay
            self._retry_after = None
            # Full jitter spreads a room's reconnects after a gateway drains.
            await asyncio.sleep(random.uniform(0.5, 1.0) * wait)
            delay = min(delay * 2, self.backoff_max)


async def _sender(ws: ClientConnection, queue: asyncio.Queue[str | None]) -> None:
    """Write queued frames in order; ``None`` closes the connection."""
    with contextlib.suppress(ConnectionClosed):
        while True:
            data = await queue.get()
            if data is None:
                await ws.close(1000, "resync")
                return
            await ws.send(data)
