"""The payment wallet: a key of its own (never the fulfillment signer's), never logged or shown."""

from __future__ import annotations

from oracle.config import ConfigError, KeySource
from oracle.x402.signer import WalletSigner


class PaymentWallet:
    def __init__(self, key: bytes) -> None:
        self._signer = WalletSigner(key)

    @classmethod
    def load(cls, source: KeySource, signer_key: bytes) -> PaymentWallet:
        key = source.load()
        if key == signer_key:
            raise ConfigError("x402.wallet: the payment wallet must have its own key, not the fulfillment signer's")
        return cls(key)

    @property
    def address(self) -> str:
        return self._signer.address

    @property
    def signer(self) -> WalletSigner:
        """The SDK's signer for this wallet; the key stays inside it."""
        return self._signer

    def __repr__(self) -> str:
        return f"PaymentWallet({self.address})"
