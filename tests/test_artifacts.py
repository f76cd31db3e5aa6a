"""The shipped artifacts are what the sources compile to today, and the wheel carries them."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "oracle" / "abi"


def _export_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("export_abi", ROOT / "contracts" / "export_abi.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_shipped_artifacts_are_fresh(tmp_path: Path) -> None:
    written = _export_module().export(tmp_path)
    names = sorted(p.name for p in written)
    assert names == sorted(p.name for p in SHIPPED.glob("*.json")), "artifact set changed: run `make abi`"
    stale = [n for n in names if (tmp_path / n).read_bytes() != (SHIPPED / n).read_bytes()]
    assert not stale, f"stale artifacts {stale}: run `make abi`"


@pytest.mark.slow
def test_wheel_contains_the_abi(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True)
    (wheel,) = tmp_path.glob("*.whl")
    contents = set(zipfile.ZipFile(wheel).namelist())
    for artifact in SHIPPED.glob("*.json"):
        assert f"oracle/abi/{artifact.name}" in contents
