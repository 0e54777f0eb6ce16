"""Access tokens: HS256 JWTs naming a user, a document and a role (PROTOCOL.md, "Connecting").

Claims: ``sub`` (user id), ``name`` (display name), ``doc`` (a document id or ``"*"``),
``role`` (``"editor"`` or ``"viewer"``), ``exp`` (expiry, seconds since the epoch) and,
when the deployment sets one, ``aud``. Only HS256 is accepted: a token whose header names
``none`` or any other algorithm is refused before its claims are read.

Pure apart from the secret: the caller passes ``now``, so expiry is decided here without
reading the clock.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

import jwt

from collab_core.errors import ErrorCode, ProtocolError

ALGORITHM = "HS256"
#: RFC 7518 section 3.2: an HS256 key must have at least as many bits as the hash output.
MIN_SECRET_BYTES = 32
MAX_TOKEN_CHARS = 8192
#: Largest accepted expiry leeway: more is not clock skew but a longer token lifetime.
MAX_LEEWAY_SECONDS = 300
ANY_DOCUMENT = "*"

_DOCUMENT_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def is_document_id(value: str) -> bool:
    """True if ``value`` is a valid document id (PROTOCOL.md: ``^[A-Za-z0-9._-]{1,128}$``)."""
    return _DOCUMENT_ID.fullmatch(value) is not None


class Role(enum.StrEnum):
    EDITOR = "editor"
    VIEWER = "viewer"


@dataclass(frozen=True, slots=True)
class Claims:
    """The verified claims of a token."""

    sub: str
    name: str
    doc: str
    role: Role
    exp: int

    def allows(self, document_id: str) -> bool:
        return self.doc == ANY_DOCUMENT or self.doc == document_id

    @property
    def can_edit(self) -> bool:
        return self.role is Role.EDITOR


def _unauthorized(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.UNAUTHORIZED, message)


def _string_claim(payload: dict[str, Any], name: str, max_chars: int) -> str:
    value = payload.get(name)
    if type(value) is not str or not value or len(value) > max_chars:
        raise _unauthorized(f"claim {name!r} must be a non-empty string of at most {max_chars}")
    return value


class TokenCodec:
    """Mints and verifies tokens with one shared secret (and optional audience)."""

    def __init__(
        self, secret: str | bytes, *, audience: str | None = None, leeway: float = 0.0
    ) -> None:
        key = secret.encode() if isinstance(secret, str) else secret
        if len(key) < MIN_SECRET_BYTES:
            raise ValueError(f"the token secret must be at least {MIN_SECRET_BYTES} bytes")
        if not 0 <= leeway <= MAX_LEEWAY_SECONDS:
            raise ValueError(f"the expiry leeway must be 0 to {MAX_LEEWAY_SECONDS} seconds")
        self._key = key
        self._audience = audience
        #: Seconds a token stays valid past its ``exp``, for clock skew between the issuer
        #: and this process (RFC 7519 section 4.1.4 allows "a small leeway").
        self.leeway = leeway

    def mint(
        self,
        *,
        sub: str,
        name: str,
        doc: str,
        role: Role | str,
        now: float,
        ttl_seconds: int = 3600,
    ) -> str:
        """Return a signed token valid for ``ttl_seconds`` from ``now``."""
        claims: dict[str, Any] = {
            "sub": sub,
            "name": name,
            "doc": doc,
            "role": Role(role).value,
            "exp": int(now) + ttl_seconds,
        }
        if self._audience is not None:
            claims["aud"] = self._audience
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def verify(self, token: object, *, now: float, leeway: float | None = None) -> Claims:
        """Return the token's claims, or raise ``ProtocolError(unauthorized)``.

        Checks the signature (HS256 only), every claim's presence and type, the role's
        value, the audience when one is configured, and expiry against ``now``. It does
        not check the document: call :meth:`authorize` for that.
        """
        if type(token) is not str or not token or len(token) > MAX_TOKEN_CHARS:
            raise _unauthorized("token missing or malformed")
        try:
            payload = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                # Expiry is checked below against the caller's ``now``.
                options={"verify_exp": False, "require": ["exp"]},
            )
        except jwt.InvalidTokenError as exc:
            raise _unauthorized(f"invalid token: {str(exc).lower()}") from None
        exp = payload.get("exp")
        if type(exp) is not int:
            raise _unauthorized("claim 'exp' must be an integer")
        if exp + (self.leeway if leeway is None else leeway) <= now:
            raise _unauthorized("token expired")
        role = payload.get("role")
        if role not in (Role.EDITOR.value, Role.VIEWER.value):
            raise _unauthorized("claim 'role' must be 'editor' or 'viewer'")
        doc = _string_claim(payload, "doc", 128)
        if doc != ANY_DOCUMENT and not is_document_id(doc):
            raise _unauthorized("claim 'doc' must be a document id or '*'")
        return Claims(
            sub=_string_claim(payload, "sub", 256),
            name=_string_claim(payload, "name", 128),
            doc=doc,
            role=Role(role),
            exp=exp,
        )

    def expires_at(self, claims: Claims) -> float:
        """When a connection authorized by ``claims`` must end (its ``exp`` plus leeway)."""
        return claims.exp + self.leeway

    def authorize(self, token: object, document_id: str, *, now: float) -> Claims:
        """Verify ``token`` and check that it grants ``document_id``.

        Raises ``ProtocolError`` with ``unauthorized`` (bad token) or
        ``forbidden_document`` (a valid token for another document).
        """
        claims = self.verify(token, now=now)
        if not claims.allows(document_id):
            raise ProtocolError(
                ErrorCode.FORBIDDEN_DOCUMENT, "token does not grant access to this document"
            )
        return claims
