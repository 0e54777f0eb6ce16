"""Transitions of the sans-I/O client state machine, one server message at a time."""

from __future__ import annotations

from typing import Any

import pytest

from collab_client.state import (
    Acknowledged,
    ClientState,
    Cursor,
    OpRejected,
    Participant,
    ParticipantJoined,
    ParticipantLeft,
    PresenceChanged,
    ReconnectRequested,
    ResyncNeeded,
    ServerError,
    Synced,
    TextChanged,
    Welcomed,
)
from collab_core.ot import OpError

Message = dict[str, Any]


def welcome(version: int = 0, text: str | None = "", **extra: Any) -> Message:
    message: Message = {
        "type": "welcome",
        "doc": "d",
        "session": "me",
        "role": "editor",
        "user": {"id": "u1"},
        "version": version,
        "participants": [],
        **extra,
    }
    if text is not None:
        message["text"] = text
    return message


def remote(v: int, op: list[Any], id: str = "r", client: str = "other") -> Message:
    return {
        "type": "op",
        "v": v,
        "op": op,
        "id": id,
        "client": client,
        "author": "u2",
        "session": "s2",
    }


def ack(id: str, v: int) -> Message:
    return {"type": "ack", "id": id, "v": v}


def error(code: str, id: str | None = "1") -> Message:
    return {"type": "error", "code": code, "id": id, "message": "no"}


def connected(text: str = "", version: int = 0, **kwargs: Any) -> ClientState:
    client = ClientState("c", **kwargs)
    client.connect("t")
    client.receive(welcome(version, text))
    client.messages_to_send()
    client.events_received()
    return client


def reconnect(client: ClientState) -> Message:
    client.connection_lost()
    client.connect("t")
    [hello] = client.messages_to_send()
    return hello


def drain(client: ClientState) -> tuple[list[Message], list[Any]]:
    return client.messages_to_send(), client.events_received()


# Connecting.


def test_first_hello_has_no_since() -> None:
    client = ClientState("c")
    client.connect("jwt")
    assert client.messages_to_send() == [{"type": "hello", "token": "jwt", "client": "c"}]


def test_welcome_with_text_sets_the_document() -> None:
    client = ClientState("c")
    client.connect("t")
    client.receive(welcome(3, "héllo"))
    assert (client.text, client.version, client.synced) == ("héllo", 3, True)
    assert client.events_received() == [
        Welcomed("me", "editor", {"id": "u1"}, 3),
        TextChanged(["héllo"]),
    ]


def test_hello_after_a_welcome_resumes_with_since() -> None:
    client = connected("abc", 7)
    client.receive(remote(7, [3, "d"]))
    assert reconnect(client) == {"type": "hello", "token": "t", "client": "c", "since": 8}


def test_connect_twice_and_receive_while_closed_are_errors() -> None:
    client = connected()
    with pytest.raises(RuntimeError):
        client.connect("t")
    client.connection_lost()
    with pytest.raises(RuntimeError):
        client.receive(ack("1", 0))


def test_welcome_with_text_and_nothing_pending_replaces_the_document() -> None:
    client = connected("abc", 1)
    reconnect(client)
    client.receive(welcome(9, "abXc"))
    assert (client.text, client.version) == ("abXc", 9)
    assert TextChanged([2, "X"]) in client.events_received()


# Local edits and acks.


def test_local_edit_before_welcome_is_an_error() -> None:
    client = ClientState("c")
    with pytest.raises(RuntimeError):
        client.local_edit(["x"])


def test_local_edit_that_does_not_fit_changes_nothing() -> None:
    client = connected("ab")
    with pytest.raises(OpError):
        client.local_edit([3, "x"])
    assert (client.text, client.synced, client.messages_to_send()) == ("ab", True, [])


def test_local_edit_sends_one_op_at_the_server_version() -> None:
    client = connected("abc", 5)
    client.local_edit([1, "x", 2])
    assert client.text == "axbc"
    assert client.messages_to_send() == [{"type": "op", "id": "1", "v": 5, "op": [1, "x"]}]
    assert client.pending == [1, "x"]
    assert not client.synced


