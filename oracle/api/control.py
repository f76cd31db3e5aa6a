"""What the HTTP API asks of the running daemon, and nothing more: the live state of each chain, the
probes readiness needs, and the operator's few actions. The daemon implements it; the API's tests can
hand it any object that does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ChainLive:
    """One chain as the daemon's running tasks see it now."""

    name: str
    chain_id: int
    head: int  # the newest block the intake has seen (0 before the first)
    cursor: int | None  # the last block the intake has read through
    halted: str  # why the chain takes no new work until a restart (a reorg deeper than max_reorg_depth)
    sending_paused: str  # why sending is held (low balance, gas budget spent), "" when it is not
    intake_paused: str  # why the operator paused the intake, "" when it is not
    rpc_errors: int  # calls the node did not answer since start
    ws_reconnects: int  # times the log subscription was re-opened since start
    signer: str
    low_balance: int  # wei: below this the signer takes no new work


class ActionRefused(Exception):
    """An operator action that cannot be done as asked; the message says why and what to do."""


class Control(Protocol):
    def chains(self) -> list[ChainLive]: ...

    async def node_answers(self, chain_id: int) -> str | None:
        """None when the chain's node answers now; otherwise why not."""

    async def signer_balance(self, chain_id: int) -> int:
        """The signer's balance on the chain now, wei (RpcError/RpcUnavailable when the node does not say)."""

    async def wallet_balances(self, chain_id: int) -> dict[str, int]:
        """The payment wallet's balance of each x402 asset paid on the chain, base units."""

    def store_writable(self) -> str | None: ...

    def breakers(self) -> dict[str, str]:
        """Each deployment's breaker: closed, open or half_open."""

    def pause_intake(self, chain_id: int, reason: str) -> None: ...

    def resume_intake(self, chain_id: int) -> None: ...

    def retry(self, key: str) -> str:
        """Send an unprofitable request's signed response again; the state it is now in (ActionRefused)."""

    async def reconcile(self) -> dict[str, int]:
        """Run the x402 reconciler now; its report (ActionRefused when x402 is not configured)."""
