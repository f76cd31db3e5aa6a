"""The daemon's overhead, throughput and memory on the local stack (anvil `--block-time 1`).

- overhead: one request every 200 ms, instant model, confirmation depth 0. Overhead is the time from
  the node first serving the block that holds a request (its newHeads notification) to the
  fulfillment transaction reaching the node's pool (its newPendingTransactions notification), both
  seen by this process on one clock.
- throughput: requests pre-signed by the load generator, offered at a fixed rate (30,000 at 1,000/s);
  requests fulfilled per second over the steady window (from the first fulfillment + 5 s to the last
  request offered).
- memory: the daemon's peak resident set while 10,000 requests wait (a slow model keeps them queued).
- API overhead: the overhead run, alternating the daemon with its HTTP API off and on (on: /metrics
  scraped every second, as Prometheus would, more often than it usually does); `api_overhead_ratio` is
  the median of the runs' overhead p50 with it on over the median with it off.

The daemon is measured against a floor (`bench/floor.py`: receive, decode, sign, batch, send, nothing
stored) on a chain of its own set up the same way: floor, daemon, floor again; the ratios are taken
against the mean of the two floor runs, since this machine's speed drifts between runs.

    python -m bench.daemon [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from eth_account import Account

from bench.report import finish
from oracle.devnet import LocalStack
from oracle.devnet.anvil import free_port
from oracle.devnet.gas import NOOP_CODE, NOOP_CONSUMER
from oracle.devnet.harness import DEV_MODEL, SIGNER_ENV, DaemonProcess, dev_config, write_config
from oracle.devnet.stack import StackSettings
from oracle.events import FULFILLED_TOPIC, REQUESTED_TOPIC, decode_fulfilled, decode_requested
from oracle.protocol import RequestParams, ResultSpec, ResultType

BATCH_MAX = 64
TARGETS = {"overhead_ratio": 2.0, "overhead_p99_ms": 100.0, "throughput_ratio": 0.5, "rss_mb": 200.0,
           "api_overhead_ratio": 1.05}
LIMITS = {"overhead_ratio": "max", "overhead_p99_ms": "max", "throughput_ratio": "min", "rss_mb": "max",
          "api_overhead_ratio": "max"}
API_PAIRS = 3
SCRAPE_SECONDS = 1.0


@dataclass
class Observed:
    heads: dict[int, float] = field(default_factory=dict)  # block number -> when this process saw it
    pending: dict[str, float] = field(default_factory=dict)  # tx hash -> when it reached the pool


async def _subscribe(url: str, kind: str, on: Callable[[Any], object], ready: asyncio.Event) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(url, max_msg_size=0) as ws:
        await ws.send_json({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": [kind]})
        async for message in ws:
            now = time.perf_counter()
            payload = json.loads(message.data)
            if payload.get("id") == 1:
                ready.set()
                continue
            on((now, payload["params"]["result"]))


def _model_server() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "oracle.devnet.model_server", "--port", str(port)],
                               stdout=subprocess.PIPE)
    assert process.stdout is not None
    process.stdout.readline()  # "listening on ..."
    return process, f"http://127.0.0.1:{port}/v1"


def _presign(stack: LocalStack, count: int) -> list[bytes]:
    """`count` request transactions from the bots key, signed before the clock starts."""
    oracle = stack.contract("AIOracle")
    now = stack.w3.eth.get_block("latest")["timestamp"]
    params = RequestParams(callback=NOOP_CONSUMER, callback_gas_limit=20_000, deadline=now + 3_000, max_tokens=16,
                           temperature=0, seed=0, model_spec=DEV_MODEL, prompt=b"risk score of the vault?",
                           result=ResultSpec(ResultType.UINT, min=0, max=100))
    fee = oracle.functions.quote(params.model_spec, params.max_tokens, params.callback_gas_limit).call()
    data = bytes.fromhex(oracle.encode_abi("request", args=[params.to_abi()])[2:])
    key = stack.keys.bots.private_key
    nonce = stack.w3.eth.get_transaction_count(stack.keys.bots.address)
    return [bytes(Account.sign_transaction({
        "type": 2, "chainId": stack.chain_id, "nonce": nonce + i, "to": oracle.address, "value": fee, "data": data,
        "gas": 200_000, "maxFeePerGas": 50 * 10**9, "maxPriorityFeePerGas": 10**9,
    }, key).raw_transaction) for i in range(count)]


async def _offer(url: str, raws: list[bytes], rate: float) -> float:
    """Send the raw transactions at `rate` per second; returns when the last was sent."""
    async with aiohttp.ClientSession() as session:
        start = time.perf_counter()
        pending: set[asyncio.Task[Any]] = set()
        for i, raw in enumerate(raws):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            body = {"jsonrpc": "2.0", "id": i, "method": "eth_sendRawTransaction", "params": ["0x" + raw.hex()]}
            task = asyncio.create_task(session.post(url, json=body))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
        return time.perf_counter()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _sample_rss(pid: int, peak: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(OSError):  # the process may have just exited
            peak[0] = max(peak[0], _rss_mb(pid))
        await asyncio.sleep(0.2)


class Bench:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self._runs = 0

    def name(self, what: str) -> str:
        """A name of its own for each run's files: a store left by an earlier run (another chain at the same
        addresses) would make a daemon take that chain's blocks as already read."""
        self._runs += 1
        return f"{what}-{self._runs}"

    def start(self, *, model_latency: float = 0.0) -> tuple[LocalStack, subprocess.Popen[bytes], str]:
        stack = LocalStack(StackSettings(block_time=1, anvil_args=("--gas-limit", "2000000000"))).start()
        stack.w3.provider.make_request("anvil_setCode", [NOOP_CONSUMER, NOOP_CODE])  # type: ignore[arg-type]
        model, url = _model_server() if model_latency == 0 else _slow_model(model_latency)
        return stack, model, url

    def runner(self, kind: str, stack: LocalStack, model_url: str, name: str) -> DaemonProcess | FloorProcess:
        """kind: "floor", "daemon" (the default config: the operator listener on, not scraped), "api-off"
        or "api-on" (the same daemon with no listener, or with the operator listener scraped)."""
        if kind == "floor":
            return FloorProcess(stack, BATCH_MAX)
        return self.daemon(stack, model_url, name, api=kind != "api-off")

    def daemon(self, stack: LocalStack, model_url: str, name: str, api: bool = True) -> DaemonProcess:
        config = dev_config(stack, model_url, self.tmp / f"{name}.sqlite", sweep_interval=2.0)
        config["chains"][0]["gas"]["batch_max"] = BATCH_MAX
        config["pipeline"]["concurrency"] = 256
        if not api:
            config["api"] = {"operator": {"enabled": False}}
        path = write_config(config, self.tmp / f"{name}.toml")
        return DaemonProcess(path, {SIGNER_ENV: stack.keys.signer.private_key.hex()})


