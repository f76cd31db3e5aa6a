"""A signed analysis bought from the gateway is checked before the agent gets it (`verify_analysis`):
an answer signed by the trusted signer for the question asked is taken, with its value decoded from the
signed bytes and the arguments `acceptSignedResult` takes; any field changed, a wrong signer, an expired
or malformed answer is refused with what did not match. A client holds its payment ledger alone, and a
gateway that does not answer is an error that pays nothing. (Paid calls are tested against the real
gateway.)"""

from __future__ import annotations

import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from eth_utils import keccak

from oracle.chain.signer import ResponseSigner
from oracle.client import (
    AnalysisQuery,
    AnswerRefused,
    ClientError,
    GatewayClient,
    GatewayError,
    SignedAnalysis,
    verify_analysis,
)
from oracle.config import X402Pin
from oracle.devnet.keys import anvil_key
from oracle.protocol import OffchainResult, ReasonCode, ResultSpec, ResultType, Status, model_used
from oracle.results import encode_result
from oracle.store import Store
from oracle.x402 import LedgerInUse

NOW = 1_800_000_000
CHAIN_ID = 31337
ORACLE = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
CONSUMER = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
SIGNER = ResponseSigner(anvil_key(1), CHAIN_ID, ORACLE)
SCORE = ResultSpec(ResultType.UINT, min=0, max=100)
ASKED = AnalysisQuery(CHAIN_ID, "cheapest", "ETH -30% in 1h; vault 80% utilised", SCORE, CONSUMER, SIGNER.address)


def _answer(asked: AnalysisQuery = ASKED, value: Any = 85, signer: ResponseSigner = SIGNER, claimed: Any = None,
            **changes: Any) -> dict[str, Any]:
    """The gateway's 200 body for `asked` with `value` (in JSON as `claimed`, by default itself), signed by
    `signer`; `changes` replace fields of the signed result before signing."""
    result = OffchainResult(
        result_id=keccak(text="sold-1"), consumer=asked.consumer, query_hash=asked.query_hash,
        status=Status.SUCCESS, reason_code=ReasonCode.NONE, result=encode_result(asked.result, value),
        model_used=model_used(["dev-model"]), receipt_hash=keccak(text="receipt:sold-1"), valid_until=NOW + 300)
    result = replace(result, **changes)
    return {"result_id": _hex(result.result_id), "chain_id": asked.chain_id, "oracle": signer.oracle,
            "consumer": result.consumer, "query_hash": _hex(result.query_hash), "status": int(result.status),
            "reason_code": int(result.reason_code), "value": value if claimed is None else claimed,
            "result": _hex(result.result), "model_used": _hex(result.model_used), "models": ["dev-model"],
            "receipt_hash": _hex(result.receipt_hash), "valid_until": result.valid_until, "signer": signer.address,
            "signature": _hex(signer.sign_offchain(result)), "paid": 2_500,
            "payer": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "payment_nonce": _hex(b"\1" * 32)}


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _refusal(doc: Any, asked: AnalysisQuery = ASKED) -> str:
    with pytest.raises(AnswerRefused) as refused:
        verify_analysis(doc, asked, now=NOW)
    assert refused.value.doc is doc  # the paid answer stays with the refusal, for the agent's records
    return str(refused.value)


def test_an_answer_signed_by_the_trusted_signer_for_the_question_asked_is_taken() -> None:
    doc = _answer()

    analysis = verify_analysis(doc, ASKED, now=NOW)

    assert isinstance(analysis, SignedAnalysis)
    assert (analysis.value, analysis.paid, analysis.valid_until) == (85, 2_500, NOW + 300)
    assert (analysis.result_id, analysis.receipt_hash) == (keccak(text="sold-1"), keccak(text="receipt:sold-1"))
    assert (analysis.signer, analysis.oracle, analysis.models) == (SIGNER.address, ORACLE, ("dev-model",))
    result, signature = analysis.as_call_args()
    assert result == analysis.offchain_result.to_abi() and result[2] == ASKED.query_hash
    assert signature == bytes.fromhex(doc["signature"][2:]) == analysis.signature


def test_an_abi_tuple_value_is_compared_as_a_list_with_bytes_as_hex() -> None:
    asked = replace(ASKED, result=ResultSpec(ResultType.ABI, abi_type="(string,uint8,bytes4)", max_bytes=256))
    value = ("calm", 7, bytes.fromhex("deadbeef"))

    analysis = verify_analysis(_answer(asked, value, claimed=["calm", 7, "0xDEADBEEF"]), asked, now=NOW)

    assert analysis.value == ("calm", 7, bytes.fromhex("deadbeef"))


def test_a_claimed_value_other_than_the_signed_bytes_is_refused() -> None:
    doc = {**_answer(), "value": 15}

    assert _refusal(doc) == "the analysis claims value '15', but its signed result decodes to '85'"


def test_an_answer_for_another_consumer_is_refused() -> None:
    other = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"

    assert _refusal(_answer(consumer=other) | {"consumer": other}) == (
        f"the analysis is for consumer {other}, not the asked {CONSUMER}")


def test_an_answer_to_another_question_is_refused() -> None:
    other = replace(ASKED, prompt="ETH +30% in 1h").query_hash
    doc = _answer(query_hash=other) | {"query_hash": _hex(other)}

    assert _refusal(doc) == (f"the analysis answers query {_hex(other)}, not the asked {_hex(ASKED.query_hash)} "
                             f"(model spec, prompt and result spec as sent)")


