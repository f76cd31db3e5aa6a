"""The agents' gateway paid per call over x402, on the local stack (anvil with a short block time, TestUSD,
the local facilitator and model server, each in a process of its own; the daemon as a child process).

- overhead: one chat body, sent paid (a fresh payment, signed before the clock starts) to the daemon's
  public listener and to the floor (`bench/gateway_floor.py`: the x402 SDK's resource server on aiohttp
  in front of the same model server and facilitator; it decodes, verifies, forwards, answers). Sequential
  calls alternating between the two (which goes first swaps every pair), so drift hits both alike;
  `overhead_ratio` is the gateway's p50 over the floor's.
- throughput: 64 calls in flight from several payers, every payment pre-signed; the 200s answered per
  second over the window. Then the wait until every paid call's transfer is on-chain: Transfer events
  from the payers to pay_to, counted and summed against what the answers say was charged. The floor's
  throughput under the same load is measured too (shorter), to show what the facilitator, the model
  server and anvil allow on this machine.
- when a target is missed, a short throughput run with the daemon under cProfile: its top costs go
  into `notes`.

    python -m bench.gateway [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from eth_utils import keccak
from web3 import Web3
from x402.http.utils import decode_payment_required_header, encode_payment_signature_header
from x402.mechanisms.evm.exact.client import ExactEvmScheme
from x402.schemas import PaymentPayload, PaymentRequired

from bench.report import finish
from oracle.devnet import LocalStack
from oracle.devnet.anvil import free_port
from oracle.devnet.harness import (
    DEV_MODEL,
    SIGNER_ENV,
    DaemonProcess,
    dev_config,
    dev_model,
    gateway_section,
    write_config,
)
from oracle.devnet.keys import DevKey, anvil_key
from oracle.devnet.stack import StackSettings
from oracle.x402.signer import WalletSigner

TARGETS = {"overhead_ratio": 1.5, "paid_calls_per_s": 200.0}
LIMITS = {"overhead_ratio": "max", "paid_calls_per_s": "min"}
BLOCK_TIME = 0.25  # seconds: automine slows as the chain grows (TOOLCHAIN.md), and settlements wait on blocks
IN_FLIGHT = 64
PAYERS = 8
FIRST_PAYER = 30  # anvil key indices from here: apart from the stack's roles and the tests' payers
FACILITATOR_ENV = "BENCH_FACILITATOR_KEY"
TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
BODY = json.dumps({"model": DEV_MODEL, "max_tokens": 64,
                   "messages": [{"role": "user", "content": "What moved the ETH price in the last hour?"}]}).encode()
JSON = {"Content-Type": "application/json"}


@dataclass
class Target:
    """A paid chat endpoint, with its 402's requirements and a way to sign for them."""

    url: str
    required: PaymentRequired
    schemes: dict[str, ExactEvmScheme] = field(default_factory=dict)

    def sign(self, payer: DevKey) -> str:
        scheme = self.schemes.get(payer.address)
        if scheme is None:
            scheme = self.schemes[payer.address] = ExactEvmScheme(WalletSigner(payer.private_key))
        requirements = self.required.accepts[0]
        inner = scheme.create_payment_payload(requirements)
        return encode_payment_signature_header(PaymentPayload(payload=inner, accepted=requirements,
                                                              resource=self.required.resource))


