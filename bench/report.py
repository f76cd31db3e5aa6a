"""Writing a benchmark's figures, with the date and the machine they were measured on."""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}, {os.cpu_count()} cores, {system}, Python {platform.python_version()}"


def write(name: str, figures: dict[str, Any], targets: dict[str, Any], missed: list[str],
          path: Path | None = None) -> Path:
    """Write bench/results/<name>.json (or `path`); `missed` names the figures that did not meet their target."""
    path = path or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    report = {
        **figures,
        "targets": targets,
        "missed": missed,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
        "machine": machine(),
    }
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return path


def finish(name: str, figures: dict[str, Any], targets: dict[str, Any], missed: list[str]) -> int:
    """Write the results, print each figure (marking misses), and return the exit code."""
    path = write(name, figures, targets, missed)
    for key, value in figures.items():
        target = f"  (target {targets[key]})" if key in targets else ""
        shown = value if isinstance(value, (int, float, str)) else str(value)
        print(f"{key:<36} {shown:>10}{target}{'  MISSED' if key in missed else ''}")
    print(f"wrote {path}")
    return 1 if missed else 0
