"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import pytest

#: The Debian package of each external tool the tests run (scripts/test installs them).
PACKAGES = {
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "fiu-run": "fiu-utils",
    "fiu-ctrl": "fiu-utils",
    "faketime": "faketime",
    "strace": "strace",
    "redis-server": "redis-server",
}


@pytest.fixture
def tool() -> Callable[[str], str]:
    """``tool(name)``: the path of executable ``name`` on PATH.

    A missing tool fails the test when ``CI=true`` (CI installs it: scripts/test) and skips
    it elsewhere, naming the package to install.
    """

    def find(name: str) -> str:
        path = shutil.which(name)
        if path is None:
            reason = f"{name} not on PATH (Debian: apt-get install {PACKAGES.get(name, name)})"
            if os.environ.get("CI") == "true":
                pytest.fail(reason)
            pytest.skip(reason)
        return path

    return find