def _process(args: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """A child process that prints `listening on URL ...` once it serves; (process, URL)."""
    process = subprocess.Popen(args, stdout=subprocess.PIPE, env={**os.environ, **(env or {})})
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    if "listening on" not in line:
        process.kill()
        raise RuntimeError(f"{args[2]} did not start: {line!r}")
    return process, line.split("listening on ", 1)[1].split()[0]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Stack:
    """anvil, the facilitator, the model server, the daemon and the floor, started and stopped together."""

    def __init__(self, tmp: Path, profile_to: Path | None = None) -> None:
        self.tmp = tmp
        self.profile_to = profile_to
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.daemon: DaemonProcess | None = None

    def start(self) -> Stack:
        self.chain = LocalStack(StackSettings(block_time=BLOCK_TIME, anvil_args=("--gas-limit", "2000000000"))).start()
        try:
            return self._start_servers()
        except BaseException:
            self.stop()
            raise

    def _start_servers(self) -> Stack:
        chain = self.chain
        network = f"eip155:{chain.chain_id}"
        self.procs["facilitator"], facilitator = _process(
            [sys.executable, "-m", "oracle", "facilitator", "--rpc-url", chain.rpc_url, "--key-env", FACILITATOR_ENV,
             "--network", network], {FACILITATOR_ENV: chain.keys.facilitator.private_key.hex()})
        self.procs["model"], model = _process([sys.executable, "-m", "oracle.devnet.model_server",
                                               "--port", str(free_port())])
        config = dev_config(chain, model, self.tmp / "oracle.sqlite")
        config["models"] = [dev_model(model)]
        config["api"] = {"operator": {"port": 0}, "public": {"enabled": True, "port": 0}}
        # limits far above the load: they must not refuse a call here
        config["gateway"] = gateway_section(chain, facilitator, rate_per_minute=10**6, daily_cap=10**15)
        path = write_config(config, self.tmp / "config.toml")
        args: list[str] = []
        self.daemon = (ProfiledDaemon(path, {SIGNER_ENV: chain.keys.signer.private_key.hex()}, self.profile_to, args)
                       if self.profile_to else DaemonProcess(path, {SIGNER_ENV: chain.keys.signer.private_key.hex()},
                                                              args=args)).start()
        self.daemon.wait_ready(60)
        assert self.daemon is not None
        self.gateway_url = self.daemon.api_url("public") + "/v1/chat/completions"
        required = decode_payment_required_header(_get_402(self.gateway_url))
        assert isinstance(required, PaymentRequired)
        amount = required.accepts[0].amount
        self.procs["floor"], floor = _process(
            [sys.executable, "-m", "bench.gateway_floor", "--facilitator", facilitator, "--model", model,
             "--network", network, "--asset", chain.addresses["TestUSD"], "--pay-to", chain.keys.owner.address,
             "--price", amount])
        self.floor_url = floor + "/v1/chat/completions"
        return self

    def pids(self) -> dict[str, int]:
        assert self.daemon is not None and self.daemon.process is not None
        assert self.chain.anvil._process is not None
        return {"daemon": self.daemon.process.pid, "anvil": self.chain.anvil._process.pid,
                **{name: p.pid for name, p in self.procs.items()}, "client": os.getpid()}

    def payers(self, first: int, count: int, usd: int) -> list[DevKey]:
        token = self.chain.contract("TestUSD")
        keys = [DevKey(f"payer {i}", anvil_key(i)) for i in range(first, first + count)]
        for key in keys:
            self.chain.transact(token.functions.mint(key.address, usd), self.chain.keys.owner)
        return keys

    def transfers(self, payers: list[DevKey], from_block: int) -> list[int]:
        """Amounts the payers paid pay_to since `from_block`, from the token's Transfer events."""
        logs = self.chain.w3.eth.get_logs({
            "address": Web3.to_checksum_address(self.chain.addresses["TestUSD"]),
            "fromBlock": from_block, "toBlock": "latest",
            "topics": [TRANSFER_TOPIC, ["0x" + bytes(12).hex() + p.address[2:].lower() for p in payers],
                       "0x" + bytes(12).hex() + self.chain.keys.owner.address[2:].lower()]})
        return [int.from_bytes(bytes(log["data"]), "big") for log in logs]

    def stop(self) -> int:
        code = self.daemon.stop(60) if self.daemon is not None else 0
        for process in self.procs.values():
            process.terminate()
            process.wait(10)
        self.chain.stop()
        return code


class ProfiledDaemon(DaemonProcess):
    """The daemon under cProfile: its stats are written to `stats` when it exits (SIGTERM)."""

    def __init__(self, config_path: Path, env: dict[str, str], stats: Path, args: list[str]) -> None:
        super().__init__(config_path, env, args=args)
        self.stats = stats

    def start(self) -> ProfiledDaemon:
        log = self.log_path.open("ab")
        self._log_mark = log.tell()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cProfile", "-o", str(self.stats), "-m", "oracle", "run", "--config",
             str(self.config_path), *self.args], stdout=log, stderr=subprocess.STDOUT, env=self.env)
        log.close()
        self.starts += 1
        return self