def test_empty_edit_sends_nothing() -> None:
    client = connected("abc")
    client.local_edit([3])
    assert client.messages_to_send() == []
    assert client.synced


def test_edits_while_awaiting_are_composed_and_sent_after_the_ack() -> None:
    client = connected("abc", 5)
    client.local_edit(["x"])
    client.local_edit([4, "y"])
    client.local_edit([{"d": 1}])
    assert client.messages_to_send() == [{"type": "op", "id": "1", "v": 5, "op": ["x"]}]
    client.receive(ack("1", 5))
    msgs, events = drain(client)
    assert msgs == [{"type": "op", "id": "2", "v": 6, "op": [{"d": 1}, 3, "y"]}]
    assert events == [Acknowledged("1", 5)]
    client.receive(ack("2", 6))
    assert client.events_received() == [Acknowledged("2", 6), Synced(7)]
    assert (client.text, client.version, client.synced) == ("abcy", 7, True)


def test_ack_for_an_id_not_in_flight_is_ignored() -> None:
    client = connected("abc", 5)
    client.local_edit(["x"])
    client.messages_to_send()
    client.receive(ack("9", 5))
    client.receive(ack("1", 5))
    client.receive(ack("1", 5))
    assert (client.version, client.text) == (6, "xabc")
    assert client.events_received() == [Acknowledged("1", 5), Synced(6)]


def test_ack_above_the_version_is_a_gap() -> None:
    client = connected("abc", 5)
    client.local_edit(["x"])
    client.receive(ack("1", 6))
    assert client.events_received() == [ResyncNeeded("ack at 6 before ops from 5")]
    assert client.phase == "stale"
    assert reconnect(client)["since"] == 5


def test_ack_below_the_version_resyncs_with_the_full_text() -> None:
    # The op was committed before ops the client took as concurrent with it.
    client = connected("abc", 5)
    client.local_edit(["x"])
    client.receive(remote(5, ["r"]))
    client.local_edit([5, "!"])
    client.receive(ack("1", 4))
    assert isinstance(client.events_received()[-1], ResyncNeeded)
    assert "since" not in reconnect(client)
    client.receive(welcome(7, "xrabc"))
    # The op in flight is in the text: it is not resent; the buffer is rebased.
    assert client.messages_to_send() == [{"type": "op", "id": "2", "v": 7, "op": [5, "!"]}]
    assert client.text == "xrabc!"


# Remote ops.


def test_remote_op_is_applied() -> None:
    client = connected("abc", 2)
    client.receive(remote(2, [1, {"d": 1}, 1, "!"]))
    assert (client.text, client.version) == ("ac!", 3)
    assert client.events_received() == [TextChanged([1, {"d": 1}, 1, "!"], "u2", "s2")]


def test_remote_op_while_awaiting_with_buffer_is_transformed() -> None:
    client = connected("abc", 0)
    client.local_edit(["X"])  # in flight
    client.local_edit([4, "Y"])  # buffered
    client.messages_to_send()
    client.receive(remote(0, [1, "R"]))
    assert client.text == "XaRbcY"
    assert client.events_received() == [TextChanged([2, "R"], "u2", "s2")]
    client.receive(ack("1", 1))
    assert client.messages_to_send() == [{"type": "op", "id": "2", "v": 2, "op": [5, "Y"]}]
    assert client.pending == [5, "Y"]


def test_concurrent_inserts_at_one_position_keep_the_committed_op_left() -> None:
    client = connected("", 0)
    client.local_edit(["L"])
    client.receive(remote(0, ["R"]))
    assert client.text == "RL"
    assert client.pending == [1, "L"]


def test_remote_delete_of_text_the_buffer_edits() -> None:
    client = connected("abcdef", 0)
    client.local_edit([{"d": 1}])
    client.local_edit([2, "x"])  # "bcxdef"
    client.receive(remote(0, [1, {"d": 4}]))
    assert client.text == "xf"
    assert client.pending == ["x", {"d": 1}]


def test_duplicate_remote_op_is_ignored() -> None:
    client = connected("abc", 4)
    client.receive(remote(4, ["x"]))
    client.receive(remote(4, ["x"]))
    assert (client.text, client.version) == ("xabc", 5)


