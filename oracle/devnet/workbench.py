"""`oracle dev` after the demo: everything stays up as a workbench for a developer's own contracts and
scripts. It prints what they need to point at it (RPC, chain id, every contract, the funded dev keys and
their roles, the generated config, the model servers), says `ready`, and keeps one live line of requests
seen / answered / failed until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from oracle.devnet.keys import DevKey
from oracle.store import Store

Say = Callable[[str], None]
LIVE_INTERVAL = 1.0
READY = "ready        the local stack is up; Ctrl-C stops everything"


@dataclass(frozen=True)
class WorkbenchInfo:
    rpc_url: str
    ws_url: str
    chain_id: int
    contracts: Mapping[str, str]
    keys: Sequence[DevKey]
    config_path: Path
    store_path: Path
    model_servers: Sequence[tuple[str, str]]  # (what it is, URL)
    api_urls: Mapping[str, str]  # the daemon's listeners: operator, public
    api_token_env: str
    api_token: str  # a token made for this run: the operator's mutating routes take it
    requester_env: str = "ORACLE_REQUESTER_KEY"
    bots: Sequence[tuple[str, str]] = ()  # (what it does, the command that runs it)
    gateway: bool = False  # the public listener serves the agents' paid gateway


def describe(info: WorkbenchInfo) -> list[str]:
    lines = [f"rpc          {info.rpc_url} (WebSocket {info.ws_url}), chain id {info.chain_id}"]
    for i, (name, address) in enumerate(info.contracts.items()):
        lines.append(f"{'contracts' if i == 0 else '':<13}{name:<22}{address}")
    lines.append("dev keys     anvil's public development keys, funded on this chain only:")
    for key in info.keys:
        lines.append(f"             {key.role:<20}{key.address}  0x{key.private_key.hex()}")
    lines.append(f"config       {info.config_path} (store {info.store_path}; removed when this stops)")
    for i, (what, url) in enumerate(info.model_servers):
        lines.append(f"{'models' if i == 0 else '':<13}{url}  {what}")
    if "operator" in info.api_urls:
        lines.append(f"operator     {info.api_urls['operator']}/  status page; /health /ready /metrics /v1/requests "
                     f"/v1/payments /v1/catalog /openapi.json")
        lines.append(f"             mutating routes take: Authorization: Bearer {info.api_token} "
                     f"({info.api_token_env} for this run)")
    if "public" in info.api_urls:
        lines.append(f"public       {info.api_urls['public']}/v1/receipts/HASH  receipts by the hash on-chain")
        if info.gateway:
            lines.append(f"gateway      {info.api_urls['public']}  /v1/chat/completions /v1/analyze /v1/models "
                         f"/v1/account/ADDRESS: paid per call over x402 in TestUSD (the agents key holds some)")
    for i, (what, command) in enumerate(info.bots):
        lines.append(f"{'bots' if i == 0 else '':<13}{what}:")
        lines.append(f"               {command}")
    if info.bots:
        lines.append("             (stop them before this: their configs and stores go when it stops)")
    agent = next((k for k in info.keys if k.role == "agents"), info.keys[-1])
    lines.append(f"try          {info.requester_env}=0x{agent.private_key.hex()} \\")
    lines.append(f"               {_oracle_command()} request --config {info.config_path} --prompt 'Is the sky blue?' "
                 f"--type bool")
    return lines


def _oracle_command() -> str:
    """How to run `oracle` from this environment: its console script beside this Python, when installed."""
    script = Path(sys.executable).parent / "oracle"
    return str(script) if script.exists() else f"{sys.executable} -m oracle"


def live_line(seen: int, answered: int, failed: int) -> str:
    return f"requests     seen {seen}, answered {answered}, failed {failed}"


async def stay_up(info: WorkbenchInfo, stop: asyncio.Event, say: Say, *, tty: bool | None = None) -> None:
    """Print the workbench's details, then the live count until `stop` is set."""
    for line in describe(info):
        say(line)
    say(READY)
    tty = sys.stdout.isatty() if tty is None else tty
    store = Store.open(info.store_path)
    shown = ""
    try:
        while not stop.is_set():
            line = live_line(*store.requests.outcomes(info.chain_id))
            if line != shown:
                if tty:
                    sys.stdout.write("\r" + line)
                    sys.stdout.flush()
                else:
                    say(line)
                shown = line
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), LIVE_INTERVAL)
    finally:
        store.close()
        if tty and shown:
            sys.stdout.write("\n")
        say("stopping     the daemon, the model servers, the facilitator and anvil")
