"""A gateway's load report, as the gateway publishes it (``Gateway.report_load``).

Each gateway writes one JSON object every few seconds under
``collab_core.keys.gateway_load(<gateway id>)``, with a TTL, and its report time into the
sorted set ``collab_core.keys.GATEWAYS``. In Kubernetes the chart sets the gateway id to
the pod name, so ``gateway`` names the pod that serves the load.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

NonNegative = Annotated[int, msgspec.Meta(ge=0)]


class Room(msgspec.Struct, frozen=True):
    """One document open on a gateway and its number of connections there."""

    doc: str
    connections: NonNegative


class LoadReport(msgspec.Struct, frozen=True, kw_only=True):
    gateway: str
    connections: NonNegative
    rooms: NonNegative
    messages_per_second: Annotated[float, msgspec.Meta(ge=0)]
    #: The largest rooms, largest first; at most 20, so the tail is known only in sum.
    largest_rooms: tuple[Room, ...] = ()
    draining: bool = False
    #: Unix time of the report, by the gateway's clock.
    ts: float


_decode = msgspec.json.Decoder(LoadReport).decode


def parse(raw: bytes | str) -> LoadReport:
    """The report in ``raw``; ``ValueError`` if it is not a valid report."""
    try:
        return _decode(raw)
    except msgspec.DecodeError as exc:
        raise ValueError(f"bad load report: {exc}") from None
