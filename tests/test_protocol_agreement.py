"""Python and Solidity agree on every hash, id and layout of the protocol (checked on anvil)."""

from __future__ import annotations

import copy
import os
from dataclasses import replace
from pathlib import Path

import pytest
from eth_utils import keccak

from oracle import protocol
from oracle.devnet import LocalStack
from oracle.devnet.answer import requested_events
from oracle.events import decode_requested
from oracle.protocol import (
    Commitment,
    ReasonCode,
    RequestParams,
    Response,
    ResultSpec,
    ResultType,
    Status,
    query_hash,
    request_id,
    typed_data_digest,
)


def test_python_response_typehash_equals_the_contracts(stack: LocalStack) -> None:
    oracle = stack.contract("AIOracle")
    assert oracle.functions.RESPONSE_TYPEHASH().call() == protocol.RESPONSE_TYPEHASH
    assert oracle.functions.OFFCHAIN_RESULT_TYPEHASH().call() == protocol.OFFCHAIN_RESULT_TYPEHASH
    assert protocol.PROTOCOL["types"]["Response"]["typehash"] == "0x" + protocol.RESPONSE_TYPEHASH.hex()


def test_domain_separator_and_digest_match(stack: LocalStack) -> None:
    oracle = stack.contract("AIOracle")
    address = stack.addresses["AIOracle"]
    assert oracle.functions.domainSeparator().call() == protocol.domain_separator(stack.chain_id, address)
    response = Response(os.urandom(32), os.urandom(32), Status.FAILURE, ReasonCode.TRUNCATED, os.urandom(77),
                        os.urandom(32), os.urandom(32))
    expected = typed_data_digest(stack.chain_id, address, response.struct_hash())
    assert oracle.functions.responseDigest(response.to_abi()).call() == expected
    # the digest binds the chain and the contract
    assert typed_data_digest(stack.chain_id + 1, address, response.struct_hash()) != expected


def _ask(stack: LocalStack, params: RequestParams) -> tuple[bytes, RequestParams, int]:
    consumer = stack.contract("TypedResultsConsumer")
    fee = stack.contract("AIOracle").functions.quote(params.model_spec, params.max_tokens,
                                                     params.callback_gas_limit).call()
    receipt = stack.transact(consumer.functions.ask(params.to_abi()), stack.keys.bots, value=fee + 5)
    (event,) = requested_events(receipt, stack.addresses["AIOracle"])
    return event.request_id, event.params, event.fee


def _int_params(stack: LocalStack) -> RequestParams:
    now = stack.w3.eth.get_block("latest")["timestamp"]
    return RequestParams(
        callback=stack.addresses["TypedResultsConsumer"], callback_gas_limit=500_000, deadline=now + 600,
        max_tokens=32, temperature=70, seed=2**64 - 1, model_spec="claude-sonnet-4-5-20250929,gpt-4o-mini",
        prompt="naïve prompt ✓".encode(), result=ResultSpec(ResultType.INT, min=-(2**255), max=-1),
    )


def test_event_decodes_to_the_params_sent_and_commitment_matches_storage(stack: LocalStack) -> None:
    params = _int_params(stack)
    rid, decoded, fee = _ask(stack, params)
    assert decoded == params  # negative Int bounds, unicode prompt and all
    consumer = stack.addresses["TypedResultsConsumer"]
    nonce = stack.contract("AIOracle").functions.nonces(consumer).call() - 1
    assert rid == request_id(stack.chain_id, stack.addresses["AIOracle"], consumer, nonce)
    stored = stack.contract("AIOracle").functions.commitments(rid).call()
    assert stored == Commitment.of(consumer, fee, params).hash()


@pytest.mark.parametrize("result", [
    ResultSpec(ResultType.TEXT, max_bytes=1_000), ResultSpec(ResultType.BOOL),
    ResultSpec(ResultType.CHOICE, labels=("for", "against")),
    ResultSpec(ResultType.ABI, max_bytes=300, abi_type="(string,uint8,string)"),
], ids=lambda r: r.kind.name)
def test_commitment_binds_the_result_bound_as_the_contract_does(stack: LocalStack, result: ResultSpec) -> None:
    params = replace(_int_params(stack), result=result)
    rid, _, fee = _ask(stack, params)
    consumer = stack.addresses["TypedResultsConsumer"]
    commitment = Commitment.of(consumer, fee, params)
    assert commitment.max_result_bytes == (32 if result.max_bytes == 0 else result.max_bytes + 96)
    assert stack.contract("AIOracle").functions.commitments(rid).call() == commitment.hash()


