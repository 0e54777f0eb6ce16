"""The life of one submitted op (collab_transform.pipeline.decide): pure decisions."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from collab_core import ot
from collab_core.errors import ErrorCode
from collab_core.ingress import Submission
from collab_core.store import LogEntry
from collab_transform.pipeline import Commit, Decision, Duplicate, Refuse, decide

LIMIT = 1_000_000


def sub(
    op: ot.Op,
    v: int = 0,
    *,
    id: str = "c1-1",
    client: str = "c1",
    author: str = "u1",
) -> Submission:
    return Submission(
        doc="notes",
        client=client,
        id=id,
        v=v,
        op=op,
        author=author,
        session=f"s-{client}",
        gateway="gw-1",
        ts=1_800_000_000.0,
    )


def committed(s: Submission, v: int, op: ot.Op | None = None) -> LogEntry:
    """The log entry of ``s`` committed at ``v`` (as ``op`` after transformation)."""
    return LogEntry(
        v=v,
        op_json=msgspec.json.encode(s.op if op is None else op),
        client=s.client,
        id=s.id,
        author=s.author,
        session=s.session,
        ts=s.ts,
        base=s.v,
        digest=s.digest,
    )


class Document:
    """A document log built by committing submissions through :func:`decide`."""

    def __init__(self, text: str = "") -> None:
        self.texts = [text]
        self.log: list[LogEntry] = []

    @property
    def version(self) -> int:
        return len(self.log)

    @property
    def text(self) -> str:
        return self.texts[-1]

    def decide(self, s: Submission, *, max_document_chars: int = LIMIT) -> Decision:
        since = self.log[s.v :] if s.v <= self.version else []
        # As the worker's id index: an entry with this identity committed below s.v.
        earlier = next(
            (
                e
                for e in self.log[: s.v]
                if (e.author, e.client, e.id) == (s.author, s.client, s.id)
            ),
            None,
        )
        return decide(
            s,
            self.version,
            self.text,
            since,
            max_document_chars=max_document_chars,
            committed=earlier,
        )

    def commit(self, s: Submission) -> Commit:
        decision = self.decide(s)
        assert isinstance(decision, Commit), decision
        self.log.append(committed(s, self.version, decision.op))
        self.texts.append(decision.text)
        return decision


def other(n: int, op: ot.Op, v: int = 0) -> Submission:
    return sub(op, v, id=f"c9-{n}", client="c9", author="u9")


# -- versions and fit ------------------------------------------------------------------------


def test_op_at_the_head_commits_unchanged() -> None:
    doc = Document("hello")
    assert doc.decide(sub([5, " world"])) == Commit([5, " world"], "hello world")


def test_empty_op_commits_as_a_no_op() -> None:
    assert Document("abc").decide(sub([])) == Commit([], "abc")


def test_version_ahead_of_the_document_is_invalid_version() -> None:
    doc = Document("ab")
    doc.commit(other(1, ["x"]))
    doc.commit(other(2, ["y"], 1))
    assert decide(sub(["z"], 3), 2, doc.text, [], max_document_chars=LIMIT) == Refuse(
        ErrorCode.INVALID_VERSION, "v 3 is ahead of the document (2)"
    )


def test_version_older_than_the_history_kept_is_invalid_version() -> None:
    doc = Document("ab")
    doc.commit(other(1, ["x"]))
    doc.commit(other(2, ["y"], 1))
    decision = decide(
        sub(["z"], 0), 2, doc.text, doc.log, max_document_chars=LIMIT, oldest_version=1
    )
    assert decision == Refuse(ErrorCode.INVALID_VERSION, "v 0 is older than the history kept")


def test_op_is_checked_against_the_document_at_its_base_version() -> None:
    doc = Document("abcdef")
    doc.commit(other(1, [{"d": 3}]))
    assert doc.text == "def"
    # Six code points at v 0, although only three at the head: it fits, and moves.
    assert doc.decide(sub([6, "x"], 0)) == Commit([3, "x"], "defx")
    assert doc.decide(sub([7, "x"], 0)) == Refuse(
        ErrorCode.INVALID_OP, "op spans 7 code points but the document has 6"
    )
    assert doc.decide(sub([6, "x"], 1)) == Refuse(
        ErrorCode.INVALID_OP, "op spans 6 code points but the document has 3"
    )


def test_base_length_accounts_for_concurrent_inserts() -> None:
    doc = Document("ab")
    doc.commit(other(1, ["xyz"]))
    assert doc.decide(sub([2, "!"], 0)) == Commit([5, "!"], "xyzab!")
    assert doc.decide(sub([3, "!"], 0)) == Refuse(
        ErrorCode.INVALID_OP, "op spans 3 code points but the document has 2"
    )


def test_lengths_count_code_points() -> None:
    doc = Document("😀é")
    assert doc.decide(sub([2, "😀"])) == Commit([2, "😀"], "😀é😀")
    assert doc.decide(sub([3, "x"])) == Refuse(
        ErrorCode.INVALID_OP, "op spans 3 code points but the document has 2"
    )


# -- transformation --------------------------------------------------------------------------


def test_concurrent_insert_at_the_same_position_goes_right_of_the_committed_one() -> None:
    doc = Document("")
    doc.commit(other(1, ["A"]))
    assert doc.decide(sub(["B"], 0)) == Commit([1, "B"], "AB")


def test_concurrent_insert_in_the_middle_goes_right_of_the_committed_one() -> None:
    doc = Document("abc")
    doc.commit(other(1, [1, "X"]))
    assert doc.decide(sub([1, "Y"], 0)) == Commit([2, "Y"], "aXYbc")


def test_insert_is_transformed_through_every_op_since_its_base() -> None:
    doc = Document("hello world")
    doc.commit(other(1, ["> "]))
    doc.commit(other(2, [8, {"d": 3}], 1))
    doc.commit(other(3, [2, "H", {"d": 1}], 2))
    assert doc.text == "> Hello ld"
    assert doc.decide(sub([11, "!"], 0)) == Commit([10, "!"], "> Hello ld!")


def test_overlapping_deletes_do_not_delete_twice() -> None:
    doc = Document("abcdef")
    doc.commit(other(1, [1, {"d": 3}]))
    assert doc.text == "aef"
    assert doc.decide(sub([2, {"d": 3}], 0)) == Commit([1, {"d": 1}], "af")


def test_delete_of_text_already_deleted_commits_a_no_op() -> None:
    doc = Document("abc")
    doc.commit(other(1, [{"d": 3}]))
    assert doc.decide(sub([1, {"d": 1}], 0)) == Commit([], "")


def test_op_based_on_an_intermediate_version_sees_only_later_ops() -> None:
    doc = Document("")
    doc.commit(other(1, ["A"]))
    doc.commit(other(2, [1, "C"], 1))
    assert doc.decide(sub([1, "B"], 1)) == Commit([2, "B"], "ACB")


# -- duplicates ------------------------------------------------------------------------------


def test_resent_op_already_committed_is_a_duplicate_of_its_version() -> None:
    doc = Document("abc")
    original = sub([3, "!"], 0, id="c1-5")
    doc.commit(other(1, ["x"]))
    doc.commit(original)
    doc.commit(other(2, ["y"], 2))
    assert doc.decide(original) == Duplicate(1)
    assert doc.version == 3


def test_duplicate_is_recognised_even_when_it_no_longer_fits_the_head() -> None:
    doc = Document("abc")
    original = sub([3, "!"], 0)
    doc.commit(original)
    doc.commit(other(1, [{"d": 4}], 1))
    assert doc.text == ""
    assert doc.decide(original) == Duplicate(0)


def test_same_id_with_a_different_op_is_invalid_op() -> None:
    doc = Document("abc")
    doc.commit(sub([3, "!"], 0, id="c1-5"))
    assert doc.decide(sub([3, "?"], 0, id="c1-5")) == Refuse(
        ErrorCode.INVALID_OP, "id 'c1-5' was used for a different op"
    )


def test_same_id_with_an_earlier_version_is_invalid_op() -> None:
    doc = Document("abc")
    doc.commit(other(1, ["x"]))
    doc.commit(sub([3, "!"], 1, id="c1-5"))
    assert doc.decide(sub([3, "!"], 0, id="c1-5")) == Refuse(
        ErrorCode.INVALID_OP, "id 'c1-5' was used for a different op"
    )


def test_same_id_with_a_later_version_is_invalid_op() -> None:
    doc = Document("abc")
    doc.commit(sub([3, "!"], 0, id="c1-5"))
    doc.commit(other(1, ["x"], 1))
    decision = doc.decide(sub([3, "!"], 1, id="c1-5"))
    assert decision == Refuse(ErrorCode.INVALID_OP, "id 'c1-5' was used for a different op")


@pytest.mark.parametrize(
    "resend",
    [
        sub([3, "!"], 0, id="c1-5", author="u2"),
        sub([3, "!"], 0, id="c1-5", client="c2"),
    ],
    ids=["other-author", "other-client"],
)
def test_same_id_from_another_author_or_client_is_not_a_duplicate(resend: Submission) -> None:
    doc = Document("abc")
    doc.commit(sub([3, "!"], 0, id="c1-5"))
    assert doc.decide(resend) == Commit([4, "!"], "abc!!")


# -- document size ---------------------------------------------------------------------------


def test_op_making_the_document_too_large_is_too_large() -> None:
    doc = Document("abcd")
    assert doc.decide(sub([4, "xy"]), max_document_chars=5) == Refuse(
        ErrorCode.TOO_LARGE, "the document would exceed 5 characters"
    )


def test_op_reaching_exactly_the_size_limit_commits() -> None:
    doc = Document("abcd")
    assert doc.decide(sub([4, "x"]), max_document_chars=5) == Commit([4, "x"], "abcdx")


@pytest.mark.parametrize(
    ("op", "text"),
    [([{"d": 1}], "bcdefg"), ([{"d": 1}, "z"], "zbcdefg")],
    ids=["shrinks", "same-length"],
)
def test_document_over_the_limit_may_still_be_edited_if_it_does_not_grow(
    op: ot.Op, text: str
) -> None:
    doc = Document("abcdefg")
    assert doc.decide(sub(op), max_document_chars=5) == Commit(op, text)


# -- convergence -----------------------------------------------------------------------------

ALPHABET = "ab😀é"


@st.composite
def ops_on(draw: st.DrawFn, length: int) -> ot.Op:
    """A normalised op that fits a document of ``length`` code points."""
    components: ot.Op = []
    pos = 0
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["skip", "insert", "delete"]))
        if kind == "insert":
            components.append(draw(st.text(ALPHABET, min_size=1, max_size=3)))
        elif pos < length:
            n = draw(st.integers(1, length - pos))
            components.append(n if kind == "skip" else {"d": n})
            pos += n
    return ot.normalize(components)


def client_view(base: str, own: ot.Op, client: str, log: Sequence[LogEntry]) -> str:
    """The text a classic OT client ends with: it applied ``own`` at once, then receives
    the log, transforming the ops committed before its own against its pending op."""
    text = ot.apply(base, own)
    pending: ot.Op | None = own
    for e in log:
        if e.client == client:
            # The ack: the server committed exactly the pending op, transformed.
            assert e.op == pending
            pending = None
        elif pending is None:
            text = ot.apply(text, e.op)
        else:
            text = ot.apply(text, ot.transform(e.op, pending, "left"))
            pending = ot.transform(pending, e.op, "right")
    assert pending is None
    return text


@given(data=st.data())
def test_concurrent_ops_committed_in_any_order_converge(data: st.DataObject) -> None:
    base = data.draw(st.text(ALPHABET, max_size=8), label="base")
    count = data.draw(st.integers(2, 4), label="count")
    ops = [data.draw(ops_on(len(base)), label=f"op {i}") for i in range(count)]
    order = data.draw(st.permutations(range(count)), label="order")
    subs = [sub(ops[i], 0, id=f"c{i}-1", client=f"c{i}", author=f"u{i}") for i in range(count)]

    doc = Document(base)
    for i in order:
        doc.commit(subs[i])

    replayed = base
    for e in doc.log:
        replayed = ot.apply(replayed, e.op)
    assert replayed == doc.text
    for i in range(count):
        assert client_view(base, ops[i], f"c{i}", doc.log) == doc.text
    # Every resend is recognised as the op it repeats.
    for position, i in enumerate(order):
        assert doc.decide(subs[i]) == Duplicate(position)


@given(data=st.data())
def test_ops_on_random_base_versions_equal_transforming_by_hand(data: st.DataObject) -> None:
    doc = Document(data.draw(st.text(ALPHABET, max_size=8), label="base"))
    for n in range(data.draw(st.integers(1, 6), label="count")):
        v = data.draw(st.integers(0, doc.version), label=f"v {n}")
        op = data.draw(ops_on(len(doc.texts[v])), label=f"op {n}")
        expected = op
        for e in doc.log[v:]:
            expected = ot.transform(expected, e.op, "right")
        head = doc.text
        decision = doc.commit(other(n, op, v))
        assert decision == Commit(expected, ot.apply(head, expected))
