"""The agent's RiskSentinels: checked at start (the agent's key owns each, the bounds sit below each
one's pause threshold, the vault is the one it guards), asked for risk checks, and read for what each
made of a result.

The sentinel, not the oracle, says whether a score counts: it takes only its latest request's answer
(an older one arriving late is dropped), so a result counts only when the fulfilment's transaction holds
the sentinel's own `RiskScored` or `RiskCheckFailed` for that request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_utils import to_checksum_address
from web3 import AsyncWeb3
from web3.contract import AsyncContract
from web3.exceptions import Web3Exception
from web3.logs import DISCARD

from bots.trading_agent.config import AssetSettings, TradingConfig
from bots.trading_agent.wallet import AgentWallet
from oracle.abi import abi
from oracle.client import ClientError
from oracle.config import ConfigError


@dataclass(frozen=True)
class Asked:
    request_id: bytes
    fee: int
    tx_hash: bytes


@dataclass(frozen=True)
class Reading:
    """What the sentinel emitted for a request: a score (with the receipt hash it stored), or a failure."""

    score: int | None
    receipt_hash: bytes | None
    reason_code: int | None


class Sentinel:
    def __init__(self, w3: AsyncWeb3[Any], asset: AssetSettings, oracle: AsyncContract, index: int) -> None:
        self.asset = asset
        self.where = f"assets[{index}] ({asset.name})"  # as the config's own errors name it
        self.w3 = w3
        self.contract = w3.eth.contract(address=to_checksum_address(asset.sentinel), abi=abi("RiskSentinel"))
        self.oracle = oracle

    async def check(self, config: TradingConfig, owner: str) -> int:
        """Refuse a sentinel the agent cannot use (ConfigError); its pause threshold."""
        where = f"{self.where}.sentinel {self.asset.sentinel}"
        if not await self.w3.eth.get_code(self.contract.address):
            raise ConfigError(f"{where}: no contract there: give the address of the asset's RiskSentinel")
        try:
            actual_owner = str(await self.contract.functions.owner().call())
            threshold = int(await self.contract.functions.pauseThreshold().call())
            guarded = str(await self.contract.functions.VAULT().call())
        except Web3Exception as exc:
            raise ConfigError(f"{where}: does not answer as a RiskSentinel ({exc}): give the address of the "
                              f"asset's RiskSentinel") from None
        if actual_owner.lower() != owner.lower():
            raise ConfigError(f"{where} is owned by {actual_owner}, not by {owner} (the key in "
                              f"{config.agent.key_env}): only its owner may ask for risk checks; set "
                              f"{config.agent.key_env} to the owner's key")
        bounds = {"close_above": config.agent.close_above, "reduce_above": config.agent.reduce_above,
                  "reopen_below": config.agent.reopen_below}
        for name, bound in bounds.items():
            if bound >= threshold:
                raise ConfigError(f"agent.{name} {bound} is not below the pauseThreshold {threshold} of {where}: "
                                  f"the sentinel pauses the vault at {threshold}, so lower {name} below {threshold}")
        if guarded.lower() != self.asset.vault.lower():
            raise ConfigError(f"{self.where}.vault {self.asset.vault} is not the vault the sentinel "
                              f"guards ({guarded}): set vault to {guarded}")
        return threshold

    async def ask(self, wallet: AgentWallet, context: bytes) -> Asked:
        """Send `requestRiskCheck(context)` with the fee the sentinel quotes now."""
        fee = int(await self.contract.functions.quote().call())
        receipt = await wallet.send(self.contract.functions.requestRiskCheck(context), value=fee,
                                    what=f"{self.asset.name}: requestRiskCheck")
        tx_hash = bytes(receipt["transactionHash"])
        for event in self.oracle.events.Requested().process_receipt(receipt, errors=DISCARD):
            if event["address"].lower() == self.oracle.address.lower():
                return Asked(bytes(event["args"]["requestId"]), fee, tx_hash)
        raise ClientError(f"{self.asset.name}: requestRiskCheck transaction 0x{tx_hash.hex()} emitted no Requested "
                          f"event")

    async def reading(self, request_id: bytes, transaction: bytes | None) -> Reading | None:
        """The sentinel's own event for `request_id` in the fulfilment `transaction` (None: it took no
        notice of the result, as it does with any request but its latest)."""
        if transaction is None:
            return None
        receipt = await self.w3.eth.get_transaction_receipt(transaction)  # type: ignore[arg-type]
        for name in ("RiskScored", "RiskCheckFailed"):
            for event in self.contract.events[name]().process_receipt(receipt, errors=DISCARD):
                args = event["args"]
                if event["address"].lower() != self.contract.address.lower() or bytes(args["requestId"]) != request_id:
                    continue
                if name == "RiskScored":
                    return Reading(int(args["score"]), bytes(args["receiptHash"]), None)
                return Reading(None, None, int(args["reasonCode"]))
        return None