class FloorProcess:
    """`python -m bench.floor` on the stack, started and stopped as the daemon is."""

    def __init__(self, stack: LocalStack, batch_max: int) -> None:
        self.args = [sys.executable, "-m", "bench.floor", "--rpc", stack.rpc_url, "--ws", stack.ws_url,
                     "--oracle", stack.addresses["AIOracle"], "--batch-max", str(batch_max)]
        self.env = {**os.environ, SIGNER_ENV: stack.keys.signer.private_key.hex()}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> FloorProcess:
        self.process = subprocess.Popen(self.args, env=self.env, stdout=subprocess.PIPE)
        return self

    def wait_ready(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        if b"floor running" not in self.process.stdout.readline():
            raise RuntimeError("the floor process did not start")

    def stop(self) -> int:
        assert self.process is not None
        self.process.terminate()
        return self.process.wait(10)


def _slow_model(latency: float) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "oracle.devnet.model_server", "--port", str(port),
                                "--latency", str(latency)], stdout=subprocess.PIPE)
    assert process.stdout is not None
    process.stdout.readline()
    return process, f"http://127.0.0.1:{port}/v1"


def _fulfillments(stack: LocalStack) -> tuple[dict[bytes, int], dict[bytes, str], dict[int, list[bytes]]]:
    """request id -> block it was requested in; request id -> fulfilling tx; block -> fulfilled ids."""
    address = stack.contract("AIOracle").address
    requested = {decode_requested(log).request_id: int(log["blockNumber"]) for log in stack.w3.eth.get_logs(
        {"address": address, "fromBlock": 0, "topics": ["0x" + REQUESTED_TOPIC.hex()]})}
    fulfilled_tx: dict[bytes, str] = {}
    by_block: dict[int, list[bytes]] = {}
    for log in stack.w3.eth.get_logs({"address": address, "fromBlock": 0,
                                      "topics": ["0x" + FULFILLED_TOPIC.hex()]}):
        rid = decode_fulfilled(log).request_id
        fulfilled_tx[rid] = "0x" + bytes(log["transactionHash"]).hex()
        by_block.setdefault(int(log["blockNumber"]), []).append(rid)
    return requested, fulfilled_tx, by_block


