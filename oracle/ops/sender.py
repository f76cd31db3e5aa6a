"""`TransactionSender`: an operator's transaction, simulated, shown, confirmed, sent and mined.

    sender = TransactionSender(rpc, chain, key, confirmation(assume_yes=False))
    receipt = await sender.send(OracleCall("setPaused", (True,)), to=oracle)

The simulation runs from the sending key (eth_call, then eth_estimateGas), so a call the contract
refuses is named from the ABI (`OwnableUnauthorizedAccount(account=0x...)`) and nothing is signed.
The fee shown is the most the transaction can cost: its gas limit at the fee estimator's maxFeePerGas.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Protocol

from eth_account import Account

from oracle.abi.errors import decode_revert
from oracle.chain.rpc import ChainClient, RpcError, RpcUnavailable
from oracle.chain.tx.fees import FeeEstimator
from oracle.config import ChainSettings
from oracle.ops import OpsError

# Room over the node's estimate: the state the estimate ran on can move before the transaction is mined.
GAS_HEADROOM_PERCENT = 20
RECEIPT_TIMEOUT = 300.0  # seconds; public chains mine within seconds, a stuck one is named with its hash
RECEIPT_POLL = 0.25

Confirm = Callable[[str], bool]


class Call(Protocol):
    """What a transaction carries (`data`) and how it reads to an operator (`str()`)."""

    @property
    def data(self) -> bytes: ...


def confirmation(assume_yes: bool) -> Confirm:
    """Asks on a terminal; `assume_yes` sends without asking; with no terminal and no `--yes`, nothing is sent."""
    if assume_yes:
        return lambda _what: True
    if not sys.stdin.isatty():
        def refuse(what: str) -> bool:
            raise OpsError(f"not sent ({what}): there is no terminal to confirm on; run again with --yes to send "
                           "without asking")
        return refuse

    def ask(_what: str) -> bool:
        try:
            return input("send it? [y/N] ").strip().lower() in ("y", "yes")
        except EOFError:  # Ctrl-D, or the input closed: a no
            print()
            return False
    return ask


def coin(wei: int, native_price_micro_usd: int) -> str:
    """`0.0021 (6.3 USD)`: an amount of the native coin, with its worth at the configured price."""
    amount = Decimal(wei) / Decimal(10**18)
    usd = Decimal(wei) * native_price_micro_usd / Decimal(10**24)
    return f"{amount.normalize():f} ({usd.quantize(Decimal('0.01'))} USD)"


def revert_reason(exc: RpcError) -> str:
    data = exc.revert_data
    if data is None:
        return exc.message
    return str(decode_revert(data) or f"revert data 0x{data.hex()} (no shipped ABI declares its error)")


class TransactionSender:
    def __init__(self, rpc: ChainClient, chain: ChainSettings, key: bytes, confirm: Confirm,
                 say: Callable[[str], None] = print) -> None:
        self.rpc = rpc
        self.chain = chain
        self._key = key
        self.address = str(Account.from_key(key).address)
        self.confirm = confirm
        self.say = say
        self.fees = FeeEstimator(chain.gas, rpc)

    async def simulate(self, call: Call, to: str | None) -> int:
        """Run `call` from this key without sending it; its gas estimate, or OpsError naming the revert."""
        tx: dict[str, Any] = {"from": self.address, "data": "0x" + call.data.hex()}
        if to is not None:
            tx["to"] = to
        try:
            await self.rpc.call("eth_call", [tx, "latest"])
            return int(await self.rpc.call("eth_estimateGas", [tx]), 16)
        except RpcError as exc:
            raise OpsError(f"{call} would revert, sent from {self.address}: {revert_reason(exc)}; nothing was "
                           "sent") from None

    async def send(self, call: Call, to: str | None,
                   on_signed: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Simulate, show, confirm, send and wait for `call` (to `to`, or a contract creation); its receipt.
        `on_signed(nonce)` runs once the transaction is signed, before it is broadcast: what must be on
        record before the chain may hold the transaction. OpsError when it would revert, is declined,
        cannot be paid for, or reverts on-chain."""
        what = str(call)
        estimate = await self.simulate(call, to)
        gas = estimate + estimate * GAS_HEADROOM_PERCENT // 100
        max_fee, priority = await self.fees.read(fresh=True)
        most = gas * max_fee
        price = self.chain.native_price_micro_usd
        self.say(f"{what}\n  from {self.address}: gas limit {gas:,}, fee at most {coin(most, price)} "
                 f"at {Decimal(max_fee) / 10**9:f} gwei")
        balance = await self.rpc.balance(self.address)
        if balance < most:
            raise OpsError(f"{self.address} holds {coin(balance, price)}, less than the {coin(most, price)} this "
                           "transaction may cost: fund it (on a testnet, from a faucet) and run again")
        if not self.confirm(what):
            raise OpsError(f"not sent ({what}): declined")
        nonce = await self.rpc.nonce(self.address)
        signed = Account.sign_transaction({
            "type": 2, "chainId": self.chain.chain_id, "nonce": nonce, "value": 0, "data": call.data, "gas": gas,
            "maxFeePerGas": max_fee, "maxPriorityFeePerGas": priority, **({"to": to} if to is not None else {}),
        }, self._key)
        if on_signed is not None:
            on_signed(nonce)
        tx_hash = await self.rpc.send_raw(bytes(signed.raw_transaction))
        self.say(f"  sent 0x{tx_hash.hex()}")
        receipt = await self._mined(tx_hash)
        if int(receipt["status"], 16) != 1:
            raise OpsError(f"{what}: transaction 0x{tx_hash.hex()} reverted in block {int(receipt['blockNumber'], 16)}")
        self.say(f"  mined in block {int(receipt['blockNumber'], 16)}, gas used {int(receipt['gasUsed'], 16):,}")
        return receipt

    async def _mined(self, tx_hash: bytes) -> dict[str, Any]:
        deadline = time.monotonic() + RECEIPT_TIMEOUT
        while time.monotonic() < deadline:
            try:
                receipt = await self.rpc.receipt(tx_hash)
            except RpcUnavailable:
                receipt = None  # the node may be busy for a moment: ask again
            if receipt is not None:
                return receipt
            await asyncio.sleep(RECEIPT_POLL)
        raise OpsError(f"transaction 0x{tx_hash.hex()} is not mined after {RECEIPT_TIMEOUT:.0f} s: look it up on the "
                       "chain's explorer; running the command again reads what the chain holds then")
