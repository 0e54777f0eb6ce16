"""Settings shared by every service, read once from the environment at start-up.

Each service subclasses :class:`ServiceSettings` with its own prefix
(``COLLAB_GATEWAY_``, ``COLLAB_TRANSFORM_``, ``COLLAB_PRESENCE_``). A few settings are
shared by every process of a deployment and so have one fixed name: ``REDIS_URL``,
``COLLAB_JWT_SECRET``, ``COLLAB_INGRESS_SHARDS``. A bad value fails start-up with an
error that names the variable.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", env_nested_delimiter="__", frozen=True)

    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "COLLAB_REDIS_URL"),
        description="Redis server (redis:// or rediss://, or unix:// for a socket).",
    )
    ingress_shards: int = Field(
        4,
        ge=1,
        le=1024,
        validation_alias="COLLAB_INGRESS_SHARDS",
        description="Number of op and presence ingress streams; same in every process.",
    )
    host: str = Field("0.0.0.0", description="Address of the HTTP listener.")
    port: int = Field(8000, ge=0, le=65535, description="Port of the HTTP listener.")
    log_level: str = Field("info", description="Python logging level.")


class TokenSettings(ServiceSettings):
    """Settings of a service that verifies tokens."""

    jwt_secret: SecretStr = Field(
        validation_alias="COLLAB_JWT_SECRET",
        description="HS256 secret for access tokens, at least 32 bytes.",
    )
    jwt_audience: str | None = Field(
        None,
        validation_alias="COLLAB_JWT_AUDIENCE",
        description="When set, tokens must carry this 'aud'.",
    )
    jwt_leeway_seconds: float = Field(
        0.0,
        ge=0,
        le=300,
        validation_alias="COLLAB_JWT_LEEWAY_SECONDS",
        description="Seconds a token is still accepted after its 'exp': allowance for clock "
        "skew between the token issuer and the gateways.",
    )
