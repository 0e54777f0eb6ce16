"""presence settings: environment variables ``COLLAB_PRESENCE_*``."""

from __future__ import annotations

from pydantic import Field, model_validator
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
    lease_ms: int = Field(
        10_000,
        ge=500,
        le=600_000,
        description="A shard's lease outlives a killed owner by this long (renewed 3x as "
        "often): how long presence of its documents pauses before another process takes it.",
    )
    partitions: int = Field(
        1,
        ge=1,
        le=1024,
        description="Presence replicas sharing the work: each owns the ingress shards n with "
        "n % partitions == partition, so every document's roster lives in one replica.",
    )
    partition: int = Field(0, ge=0, description="This replica's partition, 0 to partitions - 1.")

    @model_validator(mode="after")
    def _partition_exists(self) -> PresenceSettings:
        if self.partition >= self.partitions:
            raise ValueError("partition must be below partitions")
        if self.partitions > self.ingress_shards:
            raise ValueError("partitions must not exceed ingress_shards (a partition needs one)")
        return self
