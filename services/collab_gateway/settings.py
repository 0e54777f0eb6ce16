"""Gateway settings: environment variables ``COLLAB_GATEWAY_*`` (plus the shared ones)."""

from __future__ import annotations

import secrets
import socket

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from collab_core.settings import TokenSettings


def _default_id() -> str:
    return f"{socket.gethostname()}-{secrets.token_hex(3)}"


class GatewaySettings(TokenSettings):
    model_config = SettingsConfigDict(env_prefix="COLLAB_GATEWAY_")

    gateway_id: str = Field(
        default_factory=_default_id,
        pattern=r"^[A-Za-z0-9._-]{1,100}$",
        description="Unique per process; names this gateway's inbox and load report.",
    )
    max_message_bytes: int = Field(262_144, ge=1024, description="Largest client frame.")
    messages_per_second: int = Field(100, ge=1, description="Client messages per second.")
    max_op_components: int = Field(10_000, ge=1)
    max_json_depth: int = Field(32, ge=4, le=1000)
    hello_timeout_seconds: float = Field(10.0, gt=0)
    heartbeat_ms: int = Field(20_000, ge=100, description="WebSocket ping interval.")
    send_queue_frames: int = Field(
        1024, ge=16, description="Frames queued per connection before it is cut off."
    )
    connections_per_user: int = Field(50, ge=1, description="Open connections per user here.")
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed to open WebSockets; '*' allows any. Same-origin "
        "requests and requests without Origin (non-browser clients) are always allowed.",
    )
    catchup_max_ops: int = Field(
        1000, ge=0, description="Resume with ops when at most this many are missing."
    )
    drain_seconds: float = Field(10.0, ge=0, description="Spread reconnects over this long.")
    load_report_seconds: float = Field(5.0, gt=0)
    dev_tokens: bool = Field(
        False, description="Mint tokens for any name on request. Local development only."
    )
