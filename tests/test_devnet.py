"""The local stack and `oracle dev`, as a newcomer runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from oracle.devnet.anvil import AnvilNotFound, find_anvil


def test_bad_anvil_path_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ANVIL", str(tmp_path / "nope"))
    with pytest.raises(AnvilNotFound, match="nope is not an executable"):
        find_anvil()


def test_oracle_dev_shows_a_request_fulfilled() -> None:
    done = subprocess.run([sys.executable, "-m", "oracle", "dev"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "requested    id 0x" in done.stdout
    assert "RiskSentinel.lastScore() = 87; ExampleVault.paused() = True" in done.stdout
