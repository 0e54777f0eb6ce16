"""The ``text-unicode`` OT type: plain text edited by ops of skips, inserts and deletes.

Semantics are those of npm ``ot-text-unicode`` 4.x so that browser clients use that
library unchanged (PROTOCOL.md, "Documents, versions, ops"). Positions and lengths count
Unicode code points, which is what Python's ``str`` indexes, so no conversion is needed
here; a JavaScript client converts from UTF-16.

An op is a list of components:

- ``n`` (a positive ``int``): skip ``n`` code points;
- ``"text"`` (a non-empty ``str``): insert it here;
- ``{"d": n}`` or ``{"d": "text"}``: delete ``n`` (or ``len(text)``) code points.

This module is our own implementation rather than a dependency: it is the core of the
domain, every service and client relies on its exact behaviour, and no maintained Python
package implements this type. It is pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, TypeAlias

Delete: TypeAlias = dict[str, int | str]
Component: TypeAlias = int | str | Delete
Op: TypeAlias = list[Component]
Side: TypeAlias = Literal["left", "right"]

__all__ = [
    "Component",
    "Delete",
    "Op",
    "OpError",
    "Side",
    "apply",
    "check",
    "compose",
    "input_length",
    "normalize",
    "output_length",
    "replace",
    "transform",
    "transform_position",
]


class OpError(ValueError):
    """An op is malformed, or does not fit the document it is applied to."""


def _delete_length(d: int | str) -> int:
    return d if isinstance(d, int) else len(d)


def _has_lone_surrogate(s: str) -> bool:
    # JSON can carry "\ud800"; such text cannot be encoded to UTF-8 for other clients.
    if s.isascii():
        return False
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_component(c: object, i: int) -> int:
    """Validate one component; return how many document code points it consumes."""
    # ``type(...) is`` rather than isinstance: JSON ``true`` decodes to a bool, an int subclass.
    if type(c) is int:
        if c <= 0:
            raise OpError(f"component {i}: skip must be a positive integer")
        return c
    if type(c) is str:
        if not c:
            raise OpError(f"component {i}: insert must not be empty")
        if _has_lone_surrogate(c):
            raise OpError(f"component {i}: insert contains a lone surrogate")
        return 0
    if type(c) is dict:
        if len(c) != 1 or "d" not in c:
            raise OpError(f'component {i}: an object component must be {{"d": n}}')
        d = c["d"]
        if type(d) is int:
            if d <= 0:
                raise OpError(f"component {i}: delete must be a positive integer")
            return d
        if type(d) is str:
            if not d:
                raise OpError(f"component {i}: delete must not be empty")
            if _has_lone_surrogate(d):
                raise OpError(f"component {i}: delete contains a lone surrogate")
            return len(d)
        raise OpError(f"component {i}: delete must be a positive integer or a non-empty string")
    if type(c) is bool or type(c) is float:
        raise OpError(f"component {i}: skip must be a positive integer")
    raise OpError(f"component {i}: unknown component {type(c).__name__}")


def check(op: object, length: int | None = None) -> None:
    """Raise :class:`OpError` unless ``op`` is a valid op.

    Valid means: what ``ot-text-unicode``'s ``checkOp`` accepts, with integer skips and
    delete counts only, except that trailing and adjacent skips are allowed
    (PROTOCOL.md accepts them; :func:`normalize` drops or merges them). With ``length``,
    the op must also fit a document of that many code points.
    """
    if type(op) is not list:
        raise OpError("op must be an array")
    consumed = 0
    for i, c in enumerate(op):
        consumed += _check_component(c, i)
    if length is not None and consumed > length:
        raise OpError(f"op spans {consumed} code points but the document has {length}")


def input_length(op: Sequence[Component]) -> int:
    """Code points of the document that ``op`` skips or deletes (the least it fits)."""
    n = 0
    for c in op:
        if isinstance(c, int):
            n += c
        elif isinstance(c, dict):
            n += _delete_length(c["d"])
    return n


def output_length(op: Sequence[Component], length: int) -> int:
    """Length of the document after applying ``op`` to one of ``length`` code points."""
    for c in op:
        if isinstance(c, str):
            length += len(c)
        elif isinstance(c, dict):
            length -= _delete_length(c["d"])
    return length


def apply(text: str, op: Sequence[Component]) -> str:
    """Return ``text`` with ``op`` applied. Raises :class:`OpError` if the op is invalid.

    The document is copied a constant number of times (its unchanged runs are sliced
    once and joined once), whatever the number of components.
    """
    check(op, len(text))
    parts: list[str] = []
    pos = 0
    for c in op:
        if isinstance(c, int):
            parts.append(text[pos : pos + c])
            pos += c
        elif isinstance(c, str):
            parts.append(c)
        else:
            pos += _delete_length(c["d"])
    if not parts:
        return text[pos:]
    parts.append(text[pos:])
    return "".join(parts)


def _appender(op: Op) -> Callable[[Component | None], None]:
    """Return a function that appends a component to ``op``, merging like neighbours.

    Zero skips, empty inserts and empty deletes are dropped. Adjacent deletes keep their
    text only when both carry it, as in ``ot-text-unicode``.
    """

    def append(c: Component | None) -> None:
        if not c:
            return
        if isinstance(c, dict):
            d = c["d"]
            if d == 0 or d == "":
                return
        if not op:
            op.append(c)
            return
        last = op[-1]
        if isinstance(c, int) and isinstance(last, int):
            op[-1] = last + c
        elif isinstance(c, str) and isinstance(last, str):
            op[-1] = last + c
        elif isinstance(c, dict) and isinstance(last, dict):
            ld = last["d"]
            cd = c["d"]
            if isinstance(ld, str) and isinstance(cd, str):
                op[-1] = {"d": ld + cd}
            else:
                op[-1] = {"d": _delete_length(ld) + _delete_length(cd)}
        else:
            op.append(c)

    return append


def _trim(op: Op) -> Op:
    if op and type(op[-1]) is int:
        op.pop()
    return op


def normalize(op: Sequence[Component]) -> Op:
    """Merge adjacent components of one kind, drop no-ops and the trailing skip."""
    out: Op = []
    append = _appender(out)
    for c in op:
        append(dict(c) if isinstance(c, dict) else c)
    return _trim(out)


def _dslice(d: int | str, start: int, end: int | None = None) -> int | str:
    if isinstance(d, int):
        return (d if end is None else min(d, end)) - start
    return d[start:end]


class _Cursor:
    """Walks an op component by component, splitting components on demand.

    ``take(n, indivisible)`` returns up to ``n`` code points' worth of the next component;
    ``n = -1`` takes the rest of the next component whole. Past the end it returns a
    skip of ``n`` (an op implicitly skips the rest of the document), or ``None`` for -1.
    ``indivisible`` ("i" or "d") keeps inserts or deletes whole.
    """

    __slots__ = ("idx", "offset", "op")

    def __init__(self, op: Sequence[Component]) -> None:
        self.op = op
        self.idx = 0
        self.offset = 0

    def peek(self) -> Component | None:
        return self.op[self.idx] if self.idx < len(self.op) else None

    def take(self, n: int, indivisible: str = "") -> Component | None:
        if self.idx == len(self.op):
            return None if n == -1 else n
        c = self.op[self.idx]
        offset = self.offset
        if isinstance(c, int):
            rest = c - offset
            if n == -1 or rest <= n:
                self.idx += 1
                self.offset = 0
                return rest
            self.offset += n
            return n
        if isinstance(c, str):
            if n == -1 or indivisible == "i" or len(c) - offset <= n:
                self.idx += 1
                self.offset = 0
                return c[offset:] if offset else c
            self.offset += n
            return c[offset : offset + n]
        d = c["d"]
        if n == -1 or indivisible == "d" or _delete_length(d) - offset <= n:
            self.idx += 1
            self.offset = 0
            return {"d": _dslice(d, offset)}
        self.offset += n
        return {"d": _dslice(d, offset, offset + n)}


def _length(c: Component) -> int:
    if isinstance(c, int):
        return c
    if isinstance(c, str):
        return len(c)
    return _delete_length(c["d"])


def transform(op: Sequence[Component], other: Sequence[Component], side: Side) -> Op:
    """Transform ``op`` so that it applies after ``other``; both were made on one version.

    ``side`` breaks ties between inserts at the same position: ``"left"`` puts ``op``'s
    insert first. The server transforms an incoming op against ops committed before it
    with ``"right"``, so the op committed first stays left (PROTOCOL.md).
    Cost is linear in the sizes of the two ops.
    """
    if side != "left" and side != "right":
        raise OpError(f"side must be 'left' or 'right', not {side!r}")
    check(op)
    check(other)
    out: Op = []
    append = _appender(out)
    cur = _Cursor(op)
    for c2 in other:
        if isinstance(c2, int):
            length: int = c2
            while length > 0:
                c1 = cur.take(length, "i")
                assert c1 is not None
                append(c1)
                if not isinstance(c1, str):
                    length -= _length(c1)
        elif isinstance(c2, str):
            if side == "left" and isinstance(cur.peek(), str):
                append(cur.take(-1))
            append(len(c2))
        else:
            length = _delete_length(c2["d"])
            while length > 0:
                c1 = cur.take(length, "i")
                assert c1 is not None
                if isinstance(c1, int):
                    length -= c1
                elif isinstance(c1, str):
                    append(c1)
                else:
                    # That text is deleted already; our delete of it is moot.
                    length -= _delete_length(c1["d"])
    while (c := cur.take(-1)) is not None:
        append(c)
    return _trim(out)


def compose(a: Sequence[Component], b: Sequence[Component]) -> Op:
    """Return one op with the effect of ``a`` then ``b``. Linear in the sizes of the ops."""
    check(a)
    check(b)
    out: Op = []
    append = _appender(out)
    cur = _Cursor(a)
    for c2 in b:
        if isinstance(c2, int):
            length: int = c2
            while length > 0:
                chunk = cur.take(length, "d")
                assert chunk is not None
                append(chunk)
                if not isinstance(chunk, dict):
                    length -= _length(chunk)
        elif isinstance(c2, str):
            append(c2)
        else:
            d = c2["d"]
            length = _delete_length(d)
            offset = 0
            while offset < length:
                chunk = cur.take(length - offset, "d")
                assert chunk is not None
                if isinstance(chunk, int):
                    # b deletes text that a kept: the delete survives.
                    append({"d": _dslice(d, offset, offset + chunk)})
                    offset += chunk
                elif isinstance(chunk, str):
                    # b deletes text that a inserted: the two cancel.
                    offset += len(chunk)
                else:
                    append(chunk)
    while (c := cur.take(-1)) is not None:
        append(c)
    return _trim(out)


def transform_position(position: int, op: Sequence[Component]) -> int:
    """Map a caret position through ``op``, as ``ot-text-unicode``'s ``transformPosition``.

    An insert exactly at the caret leaves the caret before the inserted text.
    """
    pos = 0
    for c in op:
        if position <= pos:
            break
        if isinstance(c, int):
            pos += c
        elif isinstance(c, str):
            pos += len(c)
            position += len(c)
        else:
            position -= min(_delete_length(c["d"]), position - pos)
    return position


def replace(old: str, new: str) -> Op:
    """Return a small op that turns ``old`` into ``new`` (one delete and one insert).

    It keeps the common prefix and suffix, so other people's cursors outside the
    changed span stay where they are.
    """
    limit = min(len(old), len(new))
    start = 0
    while start < limit and old[start] == new[start]:
        start += 1
    end = 0
    while end < limit - start and old[-1 - end] == new[-1 - end]:
        end += 1
    out: Op = []
    append = _appender(out)
    append(start)
    append({"d": len(old) - start - end})
    append(new[start : len(new) - end])
    return _trim(out)
