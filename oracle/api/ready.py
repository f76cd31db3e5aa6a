"""`GET /ready`: whether the daemon can do its work now, each check named with why it failed.

Checks: each chain's node answers; the store takes a write; each chain's intake is at most
`api.ready_max_lag` blocks behind the head; each signer's balance is at least its `low_balance`; no
chain is halted by a reorg deeper than `max_reorg_depth`. A paused intake is reported and is not a
failure (the operator asked for it)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from oracle.api.control import Control
from oracle.chain.rpc import RpcError, RpcUnavailable

CHECK_TIMEOUT = 5.0


@dataclass(frozen=True)
class Check:
    name: str  # e.g. "rpc:base", "store", "lag:base"
    ok: bool
    detail: str


async def readiness(control: Control, max_lag: int) -> list[Check]:
    checks: list[Check] = []
    error = control.store_writable()
    checks.append(Check("store", error is None, error or "takes writes"))
    for chain in control.chains():
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                down = await control.node_answers(chain.chain_id)
        except TimeoutError:
            down = f"no answer within {CHECK_TIMEOUT:.0f} s"
        checks.append(Check(f"rpc:{chain.name}", down is None, down or "the node answers"))
        if chain.cursor is None:
            checks.append(Check(f"lag:{chain.name}", False, "the intake has not read a block yet"))
        else:
            lag = max(0, chain.head - chain.cursor)
            checks.append(Check(f"lag:{chain.name}", lag <= max_lag,
                                f"{lag} blocks behind the head (at most {max_lag})"))
        if down is None:
            try:
                async with asyncio.timeout(CHECK_TIMEOUT):
                    balance = await control.signer_balance(chain.chain_id)
                checks.append(Check(f"signer_balance:{chain.name}", balance >= chain.low_balance,
                                    f"signer {chain.signer} holds {balance} wei (low_balance {chain.low_balance})"))
            except (RpcError, RpcUnavailable, TimeoutError) as exc:
                checks.append(Check(f"signer_balance:{chain.name}", False, f"not read: {exc or type(exc).__name__}"))
        checks.append(Check(f"reorg:{chain.name}", not chain.halted, chain.halted or "no deep reorg"))
        if chain.intake_paused:
            checks.append(Check(f"intake:{chain.name}", True, f"paused: {chain.intake_paused}"))
    return checks
