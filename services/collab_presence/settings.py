"""presence settings: environment variables ``COLLAB_PRESENCE_*``."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from collab_core.settings import ServiceSettings


class PresenceSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="COLLAB_PRESENCE_")

    port: int = Field(8002, ge=0, le=65535)
    consumer: str = Field("presence", min_length=1, description="Consumer name (one replica).")
    flush_ms: int = Field(40, ge=1, le=5000, description="Cursor updates are coalesced this long.")
    expire_check_seconds: float = Field(
        5.0, gt=0, description="How often sessions of silent gateways are expired."
    )
