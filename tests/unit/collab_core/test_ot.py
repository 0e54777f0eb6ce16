"""Named examples of the ``text-unicode`` OT type (PROTOCOL.md, "Documents, versions, ops").

Expected values are those of npm ``ot-text-unicode`` 4.0.0 where it defines them; the
places where we are stricter on purpose say so. Shrunk counterexamples from
``test_ot_properties.py`` live here under their own names.
"""

from __future__ import annotations

import json
import math

import pytest

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

THUMBS_UP_MEDIUM = "👍🏽"  # two code points: U+1F44D and the skin-tone modifier U+1F3FD
E_ACUTE = "e\u0301"  # two code points: "e" and a combining acute accent


def test_op_error_is_a_value_error() -> None:
    assert issubclass(OpError, ValueError)


# --- apply -------------------------------------------------------------------------------


def test_apply_protocol_example() -> None:
    assert apply("hello world", [5, "hi", {"d": 3}]) == "hellohirld"


def test_apply_empty_op_is_a_noop() -> None:
    assert apply("abc", []) == "abc"
    assert apply("", []) == ""


def test_apply_to_the_empty_document() -> None:
    assert apply("", ["hi"]) == "hi"
    assert apply("", ["a", "b"]) == "ab"


def test_apply_deletes_everything() -> None:
    assert apply("abc", [{"d": 3}]) == ""
    assert apply("abc", [{"d": "abc"}]) == ""


@pytest.mark.parametrize("delete", [{"d": 2}, {"d": "😀b"}], ids=["count", "text"])
def test_apply_both_delete_forms(delete: dict[str, int | str]) -> None:
    assert apply("a😀bc", [1, delete]) == "ac"


def test_apply_does_not_compare_delete_text_with_the_document() -> None:
    # ot-text-unicode deletes by length only; the text is there to invert the op.
    assert apply("abc", [{"d": "xy"}]) == "c"


def test_apply_counts_an_emoji_as_one() -> None:
    assert apply("a😀b", [1, {"d": 1}]) == "ab"
    assert apply("😀", [1, "x"]) == "😀x"
    assert apply("😀😀", [1, "x"]) == "😀x😀"


def test_apply_counts_a_modified_emoji_as_two() -> None:
    assert apply(THUMBS_UP_MEDIUM, [1, {"d": 1}]) == "👍"
    assert apply(THUMBS_UP_MEDIUM, [1, "x"]) == "👍x🏽"


def test_apply_counts_a_combining_mark_on_its_own() -> None:
    assert apply(E_ACUTE, [1, {"d": 1}]) == "e"
    assert apply(E_ACUTE, [{"d": 1}]) == "\u0301"


def test_apply_counts_crlf_as_two() -> None:
    assert apply("a\r\nb", [1, {"d": 2}]) == "ab"
    assert apply("a\r\nb", [2, "x"]) == "a\rx\nb"


def test_apply_accepts_adjacent_and_trailing_skips() -> None:
    assert apply("abc", [1, 1, "x", 1]) == "abxc"
    assert apply("abc", [3]) == "abc"


def test_apply_accepts_adjacent_inserts_and_deletes() -> None:
    assert apply("abcd", ["x", "y", {"d": 1}, {"d": "b"}]) == "xycd"


@pytest.mark.parametrize(
    ("doc", "op"),
    [
        ("", [1]),
        ("ab", [3]),
        ("ab", [2, "x", 1]),
        ("ab", [{"d": 3}]),  # ot-text-unicode lets a delete run past the end
        ("ab", [1, {"d": "bc"}]),
        ("😀", [2]),
        ("😀", [{"d": 2}]),
        (E_ACUTE, [3]),
    ],
)
def test_apply_rejects_an_op_that_does_not_fit(doc: str, op: Op) -> None:
    with pytest.raises(OpError, match="document has"):
        apply(doc, op)


def test_apply_rejects_an_invalid_op() -> None:
    with pytest.raises(OpError):
        apply("abc", [0])
    with pytest.raises(OpError):
        apply("abc", "x")  # a str is a sequence, not a list


def test_apply_does_not_change_its_arguments() -> None:
    op: Op = [1, {"d": 1}, "x"]
    apply("abc", op)
    assert op == [1, {"d": 1}, "x"]


