"""CPU of presence's in-memory tracker as the sessions grow: pure Python, no Redis.

Run from the repository root (docs/scaling.md, M6)::

    .venv/bin/python -m bench.capacity.presence_tracker 10000 100000 1000000

Arguments: session counts (default 10,000, 100,000 and 1,000,000), in rooms of 5. For
each, a :class:`collab_presence.tracker.Tracker` is filled with joins, then measured:

- the flush with nothing to publish, which presence runs every 40 ms (best of 5);
- ``apply`` of one cursor update (every tenth session sends one);
- the flush that publishes them, per published update, beyond the idle flush;
- ``participants(doc)``, which presence calls on every leave (best of 3).

Prints a Markdown table, a row per session count as soon as it is measured.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import msgspec

from collab_core.ingress import PresenceUpdate
from collab_presence.tracker import Publish, Tracker

ROOM = 5
HEADER = (
    "| sessions | idle flush µs | apply µs per update | flush µs per published update "
    "| participants(doc) µs |\n"
    "| --- | --- | --- | --- | --- |"
)

_encode = msgspec.json.encode


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """The shortest of ``repeat`` timed calls, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def measure(sessions: int) -> dict[str, float]:
    """Times, in seconds, of the tracker's operations with ``sessions`` sessions."""
    tracker = Tracker()
    now = time.time()
    for i in range(sessions):
        participant = _encode({"user": {"id": f"u{i}"}, "role": "editor"})
        tracker.apply(
            PresenceUpdate(
                kind="join",
                doc=f"d{i // ROOM}",
                session=f"s{i}",
                gateway="g",
                ts=now,
                participant=participant,
            ),
            now,
        )
    tracker.flush()  # publish the joins
    idle_flush = best_of(tracker.flush, 5)
    state = _encode({"v": 1, "cursor": {"anchor": 3, "head": 3}, "meta": None})
    updates = [
        PresenceUpdate(
            kind="presence", doc=f"d{i // ROOM}", session=f"s{i}", gateway="g", ts=now, state=state
        )
        for i in range(0, sessions, 10)
    ]
    started = time.perf_counter()
    for found in updates:
        tracker.apply(found, now)
    apply = (time.perf_counter() - started) / len(updates)
    started = time.perf_counter()
    published = sum(isinstance(action, Publish) for action in tracker.flush())
    busy_flush = time.perf_counter() - started
    return {
        "idle_flush": idle_flush,
        "apply": apply,
        "flush_per_publish": (busy_flush - idle_flush) / max(published, 1),
        "participants": best_of(lambda: tracker.participants("d0"), 3),
    }


def row(sessions: int, times: dict[str, float]) -> str:
    return (
        f"| {sessions:,} | {times['idle_flush'] * 1e6:.2f} | {times['apply'] * 1e6:.2f} "
        f"| {times['flush_per_publish'] * 1e6:.2f} | {times['participants'] * 1e6:.2f} |"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.capacity.presence_tracker", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "sessions", type=int, nargs="*", default=[10_000, 100_000, 1_000_000], help="sessions"
    )
    args = parser.parse_args(argv)
    print(HEADER)
    for sessions in args.sessions:
        print(row(sessions, measure(sessions)), flush=True)


if __name__ == "__main__":
    main()