def _get_402(url: str) -> str:
    try:
        urllib.request.urlopen(urllib.request.Request(url, BODY, JSON), timeout=30)
    except urllib.error.HTTPError as e:
        assert e.code == 402, e.read()
        return str(e.headers["PAYMENT-REQUIRED"])
    raise RuntimeError(f"{url} answered an unpaid call")


async def _target(session: aiohttp.ClientSession, url: str) -> Target:
    async with session.post(url, data=BODY, headers=JSON) as reply:
        assert reply.status == 402, await reply.text()
        required = decode_payment_required_header(reply.headers["PAYMENT-REQUIRED"])
    assert isinstance(required, PaymentRequired)
    return Target(url, required)


async def _paid(session: aiohttp.ClientSession, url: str, header: str) -> tuple[int, bytes]:
    async with session.post(url, data=BODY, headers={**JSON, "PAYMENT-SIGNATURE": header}) as reply:
        return reply.status, await reply.read()


# ------------------------------------------------------------------------------------------- overhead

async def overhead(stack: Stack, payer: DevKey, calls: int, warmup: int) -> dict[str, Any]:
    """Sequential paid calls alternating gateway and floor; each timed from a signed payment to the answer."""
    samples: dict[str, list[float]] = {"gateway": [], "floor": []}
    async with aiohttp.ClientSession() as session:
        targets = {"gateway": await _target(session, stack.gateway_url),
                   "floor": await _target(session, stack.floor_url)}
        for i in range(warmup + calls):
            for name in ("gateway", "floor") if i % 2 == 0 else ("floor", "gateway"):
                header = targets[name].sign(payer)
                started = time.perf_counter()
                status, body = await _paid(session, targets[name].url, header)
                elapsed = (time.perf_counter() - started) * 1000
                if status != 200:
                    raise RuntimeError(f"{name} answered {status}: {body[:300]!r}")
                if i >= warmup:
                    samples[name].append(elapsed)
    gateway, floor = (statistics.median(samples[k]) for k in ("gateway", "floor"))
    return {"gateway_ms_p50": round(gateway, 2), "floor_ms_p50": round(floor, 2),
            "gateway_ms_p99": round(statistics.quantiles(samples["gateway"], n=100)[98], 2),
            "floor_ms_p99": round(statistics.quantiles(samples["floor"], n=100)[98], 2),
            "overhead_ms_p50": round(gateway - floor, 2), "overhead_ratio": round(gateway / floor, 3),
            "overhead_calls_each": calls}


# ------------------------------------------------------------------------------------------- throughput

@dataclass
class Load:
    answered: list[float] = field(default_factory=list)  # when each 200 came back
    charged: int = 0  # what the 200s say was paid
    refused: dict[int, int] = field(default_factory=dict)  # status -> count
    first_refusal: str = ""