# --- check -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "op",
    [
        [],
        [1],
        [1, 1],
        [2, "x", 3],
        ["a", "b"],
        [{"d": 1}, {"d": "x"}],
        ["😀", {"d": "😀"}],
        [1, {"d": 1}, "x", 2, "y", {"d": "z"}],
    ],
)
def test_check_accepts(op: Op) -> None:
    check(op)


@pytest.mark.parametrize(
    "skip",
    [0, -1, True, False, 1.0, 1.5, 0.0, math.inf, math.nan],
    ids=repr,
)
def test_check_rejects_skips_that_are_not_positive_integers(skip: object) -> None:
    # checkOp lets floats and booleans through (it has no case for booleans); a JSON
    # document can carry them, and we refuse them (ot.check's docstring).
    with pytest.raises(OpError, match="component 1: skip must be a positive integer"):
        check(["x", skip])


def test_check_rejects_an_empty_insert() -> None:
    with pytest.raises(OpError, match="component 0: insert must not be empty"):
        check([""])


@pytest.mark.parametrize("delete", [{"d": 0}, {"d": ""}, {"d": -1}], ids=repr)
def test_check_rejects_an_empty_or_negative_delete(delete: object) -> None:
    with pytest.raises(OpError, match="component 1: delete must"):
        check([1, delete])


@pytest.mark.parametrize(
    "component",
    [
        None,
        [],
        [1],
        (1,),
        {},
        {"x": 1},
        {"D": 1},
        {"d": 1, "x": 2},  # checkOp accepts it; a stray key is a client bug we refuse
        {"d": True},
        {"d": 1.0},
        {"d": 1.5},
        {"d": None},
        {"d": [1]},
        {"d": {"d": 1}},
        object(),
    ],
    ids=repr,
)
def test_check_rejects_unknown_components(component: object) -> None:
    with pytest.raises(OpError, match="component 0"):
        check([component])


@pytest.mark.parametrize("op", [None, "abc", "", 1, (1, "x"), {"d": 1}, {"ops": []}], ids=repr)
def test_check_rejects_ops_that_are_not_lists(op: object) -> None:
    with pytest.raises(OpError, match="op must be an array"):
        check(op)


@pytest.mark.parametrize("text", ["\ud800", "a\udfffb", "\udc00\ud800", "😀\ud83d"], ids=repr)
def test_check_rejects_lone_surrogates(text: str) -> None:
    # JSON can carry them, UTF-8 cannot, so other clients could not be sent the op.
    with pytest.raises(OpError, match="lone surrogate"):
        check([text])
    with pytest.raises(OpError, match="lone surrogate"):
        check([{"d": text}])


def test_check_accepts_a_surrogate_pair_from_json() -> None:
    decoded = json.loads('["\\ud83d\\ude00", {"d": "\\ud83d\\ude00"}]')
    assert decoded == ["😀", {"d": "😀"}]
    check(decoded, 1)


def test_check_names_the_first_bad_component() -> None:
    with pytest.raises(OpError, match="component 2"):
        check([1, "x", 0, ""])


def test_check_with_a_length() -> None:
    check([2], 2)
    check(["abc"], 0)
    check([{"d": "😀"}], 1)
    check([1, "x", {"d": 1}], 2)
    with pytest.raises(OpError, match="op spans 3 code points but the document has 2"):
        check([1, "x", {"d": 2}], 2)
    with pytest.raises(OpError):
        check([{"d": THUMBS_UP_MEDIUM}], 1)


# --- normalize ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        ([], []),
        ([3], []),
        ([1, 2], []),
        ([1, 2, "x", 3], [3, "x"]),
        ([1, "a", 2, "b", 3], [1, "a", 2, "b"]),
        (["a", "b"], ["ab"]),
        ([{"d": 1}, {"d": 2}], [{"d": 3}]),
        ([{"d": "a"}, {"d": "b"}], [{"d": "ab"}]),
        ([{"d": "a"}, {"d": 2}], [{"d": 3}]),
        ([{"d": 2}, {"d": "😀"}], [{"d": 3}]),
        ([0, "", {"d": 0}, {"d": ""}, "x"], ["x"]),
        (["x", {"d": 1}, "y"], ["x", {"d": 1}, "y"]),
    ],
)
def test_normalize(op: Op, expected: Op) -> None:
    assert normalize(op) == expected


