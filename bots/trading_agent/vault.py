"""Acting on a vault: bringing the agent's deposit to a target by depositing or withdrawing the
difference. The difference is taken from the deposit the vault holds now, so acting twice towards the
same target (after a crash) sends nothing the second time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_utils import to_checksum_address
from web3 import AsyncWeb3

from bots.trading_agent.wallet import AgentWallet
from oracle.abi import abi
from oracle.client import ClientError

NOT_ACTED_PAUSED = "vault paused: not acted"


@dataclass(frozen=True)
class Acted:
    outcome: str  # "withdrew N wei", "deposited N wei", "at target: N wei", or why nothing was sent
    tx_hash: str  # 0x-hex, "" when nothing was sent


class Vault:
    def __init__(self, w3: AsyncWeb3[Any], address: str, name: str) -> None:
        self.name = name
        self.contract = w3.eth.contract(address=to_checksum_address(address), abi=abi("ExampleVault"))

    async def deposit_of(self, account: str) -> int:
        return int(await self.contract.functions.deposits(to_checksum_address(account)).call())

    async def paused(self) -> bool:
        return bool(await self.contract.functions.paused().call())

    async def bring_to(self, wallet: AgentWallet, target: int) -> Acted:
        """Deposit or withdraw so the agent's deposit is `target`; a paused vault is left alone (only its
        owner unpauses it, and the agent never does)."""
        if await self.paused():
            return Acted(NOT_ACTED_PAUSED, "")
        await wallet.wait_mined()  # a deposit or withdrawal sent before a crash is in the deposit read next
        held = await self.deposit_of(wallet.address)
        if held == target:
            return Acted(f"at target: {target} wei", "")
        try:
            if held < target:
                receipt = await wallet.send(self.contract.functions.deposit(), value=target - held,
                                            what=f"deposit into vault {self.contract.address}")
                return Acted(f"deposited {target - held} wei", "0x" + bytes(receipt["transactionHash"]).hex())
            receipt = await wallet.send(self.contract.functions.withdraw(held - target),
                                        what=f"withdrawal from vault {self.contract.address}")
            return Acted(f"withdrew {held - target} wei", "0x" + bytes(receipt["transactionHash"]).hex())
        except ClientError as exc:  # refused: paused meanwhile, or the key cannot pay
            if await self.paused():
                return Acted(NOT_ACTED_PAUSED, "")
            return Acted(f"not acted: {exc}", "")