async def load(target_url: str, headers: Iterator[str], seconds: float, warmup: float,
               gateway: bool) -> tuple[Load, float, float]:
    """IN_FLIGHT workers sending pre-signed paid calls for warmup + seconds; (load, window start, window end)."""
    seen = Load()
    start = time.perf_counter()
    stop_at = start + warmup + seconds
    connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker() -> None:
            for header in headers:
                if time.perf_counter() >= stop_at:
                    return
                status, body = await _paid(session, target_url, header)
                if status == 200:
                    seen.answered.append(time.perf_counter())
                    if gateway:
                        seen.charged += int(json.loads(body)["oracle"]["paid"])
                else:
                    seen.refused[status] = seen.refused.get(status, 0) + 1
                    seen.first_refusal = seen.first_refusal or body[:300].decode(errors="replace")

        async with asyncio.TaskGroup() as group:
            for _ in range(IN_FLIGHT):
                group.create_task(worker())
    return seen, start + warmup, stop_at


def presign(target: Target, payers: list[DevKey], count: int) -> list[str]:
    """`count` payments, round robin over the payers, in the order they will be used (so each is as
    fresh as the window allows when it is sent)."""
    return [target.sign(payer) for payer, _ in zip(itertools.cycle(payers), range(count), strict=False)]


async def throughput(stack: Stack, payers: list[DevKey], seconds: float, warmup: float,
                     floor_seconds: float) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        gateway = await _target(session, stack.gateway_url)
        floor = await _target(session, stack.floor_url)
    figures: dict[str, Any] = {}
    if floor_seconds:
        floor_run, begin, end = await load(floor.url, iter(presign(floor, payers, int((floor_seconds + warmup) * 800))),
                                           floor_seconds, warmup, gateway=False)
        figures["floor_calls_per_s"] = round(sum(begin <= t <= end for t in floor_run.answered) / (end - begin), 1)
    from_block = stack.chain.w3.eth.block_number
    headers = presign(gateway, payers, int((seconds + warmup) * 600))
    pids = stack.pids()
    cpu_before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
    run, begin, end = await load(gateway.url, iter(headers), seconds, warmup, gateway=True)
    cpu = {name: _cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    last_answer = max(run.answered)
    paid = len(run.answered)
    # every answered call's transfer on-chain: as many transfers as 200s, summing to what was charged
    deadline = time.perf_counter() + 300
    transfers = stack.transfers(payers, from_block)
    while len(transfers) < paid and time.perf_counter() < deadline:
        await asyncio.sleep(0.5)
        transfers = stack.transfers(payers, from_block)
    caught_up = time.perf_counter()
    await asyncio.sleep(2 * BLOCK_TIME + 1)  # nothing more may come: a call refused must not have been settled
    transfers = stack.transfers(payers, from_block)
    figures.update({
        "paid_calls_per_s": round(sum(begin <= t <= end for t in run.answered) / (end - begin), 1),
        "paid_calls": paid, "refused_calls": run.refused, "window_s": seconds,
        "settled_all": len(transfers) == paid and sum(transfers) == run.charged,
        "settled_transfers": len(transfers), "settled_sum": sum(transfers), "charged_sum": run.charged,
        "settle_catch_up_s": round(max(0.0, caught_up - last_answer), 2),
        # where the machine's time went during the load: cores busy, and CPU per paid call
        "cpu_cores_during_load": {name: round(t / (end - begin + warmup), 2) for name, t in cpu.items()},
        "cpu_ms_per_paid_call": {name: round(t * 1000 / paid, 2) for name, t in cpu.items()},
    })
    if run.first_refusal:
        figures["first_refusal"] = run.first_refusal
    return figures


# ------------------------------------------------------------------------------------------- profile

def top_costs(stats_path: Path, count: int = 12) -> list[str]:
    """The daemon's functions with the most time of their own, and the cumulative cost of a few of ours."""
    stats = pstats.Stats(str(stats_path), stream=io.StringIO())
    rows = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for _, _, tt, _, _ in rows.values())
    idle = sum(v[2] for k, v in rows.items() if k[2] == "<method 'poll' of 'select.epoll' objects>")
    own = sorted(((k, v) for k, v in rows.items() if k[2] != "<method 'poll' of 'select.epoll' objects>"),
                 key=lambda kv: kv[1][2], reverse=True)[:count]
    notes = [f"daemon under cProfile: {total:.1f} s profiled, {idle / total * 100:.0f}% of it idle in epoll; "
             f"top own time:"]
    for (file, line, name), (_, calls, tt, ct, _) in own:
        notes.append(f"{tt / total * 100:.1f}% own ({ct / total * 100:.1f}% cum) {name} "
                     f"{_short(file)}:{line} x{calls}")
    ours = [(k, v) for k, v in rows.items() if "/oracle/" in k[0] and k[2] in {
        "admit", "deliver", "_settle", "_balance_covers", "answer", "_paid", "commit", "claim", "chat",
        "verify_payment", "_limits", "spent_since"}]
    ours.sort(key=lambda kv: kv[1][3], reverse=True)
    notes.append("cumulative, ours:")
    for (file, line, name), (_, calls, _, ct, _) in ours[:count]:
        notes.append(f"{ct / total * 100:.1f}% cum {name} {_short(file)}:{line} x{calls}")
    return notes


