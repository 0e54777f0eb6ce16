"""Operator settings: environment variables ``COLLAB_OPERATOR_*`` plus the shared ones.

``REDIS_URL`` names the Redis the gateways report to (``collab_core.settings``);
``POD_NAMESPACE`` (the chart sets it from the downward API) limits the operator to one
namespace, which a namespaced Role then suffices for; unset, it watches all namespaces.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import SettingsConfigDict

from collab_core.settings import ServiceSettings


class OperatorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="COLLAB_OPERATOR_")

    port: int = Field(8080, ge=1, le=65535, description="Liveness endpoint (kopf): /healthz.")
    metrics_port: int = Field(
        9100, ge=0, le=65535, description="Prometheus /metrics; 0 serves none."
    )
    namespace: str | None = Field(
        None,
        validation_alias=AliasChoices("POD_NAMESPACE", "COLLAB_OPERATOR_NAMESPACE"),
        description="Watch GatewayPools in this namespace only; unset: all namespaces.",
    )
    interval_seconds: float = Field(
        5.0, gt=0, le=300, description="How often each GatewayPool is reconciled."
    )
    retry_seconds: float = Field(
        10.0, gt=0, le=600, description="Retry delay after Redis or API errors."
    )

    @field_validator("namespace")
    @classmethod
    def _blank_is_all(cls, value: str | None) -> str | None:
        return value or None

    @property
    def liveness_endpoint(self) -> str:
        return f"http://{self.host}:{self.port}/healthz"
