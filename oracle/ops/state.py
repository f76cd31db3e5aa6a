"""What an `AIOracle` on a chain is set to: read from its views, after checking it is one.

    state = await read_state(rpc, chain)     # OpsError: no code there, or not an oracle
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

from eth_abi.exceptions import DecodingError
from eth_utils import to_checksum_address

from oracle.chain.rpc import ChainClient, RpcError
from oracle.config import ChainSettings
from oracle.ops import OpsError
from oracle.ops.calls import ORACLE, view
from oracle.protocol import PolicyClass

Limits = tuple[int, ...]  # the contract's Limits struct, in its field order
Schedule = tuple[int, int, int]  # (baseFee, perCallbackGas, perOutputToken), wei
NO_ADDRESS = "0x0000000000000000000000000000000000000000"
SEEN_TIMEOUT = 60.0  # seconds for a node to show what another one mined
SEEN_POLL = 0.25

_FIX = "correct the `oracle` line of this chain in the config, or delete it to deploy a new oracle with `oracle deploy`"


@dataclass(frozen=True)
class OracleState:
    address: str
    owner: str
    pending_owner: str | None
    paused: bool
    limits: Limits
    fees: dict[PolicyClass, Schedule]


async def has_code(rpc: ChainClient, address: str) -> bool:
    return await rpc.call("eth_getCode", [address, "latest"]) not in ("0x", "0x0", None)


async def until_seen(read: Callable[[], Awaitable[bool]], what: str, timeout: float = SEEN_TIMEOUT) -> None:
    """Wait until `read()` is true: a node behind the one that mined a transaction catches up within
    seconds. OpsError, naming `what`, past `timeout`."""
    deadline = time.monotonic() + timeout
    while not await read():
        if time.monotonic() > deadline:
            raise OpsError(f"the node does not show {what} {timeout:.0f} s after it was mined: run the command "
                           "again once it does")
        await asyncio.sleep(SEEN_POLL)


async def read_state(rpc: ChainClient, chain: ChainSettings) -> OracleState:
    address = chain.oracle
    if not await has_code(rpc, address):
        raise OpsError(f"chains[{chain.name}].oracle: there is no contract at {address} on chain {chain.chain_id} "
                       f"({chain.rpc_url}): {_FIX}")
    try:
        # Its EIP-712 domain names the contract and binds its address: a probe no other contract passes by chance.
        domain = await view(rpc, address, "eip712Domain")
        if domain[1] != ORACLE or to_checksum_address(domain[4]) != address:
            raise OpsError(f"chains[{chain.name}].oracle: the contract at {address} is not an {ORACLE} (its EIP-712 "
                           f"domain names {domain[1]!r}): {_FIX}")
        owner, = await view(rpc, address, "owner")
        pending, = await view(rpc, address, "pendingOwner")
        paused, = await view(rpc, address, "paused")
        limits, = await view(rpc, address, "limits")
        fees = {cls: cast(Schedule, tuple((await view(rpc, address, "feeSchedule", int(cls)))[0]))
                for cls in PolicyClass}
    except (RpcError, DecodingError, OverflowError) as exc:
        raise OpsError(f"chains[{chain.name}].oracle: the contract at {address} is not an {ORACLE} ({exc}): "
                       f"{_FIX}") from None
    pending = to_checksum_address(pending)
    return OracleState(address, to_checksum_address(owner), None if pending == NO_ADDRESS else pending, bool(paused),
                       cast(Limits, tuple(limits)), fees)


async def payee_of(rpc: ChainClient, oracle: str, signer: str) -> str | None:
    """The payee registered for `signer`, or None if it is not a registered signer."""
    payee = to_checksum_address((await view(rpc, oracle, "payeeOf", signer))[0])
    return None if payee == NO_ADDRESS else payee


async def withdrawable(rpc: ChainClient, oracle: str, account: str) -> int:
    """What `account` may withdraw from the oracle (a payee's fees, a requester's refunds), wei."""
    return int((await view(rpc, oracle, "balanceOf", account))[0])
