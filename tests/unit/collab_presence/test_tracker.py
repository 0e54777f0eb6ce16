"""The presence roster (collab_presence.tracker): joins, coalesced cursors, leaves, expiry."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collab_core import protocol
from collab_core.ingress import PresenceUpdate
from collab_presence.tracker import DropParticipant, Publish, SaveParticipant, Tracker

T0 = 1_800_000_000.0
DOC = "notes"
ADA = {"id": "u-ada", "name": "Ada", "color": "#e6194b"}
LIN = {"id": "u-lin", "name": "Lin", "color": "#3cb44b"}


def join(
    session: str,
    user: dict[str, str] = ADA,
    *,
    doc: str = DOC,
    gateway: str = "gw-1",
    role: str = "editor",
) -> PresenceUpdate:
    participant = {"session": session, "user": user, "role": role}
    return PresenceUpdate(
        kind="join",
        doc=doc,
        session=session,
        gateway=gateway,
        ts=T0,
        participant=msgspec.json.encode(participant),
    )


def presence(
    session: str,
    v: int,
    cursor: dict[str, int] | None,
    meta: dict[str, Any] | None = None,
    *,
    gateway: str = "gw-1",
) -> PresenceUpdate:
    state = msgspec.json.encode({"v": v, "cursor": cursor, "meta": meta})
    return PresenceUpdate(
        kind="presence", doc=DOC, session=session, gateway=gateway, ts=T0, state=state
    )


def leave(session: str, reason: str = "") -> PresenceUpdate:
    return PresenceUpdate(
        kind="leave", doc=DOC, session=session, gateway="gw-1", ts=T0, reason=reason
    )


def decoded(raw: bytes) -> Any:
    return msgspec.json.decode(raw)


def frames(actions: list[Any]) -> list[Any]:
    """The published frames, decoded, in order."""
    return [decoded(a.frame) for a in actions if isinstance(a, Publish)]


def test_join_saves_the_participant_and_publishes_only_public_fields() -> None:
    tracker = Tracker()
    actions = tracker.apply(join("s-ada", gateway="gw-secret"), T0)
    assert len(actions) == 2
    save, publish = actions
    assert isinstance(save, SaveParticipant)
    assert (save.doc, save.session) == (DOC, "s-ada")
    assert decoded(save.participant) == {
        "session": "s-ada",
        "user": ADA,
        "role": "editor",
        "v": None,
        "cursor": None,
        "gateway": "gw-secret",
    }
    assert isinstance(publish, Publish)
    assert (publish.doc, publish.session) == (DOC, "s-ada")
    assert decoded(publish.frame) == {
        "type": "join",
        "participant": {"session": "s-ada", "user": ADA, "role": "editor"},
    }
    assert b"gw-secret" not in publish.frame
    assert tracker.participants(DOC) == 1
    assert tracker.gateways() == {"gw-secret"}


def test_join_frame_is_a_valid_protocol_join() -> None:
    tracker = Tracker()
    frame = tracker.apply(join("s-lin", LIN, role="viewer"), T0)[1]
    assert isinstance(frame, Publish)
    assert protocol.decode_server(frame.frame) == protocol.Join(
        participant=protocol.Participant(session="s-lin", user=protocol.User(**LIN), role="viewer")
    )


def test_join_session_comes_from_the_gateway_not_the_participant_blob() -> None:
    tracker = Tracker()
    forged = msgspec.json.encode({"session": "s-forged", "user": ADA, "role": "editor"})
    update = PresenceUpdate(
        kind="join", doc=DOC, session="s-real", gateway="gw-1", ts=T0, participant=forged
    )
    assert frames(tracker.apply(update, T0))[0]["participant"]["session"] == "s-real"


def test_presence_updates_coalesce_into_one_frame_with_the_latest_state() -> None:
    tracker = Tracker()
    tracker.apply(join("s-ada"), T0)
    assert tracker.apply(presence("s-ada", 3, {"anchor": 1, "head": 1}), T0 + 0.01) == []
    assert tracker.apply(presence("s-ada", 4, {"anchor": 2, "head": 2}), T0 + 0.02) == []
    assert tracker.apply(presence("s-ada", 5, {"anchor": 3, "head": 7}), T0 + 0.03) == []
    actions = tracker.flush()
    assert len(actions) == 2
    save, publish = actions
    assert isinstance(save, SaveParticipant)
    assert decoded(save.participant)["cursor"] == {"anchor": 3, "head": 7}
    assert decoded(save.participant)["v"] == 5
    assert isinstance(publish, Publish)
    assert (publish.doc, publish.session) == (DOC, "s-ada")
    assert decoded(publish.frame) == {
        "type": "presence",
        "session": "s-ada",
        "user": ADA,
        "v": 5,
        "cursor": {"anchor": 3, "head": 7},
    }
    assert tracker.flush() == []


def test_presence_frame_carries_meta_and_is_a_valid_protocol_message() -> None:
    tracker = Tracker()
    tracker.apply(join("s-ada"), T0)
    tracker.apply(presence("s-ada", 2, None, {"typing": True}), T0)
    publish = tracker.flush()[1]
    assert isinstance(publish, Publish)
    assert protocol.decode_server(publish.frame) == protocol.PresenceBroadcast(
        session="s-ada", user=protocol.User(**ADA), v=2, cursor=None, meta={"typing": True}
    )


def test_flush_publishes_each_changed_session_once() -> None:
    tracker = Tracker()
    tracker.apply(join("s-ada"), T0)
    tracker.apply(join("s-lin", LIN), T0)
    tracker.apply(join("s-cy", {"id": "u-cy", "name": "Cy", "color": "#000075"}), T0)
    tracker.apply(presence("s-ada", 1, {"anchor": 0, "head": 0}), T0)
    tracker.apply(presence("s-lin", 1, {"anchor": 1, "head": 1}), T0)
    tracker.apply(presence("s-ada", 1, {"anchor": 2, "head": 2}), T0)
    published = frames(tracker.flush())
    assert [(f["session"], f["cursor"]) for f in published] == [
        ("s-ada", {"anchor": 2, "head": 2}),
        ("s-lin", {"anchor": 1, "head": 1}),
    ]


def test_presence_for_an_unknown_session_is_ignored() -> None:
    tracker = Tracker()
    assert tracker.apply(presence("s-ghost", 1, {"anchor": 0, "head": 0}), T0) == []
    assert tracker.flush() == []
    assert tracker.sessions == {}


def test_renew_for_an_unknown_session_is_ignored() -> None:
    tracker = Tracker()
    renew = PresenceUpdate(kind="renew", doc=DOC, session="s-ghost", gateway="gw-1", ts=T0)
    assert tracker.apply(renew, T0) == []
    assert tracker.sessions == {}


@pytest.mark.parametrize("reason", ["", "closed"])
def test_leave_publishes_closed_and_drops_the_participant(reason: str) -> None:
    tracker = Tracker()
    tracker.apply(join("s-ada"), T0)
    tracker.apply(join("s-lin", LIN), T0)
    actions = tracker.apply(leave("s-ada", reason), T0 + 5)
    assert len(actions) == 2
    assert actions[0] == DropParticipant(DOC, "s-ada")
    assert frames(actions) == [{"type": "leave", "session": "s-ada", "reason": "closed"}]
    assert isinstance(actions[1], Publish)
    assert protocol.decode_server(actions[1].frame) == protocol.Leave(
        session="s-ada", reason="closed"
    )
    assert set(tracker.sessions) == {"s-lin"}
    assert tracker.participants(DOC) == 1


def test_leave_of_an_unknown_session_publishes_nothing() -> None:
    tracker = Tracker()
    tracker.apply(join("s-ada"), T0)
    assert tracker.apply(leave("s-ghost"), T0) == []
    assert tracker.apply(leave("s-ada"), T0) != []
    assert tracker.apply(leave("s-ada"), T0) == []


def test_flush_after_leave_publishes_nothing_for_that_session() -> None:
    tracker = Tracker()
    tracker.apply(join("s-ada"), T0)
    tracker.apply(join("s-lin", LIN), T0)
    tracker.apply(presence("s-ada", 1, {"anchor": 0, "head": 0}), T0)
    tracker.apply(presence("s-lin", 1, {"anchor": 4, "head": 4}), T0)
    tracker.apply(leave("s-ada"), T0)
    published = frames(tracker.flush())
    assert [f["session"] for f in published] == ["s-lin"]


def test_expire_leaves_with_timeout_only_the_sessions_of_dead_gateways() -> None:
    tracker = Tracker()
    tracker.apply(join("s-ada", gateway="gw-dead"), T0)
    tracker.apply(join("s-lin", LIN, gateway="gw-alive"), T0)
    tracker.apply(
        join(
            "s-cy", {"id": "u-cy", "name": "Cy", "color": "#000075"}, doc="other", gateway="gw-dead"
        ),
        T0,
    )
    actions = tracker.expire({"gw-alive"})
    assert [a for a in actions if isinstance(a, DropParticipant)] == [
        DropParticipant(DOC, "s-ada"),
        DropParticipant("other", "s-cy"),
    ]
    publishes = [a for a in actions if isinstance(a, Publish)]
    assert [(p.doc, p.session, decoded(p.frame)) for p in publishes] == [
        (DOC, "s-ada", {"type": "leave", "session": "s-ada", "reason": "timeout"}),
        ("other", "s-cy", {"type": "leave", "session": "s-cy", "reason": "timeout"}),
    ]
    assert set(tracker.sessions) == {"s-lin"}
    assert tracker.gateways() == {"gw-alive"}
    assert tracker.expire({"gw-alive"}) == []


def test_expire_with_every_gateway_alive_changes_nothing() -> None:
    tracker = Tracker()
    tracker.apply(join("s-ada", gateway="gw-1"), T0)
    tracker.apply(join("s-lin", LIN, gateway="gw-2"), T0)
    assert tracker.expire({"gw-1", "gw-2", "gw-3"}) == []
    assert set(tracker.sessions) == {"s-ada", "s-lin"}


def test_pending_presence_of_an_expired_session_is_not_published() -> None:
    tracker = Tracker()
    tracker.apply(join("s-ada", gateway="gw-dead"), T0)
    tracker.apply(presence("s-ada", 1, {"anchor": 0, "head": 0}), T0)
    tracker.expire(set())
    assert tracker.flush() == []


def test_updates_refresh_last_seen() -> None:
    tracker = Tracker()
    tracker.apply(join("s-ada"), T0)
    tracker.apply(presence("s-ada", 1, None), T0 + 7)
    assert tracker.sessions["s-ada"].last_seen == T0 + 7
    renew = PresenceUpdate(kind="renew", doc=DOC, session="s-ada", gateway="gw-1", ts=T0)
    assert tracker.apply(renew, T0 + 9) == []
    assert tracker.sessions["s-ada"].last_seen == T0 + 9
    assert tracker.flush() != []


# -- the indexes kept beside the sessions ----------------------------------------------------

steps = st.lists(
    st.tuples(
        st.sampled_from(["join", "presence", "leave", "flush", "expire", "restore"]),
        st.sampled_from(["s1", "s2", "s3", "s4"]),
        st.sampled_from(["d1", "d2"]),
        st.sampled_from(["gw-1", "gw-2"]),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_counts_and_flushes_match_a_scan_of_every_session(script) -> None:
    """participants() and flush() keep indexes instead of scanning all sessions; after any
    sequence they answer exactly what a scan would."""
    tracker = Tracker()
    for kind, session, doc, gateway in script:
        if kind == "join":
            tracker.apply(join(session, doc=doc, gateway=gateway), T0)
        elif kind == "presence":
            tracker.apply(presence(session, 1, {"anchor": 0, "head": 0}), T0)
        elif kind == "leave":
            tracker.apply(leave(session), T0)
        elif kind == "restore":
            tracker.restore(doc, session, msgspec.json.encode({"user": ADA}), gateway, T0)
        elif kind == "expire":
            tracker.expire({gateway})
        else:
            expected = sorted(s for s, state in tracker.sessions.items() if state.pending)
            published = [a.session for a in tracker.flush() if isinstance(a, Publish)]
            assert published == expected
            assert all(state.pending is None for state in tracker.sessions.values())
        for d in ("d1", "d2"):
            scan = sum(1 for state in tracker.sessions.values() if state.doc == d)
            assert tracker.participants(d) == scan
