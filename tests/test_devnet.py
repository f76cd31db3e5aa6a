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


def test_oracle_dev_once_shows_requests_answered_by_the_daemon_and_exits() -> None:
    done = subprocess.run([sys.executable, "-m", "oracle", "dev", "--once"], capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "daemon       running" in done.stdout
    assert "RiskSentinel.lastScore() = " in done.stdout
    assert "  fulfilled  summary '" in done.stdout
    assert "-> status success, text 'answer" in done.stdout
