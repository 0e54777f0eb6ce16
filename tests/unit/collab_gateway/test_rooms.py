"""Fan-out (collab_gateway.rooms): ordering, backlogs, duplicate acks, slow consumers."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from collab_core import protocol
from collab_core.errors import CloseCode, ErrorCode
from collab_core.store import LogEntry
from collab_gateway.rooms import CloseFrame, Member, Outbox, Registry, Room

DOC = "notes"


def entry(
    v: int,
    *,
    client: str = "c-ada",
    author: str = "u-ada",
    session: str = "s-ada",
    id: str | None = None,
    op_json: bytes = b'["x"]',
) -> LogEntry:
    return LogEntry(
        v=v,
        op_json=op_json,
        client=client,
        id=id or f"{client}-{v}",
        author=author,
        session=session,
        ts=1_800_000_000.0 + v,
        base=v,
        digest=f"digest-{v}",
    )


def member(
    session: str, user: str, client: str, *, capacity: int = 100, ready_at: int | None = 0
) -> Member:
    m = Member(session=session, user=user, client=client, outbox=Outbox(capacity))
    if ready_at is not None:
        m.next_version = ready_at
        m.ready = True
    return m


def ada(*, capacity: int = 100, ready_at: int | None = 0) -> Member:
    return member("s-ada", "u-ada", "c-ada", capacity=capacity, ready_at=ready_at)


def lin(*, capacity: int = 100, ready_at: int | None = 0) -> Member:
    return member("s-lin", "u-lin", "c-lin", capacity=capacity, ready_at=ready_at)


def room_of(*members: Member, version: int | None = 0) -> Room:
    room = Room(DOC)
    room.version = version
    for m in members:
        room.members[m.session] = m
    return room


def queued(m: Member) -> list[str | CloseFrame]:
    """Everything in the member's send queue, taken out without awaiting."""
    items: list[str | CloseFrame] = []
    while not m.outbox.queue.empty():
        items.append(m.outbox.queue.get_nowait())
    return items


def received(m: Member) -> list[protocol.ServerMessage]:
    items = queued(m)
    assert all(isinstance(item, str) for item in items), items
    return [protocol.decode_server(item) for item in items if isinstance(item, str)]


def ack(id: str, v: int) -> protocol.Ack:
    return protocol.Ack(id=id, v=v)


def op(e: LogEntry) -> protocol.OpBroadcast:
    return protocol.OpBroadcast(
        v=e.v,
        op=msgspec.json.decode(e.op_json),
        id=e.id,
        client=e.client,
        author=e.author,
        session=e.session,
    )


def versions(messages: list[protocol.ServerMessage]) -> list[int]:
    return [m.v for m in messages if isinstance(m, protocol.Ack | protocol.OpBroadcast)]


# -- deliver ---------------------------------------------------------------------------------


def test_author_gets_an_ack_and_everyone_else_the_op() -> None:
    a, b = ada(), lin()
    room = room_of(a, b)
    committed = entry(0, op_json=b'[3,{"d":2},"hi"]')
    assert room.deliver([committed]) == 2
    assert received(a) == [ack("c-ada-0", 0)]
    assert received(b) == [
        protocol.OpBroadcast(
            v=0,
            op=[3, {"d": 2}, "hi"],
            id="c-ada-0",
            client="c-ada",
            author="u-ada",
            session="s-ada",
        )
    ]
    assert room.version == 1
    assert room.seen_version == 1


def test_op_frame_splices_the_stored_op_json_unchanged() -> None:
    b = lin()
    room = room_of(b)
    room.deliver([entry(0, op_json=b'[1,"\\u00e9"]')])
    (frame,) = queued(b)
    assert isinstance(frame, str)
    assert '"op":[1,"\\u00e9"]' in frame


def test_one_op_frame_is_shared_by_every_receiver() -> None:
    a, b, c = ada(), lin(), member("s-cy", "u-cy", "c-cy")
    room = room_of(a, b, c)
    room.deliver([entry(0)])
    (frame_b,) = queued(b)
    (frame_c,) = queued(c)
    assert frame_b is frame_c


