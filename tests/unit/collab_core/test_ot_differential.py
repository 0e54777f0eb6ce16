"""Differential test of ``collab_core.ot`` against npm ``ot-text-unicode``.

Browser clients run that library unchanged (PROTOCOL.md, "Documents, versions, ops"), so
our results must be the same JSON as its, delete forms included. A seeded
``random.Random`` (not hypothesis) builds the whole batch, so one Node process, started
once, answers every case: ``tests/differential/ot_oracle.mjs``.

With ``CI=true`` a missing Node.js or ``tests/differential/node_modules`` fails the test;
locally ``npm ci`` installs the locked library on demand, and no Node.js skips it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from collab_core.ot import (
    Op,
    OpError,
    apply,
    check,
    compose,
    normalize,
    transform,
    transform_position,
)

pytestmark = pytest.mark.node

DIFFERENTIAL = Path(__file__).resolve().parents[2] / "differential"
ORACLE = DIFFERENTIAL / "ot_oracle.mjs"
LIBRARY = "ot-text-unicode"

SEED = 0x07_7E_47
CASES = {
    "apply": 700,
    "transform": 1200,
    "compose": 700,
    "normalize": 150,
    "transformPosition": 150,
    "checkOp": 200,
}

PIECES = ["a", "b", "Z", " ", "😀", "👍🏽", "e\u0301", "\u0301", "\r\n", "\n"]

Case = dict[str, Any]
Outcome = dict[str, Any]


# --- the oracle --------------------------------------------------------------------------


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1"}


def _unavailable(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"{reason}; with CI=true the differential OT test must run")
    pytest.skip(reason)


def _pinned_version() -> str:
    manifest = json.loads((DIFFERENTIAL / "package.json").read_text(encoding="utf-8"))
    return str(manifest["dependencies"][LIBRARY])


def _installed_version() -> str | None:
    manifest = DIFFERENTIAL / "node_modules" / LIBRARY / "package.json"
    if not manifest.is_file():
        return None
    return str(json.loads(manifest.read_text(encoding="utf-8"))["version"])


@pytest.fixture(scope="session")
def ot_oracle() -> Callable[[list[Case]], list[Outcome]]:
    """Return a function that runs a batch of cases through ``ot-text-unicode``."""
    node = shutil.which("node")
    if node is None:
        _unavailable("node is not on PATH")
    assert node is not None
    pinned = _pinned_version()
    if _installed_version() != pinned:
        if _in_ci():
            pytest.fail(
                f"tests/differential/node_modules lacks {LIBRARY} {pinned}: "
                "run `npm ci --no-audit --no-fund` in tests/differential"
            )
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip(f"npm is not on PATH to install {LIBRARY} into tests/differential")
        installed = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=DIFFERENTIAL,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if installed.returncode != 0:
            pytest.skip(f"npm ci failed in tests/differential: {installed.stderr[-2000:]}")
        if _installed_version() != pinned:
            pytest.fail(f"npm ci did not install {LIBRARY} {pinned}")

    def run(cases: list[Case]) -> list[Outcome]:
        done = subprocess.run(
            [node, str(ORACLE)],
            cwd=DIFFERENTIAL,
            input=json.dumps(cases),
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"ot_oracle.mjs failed:\n{done.stderr}"
        outcomes: list[Outcome] = json.loads(done.stdout)
        assert len(outcomes) == len(cases)
        return outcomes

    return run


# --- cases -------------------------------------------------------------------------------


def _document(rng: random.Random) -> str:
    if rng.random() < 0.1:
        return ""
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 10)))


def _insert(rng: random.Random) -> str:
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 3)))


def _raw_op(rng: random.Random, doc: str) -> Op:
    """A valid op that fits ``doc``, possibly with adjacent components of one kind."""
    op: Op = []
    pos = 0
    for _ in range(rng.randint(0, 7)):
        kind = rng.choice("sid")
        n = min(rng.randint(1, 4), len(doc) - pos)
        if kind == "i":
            op.append(_insert(rng))
        elif n == 0:
            continue
        elif kind == "s":
            op.append(n)
            pos += n
        else:
            op.append({"d": doc[pos : pos + n] if rng.random() < 0.5 else n})
            pos += n
    return op


def _checkop_form(op: Op) -> Op:
    """Merge adjacent skips and drop the trailing one, which ``checkOp`` rejects, but keep
    adjacent inserts and deletes, which it accepts."""
    out: Op = []
    for c in op:
        if out and type(c) is int and type(out[-1]) is int:
            out[-1] = out[-1] + c
        else:
            out.append(c)
    if out and type(out[-1]) is int:
        out.pop()
    return out


def _op(rng: random.Random, doc: str) -> Op:
    """An op as the server stores it (normalised), or now and then one in checkOp form."""
    op = _raw_op(rng, doc)
    return _checkop_form(op) if rng.random() < 0.3 else normalize(op)


# JSON values only; floats, booleans, extra keys and lone surrogates are left out because
# we reject them on purpose where checkOp lets them through (test_ot.py covers them).
_CHECKOP_COMPONENTS: list[Any] = [
    -1, 0, 1, 2, "", "x", "😀", "e\u0301",
    {"d": 0}, {"d": -1}, {"d": 2}, {"d": ""}, {"d": "ab"}, {"d": "😀"},
    None, [], [1], {}, {"x": 1}, {"d": None}, {"d": []},
]  # fmt: skip


def _checkop_case(rng: random.Random) -> Case:
    while True:
        if rng.random() < 0.05:
            return {"kind": "checkOp", "op": rng.choice([None, "ab", 1, {"d": 1}])}
        op = [rng.choice(_CHECKOP_COMPONENTS) for _ in range(rng.randint(0, 4))]
        # Adjacent and trailing skips are accepted here and rejected by checkOp.
        kinds = [type(c) for c in op]
        if kinds and kinds[-1] is int:
            continue
        if any(a is int and b is int for a, b in pairwise(kinds)):
            continue
        return {"kind": "checkOp", "op": op}


def _case(rng: random.Random, kind: str) -> Case:
    doc = _document(rng)
    if kind == "apply":
        if rng.random() < 0.05:
            # A skip past the end is an error in both (a delete past it is not, in JS).
            return {"kind": kind, "doc": doc, "op": [len(doc) + rng.randint(1, 3), "x"]}
        return {"kind": kind, "doc": doc, "op": _op(rng, doc)}
    if kind == "transform":
        side = rng.choice(["left", "right"])
        return {"kind": kind, "op": _op(rng, doc), "other": _op(rng, doc), "side": side}
    if kind == "compose":
        a = _op(rng, doc)
        return {"kind": kind, "a": a, "b": _op(rng, apply(doc, a))}
    if kind == "normalize":
        # Its input need not pass checkOp: trailing and adjacent skips are what it is for.
        return {"kind": kind, "op": _raw_op(rng, doc)}
    if kind == "transformPosition":
        return {"kind": kind, "pos": rng.randint(0, len(doc) + 2), "op": _op(rng, doc)}
    if kind == "checkOp":
        return _checkop_case(rng)
    raise AssertionError(kind)


def _ours(case: Case) -> Outcome:
    kind = case["kind"]
    try:
        if kind == "apply":
            value: Any = apply(case["doc"], case["op"])
        elif kind == "transform":
            value = transform(case["op"], case["other"], case["side"])
        elif kind == "compose":
            value = compose(case["a"], case["b"])
        elif kind == "normalize":
            value = normalize(case["op"])
        elif kind == "transformPosition":
            value = transform_position(case["pos"], case["op"])
        else:
            check(case["op"])
            value = None
    except OpError as e:
        return {"error": str(e)}
    return {"result": json.loads(json.dumps(value))}


def _agree(ours: Outcome, theirs: Outcome) -> bool:
    # Error messages differ between the two; that an op is refused is what must match.
    if "error" in ours or "error" in theirs:
        return "error" in ours and "error" in theirs
    return bool(ours == theirs)


@pytest.fixture(scope="module")
def verdicts(
    ot_oracle: Callable[[list[Case]], list[Outcome]],
) -> dict[str, list[tuple[Case, Outcome, Outcome]]]:
    rng = random.Random(SEED)
    cases = [_case(rng, kind) for kind, count in CASES.items() for _ in range(count)]
    theirs = ot_oracle(cases)
    out: dict[str, list[tuple[Case, Outcome, Outcome]]] = {kind: [] for kind in CASES}
    for case, outcome in zip(cases, theirs, strict=True):
        out[case["kind"]].append((case, _ours(case), outcome))
    return out


@pytest.mark.parametrize("kind", list(CASES))
def test_matches_ot_text_unicode(
    verdicts: dict[str, list[tuple[Case, Outcome, Outcome]]], kind: str
) -> None:
    checked = verdicts[kind]
    assert len(checked) == CASES[kind]
    mismatches = [
        f"{json.dumps(case, ensure_ascii=False)}\n  ours:   {json.dumps(ours, ensure_ascii=False)}"
        f"\n  theirs: {json.dumps(theirs, ensure_ascii=False)}"
        for case, ours, theirs in checked
        if not _agree(ours, theirs)
    ]
    assert not mismatches, f"{len(mismatches)} of {len(checked)} {kind} cases differ:\n" + (
        "\n".join(mismatches[:5])
    )


def test_cases_exercise_what_they_claim(
    verdicts: dict[str, list[tuple[Case, Outcome, Outcome]]],
) -> None:
    # Guards the generator: a batch that never hit these shapes would prove little.
    def ops(kind: str) -> list[Op]:
        keys = {"apply": ["op"], "transform": ["op", "other"], "compose": ["a", "b"]}[kind]
        return [case[k] for case, _, _ in verdicts[kind] for k in keys]

    every_op = ops("apply") + ops("transform") + ops("compose")
    deletes = [c["d"] for op in every_op for c in op if type(c) is dict]
    assert {type(d) for d in deletes} == {int, str}
    text = "".join(c for op in every_op for c in op if type(c) is str)
    text += "".join(d for d in deletes if type(d) is str)
    assert all(piece in text for piece in ["😀", "👍🏽", "e\u0301", "\r\n"])
    assert any(
        type(a) is type(b) and type(a) is not int for op in every_op for a, b in pairwise(op)
    ), "no op with adjacent inserts or deletes"
    assert any(case["doc"] == "" for case, _, _ in verdicts["apply"])
    overruns = [theirs for _, _, theirs in verdicts["apply"] if "error" in theirs]
    assert 0 < len(overruns) < CASES["apply"] // 10
    refused = [ours for _, ours, _ in verdicts["checkOp"] if "error" in ours]
    assert 0 < len(refused) < CASES["checkOp"]
