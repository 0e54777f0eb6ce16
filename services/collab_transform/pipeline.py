"""The life of one submitted op: validate, deduplicate, transform, apply. Pure.

Given a submission and the document as edit-transform sees it (head version, text, and
the ops committed since the submission's base version), :func:`decide` returns what to
do: commit a transformed op, acknowledge a duplicate, or refuse with a protocol error.
The worker carries the decision out; if the commit's check-and-append finds that
another replica committed first, it refreshes its view and asks again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from collab_core import ot
from collab_core.errors import ErrorCode
from collab_core.ingress import Submission
from collab_core.store import LogEntry


@dataclass(frozen=True, slots=True)
class Commit:
    op: ot.Op
    text: str


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The op was committed before, at ``v``: acknowledge it again, commit nothing."""

    v: int


@dataclass(frozen=True, slots=True)
class Refuse:
    code: ErrorCode
    message: str


Decision = Commit | Duplicate | Refuse


def _length_at_base(length: int, since: Sequence[LogEntry]) -> int:
    for entry in reversed(since):
        op = entry.op
        length -= ot.output_length(op, 0)
    return length


def _deletes_match(text: str, op: ot.Op) -> bool:
    """Whether every invertible delete (``{"d": "abc"}``) names the text it removes.

    ``ot.apply`` deletes by length, as ``ot-text-unicode`` does; an op whose delete text
    differs would reach every other client claiming to remove what it does not.
    """
    pos = 0
    for c in op:
        if isinstance(c, int):
            pos += c
        elif isinstance(c, dict):
            d = c["d"]
            if isinstance(d, str):
                if text[pos : pos + len(d)] != d:
                    return False
                pos += len(d)
            else:
                pos += d
    return True


def decide(
    sub: Submission,
    version: int,
    text: str,
    since: Sequence[LogEntry],
    *,
    max_document_chars: int,
    oldest_version: int = 0,
    committed: LogEntry | None = None,
) -> Decision:
    """Decide what to do with ``sub`` against the document at ``version``.

    ``since`` must hold exactly the committed ops with ``sub.v <= v < version``, in order.
    ``committed`` is the entry already carrying ``sub``'s author, client and id when the
    id index found one below ``sub.v``, where ``since`` cannot show it.
    """
    if sub.v > version:
        return Refuse(ErrorCode.INVALID_VERSION, f"v {sub.v} is ahead of the document ({version})")
    if sub.v < oldest_version:
        return Refuse(ErrorCode.INVALID_VERSION, f"v {sub.v} is older than the history kept")
    if len(since) != version - sub.v:  # pragma: no cover - a worker bug, not client input
        raise ValueError(f"need {version - sub.v} ops since v {sub.v}, got {len(since)}")
    # A resend keeps its client and id, and can only have been committed after its own
    # base version: looking at the ops since v finds it (DESIGN.md invariant 3).
    digest = sub.digest
    earlier = [committed] if committed is not None else []
    for entry in [*earlier, *since]:
        if entry.id == sub.id and entry.client == sub.client and entry.author == sub.author:
            if entry.digest == digest:
                return Duplicate(entry.v)
            return Refuse(ErrorCode.INVALID_OP, f"id {sub.id!r} was used for a different op")
    try:
        ot.check(sub.op, _length_at_base(len(text), since))
    except ot.OpError as exc:
        return Refuse(ErrorCode.INVALID_OP, str(exc))
    op = sub.op
    for entry in since:
        # The op committed first stays left (PROTOCOL.md, "Documents, versions, ops").
        op = ot.transform(op, entry.op, "right")
    if not _deletes_match(text, op):
        return Refuse(ErrorCode.INVALID_OP, "deleted text does not match the document")
    new_text = ot.apply(text, op)
    if len(new_text) > max_document_chars and len(new_text) > len(text):
        return Refuse(
            ErrorCode.TOO_LARGE, f"the document would exceed {max_document_chars} characters"
        )
    return Commit(op, new_text)
