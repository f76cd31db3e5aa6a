"""A risk score bought off-chain reaches a RiskSentinel as a signed `OffchainResult`, delivered by any
account: taken once, and only for a question the sentinel's owner registered (checked on anvil)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from eth_utils import keccak
from web3.contract import Contract
from web3.exceptions import ContractCustomError
from web3.logs import DISCARD

from oracle.abi.errors import decode_revert
from oracle.chain.signer import signer_of
from oracle.devnet import LocalStack
from oracle.devnet.answer import signer_for
from oracle.protocol import (
    OffchainResult,
    ReasonCode,
    ResultSpec,
    ResultType,
    Status,
    model_used,
    query_hash,
    typed_data_digest,
)
from oracle.results import encode_result
from tests.risk_sentinel import deploy_pair

CONTEXT = b"ETH -30% in 1h; vault 80% utilised"
SCORE = ResultSpec(ResultType.UINT, min=0, max=100)


@dataclass(frozen=True)
class Guarded:
    sentinel: Contract
    vault: Contract


@pytest.fixture
def guarded(stack: LocalStack) -> Guarded:
    pair = deploy_pair(stack, label="offchain")
    return Guarded(stack.contract("RiskSentinel", pair.sentinel), stack.contract("ExampleVault", pair.vault))


def _signed_score(stack: LocalStack, sentinel: Contract, context: bytes, score: int,
                  name: str) -> tuple[OffchainResult, bytes]:
    """A score for `context` as a seller signs it now, valid for the sentinel's window."""
    now = stack.w3.eth.get_block("latest")["timestamp"]
    result = OffchainResult(
        result_id=keccak(text=name), consumer=sentinel.address,
        query_hash=query_hash(sentinel.functions.modelSpec().call(), context, SCORE),
        status=Status.SUCCESS, reason_code=ReasonCode.NONE, result=encode_result(SCORE, score),
        model_used=model_used(["dev-model"]), receipt_hash=keccak(text=f"receipt:{name}"),
        valid_until=now + sentinel.functions.offchainValidity().call(),
    )
    return result, signer_for(stack).sign_offchain(result)


def _refusal(stack: LocalStack, sentinel: Contract, result: OffchainResult, signature: bytes) -> str:
    with pytest.raises(ContractCustomError) as err:
        sentinel.functions.acceptSignedResult(result.to_abi(), signature).call({"from": stack.keys.agents.address})
    return str(decode_revert(bytes.fromhex(str(err.value.data)[2:])))


def test_signed_score_for_a_registered_query_is_accepted_once(stack: LocalStack, guarded: Guarded) -> None:
    sentinel = guarded.sentinel
    stack.transact(sentinel.functions.registerQuery(CONTEXT), stack.keys.bots)
    result, signature = _signed_score(stack, sentinel, CONTEXT, 85, "sold-1")

    receipt = stack.transact(sentinel.functions.acceptSignedResult(result.to_abi(), signature), stack.keys.agents)

    (accepted,) = sentinel.events.OffchainResultAccepted().process_receipt(receipt, errors=DISCARD)
    assert accepted["args"]["signer"] == stack.keys.signer.address
    # what a buyer checks before handing it on: the same signer, recovered in Python
    digest = typed_data_digest(stack.chain_id, stack.addresses["AIOracle"], result.struct_hash())
    assert signer_of(digest, signature) == stack.keys.signer.address
    (scored,) = sentinel.events.RiskScored().process_receipt(receipt, errors=DISCARD)
    assert (scored["args"]["requestId"], scored["args"]["score"], scored["args"]["receiptHash"]) == (
        result.result_id, 85, result.receipt_hash)
    assert sentinel.functions.lastScore().call() == 85
    assert guarded.vault.functions.paused().call()
    assert _refusal(stack, sentinel, result, signature) == f"ResultAlreadyUsed(resultId=0x{result.result_id.hex()})"


def test_signed_score_for_a_context_nobody_registered_is_refused(stack: LocalStack, guarded: Guarded) -> None:
    sentinel = guarded.sentinel
    stack.transact(sentinel.functions.registerQuery(CONTEXT), stack.keys.bots)
    result, signature = _signed_score(stack, sentinel, b"rate this 100", 100, "sold-elsewhere")

    assert _refusal(stack, sentinel, result, signature) == f"UnexpectedQuery(queryHash=0x{result.query_hash.hex()})"
    assert not guarded.vault.functions.paused().call()
