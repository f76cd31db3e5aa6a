"""The agent's key, loaded from the environment, and its one way to send: a transaction at a time, so a
risk check sent on the schedule and a withdrawal sent while following never take the same nonce."""

from __future__ import annotations

import asyncio
from typing import Any

from eth_account import Account
from web3 import AsyncWeb3
from web3.types import TxReceipt

from oracle.client import send_call, wait_mined


class AgentWallet:
    def __init__(self, w3: AsyncWeb3[Any], key: bytes, chain_id: int) -> None:
        self.w3, self.key, self.chain_id = w3, key, chain_id
        self.address: str = Account.from_key(key).address
        self._sending = asyncio.Lock()

    async def send(self, call: Any, *, value: int = 0, what: str) -> TxReceipt:
        """Send `call` from the agent's key and wait for it to be mined (ClientError on a revert)."""
        async with self._sending:
            return await send_call(self.w3, call, self.key, value=value, what=what, chain_id=self.chain_id)

    async def wait_mined(self) -> None:
        """Every transaction this key sent is mined: one sent before a crash counts in what the chain says."""
        async with self._sending:
            await wait_mined(self.w3, self.address)
