"""The soak suite's short profile, every part, as CI runs it: `python -m soak --profile ci` exits 0 and
its counts say it did what the profile asks (kills, reorgs, hostile inputs) and found nothing wrong."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from soak.audit import GATED
from soak.profile import CI


@pytest.mark.timeout(600)
def test_the_soak_suite_short_profile_finds_nothing_wrong(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    # two parts at a time, each with its own chain, model servers and daemon
    run = subprocess.run([sys.executable, "-m", "soak", "--profile", "ci", "--jobs", "2", "--out", str(out)],
                         capture_output=True, text=True, timeout=580)
    assert run.returncode == 0, run.stdout + run.stderr[-6000:]
    figures = json.loads(out.read_text())
    assert figures["kills"] >= CI.kills and figures["reorgs"] >= 2 * CI.reorgs
    assert figures["hostile_inputs"] >= 50
    assert all(figures[name] == 0 for name in GATED), figures
    assert all(part["ok"] for part in figures["parts"].values())
    print(run.stdout)
