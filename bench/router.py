"""The router's own cost: one decision over a 200-deployment catalog, and a routed call against a bare one.

- decision_us_p50: `decide()` for a mix of specs (cheapest, fastest, best, an exact fallback list,
  ensemble:3, a capped spec with needs) over 200 deployments with a health snapshot for each.
- overhead_ms_p50: `router.answer()` minus a bare aiohttp POST of the same body to the same local
  server (OpenAI wire format), interleaved on one session, store writes excluded (the router is given
  a log that keeps nothing). What remains is deciding, building the call, parsing the reply, checking
  and encoding the typed answer, health and the receipt's notes.

    python -m bench.router [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import statistics
import subprocess
import sys
import time

import aiohttp

from bench.report import finish
from oracle.config import ModelDeployment, RouterSettings
from oracle.devnet.anvil import free_port
from oracle.protocol import RequestParams, ResultSpec, ResultType
from oracle.results import json_schema
from oracle.router import Catalog, ModelRouter, RouteRequest
from oracle.router.adapters import FORMATS, Call
from oracle.router.decision import DecisionInput, HealthPoint, HealthSnapshot, decide
from oracle.router.prompts import system_prompt, user_message
from oracle.store import Attempt

TARGETS = {"decision_us_p50": 100.0, "overhead_ms_p50": 0.3}
SPECS = ["cheapest", "fastest", "best", "m17-2026-01-01,m42-2026-01-01,m99-2026-01-01", "ensemble:3",
         "cheapest;max_price=2000;needs=json_schema+seed"]


def catalog_of(n: int, seed: int = 1) -> tuple[Catalog, dict[str, HealthPoint]]:
    rnd = random.Random(seed)
    deployments = []
    health = {}
    for i in range(n):
        caps = ["json_schema"] + (["seed"] if rnd.random() < 0.6 else []) + (["tools"] if rnd.random() < 0.5 else [])
        window = rnd.choice([8_192, 32_768, 128_000, 200_000, 1_000_000])
        deployments.append(ModelDeployment(
            id=f"d{i:03d}", provider=f"p{i % 23}", api=rnd.choice(["openai", "anthropic", "gemini"]),
            base_url="http://127.0.0.1:1", model=f"m{i % 120}-2026-01-01", payer="none",
            input_price=rnd.randrange(50_000, 15_000_000), output_price=rnd.randrange(100_000, 60_000_000),
            context_window=window, max_output=min(window, 16_384), capabilities=tuple(caps),
            data_policy=rnd.choice(["retained", "no_training", "zero_retention"]), quality=rnd.randrange(1, 11),
            expected_latency_ms=rnd.randrange(500, 20_000)))
        if rnd.random() < 0.8:
            p50 = rnd.randrange(200, 10_000)
            health[f"d{i:03d}"] = HealthPoint(p50, p50 * 2, rnd.randrange(0, 300_000), rnd.randrange(0, 200),
                                              "open" if rnd.random() < 0.03 else "closed")
    return Catalog(deployments), health


def bench_decisions(rounds: int) -> dict[str, float]:
    catalog, points = catalog_of(200)
    health = HealthSnapshot(points)  # as `Health.snapshot()` hands it to the router
    inputs = [DecisionInput(i.to_bytes(32, "big"), SPECS[i % len(SPECS)], ResultType.UINT, 2_000 + i % 5_000, 512,
                            5_000_000, 60_000) for i in range(rounds)]
    for inp in inputs[:200]:
        decide(inp, catalog, health)  # warm: the spec parse is cached, as it is in a running daemon
    samples = []
    gc.disable()
    try:
        for inp in inputs:
            started = time.perf_counter_ns()
            decide(inp, catalog, health)
            samples.append((time.perf_counter_ns() - started) / 1000)
    finally:
        gc.enable()
    samples.sort()
    return {"decision_us_p50": round(statistics.median(samples), 1),
            "decision_us_p99": round(samples[int(len(samples) * 0.99)], 1)}


class NullLog:
    """A route log that keeps nothing, so the figure is the router's, not SQLite's."""

    def start_attempt(self, request_key: str, attempt_id: int, deployment: str) -> None: ...

    def finish_attempt(self, a: Attempt, raw_body: bytes | None) -> None: ...

    def raw_response(self, sha256: str) -> bytes | None:
        return None

    def save_route_decision(self, request_key: str, catalog_version: str, body: str) -> None: ...

    def route_decision(self, request_key: str) -> tuple[str, str] | None:
        return None

    def save_catalog(self, version: str, body: str) -> None: ...

    def attempts(self, request_key: str) -> list[Attempt]:
        return []

    async def commit(self) -> None: ...


async def bench_overhead(calls: int) -> dict[str, float]:
    # The server runs in its own process, so it does not compete with the router for the GIL.
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "oracle.devnet.model_server", "--port", str(port)],
                              stdout=subprocess.PIPE, text=True, preexec_fn=lambda: _pin(1))
    try:
        assert server.stdout is not None and "listening" in server.stdout.readline()
        d = ModelDeployment(id="local", provider="local", api="openai", base_url=f"http://127.0.0.1:{port}/v1",
                            model="dev-model-2026-01-01", payer="none", input_price=150_000, output_price=600_000,
                            context_window=32_000, max_output=1_024, capabilities=("json_schema", "seed"))
        spec = ResultSpec(ResultType.UINT, min=0, max=100)
        prompt = "Rate the risk of this proposal from 0 to 100: transfer 5% of the treasury to a new multisig."
        params = RequestParams("0x" + "11" * 20, 100_000, 2**40, 256, 0, 7, "cheapest", prompt.encode(), spec)
        url, headers, body = FORMATS["openai"].request(d, Call(system_prompt(spec), user_message(prompt, spec),
                                                               json_schema(spec), 256, 0, 7, {}))
        async with aiohttp.ClientSession() as session:
            router = ModelRouter(Catalog([d]), session, NullLog(), RouterSettings())

            async def bare() -> float:
                started = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                return time.perf_counter() - started

            async def routed(n: int) -> float:
                request = RouteRequest(f"bench:{n}", n.to_bytes(32, "big"), "0x" + "22" * 20, params, prompt,
                                       params.hash(), 10**9)
                started = time.perf_counter()
                answer = await router.answer(request, time.time() + 60)
                elapsed = time.perf_counter() - started
                assert answer.result, answer.detail
                return elapsed

            for n in range(200):  # warm both paths and the connection pool
                await bare()
                await routed(-n - 1 + 2**64)
            plain, through = [], []
            for n in range(calls):
                plain.append(await bare())
                through.append(await routed(n))
    finally:
        server.terminate()
        server.wait()
    p50_bare, p50_routed = statistics.median(plain), statistics.median(through)
    return {"bare_call_ms_p50": round(p50_bare * 1000, 3), "routed_call_ms_p50": round(p50_routed * 1000, 3),
            "overhead_ms_p50": round((p50_routed - p50_bare) * 1000, 3)}


def _pin(cpu: int) -> None:
    """Keep a process on one CPU: unpinned, the scheduler moves it between cores and a run's figures
    swing by half with the cold caches. The router gets CPU 0 and the model server CPU 1 (if any)."""
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[min(cpu, len(cpus) - 1)]})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    args = parser.parse_args(argv)
    _pin(0)
    figures: dict[str, float] = {}
    figures |= bench_decisions(2_000 if args.quick else 20_000)
    figures |= asyncio.run(bench_overhead(300 if args.quick else 3_000))
    missed = [k for k, target in TARGETS.items() if figures[k] > target]
    return finish("router", figures, TARGETS, missed)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