def test_the_author_reconnected_with_a_new_session_still_gets_the_ack() -> None:
    # The op was sent on an earlier connection (session s-old) of the same editor instance.
    reconnected = member("s-new", "u-ada", "c-ada")
    room = room_of(reconnected)
    room.deliver([entry(0, session="s-old")])
    assert received(reconnected) == [ack("c-ada-0", 0)]


@pytest.mark.parametrize(
    ("user", "client"),
    [("u-ada", "c-other-tab"), ("u-mallory", "c-ada")],
    ids=["same-user-other-client", "same-client-other-user"],
)
def test_only_the_same_client_and_user_is_the_author(user: str, client: str) -> None:
    other = member("s-x", user, client)
    room = room_of(other)
    committed = entry(0)
    room.deliver([committed])
    assert received(other) == [op(committed)]


def test_entries_are_delivered_in_version_order_without_gaps() -> None:
    a, b = ada(), lin()
    room = room_of(a, b)
    log = [
        entry(0),
        entry(1, client="c-lin", author="u-lin", session="s-lin"),
        entry(2),
        entry(3, client="c-lin", author="u-lin", session="s-lin"),
    ]
    room.deliver(log[:2])
    room.deliver(log[2:])
    assert received(a) == [ack("c-ada-0", 0), op(log[1]), ack("c-ada-2", 2), op(log[3])]
    assert received(b) == [op(log[0]), ack("c-lin-1", 1), op(log[2]), ack("c-lin-3", 3)]
    assert a.next_version == b.next_version == room.version == 4


def test_entries_already_delivered_are_not_delivered_again() -> None:
    b = lin()
    room = room_of(b)
    room.deliver([entry(0), entry(1)])
    assert room.deliver([entry(0), entry(1), entry(2)]) == 1
    assert versions(received(b)) == [0, 1, 2]


def test_member_skips_versions_its_welcome_already_covered() -> None:
    early, late = ada(), lin(ready_at=2)
    room = room_of(early, late)
    room.deliver([entry(0, client="c-x"), entry(1, client="c-x"), entry(2, client="c-x")])
    assert versions(received(early)) == [0, 1, 2]
    assert versions(received(late)) == [2]


# -- welcome and backlog ---------------------------------------------------------------------


def test_member_not_ready_gets_entries_only_after_its_welcome() -> None:
    b = lin(ready_at=None)
    room = room_of(b)
    log = [entry(v) for v in range(4)]
    assert room.deliver(log) == 0
    assert queued(b) == []
    assert b.backlog == log
    room.welcome_sent(b, 2)
    assert received(b) == [op(log[2]), op(log[3])]
    assert b.ready
    assert b.next_version == 4
    assert b.backlog == []


def test_welcome_sent_releases_the_backlog_in_version_order() -> None:
    a = ada(ready_at=None)
    room = room_of(a, version=None)
    a.backlog = [entry(3), entry(1), entry(2)]
    room.welcome_sent(a, 1)
    assert received(a) == [ack("c-ada-1", 1), ack("c-ada-2", 2), ack("c-ada-3", 3)]
    assert room.seen_version == 1


def test_backlog_missing_is_merged_without_duplicates() -> None:
    b = lin(ready_at=None)
    room = room_of(b, version=3)
    # The room had read up to 3 before this member joined; 3 and 4 arrive meanwhile.
    room.deliver([entry(3), entry(4)])
    # The welcome was built at version 1: the store supplies 1..3 (3 overlaps).
    room.backlog_missing(b, [entry(1), entry(2), entry(3)])
    room.welcome_sent(b, 1)
    assert versions(received(b)) == [1, 2, 3, 4]
    assert b.next_version == 5