def test_normalize_does_not_change_its_argument() -> None:
    # ot-text-unicode's normalize merges deletes into the objects it was given.
    op: Op = [{"d": 1}, {"d": 2}, 1, 1]
    normalize(op)
    assert op == [{"d": 1}, {"d": 2}, 1, 1]


def test_normalize_is_idempotent() -> None:
    once = normalize([1, 1, "a", "b", {"d": "x"}, {"d": "y"}, 4])
    assert once == [2, "ab", {"d": "xy"}]
    assert normalize(once) == once


# --- transform ---------------------------------------------------------------------------


def test_transform_ties_left_goes_first() -> None:
    assert transform(["a"], ["b"], "left") == ["a"]
    assert transform(["a"], ["b"], "right") == [1, "a"]


def test_transform_ties_converge_with_the_first_committed_op_on_the_left() -> None:
    # The server transforms an incoming op against committed ones with "right".
    committed: Op = [1, "A"]
    incoming: Op = [1, "B"]
    assert apply(apply("xy", committed), transform(incoming, committed, "right")) == "xABy"
    assert apply(apply("xy", incoming), transform(committed, incoming, "left")) == "xABy"


def test_transform_ties_count_emoji_as_one() -> None:
    assert transform([1, "x"], ["😀"], "left") == [2, "x"]
    assert transform([1, "x"], [THUMBS_UP_MEDIUM], "left") == [3, "x"]
    assert transform(["x"], ["😀"], "right") == [1, "x"]


def test_transform_insert_after_an_earlier_insert_shifts() -> None:
    assert transform([3, "x"], [1, "ab"], "left") == [5, "x"]


def test_transform_insert_inside_a_deleted_range_moves_to_its_start() -> None:
    assert transform([2, "x"], [{"d": 3}], "left") == ["x"]
    assert transform([2, "x"], [1, {"d": 3}], "right") == [1, "x"]


def test_transform_overlapping_deletes_delete_once() -> None:
    assert transform([{"d": 3}], [1, {"d": 3}], "left") == [{"d": 1}]
    assert transform([{"d": 2}], [{"d": 2}], "left") == []


def test_transform_splits_a_text_delete_and_keeps_its_text() -> None:
    assert transform([{"d": "abc"}], [1, {"d": 1}], "left") == [{"d": "ac"}]
    assert transform([{"d": "a😀c"}], [1, {"d": 1}], "right") == [{"d": "ac"}]
    assert transform([{"d": "abc"}], [1, "XY"], "left") == [{"d": "a"}, 2, {"d": "bc"}]


def test_transform_accepts_adjacent_and_trailing_skips() -> None:
    assert transform([1, 1, "x", 5], [1, "ab", 1], "left") == [4, "x"]


def test_transform_by_noop() -> None:
    assert transform([1, "x", 4], [], "left") == [1, "x"]
    assert transform([], [1, "x"], "right") == []


def test_transform_of_unmerged_inserts_matches_the_library_and_diverges() -> None:
    # Shrunk from test_transform_converges before its ops were merged. checkOp accepts
    # ["a", "a"], and ot-text-unicode transforms it as two inserts of which only the first
    # wins the tie, so the two sites disagree. The server must normalise ops before it
    # transforms or stores them.
    a, b = ["a", "a"], ["b"]
    assert transform(a, b, "left") == ["a", 1, "a"]
    assert transform(b, a, "right") == [2, "b"]
    assert apply(apply("", a), transform(b, a, "right")) == "aab"
    assert apply(apply("", b), transform(a, b, "left")) == "aba"
    normal = normalize(a)
    assert apply(apply("", normal), transform(b, normal, "right")) == "aab"
    assert apply(apply("", b), transform(normal, b, "left")) == "aab"


@pytest.mark.parametrize("side", ["middle", "", None, "Left"])
def test_transform_rejects_an_unknown_side(side: object) -> None:
    with pytest.raises(OpError, match="side must be"):
        transform([], [], side)  # type: ignore[arg-type]


