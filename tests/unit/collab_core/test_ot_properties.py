"""Hypothesis properties of the ``text-unicode`` OT type (STYLE.md, habit 5).

Every shrunk counterexample found here becomes a named test in ``test_ot.py``.
"""

from __future__ import annotations

import math
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from collab_core.ot import (
    Op,
    OpError,
    apply,
    check,
    compose,
    input_length,
    normalize,
    output_length,
    replace,
    transform,
    transform_position,
)

PROPERTY = settings(max_examples=500, deadline=None)

# Code points that JavaScript counts differently (astral characters are two UTF-16 units),
# sequences that look like one character but are several code points ("👍🏽", "e\u0301",
# "\r\n"), and a lone combining mark.
PIECES = ["a", "b", "Z", " ", "😀", "👍🏽", "e\u0301", "\u0301", "\r\n", "\n"]

documents = st.lists(st.sampled_from(PIECES), max_size=8).map("".join)
inserts = st.lists(st.sampled_from(PIECES), min_size=1, max_size=3).map("".join)
sides = st.sampled_from(["left", "right"])

# One step of an op: (kind, size, inserted text, delete carries its text).
_moves = st.lists(
    st.tuples(st.sampled_from("sid"), st.integers(1, 4), inserts, st.booleans()),
    max_size=7,
)


def _op_from_moves(doc: str, moves: list[tuple[str, int, str, bool]]) -> Op:
    """Build a valid op that fits ``doc``; sizes are clamped to what is left of it.

    The op is raw: it may hold adjacent skips, inserts or deletes and a trailing skip,
    all of which ``check`` accepts.
    """
    op: Op = []
    pos = 0
    for kind, size, text, with_text in moves:
        n = min(size, len(doc) - pos)
        if kind == "i":
            op.append(text)
        elif n == 0:
            continue
        elif kind == "s":
            op.append(n)
            pos += n
        else:
            op.append({"d": doc[pos : pos + n] if with_text else n})
            pos += n
    return op


@st.composite
def ops_for(draw: st.DrawFn, doc: str) -> Op:
    """A valid, possibly unnormalised op that fits ``doc``."""
    return _op_from_moves(doc, draw(_moves))


def _is_normal(op: Op) -> bool:
    kinds = [type(c) for c in op]
    adjacent_alike = any(a is b for a, b in pairwise(kinds))
    return not adjacent_alike and (not op or kinds[-1] is not int)


def _deletes_match(doc: str, op: Op) -> bool:
    """Whether every ``{"d": text}`` of ``op`` names the text it deletes from ``doc``."""
    pos = 0
    for c in op:
        if type(c) is int:
            pos += c
        elif type(c) is dict:
            d = c["d"]
            n = d if type(d) is int else len(d)  # type: ignore[arg-type]
            if type(d) is str and doc[pos : pos + n] != d:
                return False
            pos += n
    return True


# --- convergence -------------------------------------------------------------------------


def _merge_inserts(op: Op) -> Op:
    out: Op = []
    for c in op:
        if out and type(c) is str and type(out[-1]) is str:
            out[-1] = out[-1] + c
        else:
            out.append(c)
    return out


@PROPERTY
@given(st.data(), documents, sides, st.booleans())
def test_transform_converges(data: st.DataObject, doc: str, side: str, stored: bool) -> None:
    # Adjacent inserts, which checkOp accepts, do not converge (in ot-text-unicode too:
    # test_ot.py, test_transform_of_unmerged_inserts_matches_the_library_and_diverges), so
    # ops are either normalised as the server stores them or have their inserts merged;
    # adjacent and trailing skips and adjacent deletes are left in the latter.
    prepare = normalize if stored else _merge_inserts
    a = prepare(data.draw(ops_for(doc), label="a"))
    b = prepare(data.draw(ops_for(doc), label="b"))
    other_side = "left" if side == "right" else "right"
    b_after_a = transform(b, a, side)  # type: ignore[arg-type]
    a_after_b = transform(a, b, other_side)  # type: ignore[arg-type]
    assert apply(apply(doc, a), b_after_a) == apply(apply(doc, b), a_after_b)


@PROPERTY
@given(st.data(), documents, sides)
def test_transform_output_is_normal_and_keeps_delete_text(
    data: st.DataObject, doc: str, side: str
) -> None:
    a = data.draw(ops_for(doc), label="a")
    b = data.draw(ops_for(doc), label="b")
    b_after_a = transform(b, a, side)  # type: ignore[arg-type]
    after_a = apply(doc, a)
    check(b_after_a, len(after_a))
    assert _is_normal(b_after_a)
    assert _deletes_match(after_a, b_after_a)


@PROPERTY
@given(st.data(), documents, sides)
def test_transform_by_noop_is_normalize(data: st.DataObject, doc: str, side: str) -> None:
    a = data.draw(ops_for(doc), label="a")
    assert transform(a, [], side) == normalize(a)  # type: ignore[arg-type]
    assert transform([], a, side) == []  # type: ignore[arg-type]


# --- composition -------------------------------------------------------------------------


@PROPERTY
@given(st.data(), documents)
def test_compose_applies_like_both(data: st.DataObject, doc: str) -> None:
    a = data.draw(ops_for(doc), label="a")
    after_a = apply(doc, a)
    b = data.draw(ops_for(after_a), label="b")
    ab = compose(a, b)
    assert apply(doc, ab) == apply(after_a, b)
    assert _is_normal(ab)
    assert _deletes_match(doc, ab)