def _short(file: str) -> str:
    for mark in ("/oracle/", "/site-packages/", "/lib/python3"):
        if mark in file:
            return file.split(mark, 1)[1]
    return file


# ------------------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer calls, a 10 s window (a smoke run)")
    parser.add_argument("--only", choices=["overhead", "throughput", "profile"], help="run one part, write nothing")
    args = parser.parse_args(argv)
    calls, warmup_calls, seconds, floor_seconds = (100, 20, 10.0, 5.0) if args.quick else (200, 50, 60.0, 20.0)
    figures: dict[str, Any] = {"block_time_s": BLOCK_TIME, "in_flight": IN_FLIGHT, "payers": PAYERS}
    notes: list[str] = [f"anvil mines a block every {BLOCK_TIME} s (not automine)"]
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "overhead", "throughput"):
            stack = _fresh(Path(tmp), "run")
            try:
                latency_payer, *payers = stack.payers(FIRST_PAYER, PAYERS + 1, 10**15)
                if args.only in (None, "overhead"):
                    figures.update(asyncio.run(overhead(stack, latency_payer, calls, warmup_calls)))
                if args.only in (None, "throughput"):
                    figures.update(asyncio.run(throughput(stack, payers, seconds, 3.0, floor_seconds)))
            finally:
                code = stack.stop()
                if code != 0 and stack.daemon is not None:
                    print(f"the daemon exited with {code}:\n{stack.daemon.log()[-3000:]}", file=sys.stderr)
        missed = [k for k, kind in LIMITS.items() if k in figures
                  and (figures[k] > TARGETS[k] if kind == "max" else figures[k] < TARGETS[k])]
        if (missed and not args.only) or args.only == "profile":
            stats = Path(tmp) / "daemon.prof"
            stack = _fresh(Path(tmp), "profile", stats)
            try:
                payers = stack.payers(FIRST_PAYER + 1, PAYERS, 10**15)
                profiled = asyncio.run(throughput(stack, payers, 10.0, 2.0, 0.0))
                notes.append(f"profiled run: {profiled['paid_calls_per_s']} paid calls/s under cProfile")
            finally:
                stack.stop()
            notes += top_costs(stats)
    figures["notes"] = notes
    if args.only:
        print(json.dumps(figures, indent=2))
        return 0
    if not figures.get("settled_all", False):
        missed.append("settled_all")
    return finish("gateway", figures, {k: f"{'<=' if v == 'max' else '>='} {TARGETS[k]}" for k, v in LIMITS.items()}
                  | {"settled_all": True}, missed)


def _fresh(tmp: Path, name: str, profile_to: Path | None = None) -> Stack:
    where = tmp / name
    where.mkdir()
    return Stack(where, profile_to).start()


if __name__ == "__main__":
    sys.exit(main())