def test_backlog_missing_with_nothing_missing_changes_nothing() -> None:
    b = lin(ready_at=None)
    room = room_of(b)
    room.deliver([entry(0)])
    room.backlog_missing(b, [])
    assert b.backlog == [entry(0)]


def test_after_welcome_new_entries_go_straight_to_the_member() -> None:
    b = lin(ready_at=None)
    room = room_of(b, version=5)
    room.welcome_sent(b, 5)
    assert room.deliver([entry(5)]) == 1
    assert versions(received(b)) == [5]


# -- duplicate acks --------------------------------------------------------------------------


def test_duplicate_ack_for_a_version_already_received_is_sent_at_once() -> None:
    a = ada(ready_at=5)
    room = room_of(a, version=5)
    room.duplicate_ack(a, "c-ada-old", 3)
    assert received(a) == [ack("c-ada-old", 3)]
    assert a.held_acks == []


def test_duplicate_ack_is_held_until_the_member_has_received_its_version() -> None:
    a = ada(ready_at=5)
    room = room_of(a, version=5)
    room.duplicate_ack(a, "c-ada-resent", 6)
    assert queued(a) == []
    assert a.held_acks == [(6, "c-ada-resent")]
    other = entry(5, client="c-lin", author="u-lin", session="s-lin")
    room.deliver([other])
    assert received(a) == [op(other)]
    original = entry(6, client="c-ada", author="u-ada", session="s-old", id="c-ada-resent")
    room.deliver([original])
    # The op's own commit is its first ack; the resend's ack follows it, never before it.
    assert received(a) == [ack("c-ada-resent", 6), ack("c-ada-resent", 6)]
    assert a.held_acks == []


def test_held_duplicate_acks_are_released_in_the_order_of_their_versions() -> None:
    a = ada(ready_at=0)
    room = room_of(a)
    room.duplicate_ack(a, "second", 1)
    room.duplicate_ack(a, "first", 0)
    room.duplicate_ack(a, "later", 4)
    lin_ops = [entry(v, client="c-lin", author="u-lin") for v in range(2)]
    room.deliver(lin_ops)
    assert received(a) == [op(lin_ops[0]), ack("first", 0), op(lin_ops[1]), ack("second", 1)]
    assert a.held_acks == [(4, "later")]


def test_duplicate_ack_held_before_the_welcome_is_released_by_it() -> None:
    a = ada(ready_at=None)
    room = room_of(a, version=None)
    room.duplicate_ack(a, "c-ada-resent", 3)
    room.welcome_sent(a, 10)
    assert received(a) == [ack("c-ada-resent", 3)]


# -- slow consumers and presence -------------------------------------------------------------


async def test_slow_member_is_cut_off_while_the_others_still_receive() -> None:
    slow, fast = ada(capacity=2), lin(capacity=100)
    room = room_of(slow, fast)
    log = [entry(v, client="c-cy", author="u-cy") for v in range(5)]
    room.deliver(log)
    assert versions(received(fast)) == [0, 1, 2, 3, 4]
    assert slow.outbox.cut_off
    # The writer of the slow connection sends the error, then closes 4009.
    error = await slow.outbox.next()
    assert isinstance(error, str)
    assert protocol.decode_server(error) == protocol.Error(
        code=ErrorCode.SLOW_CONSUMER, message="send queue full; resume with since"
    )
    assert await slow.outbox.next() == CloseFrame(CloseCode.SLOW_CONSUMER, "slow consumer")
    # The room goes on: later entries reach the fast member, and nothing more is queued
    # for the one cut off.
    room.deliver([entry(5, client="c-cy", author="u-cy")])
    assert versions(received(fast)) == [5]
    assert slow.outbox.queue.empty()


def test_presence_is_not_echoed_to_its_own_session() -> None:
    a, b = ada(), lin()
    joining = member("s-cy", "u-cy", "c-cy", ready_at=None)
    room = room_of(a, b, joining)
    frame = '{"type":"presence","session":"s-ada"}'
    room.broadcast_presence("s-ada", frame)
    assert queued(a) == []
    assert queued(b) == [frame]
    assert queued(joining) == []


