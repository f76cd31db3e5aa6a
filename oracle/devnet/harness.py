"""Running the real daemon against the local stack: its config, and the daemon as a child process.

    with LocalStack() as stack, ModelServer().start() as model:   # (ModelServer: start()/stop())
        path = write_config(dev_config(stack, model.base_url, tmp / "oracle.sqlite"), tmp / "config.toml")
        daemon = DaemonProcess(path, env={"ORACLE_SIGNER_KEY": stack.keys.signer.private_key.hex()}).start()
        ...
        daemon.kill()      # SIGKILL, for crash tests; daemon.stop() for a graceful SIGTERM
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from oracle.devnet.stack import LocalStack

SIGNER_ENV = "ORACLE_SIGNER_KEY"
PAYMENT_ENV = "ORACLE_PAYMENT_KEY"
DEV_MODEL = "dev-model-2026-01-01"
PAID_MODEL = "dev-paid-model-2026-01-01"


def dev_config(stack: LocalStack, model_base_url: str, store_path: Path, *, rpc_url: str | None = None,
               ws_url: str | None = None, confirmations: int = 0, **chain_overrides: Any) -> dict[str, Any]:
    """A config for the daemon on the local stack: one chain, one local model, the dev signer key."""
    chain: dict[str, Any] = {
        "name": "local", "chain_id": stack.chain_id, "rpc_url": rpc_url or stack.rpc_url,
        "ws_url": ws_url or stack.ws_url, "oracle": stack.addresses["AIOracle"], "confirmations": confirmations,
        "sweep_interval": 0.5, "native_price_micro_usd": 3_000 * 10**6,
        "gas": {"max_fee_per_gas": 100 * 10**9, "priority_fee": 10**9, "daily_budget": 100 * 10**18,
                "low_balance": 10**16, "replace_after": 10.0},
    }
    chain.update(chain_overrides)
    return {
        "store": {"path": str(store_path)},
        "signer": {"key_env": SIGNER_ENV},
        "chains": [chain],
        "models": [dev_model(model_base_url)],
        "pipeline": {"concurrency": 64, "deadline_margin": 5.0},
        "api": {"operator": {"port": 0}},  # any free port: the daemon logs the URL (DaemonProcess.api_url)
    }


def dev_model(base_url: str) -> dict[str, Any]:
    """The local model server's deployment (oracle.devnet.model_server). A small model: its 4,096-token
    window is smaller than the largest prompt the chain allows."""
    return {"id": "local", "provider": "local", "api": "openai", "base_url": base_url, "model": DEV_MODEL,
            "payer": "none", "input_price": 150_000, "output_price": 600_000, "context_window": 4_096,
            "max_output": 1_024, "capabilities": ["json_schema", "seed"], "timeout": 10.0}


def paid_model(stack: LocalStack, base_url: str, price: int, model: str = PAID_MODEL) -> dict[str, Any]:
    """A deployment behind the local x402 paywall, paid per call in TestUSD to the owner's address."""
    return {"id": "paid", "provider": "paid-local", "api": "openai", "base_url": base_url, "model": model,
            "payer": "x402", "call_price": price, "context_window": 4_096, "max_output": 1_024,
            "capabilities": ["json_schema", "seed"], "timeout": 10.0,
            "x402": {"network": f"eip155:{stack.chain_id}", "asset": stack.addresses["TestUSD"],
                     "pay_to": stack.keys.owner.address}}


def x402_section(stack: LocalStack, **overrides: Any) -> dict[str, Any]:
    """The daemon's [x402] table for the local stack: the dev payment wallet paying on the local chain."""
    section: dict[str, Any] = {
        "wallet": {"key_env": PAYMENT_ENV},
        "networks": [{"network": f"eip155:{stack.chain_id}", "rpc_url": stack.rpc_url}],
        "max_payment": 100_000, "max_validity_seconds": 300,
        "budget": {"total": 10**9, "per_provider": 10**9, "per_requester": 10**9},
    }
    section.update(overrides)
    return section


