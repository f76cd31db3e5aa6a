"""The payment wallet: a key of its own (never the fulfillment signer's), never logged or shown."""

from __future__ import annotations

from eth_account import Account
from eth_account.signers.local import LocalAccount

from oracle.config import ConfigError, KeySource


class PaymentWallet:
    def __init__(self, key: bytes) -> None:
        self._account: LocalAccount = Account.from_key(key)

    @classmethod
    def load(cls, source: KeySource, signer_key: bytes) -> PaymentWallet:
        key = source.load()
        if key == signer_key:
            raise ConfigError("x402.wallet: the payment wallet must have its own key, not the fulfillment signer's")
        return cls(key)

    @property
    def address(self) -> str:
        return str(self._account.address)

    @property
    def account(self) -> LocalAccount:
        """For the SDK's signer; the key stays inside the account object."""
        return self._account

    def __repr__(self) -> str:
        return f"PaymentWallet({self.address})"