# -- registry --------------------------------------------------------------------------------


def test_registry_joins_members_of_one_document_into_one_room() -> None:
    registry = Registry()
    a, b = ada(), lin()
    room = registry.join(DOC, a)
    assert registry.join(DOC, b) is room
    assert registry.join("other", member("s-cy", "u-cy", "c-cy")) is not room
    assert room.members == {"s-ada": a, "s-lin": b}
    assert registry.sessions["s-lin"] == (room, b)
    assert registry.connection_count() == 3
    assert set(registry.rooms) == {DOC, "other"}


def test_registry_removes_a_room_when_its_last_member_leaves() -> None:
    registry = Registry()
    a, b = ada(), lin()
    room = registry.join(DOC, a)
    registry.join(DOC, b)
    registry.leave(a)
    assert registry.rooms == {DOC: room}
    assert room.members == {"s-lin": b}
    registry.leave(b)
    assert registry.rooms == {}
    assert registry.sessions == {}
    assert registry.connection_count() == 0


def test_registry_leave_of_an_unknown_member_is_a_no_op() -> None:
    registry = Registry()
    a = ada()
    registry.join(DOC, a)
    registry.leave(lin())
    registry.leave(a)
    registry.leave(a)
    assert registry.rooms == {}


# -- outbox ----------------------------------------------------------------------------------


async def test_outbox_yields_frames_in_order_then_its_close() -> None:
    outbox = Outbox(4)
    assert outbox.put("one")
    assert outbox.put("two")
    outbox.close(CloseCode.SERVICE_RESTART, "draining")
    assert not outbox.put("after close")
    assert await outbox.next() == "one"
    assert await outbox.next() == "two"
    assert await outbox.next() == CloseFrame(CloseCode.SERVICE_RESTART, "draining")
    assert outbox.queue.empty()
    assert not outbox.cut_off


async def test_outbox_second_close_is_ignored() -> None:
    outbox = Outbox(4)
    outbox.close(CloseCode.NORMAL)
    outbox.close(CloseCode.RATE_LIMITED, "rate limited")
    assert await outbox.next() == CloseFrame(CloseCode.NORMAL, "")
    assert outbox.queue.empty()


async def test_outbox_next_waits_for_a_frame() -> None:
    outbox = Outbox(4)
    waiting = asyncio.ensure_future(outbox.next())
    await asyncio.sleep(0)
    assert not waiting.done()
    outbox.put("late")
    assert await asyncio.wait_for(waiting, 1.0) == "late"


async def test_full_outbox_cuts_off_drops_the_queue_and_closes_4009() -> None:
    outbox = Outbox(2)
    assert outbox.put("one")
    assert outbox.put("two")
    assert not outbox.put("three")
    assert outbox.cut_off
    assert outbox.closing
    assert not outbox.put("four")
    outbox.close(CloseCode.NORMAL)
    error = await outbox.next()
    assert isinstance(error, str)
    message = protocol.decode_server(error)
    assert isinstance(message, protocol.Error)
    assert message.code is ErrorCode.SLOW_CONSUMER
    assert await outbox.next() == CloseFrame(CloseCode.SLOW_CONSUMER, "slow consumer")
    assert outbox.queue.empty()
    # Still set once the error went out: the endpoint counts the disconnect as a cut-off.
    assert outbox.cut_off


async def test_close_on_a_full_outbox_is_a_cut_off() -> None:
    outbox = Outbox(1)
    outbox.put("one")
    outbox.close(CloseCode.SERVICE_RESTART, "draining")
    assert outbox.cut_off
    first = await outbox.next()
    assert isinstance(first, str)
    assert protocol.decode_server(first) == protocol.Error(
        code=ErrorCode.SLOW_CONSUMER, message="send queue full; resume with since"
    )
    assert await outbox.next() == CloseFrame(CloseCode.SLOW_CONSUMER, "slow consumer")
