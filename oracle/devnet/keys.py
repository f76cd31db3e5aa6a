"""anvil's well-known development keys, and the role each plays on the local stack.

These keys are public (anvil's default mnemonic); they hold value only on a local chain.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_account import Account

_ANVIL_KEYS = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2b11ed3ca3b8fa5a4e1f9fce09ba0f5e7a8c4d",
)


@dataclass(frozen=True)
class DevKey:
    role: str
    private_key: bytes

    @property
    def address(self) -> str:
        return str(Account.from_key(self.private_key).address)

    def __repr__(self) -> str:
        return f"DevKey(role={self.role!r}, address={self.address})"


@dataclass(frozen=True)
class DevKeys:
    """Fixed roles: 0 owner, 1 fulfillment signer, 2 payment wallet, 3 facilitator, 4 bots, 5 agents."""

    owner: DevKey = DevKey("owner", bytes.fromhex(_ANVIL_KEYS[0][2:]))
    signer: DevKey = DevKey("fulfillment signer", bytes.fromhex(_ANVIL_KEYS[1][2:]))
    payment_wallet: DevKey = DevKey("payment wallet", bytes.fromhex(_ANVIL_KEYS[2][2:]))
    facilitator: DevKey = DevKey("facilitator", bytes.fromhex(_ANVIL_KEYS[3][2:]))
    bots: DevKey = DevKey("bots", bytes.fromhex(_ANVIL_KEYS[4][2:]))
    agents: DevKey = DevKey("agents", bytes.fromhex(_ANVIL_KEYS[5][2:]))
