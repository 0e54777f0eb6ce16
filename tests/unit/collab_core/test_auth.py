import base64
import json

import jwt
import pytest

from collab_core.auth import Claims, Role, TokenCodec, is_document_id
from collab_core.errors import CloseCode, ErrorCode, ProtocolError

SECRET = "s" * 64
NOW = 1_800_000_000.0


@pytest.fixture
def codec() -> TokenCodec:
    return TokenCodec(SECRET)


def _raw(payload: dict[str, object], *, key: str = SECRET, alg: str = "HS256") -> str:
    return jwt.encode(payload, key, algorithm=alg)


def _claims(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "sub": "u1",
        "name": "Ada",
        "doc": "notes",
        "role": "editor",
        "exp": int(NOW) + 60,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def _unsigned(payload: dict[str, object], alg: str = "none") -> str:
    def part(obj: object) -> str:
        raw = json.dumps(obj).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part({'alg': alg, 'typ': 'JWT'})}.{part(payload)}."


def _code(exc: pytest.ExceptionInfo[ProtocolError]) -> ErrorCode:
    return exc.value.code


def test_mint_then_verify_round_trips(codec: TokenCodec) -> None:
    token = codec.mint(sub="u1", name="Ada", doc="notes", role="viewer", now=NOW, ttl_seconds=5)
    assert codec.verify(token, now=NOW) == Claims(
        sub="u1", name="Ada", doc="notes", role=Role.VIEWER, exp=int(NOW) + 5
    )


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        TokenCodec("short")


@pytest.mark.parametrize("token", [None, "", 42, "abc", "a.b.c", "x" * 9000, ["t"]])
def test_missing_or_malformed_token_is_unauthorized(codec: TokenCodec, token: object) -> None:
    with pytest.raises(ProtocolError) as exc:
        codec.verify(token, now=NOW)
    assert _code(exc) is ErrorCode.UNAUTHORIZED
    assert exc.value.close == CloseCode.UNAUTHORIZED


def test_bad_signature_is_unauthorized(codec: TokenCodec) -> None:
    token = _raw(_claims(), key="k" * 40)
    with pytest.raises(ProtocolError) as exc:
        codec.verify(token, now=NOW)
    assert _code(exc) is ErrorCode.UNAUTHORIZED


@pytest.mark.parametrize("alg", ["none", "None", "HS512", "RS256"])
def test_algorithms_other_than_hs256_are_refused(codec: TokenCodec, alg: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        codec.verify(_unsigned(_claims(), alg=alg), now=NOW)
    assert _code(exc) is ErrorCode.UNAUTHORIZED


def test_hs512_signed_with_the_same_secret_is_refused(codec: TokenCodec) -> None:
    token = _raw(_claims(), alg="HS512")
    with pytest.raises(ProtocolError) as exc:
        codec.verify(token, now=NOW)
    assert _code(exc) is ErrorCode.UNAUTHORIZED


def test_expired_token_is_unauthorized(codec: TokenCodec) -> None:
    token = _raw(_claims(exp=int(NOW)))
    with pytest.raises(ProtocolError, match="expired"):
        codec.verify(token, now=NOW)
    assert codec.verify(token, now=NOW - 1).sub == "u1"


def test_leeway_accepts_a_token_just_past_its_exp_and_no_longer() -> None:
    lenient = TokenCodec(SECRET, leeway=30)
    token = _raw(_claims(exp=int(NOW)))
    claims = lenient.verify(token, now=NOW + 29.9)
    assert lenient.expires_at(claims) == NOW + 30
    with pytest.raises(ProtocolError, match="expired"):
        lenient.verify(token, now=NOW + 30)
    # An explicit leeway overrides the codec's.
    with pytest.raises(ProtocolError, match="expired"):
        lenient.verify(token, now=NOW + 1, leeway=0)


@pytest.mark.parametrize("leeway", [-1, 301])
def test_leeway_is_bounded(leeway: float) -> None:
    with pytest.raises(ValueError, match="leeway"):
        TokenCodec(SECRET, leeway=leeway)


@pytest.mark.parametrize(
    "overrides",
    [
        {"sub": None},
        {"sub": ""},
        {"sub": 7},
        {"name": None},
        {"name": ["Ada"]},
        {"doc": None},
        {"doc": "bad id!"},
        {"role": None},
        {"role": "admin"},
        {"role": "Editor"},
        {"exp": None},
        {"exp": "2000000000"},
        {"exp": 1.9e9},
        {"exp": True},
    ],
    ids=repr,
)
def test_missing_or_ill_typed_claims_are_unauthorized(
    codec: TokenCodec, overrides: dict[str, object]
) -> None:
    payload = _claims(**{k: v for k, v in overrides.items() if v is not None})
    for key, value in overrides.items():
        if value is None:
            payload.pop(key)
    with pytest.raises(ProtocolError) as exc:
        codec.verify(_raw(payload), now=NOW)
    assert _code(exc) is ErrorCode.UNAUTHORIZED


def test_token_for_another_document_is_forbidden_document(codec: TokenCodec) -> None:
    token = codec.mint(sub="u1", name="Ada", doc="notes", role="editor", now=NOW)
    assert codec.authorize(token, "notes", now=NOW).doc == "notes"
    with pytest.raises(ProtocolError) as exc:
        codec.authorize(token, "other", now=NOW)
    assert _code(exc) is ErrorCode.FORBIDDEN_DOCUMENT
    assert exc.value.close == CloseCode.FORBIDDEN_DOCUMENT


def test_wildcard_document_grants_every_document(codec: TokenCodec) -> None:
    token = codec.mint(sub="u1", name="Ada", doc="*", role="viewer", now=NOW)
    claims = codec.authorize(token, "anything", now=NOW)
    assert claims.allows("other")
    assert not claims.can_edit


def test_audience_is_enforced_when_configured() -> None:
    with_aud = TokenCodec(SECRET, audience="collab")
    without = TokenCodec(SECRET)
    token = with_aud.mint(sub="u1", name="Ada", doc="d", role="editor", now=NOW)
    assert with_aud.verify(token, now=NOW).sub == "u1"
    # A token scoped to an audience is not accepted where no audience is expected.
    with pytest.raises(ProtocolError):
        without.verify(token, now=NOW)
    with pytest.raises(ProtocolError):
        with_aud.verify(without.mint(sub="u", name="n", doc="d", role="editor", now=NOW), now=NOW)
    with pytest.raises(ProtocolError):
        with_aud.verify(_raw({**_claims(), "aud": "other"}), now=NOW)


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("notes", True),
        ("a.b-c_D9", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("", False),
        ("a/b", False),
        ("é", False),
        ("a b", False),
        ("notes\n", False),
    ],
)
def test_document_id_pattern(value: str, valid: bool) -> None:
    assert is_document_id(value) is valid