@PROPERTY
@given(st.data(), documents)
def test_compose_is_associative(data: st.DataObject, doc: str) -> None:
    a = normalize(data.draw(ops_for(doc), label="a"))
    after_a = apply(doc, a)
    b = normalize(data.draw(ops_for(after_a), label="b"))
    c = normalize(data.draw(ops_for(apply(after_a, b)), label="c"))
    assert apply(doc, compose(compose(a, b), c)) == apply(doc, compose(a, compose(b, c)))


@PROPERTY
@given(st.data(), documents)
def test_transform_against_composed_equals_transform_twice(data: st.DataObject, doc: str) -> None:
    # What the server relies on when a client is several versions behind: transforming
    # against each committed op in turn gives the same text as against their composition.
    a = normalize(data.draw(ops_for(doc), label="a"))
    after_a = apply(doc, a)
    b = normalize(data.draw(ops_for(after_a), label="b"))
    c = normalize(data.draw(ops_for(doc), label="c"))
    stepwise = transform(transform(c, a, "right"), b, "right")
    at_once = transform(c, compose(a, b), "right")
    after_ab = apply(after_a, b)
    assert apply(after_ab, stepwise) == apply(after_ab, at_once)


# --- normalisation -----------------------------------------------------------------------


@PROPERTY
@given(st.data(), documents)
def test_normalize(data: st.DataObject, doc: str) -> None:
    op = data.draw(ops_for(doc), label="op")
    before = repr(op)
    normal = normalize(op)
    assert repr(op) == before, "normalize must not change its argument"
    assert normalize(normal) == normal
    assert apply(doc, normal) == apply(doc, op)
    assert _is_normal(normal)
    assert _deletes_match(doc, normal)
    assert output_length(normal, len(doc)) == output_length(op, len(doc))


# --- validation --------------------------------------------------------------------------

_skips = st.one_of(
    st.integers(-2, 5),
    st.booleans(),
    st.sampled_from([0.0, 1.0, 1.5, -1.0, math.inf, math.nan]),
)
_texts = st.one_of(
    st.text(max_size=3),
    st.sampled_from(PIECES),
    st.sampled_from(["", "\ud800", "a\udfff", "\udc00\ud800"]),
)
_delete_values: st.SearchStrategy[object] = st.one_of(
    _skips, _texts, st.none(), st.just([]), st.just({"d": 1})
)
_components = st.one_of(
    _skips,
    _texts,
    st.builds(lambda v: {"d": v}, _delete_values),
    st.none(),
    st.just([]),
    st.just([1]),
    st.sampled_from([{}, {"x": 1}, {"d": 1, "x": 2}, {"D": 1}]),
    st.builds(tuple, st.lists(st.integers(1, 2), max_size=2)),
)
any_ops = st.one_of(
    st.lists(_components, max_size=6),
    st.lists(_components, max_size=3).map(tuple),
    st.none(),
    st.sampled_from(["", "ab", 1, {"d": 1}, {"ops": [1]}]),
)


def _raises_op_error(fn: object, *args: object) -> bool:
    try:
        fn(*args)  # type: ignore[operator]
    except OpError:
        return True
    return False


@PROPERTY
@given(any_ops, documents)
def test_check_accepts_exactly_what_apply_can_apply(op: object, doc: str) -> None:
    # Anything but OpError escaping from apply fails the test.
    rejected = _raises_op_error(check, op, len(doc))
    assert _raises_op_error(apply, doc, op) is rejected
    if not rejected:
        assert len(apply(doc, op)) == output_length(op, len(doc))  # type: ignore[arg-type]
        assert input_length(op) <= len(doc)  # type: ignore[arg-type]


@PROPERTY
@given(any_ops, sides)
def test_transform_compose_normalize_reject_what_check_rejects(op: object, side: str) -> None:
    rejected = _raises_op_error(check, op)
    assert _raises_op_error(transform, op, [], side) is rejected
    assert _raises_op_error(transform, [], op, side) is rejected
    assert _raises_op_error(compose, op, []) is rejected
    assert _raises_op_error(compose, [], op) is rejected


@PROPERTY
@given(st.data(), documents)
def test_valid_ops_are_checked_valid(data: st.DataObject, doc: str) -> None:
    op = data.draw(ops_for(doc), label="op")
    check(op)
    check(op, len(doc))
    assert input_length(op) <= len(doc)
    if input_length(op) > 0:
        assert _raises_op_error(check, op, input_length(op) - 1)


# --- positions ---------------------------------------------------------------------------


@PROPERTY
@given(st.data(), documents)
def test_transform_position_stays_in_bounds_and_in_order(data: st.DataObject, doc: str) -> None:
    op = data.draw(ops_for(doc), label="op")
    new_length = len(apply(doc, op))
    mapped = [transform_position(p, op) for p in range(len(doc) + 1)]
    assert all(0 <= p <= new_length for p in mapped)
    assert mapped == sorted(mapped)
    assert mapped == [transform_position(p, normalize(op)) for p in range(len(doc) + 1)]


@PROPERTY
@given(st.data(), documents)
def test_transform_position_agrees_with_transform_of_an_insert(
    data: st.DataObject, doc: str
) -> None:
    # A caret is where text typed there lands: an insert at the caret, transformed as the
    # op that goes first ("left"), ends up at the mapped caret.
    op = normalize(data.draw(ops_for(doc), label="op"))
    caret = data.draw(st.integers(0, len(doc)), label="caret")
    typed = transform([caret, "\x00"] if caret else ["\x00"], op, "left")
    assert apply(apply(doc, op), typed).index("\x00") == transform_position(caret, op)


# --- replace -----------------------------------------------------------------------------


@PROPERTY
@given(documents, documents)
def test_replace(old: str, new: str) -> None:
    op = replace(old, new)
    assert apply(old, op) == new
    assert _is_normal(op)
    assert len([c for c in op if type(c) is not int]) <= 2