@pytest.mark.parametrize("spec", [
    ResultSpec(ResultType.UINT, min=0, max=100), ResultSpec(ResultType.INT, min=-(2**255), max=-1),
    ResultSpec(ResultType.CHOICE, labels=("for", "against", "abstain")),
    ResultSpec(ResultType.ABI, max_bytes=300, abi_type="(string,uint8,string)"),
], ids=lambda r: r.kind.name)
def test_query_hash_equals_the_contracts(stack: LocalStack, spec: ResultSpec) -> None:
    sentinel = stack.contract("RiskSentinel")
    model_spec, prompt = "claude-sonnet-4-5-20250929,gpt-4o-mini", "naïve prompt ✓".encode()
    assert sentinel.functions.queryHash(model_spec, prompt, spec.to_abi()).call() == query_hash(
        model_spec, prompt, spec)


def test_query_hash_of_a_risk_check_is_the_one_the_sentinel_registers(stack: LocalStack) -> None:
    sentinel = stack.contract("RiskSentinel")
    context = b"ETH -30% in 1h; vault 80% utilised"
    expected = query_hash(sentinel.functions.modelSpec().call(), context, ResultSpec(ResultType.UINT, max=100))
    assert sentinel.functions.riskQueryHash(context).call() == expected


def test_requested_event_with_a_foreign_topic_is_refused() -> None:
    log = {"topics": [keccak(b"Other()"), b"\0" * 32, b"\0" * 32, b"\0" * 32], "data": b""}
    with pytest.raises(ValueError, match="not a Requested event"):
        decode_requested(log)


def test_truncated_requested_event_is_refused(stack: LocalStack) -> None:
    _ask(stack, _int_params(stack))
    logs = stack.w3.eth.get_logs({"address": stack.contract("AIOracle").address, "fromBlock": "latest"})
    log = {"topics": logs[0]["topics"], "data": bytes(logs[0]["data"])[:100]}
    with pytest.raises(ValueError, match="does not decode"):
        decode_requested(log)


def test_enum_drift_from_protocol_json_is_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    drifted = copy.deepcopy(protocol.PROTOCOL)
    drifted["enums"]["ReasonCode"]["Malformed"] = 99
    monkeypatch.setattr(protocol, "PROTOCOL", drifted)
    with pytest.raises(protocol.ProtocolMismatch, match="ReasonCode"):
        protocol._check_enums()


def test_peeked_request_header_agrees_with_the_full_decode(stack: LocalStack) -> None:
    from oracle.events import peek_requested

    _ask(stack, _int_params(stack))
    log = stack.w3.eth.get_logs({"address": stack.contract("AIOracle").address, "fromBlock": "latest"})[0]
    full, header = decode_requested(log), peek_requested(log)
    assert (header.request_id, header.requester, header.nonce, header.fee, header.deadline, header.params_hash,
            header.params_blob) == (full.request_id, full.requester, full.nonce, full.fee, full.params.deadline,
                                    full.decoded.params_hash, full.params_blob)


def test_the_events_params_hash_is_the_one_the_commitment_holds(stack: LocalStack) -> None:
    from oracle.events import peek_requested

    params = _int_params(stack)
    rid, _, fee = _ask(stack, params)
    log = stack.w3.eth.get_logs({"address": stack.contract("AIOracle").address, "fromBlock": "latest"})[0]
    header = peek_requested(log)
    assert header.params_hash == params.hash()
    consumer = stack.addresses["TypedResultsConsumer"]
    stored = stack.contract("AIOracle").functions.commitments(rid).call()
    assert Commitment.of(consumer, fee, params, header.params_hash).hash() == stored


def test_requested_event_whose_params_hash_disagrees_with_its_params_is_refused(stack: LocalStack) -> None:
    _ask(stack, _int_params(stack))
    log = stack.w3.eth.get_logs({"address": stack.contract("AIOracle").address, "fromBlock": "latest"})[0]
    data = bytearray(bytes(log["data"]))
    data[64] ^= 1  # the third word: paramsHash
    with pytest.raises(ValueError, match=r"paramsHash 0x[0-9a-f]+ is not the hash of its params"):
        decode_requested({"topics": log["topics"], "data": bytes(data)})


def test_the_reason_code_table_integrators_read_lists_every_code_in_order() -> None:
    readme = (Path(__file__).resolve().parents[1] / "contracts" / "README.md").read_text()
    table = readme.split("<!-- reason codes -->")[1].split("<!-- /reason codes -->")[0]
    rows = [line.split("|")[1:3] for line in table.strip().splitlines()[2:]]
    listed = [(int(code), name.strip().strip("`")) for code, name in rows]
    codes = protocol.PROTOCOL["enums"]["ReasonCode"]
    assert listed == sorted((value, name) for name, value in codes.items() if value != 0)
