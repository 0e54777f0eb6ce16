"""The edit-transform consumer: ingress streams in, committed ops and replies out.

Delivery from a consumer group is at-least-once: an entry can be processed twice (after
a crash before XACK, or when a paused worker wakes after another claimed its entry).
That is safe because the commit is a check-and-append on the version and a resent op
is recognised among the ops since its base version.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgspec
from redis.asyncio import Redis

from collab_core import fanout, keys, tracing
from collab_core.errors import ErrorCode
from collab_core.ingress import Reply, Submission
from collab_core.service import BLOCK_MS, REDIS_ERRORS, ensure_group, report_backlog, run_all
from collab_core.store import LogEntry
from collab_transform import metrics
from collab_transform.commit import Committer
from collab_transform.pipeline import Commit, Duplicate, Refuse, decide

log = logging.getLogger("collab.transform")

#: Commit attempts per submission before it is refused with ``internal``.
MAX_ATTEMPTS = 20
#: Deliveries of one ingress entry before it is treated as poison and dead-lettered.
MAX_DELIVERIES = 5
REPLY_MAXLEN = 10_000
#: Commits announced at once while the next ops are processed.
MAX_ANNOUNCING = 64
DEAD_LETTER_MAXLEN = 10_000

_encode_op = msgspec.json.encode

#: Where :class:`FaultHook` can strike, in the order one entry passes them.
FAULT_POINTS = ("after_read", "before_commit", "after_commit", "before_ack")


@dataclass(slots=True)
class FaultHook:
    """A test hook, never set in production: ``COLLAB_TRANSFORM_FAULT``.

    ``<action>_<point>:<n>``: the ``n``-th time this process reaches ``point`` (one of
    :data:`FAULT_POINTS`), it either ends at once with ``os._exit(137)`` (``crash``: what
    ``kill -9`` leaves, with nothing flushed or acknowledged) or stops itself with SIGSTOP
    (``stop``: a paused worker, woken by the test with SIGCONT after another replica
    claimed its entries).

    ``<action>_on_id:<op id>``: a poison op. Every time any process with this hook reads
    the submission with that op id, it ends (``crash``) or its processing raises
    (``raise``: a bug that one op triggers).

    The fault matrix in docs/reliability.md names the tests that use it. Unset, each point
    costs the worker one ``is None`` check.
    """

    action: str
    point: str
    n: int = 0
    op_id: str | None = None
    reached: int = 0

    @classmethod
    def parse(cls, spec: str) -> FaultHook:
        head, _, arg = spec.partition(":")
        action, _, point = head.partition("_")
        if point == "on_id" and action in ("crash", "raise") and arg:
            return cls(action, point, op_id=arg)
        if action not in ("crash", "stop") or point not in FAULT_POINTS or not arg.isdigit():
            raise ValueError(f"bad fault spec {spec!r}")
        return cls(action, point, int(arg))

    def at(self, point: str) -> None:
        if point != self.point:
            return
        self.reached += 1
        if self.reached != self.n:
            return
        log.warning("fault hook: %s at %s (#%d)", self.action, point, self.n)
        if self.action == "crash":
            os._exit(137)
        os.kill(os.getpid(), signal.SIGSTOP)

    def on(self, op_id: str) -> None:
        if self.op_id is None or op_id != self.op_id:
            return
        log.warning("fault hook: %s on op %s", self.action, op_id)
        if self.action == "crash":
            os._exit(137)
        raise RuntimeError(f"fault hook: poison op {op_id}")


class Committed(NamedTuple):
    """A commit to announce: the document, its new version, the gateways hosting it."""

    doc: str
    version: int
    hosts: list[bytes]


class Worker:
    def __init__(
        self,
        redis: Redis,
        *,
        consumer: str,
        shards: int,
        max_document_chars: int,
        snapshot_every: int = 100,
        batch: int = 100,
        block_ms: int = BLOCK_MS,
        claim_idle_ms: int = 10_000,
        fault: FaultHook | None = None,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
    ) -> None:
        self.redis = redis
        self.consumer = consumer
        self.streams = [keys.op_ingress(n) for n in range(shards)]
        self.dead_letters = {keys.op_ingress(n): keys.op_dead_letter(n) for n in range(shards)}
        self.max_document_chars = max_document_chars
        self.batch = batch
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.committer = Committer(
            redis,
            snapshot_every=snapshot_every,
            wait_replicas=wait_replicas,
            wait_timeout_ms=wait_timeout_ms,
        )
        self.ready = False
        self.fault = fault
        self._processing = asyncio.Lock()
        #: Commits being made visible and announced (:meth:`_announce`).
        self._announcing: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Consume until cancelled: first this consumer's own pending entries, then new ones."""
        await ensure_group(self.redis, self.streams, keys.TRANSFORM_GROUP)
        self.ready = True
        # After a restart, entries delivered to this consumer name but never acknowledged
        # are re-read with id 0 (Redis streams: "recovering from permanent failures").
        for stream in self.streams:
            await self._consume(stream, "0")
        # One blocking read per shard: the shards are in different slots of a Redis
        # Cluster, which refuses a read across slots.
        try:
            await run_all(
                *(self._consume_forever(stream) for stream in self.streams),
                self._claim_loop(),
                report_backlog(
                    self.redis,
                    self.streams,
                    keys.TRANSFORM_GROUP,
                    pending=metrics.STREAM_PENDING,
                    lag=metrics.STREAM_LAG,
                    oldest=metrics.STREAM_OLDEST_PENDING,
                ),
            )
        finally:
            # Their entries stay pending and come back as duplicates.
            for task in self._announcing:
                task.cancel()
            await asyncio.gather(*self._announcing, return_exceptions=True)

    async def _consume_forever(self, stream: str) -> None:
        while True:
            await self._consume(stream, ">")

    async def _consume(self, stream: str, start: str) -> None:
        """Handle one batch of new entries of ``stream`` (``>``), or with ``0`` every entry
        this consumer was given before and never finished: after a restart, including an
        entry whose processing ended the previous run (dead-lettered once delivered too
        often)."""
        recovering = start != ">"
        cursor = start
        while True:
            response: Any = await self.redis.xreadgroup(
                keys.TRANSFORM_GROUP,
                self.consumer,
                {stream: cursor},
                count=self.batch,
                block=None if recovering else self.block_ms,
            )
            entries = response[0][1] if response else []
            if not recovering:
                for entry_id, fields in entries:
                    await self._dispatch(stream, entry_id, fields)
                return
            if not entries:
                return
            for entry_id, fields in entries:
                if fields and await self._deliveries(stream, entry_id) > MAX_DELIVERIES:
                    await self._dead_letter(stream, entry_id, fields)
                else:
                    await self._dispatch(stream, entry_id, fields)
            # Read past these even if one stays pending (its processing failed).
            cursor = _name(entries[-1][0])

    async def _dispatch(self, stream: str, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        if not fields:  # an entry trimmed away while pending
            await self._finish(stream, entry_id)
        else:
            await self._handle(stream, entry_id, fields)

    async def _claim_loop(self) -> None:
        """Take over entries that another consumer read but did not finish (it died)."""
        interval = max(self.claim_idle_ms / 2000, 0.2)
        while True:
            await asyncio.sleep(interval)
            for stream in self.streams:
                try:
                    await self._claim(stream)
                except Exception:
                    # Retried next round (a poison entry ends in the dead letter after
                    # MAX_DELIVERIES); never let the task end silently with entries
                    # stranded in this consumer's pending list.
                    log.exception("claiming entries of %s failed", stream)

    async def _claim(self, stream: str) -> None:
        cursor = "0-0"
        while True:
            result: Any = await self.redis.xautoclaim(
                stream,
                keys.TRANSFORM_GROUP,
                self.consumer,
                min_idle_time=self.claim_idle_ms,
                start_id=cursor,
                count=self.batch,
            )
            cursor, claimed = result[0], result[1]
            for entry_id, fields in claimed:
                metrics.CLAIMED.inc()
                if fields and await self._deliveries(stream, entry_id) > MAX_DELIVERIES:
                    await self._dead_letter(stream, entry_id, fields)
                else:
                    await self._dispatch(stream, entry_id, fields)
            if cursor in (b"0-0", "0-0"):
                return

    async def _deliveries(self, stream: str, entry_id: bytes) -> int:
        rows: Sequence[Any] = await self.redis.xpending_range(
            stream, keys.TRANSFORM_GROUP, min=entry_id, max=entry_id, count=1
        )
        return int(rows[0]["times_delivered"]) if rows else 0

    async def _dead_letter(self, stream: str, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        """Set aside an entry whose processing failed on every delivery (a poison op).

        It is copied to the shard's dead-letter stream (same slot, kept for inspection),
        its author is answered, and it leaves the ingress: the ops after it go on.
        """
        log.error("dead-lettering ingress entry %s of %s", entry_id, stream)
        metrics.DEAD_LETTERED.inc()
        await self.redis.xadd(
            self.dead_letters[stream],
            {**fields, b"ingress_id": entry_id},  # type: ignore[dict-item]
            maxlen=DEAD_LETTER_MAXLEN,
            approximate=True,
        )
        try:
            sub = Submission.from_stream(fields)
        except (KeyError, ValueError):
            sub = None
        if sub is not None:
            # Nothing committed, unless the failure came after the commit: then it is acked.
            committed = await self.committer.committed_version(
                sub.doc, sub.author, sub.client, sub.id
            )
            if committed is not None:
                reply = Reply("ack", sub.session, sub.id, v=committed)
            else:
                reply = Reply(
                    "error",
                    sub.session,
                    sub.id,
                    code=ErrorCode.INTERNAL,
                    message="op could not be processed",
                )
            await self._reply(sub, reply)
        await self._finish(stream, entry_id)

    async def _finish(self, stream: str, entry_id: bytes) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xack(stream, keys.TRANSFORM_GROUP, entry_id)
            pipe.xdel(stream, entry_id)
            await pipe.execute()

    async def _publish(self, doc: str, version: int) -> int:
        """Make the ops below ``version`` visible (once replicated, if asked to)."""
        confirmed = await self.committer.publish(doc, version)
        if confirmed < self.committer.wait_replicas:
            metrics.UNREPLICATED.inc()
            log.warning(
                "%d of %d replicas confirmed version %d of %s in time; visible anyway",
                confirmed,
                self.committer.wait_replicas,
                version,
                doc,
            )
        return version

    async def _reply(self, sub: Submission, reply: Reply) -> None:
        await self.redis.xadd(
            keys.inbox(sub.gateway),
            reply.stream_fields(),  # type: ignore[arg-type]
            maxlen=REPLY_MAXLEN,
            approximate=True,
        )

    async def _handle(self, stream: str, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        if self.fault is not None:
            self.fault.at("after_read")
        try:
            sub = Submission.from_stream(fields)
        except (KeyError, ValueError) as exc:
            # Only gateways write here, so this is a bug or a foreign writer: drop it loudly.
            log.error("malformed ingress entry %s: %s", entry_id, exc)
            await self._finish(stream, entry_id)
            return
        # The claim loop and the main loop share the cached document views, which a
        # commit advances: interleaved, one would decide or append against a view that
        # moved under it (a failed assertion that silently ended the claim loop).
        async with self._processing:
            started = time.perf_counter()  # the processing, not the wait for the lock
            try:
                if self.fault is not None:
                    self.fault.on(sub.id)
                with tracing.process(
                    stream, sub.traceparent, message_id=entry_id, group=keys.TRANSFORM_GROUP
                ):
                    committed = await self.process(sub)
            except REDIS_ERRORS:
                raise
            except Exception:
                # A bug that this one op triggers must not stop the worker or block the
                # ops behind it: the entry stays pending, is claimed again after
                # claim_idle_ms, and is dead-lettered after MAX_DELIVERIES.
                log.exception("processing op %s of %s failed", sub.id, sub.doc)
                metrics.FAILED.inc()
                self.committer.forget(sub.doc)
                return
        metrics.PROCESS_SECONDS.observe(time.perf_counter() - started)
        if committed is None:
            if self.fault is not None:
                self.fault.at("before_ack")
            await self._finish(stream, entry_id)
            return
        # The next op is processed meanwhile: its commit and these writes share Redis's
        # fsyncs (appendfsync always), and a replica's WAIT does not hold up the stream.
        while len(self._announcing) >= MAX_ANNOUNCING:
            await asyncio.wait(self._announcing, return_when=asyncio.FIRST_COMPLETED)
        task = asyncio.create_task(self._announce(stream, entry_id, committed))
        self._announcing.add(task)
        task.add_done_callback(self._announced)

    async def _announce(self, stream: str, entry_id: bytes, committed: Committed) -> None:
        """Make a commit visible (once replicated, if asked to), tell the gateways hosting
        the document, then acknowledge its ingress entry: a crash before the end leaves
        the entry pending, and its redelivery, a duplicate, does all of this again."""
        doc, version, hosts = committed
        visible = await self._publish(doc, version)
        if self.committer.wait_replicas:
            # A gateway that joined while we waited is not in the commit's list.
            await fanout.notify(self.redis, await fanout.live_hosts(self.redis, [doc]), visible)
        else:
            await fanout.notify(self.redis, {doc: hosts}, visible)
        if self.fault is not None:
            self.fault.at("before_ack")
        await self._finish(stream, entry_id)

    def _announced(self, task: asyncio.Task[None]) -> None:
        self._announcing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The entry stays pending: the claim loop takes it over as a duplicate.
            log.warning("announcing a commit failed: %s", task.exception())

    async def process(self, sub: Submission) -> Committed | None:
        """Decide and carry out one submission, retrying when another replica won the race;
        what it committed, for :meth:`_announce`, or None (refused, a duplicate)."""
        committer = self.committer
        view = await committer.view(sub.doc)
        committed = await committer.committed_before(sub.doc, sub.author, sub.client, sub.id, sub.v)
        for attempt in range(MAX_ATTEMPTS):
            since = await committer.since(sub.doc, view, sub.v) if sub.v <= view.version else []
            decision = decide(
                sub,
                view.version,
                view.text,
                since,
                max_document_chars=self.max_document_chars,
                committed=committed,
            )
            if isinstance(decision, Refuse):
                if decision.code is ErrorCode.INVALID_VERSION and attempt == 0:
                    # Our cached head may be stale (another replica committed): look again.
                    view = await committer.refresh(sub.doc)
                    if sub.v <= view.version:
                        continue
                metrics.REFUSED.labels(decision.code.value).inc()
                await self._reply(
                    sub,
                    Reply(
                        "error", sub.session, sub.id, code=decision.code, message=decision.message
                    ),
                )
                return None
            if isinstance(decision, Duplicate):
                metrics.DUPLICATES.inc()
                # The first processing may have ended between its commit and making it
                # visible, or before its notifications: do both again.
                visible = await self._publish(sub.doc, decision.v + 1)
                live = await fanout.live_hosts(self.redis, [sub.doc])
                await fanout.notify(self.redis, live, visible)
                await self._reply(sub, Reply("ack", sub.session, sub.id, v=decision.v))
                return None
            assert isinstance(decision, Commit)
            # The log entry carries this span's context: fan-out joins the op's trace.
            with tracing.span("commit") as traceparent:
                entry = LogEntry(
                    v=view.version,
                    op_json=_encode_op(decision.op),
                    client=sub.client,
                    id=sub.id,
                    author=sub.author,
                    session=sub.session,
                    ts=time.time(),
                    base=sub.v,
                    digest=sub.digest,
                    traceparent=traceparent or sub.traceparent,
                )
                if self.fault is not None:
                    self.fault.at("before_commit")
                started = time.perf_counter()
                hosts = await committer.append(sub.doc, view, entry, decision.text)
            if hosts is not None:
                if self.fault is not None:
                    self.fault.at("after_commit")
                metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
                metrics.COMMITTED.inc()
                metrics.SUBMIT_TO_COMMIT_SECONDS.observe(max(0.0, entry.ts - sub.ts))
                return Committed(sub.doc, entry.v + 1, hosts)
            metrics.CONFLICTS.inc()
            view = await committer.refresh(sub.doc)
        log.error("gave up on op %s of %s after %d conflicts", sub.id, sub.doc, MAX_ATTEMPTS)
        await self._reply(
            sub,
            Reply(
                "error", sub.session, sub.id, code=ErrorCode.INTERNAL, message="commit contention"
            ),
        )
        return None


def _name(stream: str | bytes) -> str:
    return stream.decode() if isinstance(stream, bytes) else stream