def test_gap_in_remote_ops_makes_the_client_stale() -> None:
    client = connected("abc", 4)
    client.receive(remote(6, ["x"]))
    assert client.events_received() == [ResyncNeeded("missing ops 4 to 5")]
    client.receive(remote(4, ["y"]))
    client.local_edit(["z"])
    assert (client.text, client.version, client.messages_to_send()) == ("zabc", 4, [])
    assert reconnect(client)["since"] == 4


def test_own_op_broadcast_to_a_new_session_counts_as_the_ack() -> None:
    client = connected("abc", 0)
    client.local_edit(["x"])
    client.receive(remote(0, ["x"], id="1", client="c"))
    assert (client.text, client.version, client.synced) == ("xabc", 1, True)
    assert client.events_received() == [Acknowledged("1", 0), Synced(1)]


# Resume.


def test_resume_treats_own_op_in_the_catch_up_as_acknowledged() -> None:
    client = connected("abc", 0)
    client.local_edit(["x"])
    client.local_edit([1, "y"])
    client.messages_to_send()
    assert reconnect(client)["since"] == 0
    ops = [remote(0, [3, "!"]), remote(1, ["x"], id="1", client="c")]
    client.receive(welcome(2, None, ops=ops))
    assert client.text == "xyabc!"
    assert client.version == 2
    assert client.messages_to_send() == [{"type": "op", "id": "2", "v": 2, "op": [1, "y"]}]
    client.receive(ack("1", 1))  # the answer to a resend crossing the reconnect
    assert client.pending == [1, "y"]


def test_resume_resends_the_op_in_flight_with_its_original_id_v_and_op() -> None:
    client = connected("abc", 0)
    client.local_edit([3, "x"])
    client.messages_to_send()
    client.receive(remote(0, ["r"]))
    assert reconnect(client)["since"] == 1
    client.receive(welcome(2, None, ops=[remote(1, ["s"])]))
    assert client.text == "srabcx"
    assert client.messages_to_send() == [{"type": "op", "id": "1", "v": 0, "op": [3, "x"]}]
    client.receive(ack("1", 2))
    assert (client.version, client.synced) == (3, True)


def test_welcome_that_does_not_reach_its_version_resyncs() -> None:
    client = connected("abc", 0)
    reconnect(client)
    client.receive(welcome(2, None, ops=[remote(0, ["s"])]))
    assert client.events_received()[-1] == ResyncNeeded("welcome at 2 but caught up to 1")


# A text welcome while ops are pending (module docstring of state).


def _pending_then_text_welcome(text: str) -> ClientState:
    client = connected("abc", 0)
    client.local_edit(["X"])  # in flight, fate unknown after the reconnect
    client.local_edit([4, "Y"])  # buffered, never sent
    client.messages_to_send()
    reconnect(client)
    client.receive(welcome(2, text))
    return client


def test_text_welcome_resends_the_op_in_flight_as_a_ghost_and_rebases_the_buffer() -> None:
    client = _pending_then_text_welcome("Xabc!")
    assert client.text == "Xabc!Y"
    assert client.messages_to_send() == [{"type": "op", "id": "1", "v": 0, "op": ["X"]}]
    client.receive(ack("1", 0))  # committed before the welcome: in its text
    assert client.messages_to_send() == [{"type": "op", "id": "2", "v": 2, "op": [5, "Y"]}]
    assert client.text == "Xabc!Y"


def test_ghost_refused_is_dropped() -> None:
    client = _pending_then_text_welcome("abc")
    assert client.text == "abcY"
    client.messages_to_send()
    client.receive(error("invalid_version"))
    msgs, events = drain(client)
    assert OpRejected("1", "invalid_version", "no", retry=False) in events
    assert msgs == [{"type": "op", "id": "2", "v": 2, "op": [3, "Y"]}]
    assert client.text == "abcY"


def test_ghost_committed_after_the_welcome_is_fetched_by_a_resync() -> None:
    client = _pending_then_text_welcome("abc")
    client.receive(remote(2, ["r"]))
    client.receive(ack("1", 3))
    assert client.events_received()[-1] == ResyncNeeded("own op committed at 3 after the welcome")
    assert reconnect(client)["since"] == 3
    client.receive(welcome(4, None, ops=[remote(3, [1, "X"], id="1", client="c")]))
    assert client.text == "rXabcY"
    assert client.messages_to_send() == [{"type": "op", "id": "2", "v": 4, "op": [5, "Y"]}]