def gateway_section(stack: LocalStack, facilitator_url: str, **overrides: Any) -> dict[str, Any]:
    """The daemon's [gateway] table for the local stack: agents pay in TestUSD to the owner's address,
    through the local facilitator."""
    section: dict[str, Any] = {
        "network": f"eip155:{stack.chain_id}", "rpc_url": stack.rpc_url, "asset": stack.addresses["TestUSD"],
        "asset_name": "Test USD", "asset_version": "2", "pay_to": stack.keys.owner.address,
        "facilitator_url": facilitator_url, "price": 1_000, "margin_percent": 20,
    }
    section.update(overrides)
    return section


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):  # an inline table
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _toml_table(prefix: str, table: Mapping[str, Any], out: list[str], array: bool = False) -> None:
    out.append(f"[[{prefix}]]" if array else f"[{prefix}]")
    nested = []
    for k, v in table.items():
        if v is None:
            continue
        if isinstance(v, dict):
            nested.append((k, v))
        else:
            out.append(f"{k} = {_toml_value(v)}")
    for k, v in nested:
        _toml_table(f"{prefix}.{k}", v, out)
    out.append("")


def write_config(config: Mapping[str, Any], path: Path) -> Path:
    """Write a config dict (tables, arrays of tables, scalars) as TOML."""
    out: list[str] = []
    for key, value in config.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                _toml_table(key, item, out, array=True)
        elif isinstance(value, dict):
            _toml_table(key, value, out)
        else:
            out.insert(0, f"{key} = {_toml_value(value)}")
    path.write_text("\n".join(out))
    return path


class DaemonProcess:
    """`python -m oracle run --config ...` as a child process, its output in a log file."""

    def __init__(self, config_path: Path, env: Mapping[str, str], log_path: Path | None = None,
                 args: Sequence[str] = ()) -> None:
        self.config_path = config_path
        self.args = list(args)  # more `oracle run` options, e.g. ["--log-level", "debug"]
        self.env = {**os.environ, **env}
        self.log_path = log_path or config_path.with_suffix(".log")
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._log_mark = 0  # where this start's output begins in the log

    def start(self) -> DaemonProcess:
        log = self.log_path.open("ab")
        self._log_mark = log.tell()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "oracle", "run", "--config", str(self.config_path), *self.args],
            stdout=log, stderr=subprocess.STDOUT, env=self.env,
        )
        log.close()
        self.starts += 1
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until this start of the daemon is running (it logs "oracle running" once per start; a start
        killed before it got there logs nothing)."""
        wait_until(lambda: self.running() or not self.alive(), timeout,
                   interval=0.02, what="the daemon to start")
        if not self.alive():
            raise RuntimeError(f"the daemon exited while starting:\n{self.log()[-3000:]}")

    def api_url(self, listener: str = "operator") -> str:
        """The base URL this start's listener logged (the daemon must be running)."""
        found = re.findall(rb"%s API on (http://\S+)" % listener.encode(), self._output())
        if not found:
            raise RuntimeError(f"the daemon logged no {listener} API URL:\n{self.log()[-3000:]}")
        return str(found[-1].decode())

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as in a crash."""
        if self.process is not None and self.alive():
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM once it is up (a daemon still importing has no handler yet), then wait; the exit code."""
        if self.process is None:
            return 0
        if self.alive():
            with contextlib.suppress(TimeoutError, RuntimeError):
                self.wait_ready(timeout)
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def running(self) -> bool:
        """Whether this start got as far as running (a start killed before it logs nothing)."""
        return b"oracle running" in self._output()

    def _output(self) -> bytes:
        """What this start has written so far."""
        with self.log_path.open("rb") as log:
            log.seek(self._log_mark)
            return log.read()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def wait_until(predicate: Any, timeout: float, interval: float = 0.1, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


async def until(predicate: Any, timeout: float, interval: float = 0.01, what: str = "condition") -> None:
    """`wait_until` inside an event loop: the loop keeps running (the awaited call goes on meanwhile)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(interval)
