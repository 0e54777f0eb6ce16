"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import pytest


@pytest.fixture
def tool() -> Callable[[str], str]:
    """``tool(name)``: the path of executable ``name`` on PATH.

    A missing tool fails the test when ``CI=true`` (CI installs it: scripts/test) and skips
    it elsewhere, naming the package to install.
    """

    def find(name: str) -> str:
        path = shutil.which(name)
        if path is None:
            reason = f"{name} not on PATH (Debian: apt-get install prometheus)"
            if os.environ.get("CI") == "true":
                pytest.fail(reason)
            pytest.skip(reason)
        return path

    return find
