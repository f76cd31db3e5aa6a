"""anvil's well-known development keys, and the role each plays on the local stack.

These keys are public (anvil's default mnemonic); they hold value only on a local chain.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_account import Account
from eth_typing import ChecksumAddress

ANVIL_MNEMONIC = "test test test test test test test test test test test junk"


def anvil_key(index: int) -> bytes:
    """The private key of anvil's dev account `index` (BIP-44 path m/44'/60'/0'/0/index)."""
    Account.enable_unaudited_hdwallet_features()
    account = Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
    return bytes(account.key)


@dataclass(frozen=True)
class DevKey:
    role: str
    private_key: bytes

    @property
    def address(self) -> ChecksumAddress:
        return ChecksumAddress(Account.from_key(self.private_key).address)

    def __repr__(self) -> str:
        return f"DevKey(role={self.role!r}, address={self.address})"


@dataclass(frozen=True)
class DevKeys:
    """Fixed roles: 0 owner, 1 fulfillment signer, 2 payment wallet, 3 facilitator, 4 bots, 5 agents."""

    owner: DevKey = DevKey("owner", anvil_key(0))
    signer: DevKey = DevKey("fulfillment signer", anvil_key(1))
    payment_wallet: DevKey = DevKey("payment wallet", anvil_key(2))
    facilitator: DevKey = DevKey("facilitator", anvil_key(3))
    bots: DevKey = DevKey("bots", anvil_key(4))
    agents: DevKey = DevKey("agents", anvil_key(5))
