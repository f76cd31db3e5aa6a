"""Sending one contract call from a key and waiting for its receipt: the client's requests and the
bots' calls to their consumer contracts (`summarize`, `requestRiskCheck`, a vault's deposit) go
through here, so a revert reads the same everywhere."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from eth_account import Account
from eth_utils import to_checksum_address
from web3 import AsyncWeb3
from web3.exceptions import ContractCustomError, ContractLogicError, Web3Exception
from web3.types import TxParams, TxReceipt, Wei

from oracle.abi.errors import decode_revert

RECEIPT_TIMEOUT = 120.0
# What a node that is away or failing raises through web3 (a refused connection, an HTTP error status, a
# JSON-RPC error, no answer in time): a program following the chain tries again or stops with one line.
NODE_ERRORS = (TimeoutError, OSError, aiohttp.ClientError, Web3Exception)


class ClientError(RuntimeError):
    """The node, the oracle or the arguments refused what was asked; the message says which and why."""


def describe_revert(exc: Exception) -> str:
    """A revert as `ErrorName(args)` when the ABIs shipped with the package know the error."""
    data = getattr(exc, "data", None)
    if isinstance(data, str) and data.startswith("0x"):
        decoded = decode_revert(bytes.fromhex(data[2:]))
        if decoded is not None:
            return str(decoded)
    return str(exc)


async def send_call(w3: AsyncWeb3[Any], call: Any, key: bytes, *, value: int = 0, what: str = "the call",
                    chain_id: int | None = None, refused: str | None = None) -> TxReceipt:
    """Simulate `call` from `key` (a revert is raised as ClientError naming the error after `refused`,
    default "`what` is refused", nothing sent), send it, and return its receipt once mined; a mined revert
    is a ClientError too."""
    account = Account.from_key(key)
    fields: TxParams = {"from": account.address, "value": Wei(value)}
    if chain_id is not None:
        fields["chainId"] = chain_id
    try:
        tx = await call.build_transaction(fields)
    except (ContractCustomError, ContractLogicError) as exc:
        raise ClientError(f"{refused or what + ' is refused'}: {describe_revert(exc)}") from None
    except Web3Exception as exc:  # a value that does not fit its ABI type, e.g. a negative uint
        raise ClientError(f"{what} does not encode: {exc}") from None
    tx["nonce"] = await w3.eth.get_transaction_count(account.address, "pending")
    signed = account.sign_transaction(tx)
    tx_hash = await w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = await w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT)
    if receipt["status"] != 1:
        raise ClientError(f"{what}: transaction 0x{bytes(tx_hash).hex()} reverted")
    return receipt


async def wait_mined(w3: AsyncWeb3[Any], address: str, timeout: float = RECEIPT_TIMEOUT, poll: float = 0.5) -> None:
    """Wait until every transaction `address` has sent is mined (its pending nonce equals its mined one).

    A program that reads the chain to decide whether to send (has this been asked? what does the vault
    hold?) calls this first: a transaction it sent just before a crash, still in the mempool, is not in
    what the chain says yet, and deciding without it would send a second one."""
    give_up = time.monotonic() + timeout
    account = to_checksum_address(address)
    while True:
        pending = await w3.eth.get_transaction_count(account, "pending")
        mined = await w3.eth.get_transaction_count(account, "latest")
        if pending <= mined:
            return
        if time.monotonic() > give_up:
            raise ClientError(f"{pending - mined} transaction(s) from {address} are still not mined after "
                              f"{timeout:g} s: wait for them to be mined (or replace them), then start again")
        await asyncio.sleep(poll)
