"""The supervisor of a service's work loop, against a real Redis."""

from __future__ import annotations

import asyncio
from pathlib import Path

from collab_cli.redis_server import RedisServer
from collab_core.service import Supervisor, close, connect


async def test_work_that_fails_with_any_exception_is_restarted(tmp_path: Path) -> None:
    """A work loop that dies of an unexpected exception (not a Redis error) must not leave
    a live process that does nothing: it is restarted, and not ready meanwhile."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    redis = connect(server.url)
    runs = 0
    restarts = 0
    second_run = asyncio.Event()

    async def work() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("a client library in a bad state")
        second_run.set()
        await asyncio.Event().wait()

    def restarted() -> None:
        nonlocal restarts
        restarts += 1

    supervisor = Supervisor(redis, work, name="test", on_restart=restarted)
    task = asyncio.create_task(supervisor.run())
    try:
        async with asyncio.timeout(10):
            await second_run.wait()
        assert restarts == 1
        assert supervisor.ready
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await close(redis)
        server.stop()