def test_an_answer_for_another_chain_or_oracle_is_refused() -> None:
    assert _refusal(_answer() | {"chain_id": 1}) == f"the analysis is for chain 1, not the asked {CHAIN_ID}"
    trusted = "0x0000000000000000000000000000000000000001"
    assert _refusal(_answer(), replace(ASKED, oracle=trusted)) == (
        f"the analysis is signed for oracle {ORACLE}, not the trusted {trusted}")


def test_a_field_changed_after_signing_breaks_the_signature() -> None:
    doc = _answer() | {"receipt_hash": _hex(keccak(text="another receipt"))}

    assert _refusal(doc).endswith(f"not the trusted signer {SIGNER.address} (or a field was changed after signing)")


def test_an_answer_signed_by_another_key_is_refused() -> None:
    impostor = ResponseSigner(anvil_key(7), CHAIN_ID, ORACLE)

    assert _refusal(_answer(signer=impostor)) == (
        f"the analysis is signed by {impostor.address}, not the trusted signer {SIGNER.address} (or a field was "
        f"changed after signing)")


def test_a_signature_that_recovers_no_key_is_refused() -> None:
    doc = _answer() | {"signature": _hex(b"\0" * 64 + b"\x1b")}

    assert _refusal(doc) == "the analysis's signature does not recover a signer: failed to recover ECDSA public key"


def test_an_expired_answer_is_refused() -> None:
    doc = _answer(valid_until=NOW)

    assert _refusal(doc) == f"the analysis expired at {NOW} (now {NOW}): no consumer takes it"


def test_a_failure_answer_is_refused() -> None:
    doc = _answer(status=Status.FAILURE, reason_code=ReasonCode.PROVIDERS_UNAVAILABLE) | {"status": 2}

    assert _refusal(doc).startswith("the analysis is not a success (status 2")


def test_result_bytes_that_do_not_decode_are_refused() -> None:
    doc = _answer(result=b"\1" * 5) | {"result": _hex(b"\1" * 5)}

    assert _refusal(doc) == ("the analysis's result bytes do not decode as {'type': 'uint', 'min': 0, 'max': 100}: "
                             "InsufficientDataBytes")


@pytest.mark.parametrize(("field", "bad", "expected"), [
    ("result_id", "0x1234", "the analysis's result_id is not 0x and 32 bytes of hex"),
    ("signature", "0x" + "ab" * 64, "the analysis's signature is not 0x and 65 bytes of hex"),
    ("consumer", "e7f1725E7734CE288F8367e1Bb143E90bb3F0512", "the analysis's consumer is not 0x and 20 bytes of hex"),
    ("query_hash", "0xzz" + "00" * 31, "the analysis's query_hash is not 0x and 32 bytes of hex"),
    ("result", None, "the analysis's result is not 0x and bytes of hex"),
    ("valid_until", "1800000300", "the analysis's valid_until is not a non-negative integer"),
    ("chain_id", True, "the analysis's chain_id is not a non-negative integer"),
])
def test_malformed_fields_are_refused_by_name(field: str, bad: Any, expected: str) -> None:
    assert _refusal(_answer() | {field: bad}) == expected


def test_an_answer_that_is_not_an_object_is_refused() -> None:
    assert _refusal(["not", "an", "object"]) == "the analysis is not a JSON object"


def test_refusals_are_client_errors() -> None:
    assert issubclass(AnswerRefused, ClientError)


PIN = X402Pin(network=f"eip155:{CHAIN_ID}", asset="0x" + "11" * 20, pay_to="0x" + "22" * 20)


def _client(ledger: Path, url: str = "http://127.0.0.1:9") -> GatewayClient:
    return GatewayClient.open(url, anvil_key(5), ledger, pin=PIN, max_payment=5_000, budget_total=100_000,
                              rpc_url="http://127.0.0.1:9")


async def test_a_ledger_is_held_by_one_client_at_a_time(tmp_path: Path) -> None:
    ledger = tmp_path / "agent-payments.sqlite"
    async with _client(ledger):
        with pytest.raises(LedgerInUse, match=r"agent-payments.sqlite is in use by another process \(pid \d+\)"):
            _client(ledger)
    async with _client(ledger):  # released on close
        pass


def _nobody_listens() -> str:
    """The URL of a loopback port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


async def test_a_gateway_that_does_not_answer_is_an_error_that_pays_nothing(tmp_path: Path) -> None:
    url = _nobody_listens()
    async with _client(tmp_path / "ledger.sqlite", url) as gateway:
        with pytest.raises(GatewayError) as failed:
            await gateway.chat([{"role": "user", "content": "hello"}], key="call-1")
    assert failed.value.status == 0
    assert str(failed.value).startswith(f"/v1/chat/completions: the gateway at {url} did not answer (")
    store = Store.open(tmp_path / "ledger.sqlite")
    assert store.payments.payments() == []
    store.close()


async def test_an_account_read_from_a_gateway_that_does_not_answer_is_an_error(tmp_path: Path) -> None:
    url = _nobody_listens()
    async with _client(tmp_path / "ledger.sqlite", url) as gateway:
        with pytest.raises(GatewayError) as failed:
            await gateway.account()
    assert failed.value.status == 0
    assert str(failed.value).startswith(f"/v1/account/{gateway.payer}: the gateway at {url} did not answer (")
