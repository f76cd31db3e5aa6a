"""`python -m soak [--profile full|ci] [--part NAME ...] [--out FILE]`: run the soak parts, print a line
per part, write the counts (bench/results/soak.json by default) and exit non-zero on any loss, double
answer, reverted fulfilment, unintended payment, reused authorization, payment without delivery, stall,
or a part that did less than its profile asks."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from bench import report
from soak.audit import GATED, Counts
from soak.parts import PARTS, PartResult
from soak.profile import PROFILES


def _line(r: PartResult) -> str:
    """One line: the part, how long, what it did, what it found, the verdict."""
    c = r.counts
    did = ", ".join(f"{k} {v}" for k, v in r.figures.items() if isinstance(v, int) and v)
    found = (f"lost {c.lost}, twice {c.fulfilled_twice}, reverted {c.failed_fulfil_txs}, "
             f"paid w/o delivery {c.paid_without_delivery}, reused {c.authorizations_reused}, "
             f"unintended {c.unintended_payments}, stalled {c.stalled_seconds:.0f} s; extra calls "
             f"{c.extra_model_calls}, skipped {c.skipped_responses}")
    verdict = "ok" if r.ok() else "FAILED: " + "; ".join(
        [*(f"{n} (e.g. {', '.join(c.examples.get(n, [])[:3])})" for n in c.failures()), *r.shortfalls,
         *([f"daemon exit {r.daemon_exit}"] if r.daemon_exit else [])])
    return f"{r.name:<16} {r.seconds:4.0f} s  {verdict}  [{did}] [{found}]"


def totals(results: list[PartResult]) -> dict[str, Any]:
    def total(key: str) -> int:
        return sum(int(r.figures.get(key, 0)) for r in results)

    figures: dict[str, Any] = {"kills": total("kills"), "reorgs": total("reorgs"),
                               "hostile_inputs": total("hostile_inputs"), "requests": total("requests")}
    for name in (*GATED, "extra_model_calls", "skipped_responses"):
        values = [getattr(r.counts, name) for r in results]
        figures[name] = max(values, default=0) if name == "stalled_seconds" else sum(values)
    figures["stalled_seconds"] = round(float(figures["stalled_seconds"]), 1)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--part", action="append", choices=sorted(PARTS), help="run only these (repeatable)")
    parser.add_argument("--out", type=Path, help="where to write the counts (default bench/results/soak.json)")
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--keep", type=Path, help="keep each part's daemon log, config and store under this directory")
    parser.add_argument("--jobs", type=int, default=1, help="parts run at once, each with its own chain and daemon")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    profile = PROFILES[args.profile]
    started = time.monotonic()
    results = []
    names = args.part or list(PARTS)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp, ProcessPoolExecutor(args.jobs) as pool:
        root = args.keep or Path(tmp)
        running = {}
        for i, name in enumerate(names):
            where = root / name
            where.mkdir(parents=True, exist_ok=True)
            running[pool.submit(PARTS[name], profile, where, args.seed + i)] = where
        for done in as_completed(running):
            try:
                result = done.result()
            except Exception as exc:  # a part that could not finish fails, and the others are still reported
                name = running[done].name
                result = PartResult(name, Counts(), shortfalls=[f"stopped by {type(exc).__name__}: {exc}"[:500]])
            print(_line(result), flush=True)
            results.append(result)
            if not result.ok():
                for log in sorted(running[done].rglob("daemon.log")):
                    lines = [line for line in log.read_text(errors="replace").splitlines() if "apscheduler" not in line]
                    print(f"--- the end of {log}", *lines[-25:], sep="\n", file=sys.stderr)
    results.sort(key=lambda r: list(PARTS).index(r.name) if r.name in PARTS else len(PARTS))
    figures = totals(results)
    figures["profile"] = profile.name
    figures["seconds"] = round(time.monotonic() - started)
    figures["parts"] = {r.name: {**r.figures, **{
        n: getattr(r.counts, n) for n in (*GATED, "extra_model_calls", "skipped_responses", "expired",
                                          "settlements")},
        "seconds": round(r.seconds), "ok": r.ok(), "shortfalls": r.shortfalls} for r in results}
    missed = [r.name for r in results if not r.ok()]
    targets = {name: 0 for name in GATED}
    path = report.write("soak", figures, targets, missed, path=args.out)
    print(f"soak ({profile.name}) {figures['seconds']} s: {figures['kills']} kills, {figures['reorgs']} reorgs, "
          f"{figures['hostile_inputs']} hostile inputs, {figures['requests']} requests; "
          f"{'all parts ok' if not missed else 'FAILED: ' + ', '.join(missed)}; wrote {path}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
