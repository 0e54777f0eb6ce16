"""Micro-benchmark of the core: OT apply / transform / compose and message decoding.

Run: ``.venv/bin/python -m bench.micro`` (add ``--quick`` for a smoke run).

Prints, per operation, the median and p99 time of one call measured over repeated
batches (``time.perf_counter_ns``; each sample is a batch divided by its size, so the
timer's own cost is amortised). The numbers are the baseline the services build on.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from functools import partial

from collab_core import ot, protocol


def _samples(fn: Callable[[], object], batch: int, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for _ in range(batch):
            fn()
        out.append((time.perf_counter_ns() - start) / batch / 1000.0)
    return out


def _row(name: str, samples: list[float]) -> str:
    samples.sort()
    p50 = statistics.median(samples)
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return f"| {name:<44} | {p50:>10.2f} | {p99:>10.2f} |"


def _document(size: int, rng: random.Random) -> str:
    words = ["lorem", "ipsum", "dolor", "sit", "amet", "😀", "e\u0301", "\r\n"]
    parts: list[str] = []
    n = 0
    while n < size:
        w = rng.choice(words)
        parts.append(w)
        parts.append(" ")
        n += len(w) + 1
    return "".join(parts)[:size]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds; a smoke run")
    args = parser.parse_args(argv)
    rounds = 5 if args.quick else 50
    rng = random.Random(7)

    rows: list[str] = []
    # Mixed text with emoji is stored by CPython as 4 bytes per code point; ASCII as 1.
    for size, ascii_only in (
        (1_000, False),
        (100_000, False),
        (1_000_000, False),
        (1_000_000, True),
    ):
        doc = _document(size, rng)
        kind = "ASCII" if ascii_only else "mixed"
        if ascii_only:
            doc = doc.encode("ascii", "replace").decode()
        mid = size // 2
        op: ot.Op = [mid, "hello", {"d": 3}]
        batch = max(1, 200_000 // size) if not args.quick else 1
        rows.append(
            _row(
                f"apply small op to {size // 1000} KB {kind} document",
                _samples(partial(ot.apply, doc, op), batch, rounds),
            )
        )

    typing_a: ot.Op = [1200, "x"]
    typing_b: ot.Op = [1180, {"d": 2}, "word"]
    batch = 200 if args.quick else 5000
    rows.append(
        _row(
            "transform typing op vs typing op",
            _samples(lambda: ot.transform(typing_a, typing_b, "right"), batch, rounds),
        )
    )
    rows.append(
        _row(
            "compose two typing ops",
            _samples(lambda: ot.compose(typing_a, [1201, "y"]), batch, rounds),
        )
    )
    many: ot.Op = []
    for i in range(50):
        many += [10, f"w{i}", {"d": 1}]
    rows.append(
        _row(
            "transform 150-component op vs typing op",
            _samples(lambda: ot.transform(many, typing_b, "left"), batch // 10 or 1, rounds),
        )
    )

    frame = b'{"type":"op","id":"c1-17","v":57,"op":[12,"x"]}'
    rows.append(
        _row(
            "decode + validate a typical op message",
            _samples(lambda: protocol.decode_client(frame), batch, rounds),
        )
    )
    ack = protocol.Ack(id="c1-17", v=61)
    rows.append(_row("encode an ack", _samples(lambda: protocol.encode(ack), batch, rounds)))

    print("| operation                                    | p50 (µs)   | p99 (µs)   |")
    print("| -------------------------------------------- | ---------- | ---------- |")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