def test_transform_rejects_invalid_ops() -> None:
    with pytest.raises(OpError):
        transform([0], [], "left")
    with pytest.raises(OpError):
        transform([], [{"d": 0}], "left")


def test_transform_does_not_change_its_arguments() -> None:
    a: Op = [{"d": "abc"}, "x"]
    b: Op = [1, {"d": 1}]
    transform(a, b, "left")
    assert a == [{"d": "abc"}, "x"]
    assert b == [1, {"d": 1}]


# --- compose -----------------------------------------------------------------------------


def test_compose_noops() -> None:
    assert compose([], []) == []
    assert compose([1, "x"], []) == [1, "x"]
    assert compose([], [1, "x"]) == [1, "x"]


def test_compose_deleting_an_insert_cancels_it() -> None:
    assert compose(["abc"], [1, {"d": 1}]) == ["ac"]
    assert compose(["ab"], [{"d": 2}]) == []


def test_compose_merges_deletes() -> None:
    assert compose([{"d": 1}], [{"d": 1}]) == [{"d": 2}]
    assert compose([{"d": "a"}], [{"d": "b"}]) == [{"d": "ab"}]
    assert compose([{"d": "a"}], [{"d": 1}]) == [{"d": 2}]


def test_compose_delete_of_kept_text_comes_before_an_insert() -> None:
    assert compose([1, "x"], [{"d": "a"}]) == [{"d": "a"}, "x"]


def test_compose_splits_inserts_and_text_deletes_by_code_point() -> None:
    assert compose(["😀" + THUMBS_UP_MEDIUM], [1, {"d": 1}]) == ["😀🏽"]
    assert compose([{"d": "😀"}, 2], [1, {"d": "b"}]) == [{"d": "😀"}, 1, {"d": "b"}]


def test_compose_accepts_adjacent_and_trailing_skips() -> None:
    assert compose([1, 1, "x", 1], [3, "y", 1]) == [2, "xy"]


def test_compose_rejects_invalid_ops() -> None:
    with pytest.raises(OpError):
        compose([True], [])
    with pytest.raises(OpError):
        compose([], [{"d": 1, "x": 2}])


# --- transform_position ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("position", "op", "expected"),
    [
        (2, ["ab"], 4),
        (2, [2, "x"], 2),  # the caret stays before text inserted at it
        (0, ["x"], 0),
        (2, [1, "x"], 3),
        (5, [{"d": 2}], 3),
        (3, [1, {"d": 5}], 1),  # a caret inside a deleted range goes to its start
        (1, [1, {"d": 5}], 1),
        (4, [1, "x", 1], 5),
        (1, ["😀"], 2),
        (1, [THUMBS_UP_MEDIUM], 3),
        (3, [], 3),
        (1, ["Y", {"d": 2}], 1),
    ],
)
def test_transform_position(position: int, op: Op, expected: int) -> None:
    assert transform_position(position, op) == expected


# --- replace -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("abc", "abc", []),
        ("", "", []),
        ("", "x", ["x"]),
        ("abc", "", [{"d": 3}]),
        ("hello", "help", [3, {"d": 2}, "p"]),
        ("abcd", "abXd", [2, {"d": 1}, "X"]),
        ("abc", "abcd", [3, "d"]),
        ("abc", "xabc", ["x"]),
        ("aaa", "aa", [2, {"d": 1}]),
        ("a😀b", "a👍b", [1, {"d": 1}, "👍"]),
        ("👍🏽", "👍🏿", [1, {"d": 1}, "🏿"]),
        ("e\u0301", "e", [1, {"d": 1}]),
        ("a\nb", "a\r\nb", [1, "\r"]),
    ],
)
def test_replace(old: str, new: str, expected: Op) -> None:
    op = replace(old, new)
    assert op == expected
    assert apply(old, op) == new


# --- input_length, output_length ---------------------------------------------------------


def test_input_and_output_length() -> None:
    op: Op = [1, "ab", {"d": 2}, {"d": "😀"}, "👍🏽"]
    assert input_length(op) == 4
    assert output_length(op, 4) == 4 + 2 - 3 + 2
    assert output_length(op, 10) == len(apply("😀" * 10, op))
    assert input_length([]) == 0
    assert output_length([], 7) == 7
