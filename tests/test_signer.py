"""The coincurve signer produces standard signatures and never shows its key."""

from __future__ import annotations

import os

from eth_account import Account

from oracle.chain.signer import ResponseSigner
from oracle.devnet.keys import DevKeys
from oracle.protocol import ReasonCode, Response, Status, typed_data_digest

ORACLE = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def test_signature_recovers_to_the_signer_and_matches_eth_account() -> None:
    key = DevKeys().signer
    signer = ResponseSigner(key.private_key, 31337, ORACLE)
    response = Response(os.urandom(32), os.urandom(32), Status.SUCCESS, ReasonCode.NONE, b"\x01" * 32,
                        os.urandom(32), os.urandom(32))
    signature = signer.sign_response(response)
    digest = typed_data_digest(31337, ORACLE, response.struct_hash())
    assert Account._recover_hash(digest, signature=signature) == key.address == signer.address
    assert signature == bytes(Account.unsafe_sign_hash(digest, key.private_key).signature)


def test_key_never_in_repr() -> None:
    key = DevKeys().signer
    signer = ResponseSigner(key.private_key, 31337, ORACLE)
    assert key.private_key.hex() not in repr(signer)
    assert key.private_key.hex() not in repr(key)
