"""Parsing a gateway's load report (collab_operator.report)."""

from __future__ import annotations

import json

import pytest

from collab_operator.report import Room, parse

REPORT = {
    "gateway": "collab-gateway-7d9f-abcde",
    "connections": 12,
    "rooms": 2,
    "messages_per_second": 3.5,
    "largest_rooms": [{"doc": "notes", "connections": 10}, {"doc": "plan", "connections": 2}],
    "draining": False,
    "ts": 1_800_000_000.25,
}


def test_parses_what_the_gateway_writes() -> None:
    report = parse(json.dumps(REPORT).encode())
    assert report.gateway == "collab-gateway-7d9f-abcde"
    assert report.largest_rooms == (
        Room(doc="notes", connections=10),
        Room(doc="plan", connections=2),
    )
    assert report.ts == 1_800_000_000.25


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        json.dumps({**REPORT, "connections": -1}).encode(),
        json.dumps({k: v for k, v in REPORT.items() if k != "ts"}).encode(),
        json.dumps({**REPORT, "largest_rooms": [{"doc": "x"}]}).encode(),
    ],
)
def test_refuses_what_is_not_a_report(raw: bytes) -> None:
    with pytest.raises(ValueError, match="bad load report"):
        parse(raw)
