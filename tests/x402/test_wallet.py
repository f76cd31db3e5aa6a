"""The payment wallet: its own key, never shown; its EIP-3009 fast path signs exactly what eth_account does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from hypothesis import given, settings
from hypothesis import strategies as st
from x402.mechanisms.evm.eip712 import build_typed_data_for_signing
from x402.mechanisms.evm.types import ExactEIP3009Authorization, TypedDataField

from oracle.config import ConfigError, KeySource
from oracle.devnet.keys import anvil_key
from oracle.x402 import PaymentWallet

_address = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())


@settings(max_examples=50, deadline=None)
@given(_address, _address, st.integers(0, 2**256 - 1), st.integers(0, 2**64), st.integers(0, 2**64),
       st.binary(min_size=32, max_size=32), st.integers(1, 2**64), st.text(max_size=20), st.text(max_size=5))
def test_fast_signature_equals_the_generic_one(frm: str, to: str, value: int, after: int, before: int, nonce: bytes,
                                               chain_id: int, name: str, version: str) -> None:
    wallet = PaymentWallet(anvil_key(2))
    authorization = ExactEIP3009Authorization(from_address=frm, to=to, value=str(value), valid_after=str(after),
                                              valid_before=str(before), nonce="0x" + nonce.hex())
    domain, types, primary, message = build_typed_data_for_signing(authorization, chain_id, to, name, version)
    typed = {k: [TypedDataField(name=f["name"], type=f["type"]) for f in fs] for k, fs in types.items()}
    fast = wallet.signer.sign_typed_data(domain, typed, primary, message)
    assert fast == wallet.signer.sign_generic(domain, typed, message)


def test_the_wallet_key_is_never_shown_and_is_not_the_signers(tmp_path: Path) -> None:
    key = anvil_key(2)
    wallet = PaymentWallet(key)
    assert key.hex() not in repr(wallet) and key.hex() not in repr(wallet.signer)
    (tmp_path / "ks.json").write_text(json.dumps(Account.encrypt(key, "pw", iterations=2)))
    (tmp_path / "pw").write_text("pw\n")
    source = KeySource(keystore=tmp_path / "ks.json", password_file=tmp_path / "pw")
    assert PaymentWallet.load(source, anvil_key(1)).address == wallet.address
    with pytest.raises(ConfigError, match="own key"):
        PaymentWallet.load(source, key)


def test_a_signed_message_recovers_to_the_wallet() -> None:
    wallet = PaymentWallet(anvil_key(2))
    signature = wallet.sign_message("Oracle gateway: read account\nNonce: abc")
    assert len(signature) == 65
    assert Account.recover_message(encode_defunct(text="Oracle gateway: read account\nNonce: abc"),
                                   signature=signature) == wallet.address
