"""edit-transform settings: environment variables ``COLLAB_TRANSFORM_*``."""

from __future__ import annotations

import os
import socket

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from collab_core.settings import ServiceSettings


def _default_consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class TransformSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="COLLAB_TRANSFORM_")

    port: int = Field(8001, ge=0, le=65535)
    consumer: str = Field(
        default_factory=_default_consumer,
        min_length=1,
        description="Consumer name in the ingress group; stable across restarts of one replica.",
    )
    max_document_chars: int = Field(
        1_048_576, ge=1, description="Largest document, in code points."
    )
    snapshot_every: int = Field(100, ge=1, description="Store the full text every N versions.")
    batch: int = Field(100, ge=1, le=10_000, description="Entries read per XREADGROUP.")
    claim_idle_ms: int = Field(
        10_000, ge=100, description="Take over another consumer's entry after it idled this long."
    )
    wait_replicas: int = Field(
        0,
        ge=0,
        le=16,
        description="Replicas that must have a commit (Redis WAIT) before anyone sees or is "
        "acknowledged for it; 0: as soon as the primary has it. For Redis with replicas and "
        "failover (Cluster, Sentinel).",
    )
    wait_timeout_ms: int = Field(
        1000, ge=1, le=60_000, description="Longest wait for those replicas; then visible anyway."
    )
    fault: str | None = Field(
        None,
        pattern=r"^((crash|stop)_(after_read|before_commit|after_commit|before_ack)"
        r":[1-9][0-9]{0,8}|(crash|raise)_on_id:.{1,64})$",
        description="Test hook only (collab_transform.worker.FaultHook): crash or stop the "
        "process the n-th time it reaches a point, or crash or raise on every delivery of "
        "one op id. Never set in production.",
    )