def test_ghost_in_a_catch_up_is_applied_as_a_remote_op() -> None:
    client = _pending_then_text_welcome("abc")
    assert reconnect(client)["since"] == 2
    client.receive(welcome(3, None, ops=[remote(2, ["X"], id="1", client="c")]))
    assert client.text == "XabcY"
    assert client.messages_to_send() == [{"type": "op", "id": "2", "v": 3, "op": [4, "Y"]}]


# Errors.


def test_invalid_version_resyncs_and_reissues_the_op_with_a_new_id() -> None:
    client = connected("abc", 0)
    client.local_edit([3, "x"])
    client.messages_to_send()
    client.receive(remote(0, ["r"]))
    client.receive(error("invalid_version"))
    assert client.events_received()[-1] == ResyncNeeded("op 1 refused: no")
    assert reconnect(client)["since"] == 1
    client.receive(welcome(1, None, ops=[]))
    assert client.messages_to_send() == [{"type": "op", "id": "2", "v": 1, "op": [4, "x"]}]


def test_op_refused_for_its_version_joins_the_buffer_on_a_text_welcome() -> None:
    client = connected("abc", 0)
    client.local_edit([3, "x"])
    client.local_edit(["y"])
    client.receive(error("invalid_version"))
    reconnect(client)
    client.receive(welcome(5, "abc!"))
    assert client.text == "yabc!x"
    assert client.messages_to_send() == [{"type": "op", "id": "2", "v": 5, "op": ["y", 4, "x"]}]


def test_invalid_op_rolls_the_op_back_and_sends_the_buffer() -> None:
    client = connected("abc", 0)
    client.local_edit([{"d": 1}])
    client.local_edit([2, "Z"])
    assert client.text == "bcZ"
    client.messages_to_send()
    client.receive(error("invalid_op"))
    msgs, events = drain(client)
    assert client.text == "abcZ"
    assert events == [OpRejected("1", "invalid_op", "no", retry=False), TextChanged(["a"])]
    assert msgs == [{"type": "op", "id": "2", "v": 0, "op": [3, "Z"]}]


def test_rate_limited_keeps_the_op_and_resend_repeats_it() -> None:
    client = connected("abc", 0)
    client.local_edit(["x"])
    client.messages_to_send()
    client.receive(error("rate_limited"))
    assert client.events_received() == [OpRejected("1", "rate_limited", "no", retry=True)]
    assert (client.text, client.messages_to_send()) == ("xabc", [])
    client.resend()
    assert client.messages_to_send() == [{"type": "op", "id": "1", "v": 0, "op": ["x"]}]


def test_other_errors_are_surfaced() -> None:
    client = connected()
    client.receive(error("bad_message", id=None))
    assert client.events_received() == [ServerError("bad_message", "no", None)]


def test_reconnect_request_is_surfaced() -> None:
    client = connected()
    client.receive({"type": "reconnect", "retry_after_ms": 350})
    assert client.events_received() == [ReconnectRequested(350)]


# Presence.


def test_cursor_when_synced_is_sent_at_the_version() -> None:
    client = connected("abc", 4)
    client.set_cursor(1, 3, meta={"typing": True})
    assert client.messages_to_send() == [
        {"type": "presence", "v": 4, "cursor": {"anchor": 1, "head": 3}, "meta": {"typing": True}}
    ]
    client.clear_cursor()
    assert client.messages_to_send() == [
        {"type": "presence", "v": 4, "cursor": None, "meta": {"typing": True}}
    ]
    with pytest.raises(ValueError, match="outside"):
        client.set_cursor(4)


def test_cursor_in_pending_text_is_sent_at_the_insertion_point_then_after_the_ack() -> None:
    client = connected("abc", 0)
    client.local_edit([1, "XY"])
    client.messages_to_send()
    client.set_cursor(3)
    assert client.messages_to_send() == [
        {"type": "presence", "v": 0, "cursor": {"anchor": 1, "head": 1}}
    ]
    client.receive(ack("1", 0))
    assert client.messages_to_send() == [
        {"type": "presence", "v": 1, "cursor": {"anchor": 3, "head": 3}}
    ]


