"""The ``collab`` command: ``collab up`` runs the whole system; ``collab token`` mints tokens."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time

import httpx

from collab_cli.redis_server import free_port
from collab_client.connection import CollabClient
from collab_core.auth import TokenCodec


def test_token_command_mints_a_verifiable_token() -> None:
    secret = "s" * 48
    result = subprocess.run(
        [sys.executable, "-m", "collab_cli", "token", "--user", "ada", "--doc", "notes",
         "--role", "viewer"],
        env={**os.environ, "COLLAB_JWT_SECRET": secret},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    claims = TokenCodec(secret).authorize(result.stdout.strip(), "notes", now=time.time())
    assert (claims.sub, claims.role.value) == ("ada", "viewer")


def test_token_command_without_a_secret_fails_clearly() -> None:
    env = {k: v for k, v in os.environ.items() if k != "COLLAB_JWT_SECRET"}
    result = subprocess.run(
        [sys.executable, "-m", "collab_cli", "token", "--user", "ada"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2
    assert "COLLAB_JWT_SECRET is not set" in result.stderr


async def test_collab_up_runs_everything_and_stops_on_ctrl_c(tmp_path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COLLAB_", "REDIS_URL"))}
    env["COLLAB_TRANSFORM_PORT"] = str(free_port())
    env["COLLAB_PRESENCE_PORT"] = str(free_port())
    process = subprocess.Popen(
        [sys.executable, "-m", "collab_cli", "up", "--port", str(port), "--data-dir",
         str(tmp_path / "data")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        banner = []
        assert process.stdout is not None
        while not any("Ctrl-C" in line for line in banner):
            line = process.stdout.readline()
            assert line, "".join(banner)
            banner.append(line)
        text = "".join(banner)
        assert f"http://127.0.0.1:{port}/" in text
        token = re.search(r"alice \(editor\)\s+(\S+)", text).group(1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
        url = f"ws://127.0.0.1:{port}/v1/collaborate/welcome"
        async with CollabClient(url, token) as client:
            await client.synced(timeout=20)
            client.insert(0, "hello from collab up")
            await client.synced()
        assert (tmp_path / "data" / "redis" / "appendonlydir").exists() or any(
            p.name.startswith("collab.aof") for p in (tmp_path / "data" / "redis").iterdir()
        )
        assert (tmp_path / "data" / "jwt-secret").exists()
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(30)
        if process.stdout is not None:
            process.stdout.close()
        assert code == 0
    # Everything it started is gone.
    leftovers = subprocess.run(
        ["pgrep", "-f", str(tmp_path / "data")], capture_output=True, text=True
    )
    assert leftovers.stdout.strip() == ""