async def _scrape(url: str, scrapes: list[int]) -> None:
    """GET /metrics every SCRAPE_SECONDS until cancelled; counts the scrapes that answered 200."""
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(url) as reply:
                await reply.read()
                scrapes[0] += reply.status == 200
            await asyncio.sleep(SCRAPE_SECONDS)


async def overhead(bench: Bench, count: int, kind: str = "daemon") -> dict[str, float]:
    stack, model, url = bench.start()
    daemon = bench.runner(kind, stack, url, bench.name(f"overhead-{kind}")).start()
    seen = Observed()
    scrapes = [0]
    scraper: asyncio.Task[None] | None = None
    try:
        daemon.wait_ready()
        if kind == "api-on":
            assert isinstance(daemon, DaemonProcess)
            scraper = asyncio.create_task(_scrape(daemon.api_url() + "/metrics", scrapes))
        ready_heads, ready_pool = asyncio.Event(), asyncio.Event()
        heads = asyncio.create_task(_subscribe(stack.ws_url, "newHeads",
                                               lambda e: seen.heads.setdefault(int(e[1]["number"], 16), e[0]),
                                               ready_heads))
        pool = asyncio.create_task(_subscribe(stack.ws_url, "newPendingTransactions",
                                              lambda e: seen.pending.setdefault(e[1], e[0]), ready_pool))
        await ready_heads.wait()
        await ready_pool.wait()
        raws = _presign(stack, count)
        await _offer(stack.rpc_url, raws, rate=5.0)
        await asyncio.sleep(4.0)
        heads.cancel()
        pool.cancel()
        if scraper is not None:
            scraper.cancel()
        requested, fulfilled_tx, _ = _fulfillments(stack)
        overheads = [(seen.pending[fulfilled_tx[rid]] - seen.heads[block]) * 1000
                     for rid, block in requested.items()
                     if rid in fulfilled_tx and block in seen.heads and fulfilled_tx[rid] in seen.pending]
        missing = len(requested) - len(overheads)
        if missing:
            print(f"overhead: {missing} of {len(requested)} requests without both timestamps", file=sys.stderr)
        cuts = statistics.quantiles(overheads, n=100)
        figures = {"overhead_p50_ms": round(statistics.median(overheads), 2), "overhead_p99_ms": round(cuts[98], 2),
                   "overhead_samples": len(overheads)}
        if kind == "api-on":
            figures["scrapes"] = scrapes[0]
        return figures
    finally:
        daemon.stop()
        model.kill()
        stack.stop()


async def throughput(bench: Bench, count: int, rate: float, kind: str = "daemon") -> dict[str, float]:
    stack, model, url = bench.start()
    daemon = bench.runner(kind, stack, url, bench.name("throughput")).start()
    seen = Observed()
    peak = [0.0]
    try:
        daemon.wait_ready()
        assert daemon.process is not None
        raws = _presign(stack, count)
        ready = asyncio.Event()
        heads = asyncio.create_task(_subscribe(stack.ws_url, "newHeads",
                                               lambda e: seen.heads.setdefault(int(e[1]["number"], 16), e[0]),
                                               ready))
        await ready.wait()
        stop = asyncio.Event()
        sampler = asyncio.create_task(_sample_rss(daemon.process.pid, peak, stop))
        last_offered = await _offer(stack.rpc_url, raws, rate)
        deadline = time.perf_counter() + 120
        while time.perf_counter() < deadline:
            _, fulfilled, _ = _fulfillments(stack)
            if len(fulfilled) >= count:
                break
            await asyncio.sleep(2.0)
        stop.set()
        heads.cancel()
        await sampler
        _, fulfilled, by_block = _fulfillments(stack)
        times = sorted(seen.heads[b] for b, ids in by_block.items() for _ in ids if b in seen.heads)
        # a warm-up of 5 s (less in a short run: a fifth of the time requests were being offered)
        window_start = times[0] + min(5.0, max(0.0, (last_offered - times[0]) / 5))
        window_end = max(last_offered, window_start + 1.0)
        in_window = [t for t in times if window_start <= t <= window_end]
        return {"throughput_rps": round(len(in_window) / (window_end - window_start), 1),
                "throughput_fulfilled": len(fulfilled), "throughput_offered": count,
                "throughput_rss_peak_mb": round(peak[0], 1)}
    finally:
        daemon.stop()
        model.kill()
        stack.stop()