def test_presence_others_can_derive_is_not_sent_again() -> None:
    client = connected("abc", 0)
    client.set_cursor(3)
    client.messages_to_send()
    client.local_edit(["X"])
    client.set_cursor(4)
    assert client.messages_to_send() == [{"type": "op", "id": "1", "v": 0, "op": ["X"]}]
    client.receive(ack("1", 0))
    client.receive(remote(1, ["r"]))
    assert client.messages_to_send() == []
    assert client.cursor == Cursor(5, 5)


def test_presence_is_sent_again_on_a_new_connection() -> None:
    client = connected("abc", 0)
    client.set_cursor(2)
    client.messages_to_send()
    reconnect(client)
    client.receive(welcome(0, None, ops=[]))
    assert client.messages_to_send() == [
        {"type": "presence", "v": 0, "cursor": {"anchor": 2, "head": 2}}
    ]


def _presence(v: int, anchor: int, head: int, session: str = "s2") -> Message:
    return {
        "type": "presence",
        "session": session,
        "user": {"id": "u2"},
        "v": v,
        "cursor": {"anchor": anchor, "head": head},
        "meta": None,
    }


def test_remote_cursor_follows_local_and_remote_ops() -> None:
    client = connected("abcd", 0)
    client.receive(_presence(0, 2, 4))
    assert client.events_received() == [
        PresenceChanged(Participant("s2", {"id": "u2"}, None, Cursor(2, 4), None))
    ]
    client.local_edit(["XX"])
    assert client.participants["s2"].cursor == Cursor(4, 6)
    client.receive(remote(0, ["R", 3, {"d": 1}]))
    assert client.text == "RXXabc"
    assert client.participants["s2"].cursor == Cursor(5, 6)
    client.receive(ack("1", 1))
    assert client.participants["s2"].cursor == Cursor(5, 6)


def test_remote_cursor_at_an_older_version_is_mapped_through_history() -> None:
    client = connected("abcd", 0)
    client.receive(remote(0, ["12"]))
    client.receive(remote(1, [{"d": 1}]))
    client.receive(_presence(0, 1, 3))
    assert client.participants["s2"].cursor == Cursor(2, 4)


def test_remote_cursor_older_than_the_history_kept_is_clamped() -> None:
    client = connected("abcd", 0, history_limit=1)
    client.receive(remote(0, [{"d": 3}]))
    client.receive(remote(1, ["x"]))
    client.receive(_presence(0, 1, 4))
    assert client.participants["s2"].cursor == Cursor(1, 2)


def test_remote_cursor_ahead_of_the_client_is_mapped_once_ops_arrive() -> None:
    client = connected("abcd", 0)
    client.receive(_presence(1, 5, 5))
    assert client.participants["s2"].cursor == Cursor(4, 4)
    client.receive(remote(0, ["x"]))
    assert client.participants["s2"].cursor == Cursor(5, 5)
    client.receive(remote(1, ["y"]))
    assert client.participants["s2"].cursor == Cursor(6, 6)


def test_join_leave_and_welcome_participants() -> None:
    client = ClientState("c")
    client.connect("t")
    peer = {
        "session": "s1",
        "user": {"id": "u3"},
        "role": "viewer",
        "v": 0,
        "cursor": {"anchor": 1, "head": 1},
    }
    client.receive(welcome(0, "ab", participants=[peer]))
    assert client.participants == {
        "s1": Participant("s1", {"id": "u3"}, "viewer", Cursor(1, 1), None)
    }
    client.receive({"type": "join", "participant": {"session": "s2", "user": {}, "role": "editor"}})
    client.receive({"type": "leave", "session": "s1", "reason": "timeout"})
    assert list(client.participants) == ["s2"]
    assert client.events_received()[-2:] == [
        ParticipantJoined(Participant("s2", {}, "editor", None, None)),
        ParticipantLeft("s1", "timeout"),
    ]
    client.connection_lost()
    assert client.participants == {}
