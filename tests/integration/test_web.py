"""The demo pages and the development-only token endpoint."""

from __future__ import annotations

import time

import httpx


def test_pages_and_bundle_are_served_with_a_strict_policy(stack) -> None:
    base = stack.http()
    for path, marker in (("/", 'data-page="picker"'), ("/d/notes", 'data-page="editor"')):
        response = httpx.get(base + path)
        assert response.status_code == 200
        assert marker in response.text
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(base + "/d/bad%20id").status_code == 404
    bundle = httpx.get(base + "/static/demo.js")
    assert bundle.status_code == 200
    assert bundle.headers["content-type"].startswith("text/javascript")
    assert len(bundle.content) > 10_000
    assert httpx.get(base + "/static/../settings.py").status_code == 404
    assert httpx.get(base + "/static/nope.js").status_code == 404


def test_gateway_never_mints_tokens_outside_development_mode(stack) -> None:
    base = stack.http()
    assert httpx.get(base + "/v1/dev/config").json() == {"dev_tokens": False}
    response = httpx.post(base + "/v1/dev/token", json={"name": "Mallory"})
    assert response.status_code == 404


def test_development_mode_mints_a_token_for_a_typed_name(stack_factory) -> None:
    stack = stack_factory(COLLAB_GATEWAY_DEV_TOKENS="true")
    base = stack.http()
    assert httpx.get(base + "/v1/dev/config").json() == {"dev_tokens": True}
    response = httpx.post(base + "/v1/dev/token", json={"name": "Ada <b>L</b>"})
    assert response.status_code == 200
    body = response.json()
    claims = stack.codec.verify(body["token"], now=time.time())
    assert claims.name == "Ada <b>L</b>"
    assert claims.sub.startswith("ada-b-l-b-")
    assert claims.doc == "*"
    assert httpx.post(base + "/v1/dev/token", json={"name": ""}).status_code == 422
    assert httpx.post(base + "/v1/dev/token", json={"name": "x" * 65}).status_code == 422
