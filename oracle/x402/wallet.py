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

    def sign_message(self, text: str) -> bytes:
        """`text` signed EIP-191 (personal_sign) by this wallet: proves to a payee that the caller holds
        the payer's key (the gateway's account page), without handing the key over."""
        return self._signer.sign_message(text)

    @property
    def signer(self) -> WalletSigner:
        """The SDK's signer for this wallet; the key stays inside it."""
        return self._signer

    def __repr__(self) -> str:
        return f"PaymentWallet({self.address})"
