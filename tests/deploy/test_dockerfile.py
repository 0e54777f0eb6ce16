"""The image: hadolint finds nothing, and the build context holds what the build copies."""

from __future__ import annotations

import fnmatch
import re

import pytest
from deploykit import ROOT, find_tool, run

DOCKERFILE = ROOT / "Dockerfile"


def test_hadolint_finds_nothing() -> None:
    hadolint = find_tool("hadolint")
    result = run([hadolint, "--failure-threshold", "style", str(DOCKERFILE)], check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def stages() -> dict[str, list[str]]:
    """Instruction lines per stage name (continuations joined)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM \S+ AS (\S+)$", line, re.IGNORECASE)
        if match:
            current = result.setdefault(match.group(1), [])
        current.append(line)
    return result


def test_runtime_stage() -> None:
    everything = stages()
    assert list(everything)[-1] == "runtime", "the runtime image must be the default target"
    runtime = everything["runtime"]
    assert "USER 10001:10001" in runtime
    assert 'ENTRYPOINT ["collab"]' in runtime
    assert 'CMD ["gateway"]' in runtime
    assert [line for line in runtime if line.startswith("COPY")] == [
        "COPY --from=build /opt/venv /opt/venv"
    ]
    base = everything["base"][0]
    assert re.match(r"FROM python:3\.11-slim", base)


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins, ``!`` re-includes."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            result = not negate
    return result


def test_build_context_holds_every_copied_path() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = {
        source
        for lines in stages().values()
        for line in lines
        if line.startswith("COPY") and "--from" not in line
        for source in line.split()[1:-1]
    }
    assert copied >= {"pyproject.toml", "services/", "clients/python/", "operator/"}
    for source in copied:
        assert (ROOT / source).exists(), source
        assert not ignored(source.rstrip("/"), patterns), f"{source} is excluded by .dockerignore"
    for package in ROOT.glob("services/collab_*/__init__.py"):
        assert not ignored(str(package.relative_to(ROOT)), patterns)
    assert ignored(".git/config", patterns)
    assert ignored(".venv/bin/python", patterns)
    assert ignored("tests/conftest.py", patterns)
    assert ignored("services/collab_core/__pycache__/ot.cpython-311.pyc", patterns)


@pytest.mark.parametrize("command", ["gateway", "transform", "presence", "operator"])
def test_container_commands_exist(command: str) -> None:
    """The chart runs `collab <command>`: each must be a sub-command of the CLI."""
    from collab_cli.main import build_parser

    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if a.dest == "command"]
    assert command in subparsers.choices  # type: ignore[attr-defined]