async def memory(bench: Bench, count: int) -> dict[str, float]:
    """Peak RSS with `count` requests waiting: offered while the daemon is down, then a slow model."""
    stack, model, url = bench.start(model_latency=2.0)
    daemon = bench.daemon(stack, url, bench.name("memory"))
    peak = [0.0]
    try:
        await _offer(stack.rpc_url, _presign(stack, count), rate=2_000)
        await asyncio.sleep(3.0)
        daemon.start()
        assert daemon.process is not None
        stop = asyncio.Event()
        sampler = asyncio.create_task(_sample_rss(daemon.process.pid, peak, stop))
        await asyncio.sleep(20.0)
        stop.set()
        await sampler
        return {"rss_mb": round(peak[0], 1), "rss_queued_requests": count}
    finally:
        daemon.stop()
        model.kill()
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run, not the targets)")
    parser.add_argument("--only", choices=["overhead", "throughput", "memory", "api"],
                        help="run one part, write nothing")
    args = parser.parse_args(argv)
    n_overhead, n_throughput, n_memory, n_api = (100, 3_000, 2_000, 60) if args.quick else (1_000, 30_000, 10_000, 300)
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        figures: dict[str, float] = {}
        if args.only in (None, "overhead"):
            figures.update(_against_floor(lambda kind: overhead(bench, n_overhead, kind), "overhead_p50_ms",
                                          "overhead_ratio", lambda ours, floor: ours / floor))
        if args.only in (None, "throughput"):
            figures.update(_against_floor(lambda kind: throughput(bench, n_throughput, 1_000.0, kind),
                                          "throughput_rps", "throughput_ratio", lambda ours, floor: ours / floor))
        if args.only in (None, "memory"):
            figures.update(asyncio.run(memory(bench, n_memory)))
        if args.only in (None, "api"):
            figures.update(api_overhead(bench, n_api))
    if args.only:
        print(figures)
        return 0
    missed = [k for k, kind in LIMITS.items()
              if (figures[k] > TARGETS[k] if kind == "max" else figures[k] < TARGETS[k])]
    return finish("daemon", figures, {k: f"{'<=' if v == 'max' else '>='} {TARGETS[k]}" for k, v in LIMITS.items()},
                  missed)


def api_overhead(bench: Bench, count: int) -> dict[str, Any]:
    """API_PAIRS pairs of overhead runs, the API off then on (scraped every second), each on a fresh chain."""
    off, on, scrapes = [], [], 0
    for _ in range(API_PAIRS):
        off.append(asyncio.run(overhead(bench, count, "api-off"))["overhead_p50_ms"])
        run = asyncio.run(overhead(bench, count, "api-on"))
        on.append(run["overhead_p50_ms"])
        scrapes += int(run["scrapes"])
    return {"api_overhead_ratio": round(statistics.median(on) / statistics.median(off), 3),
            "api_off_overhead_p50_ms": statistics.median(off), "api_on_overhead_p50_ms": statistics.median(on),
            "api_off_runs_p50_ms": off, "api_on_runs_p50_ms": on,
            "api_scrapes": scrapes, "api_requests_per_run": count}


def _against_floor(run: Callable[[str], Coroutine[Any, Any, dict[str, float]]], figure: str, ratio: str,
                   divide: Callable[[float, float], float]) -> dict[str, float]:
    """The floor, the daemon, the floor again, each on a fresh chain; the daemon's figures, the floor's
    (`floor_` + name, the mean of its two runs) and the ratio of `figure` to the floor's."""
    first = asyncio.run(run("floor"))
    ours = asyncio.run(run("daemon"))
    second = asyncio.run(run("floor"))
    floors = {f"floor_{k}": round((first[k] + second[k]) / 2, 2) for k in first}
    return {**ours, **floors, ratio: round(divide(ours[figure], floors[f"floor_{figure}"]), 3),
            f"floor_{figure}_first": first[figure], f"floor_{figure}_second": second[figure]}


if __name__ == "__main__":
    sys.exit(main())
