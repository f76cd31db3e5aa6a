"""Headless Chromium for tests that load a page as a browser does: the DOM after parsing, and a
screenshot."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

TIMEOUT = 60.0


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError("headless Chromium is needed and neither `chromium` nor `chromium-browser` is on PATH: "
                         "make test installs it: apt-get install chromium")


def _run(url: str, *flags: str) -> subprocess.CompletedProcess[str]:
    # A profile of its own per run: Chromium refuses to share one between processes.
    with tempfile.TemporaryDirectory(prefix="oracle-chromium-") as profile:
        done = subprocess.run(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
             f"--user-data-dir={profile}", *flags, url], capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, f"chromium exited {done.returncode}: {done.stderr[-2000:]}"
    return done


def dump_dom(url: str) -> str:
    """The document as Chromium has parsed and laid it out, serialised."""
    return _run(url, "--dump-dom").stdout


def screenshot(url: str, path: Path, width: int = 1280, height: int = 1600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    _run(url, f"--screenshot={path.resolve()}", f"--window-size={width},{height}")
    return path
