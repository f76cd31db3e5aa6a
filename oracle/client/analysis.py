"""Checking a signed analysis bought from the gateway (`POST /v1/analyze`) before an agent relies on it
or hands it to a consumer contract.

The gateway's answer is untrusted: `verify_analysis` rebuilds the `OffchainResult` from its fields and
accepts it only if it answers exactly the question asked (query hash, consumer, chain), is signed by the
oracle signer the agent trusts, still valid, and its ABI bytes decode to the value it claims. What a
consumer's `acceptSignedResult` would refuse is refused here first, with what did not match.

    analysis = verify_analysis(doc, AnalysisQuery(chain_id, "cheapest", prompt, spec, consumer, signer))
    await send_call(w3, consumer_contract.functions.acceptSignedResult(*analysis.as_call_args()), key)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from eth_utils import is_checksum_address, to_checksum_address

from oracle.client.transact import ClientError
from oracle.protocol import (
    OffchainResult,
    ReasonCode,
    ResultSpec,
    Status,
    query_hash,
    signer_of,
    typed_data_digest,
)
from oracle.results import decode_result


class AnswerRefused(ClientError):
    """A gateway answer (paid for) that this client will not accept: malformed, or an analysis that does
    not check out. `doc` holds the answer as received, for the agent's records."""

    def __init__(self, message: str, doc: Any = None) -> None:
        super().__init__(message)
        self.doc = doc


@dataclass(frozen=True)
class AnalysisQuery:
    """What an agent asks `/v1/analyze` for, and whom it trusts to have signed the answer."""

    chain_id: int
    model: str
    prompt: str
    result: ResultSpec
    consumer: str  # the contract that will accept the result
    signer: str  # the oracle's registered fulfillment signer
    # The AIOracle the consumer trusts; None: whichever the answer names (the consumer checks its own).
    oracle: str | None = None

    @property
    def query_hash(self) -> bytes:
        return query_hash(self.model, self.prompt.encode(), self.result)


@dataclass(frozen=True)
class SignedAnalysis:
    """A checked signed analysis: what a consumer's `acceptSignedResult` takes, and the value in it."""

    offchain_result: OffchainResult
    signature: bytes
    value: Any  # as the consumer contract decodes it from the signed bytes
    chain_id: int
    oracle: str
    signer: str
    models: tuple[str, ...]
    paid: int  # what the gateway says it charged, in the payment asset's base units
    payer: str
    payment_nonce: str
    doc: dict[str, Any]  # the gateway's answer as received

    @property
    def result_id(self) -> bytes:
        return self.offchain_result.result_id

    @property
    def receipt_hash(self) -> bytes:
        return self.offchain_result.receipt_hash

    @property
    def valid_until(self) -> int:
        return self.offchain_result.valid_until

    def as_call_args(self) -> tuple[tuple[Any, ...], bytes]:
        """`consumer.functions.acceptSignedResult(*analysis.as_call_args())`."""
        return self.offchain_result.to_abi(), self.signature


def verify_analysis(doc: Any, asked: AnalysisQuery, now: float | None = None) -> SignedAnalysis:
    """The gateway's answer `doc` as a `SignedAnalysis`, or AnswerRefused naming the first thing that does
    not match `asked`. Pure: no I/O, `now` (unix seconds) defaults to the clock."""
    if not isinstance(doc, dict):
        raise AnswerRefused("the analysis is not a JSON object", doc)
    fields = _Fields(doc)
    chain_id = fields.integer("chain_id")
    if chain_id != asked.chain_id:
        raise AnswerRefused(f"the analysis is for chain {chain_id}, not the asked {asked.chain_id}", doc)
    consumer = fields.address("consumer")
    if consumer != to_checksum_address(asked.consumer):
        raise AnswerRefused(f"the analysis is for consumer {consumer}, not the asked {asked.consumer}", doc)
    oracle = fields.address("oracle")
    if asked.oracle is not None and oracle != to_checksum_address(asked.oracle):
        raise AnswerRefused(f"the analysis is signed for oracle {oracle}, not the trusted {asked.oracle}", doc)
    answered = fields.hex("query_hash", 32)
    if answered != asked.query_hash:
        raise AnswerRefused(f"the analysis answers query 0x{answered.hex()}, not the asked 0x{asked.query_hash.hex()} "
                            f"(model spec, prompt and result spec as sent)", doc)
    status, reason = fields.integer("status"), fields.integer("reason_code")
    if status != Status.SUCCESS or reason not in ReasonCode._value2member_map_:
        raise AnswerRefused(f"the analysis is not a success (status {status}, reason code {reason})", doc)
    valid_until = fields.integer("valid_until")
    clock = time.time() if now is None else now
    if valid_until <= clock:
        raise AnswerRefused(f"the analysis expired at {valid_until} (now {int(clock)}): no consumer takes it", doc)
    result = OffchainResult(fields.hex("result_id", 32), consumer, answered, Status(status), ReasonCode(reason),
                            fields.hex("result"), fields.hex("model_used", 32), fields.hex("receipt_hash", 32),
                            valid_until)
    signature = fields.hex("signature", 65)
    trusted = to_checksum_address(asked.signer)
    try:
        signed_by = signer_of(typed_data_digest(chain_id, oracle, result.struct_hash()), signature)
    except ValueError as exc:
        raise AnswerRefused(f"the analysis's signature does not recover a signer: {exc}", doc) from None
    if signed_by != trusted:
        raise AnswerRefused(f"the analysis is signed by {signed_by}, not the trusted signer {trusted} (or a field "
                            f"was changed after signing)", doc)
    try:
        value = decode_result(asked.result, result.result)
    except Exception as exc:  # eth_abi and json each object in their own way to bytes that do not fit
        raise AnswerRefused(f"the analysis's result bytes do not decode as {asked.result.to_json()}: "
                            f"{type(exc).__name__}", doc) from None
    if not _same(value, doc.get("value")):
        raise AnswerRefused(f"the analysis claims value {str(doc.get('value'))[:80]!r}, but its signed result "
                            f"decodes to {str(value)[:80]!r}", doc)
    models = doc.get("models", [])
    return SignedAnalysis(result, signature, value, chain_id, oracle, signed_by,
                          tuple(str(m) for m in models) if isinstance(models, list) else (),
                          fields.integer("paid"), str(doc.get("payer", "")), str(doc.get("payment_nonce", "")), doc)


class _Fields:
    """Typed reads of the answer's fields; each refusal names the field and what it should be."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    def integer(self, name: str) -> int:
        value = self.doc.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise AnswerRefused(f"the analysis's {name} is not a non-negative integer", self.doc)
        return value

    def hex(self, name: str, size: int | None = None) -> bytes:
        value = self.doc.get(name)
        try:
            if not isinstance(value, str) or not value.startswith("0x"):
                raise ValueError
            raw = bytes.fromhex(value[2:])
        except ValueError:
            raw = None
        if raw is None or (size is not None and len(raw) != size):
            what = f"{size} bytes" if size is not None else "bytes"
            raise AnswerRefused(f"the analysis's {name} is not 0x and {what} of hex", self.doc)
        return raw

    def address(self, name: str) -> str:
        return to_checksum_address(self.hex(name, 20))


def _same(decoded: Any, claimed: Any) -> bool:
    """Does the gateway's JSON value say what the signed bytes decode to? (Bytes as 0x-hex, tuples as
    lists, addresses in any case; an integer may come as its decimal text, as receipts write big ones.)"""
    if isinstance(decoded, bool) or isinstance(claimed, bool):
        return type(decoded) is type(claimed) and decoded == claimed
    if isinstance(decoded, int):
        return claimed == decoded if isinstance(claimed, int) else claimed == str(decoded)
    if isinstance(decoded, bytes):
        return isinstance(claimed, str) and claimed.lower() == "0x" + decoded.hex()
    if isinstance(decoded, str) and is_checksum_address(decoded):
        return isinstance(claimed, str) and claimed.lower() == decoded.lower()
    if isinstance(decoded, (list, tuple)):
        return (isinstance(claimed, list) and len(claimed) == len(decoded)
                and all(_same(d, c) for d, c in zip(decoded, claimed, strict=True)))
    if isinstance(decoded, dict):
        return (isinstance(claimed, dict) and claimed.keys() == decoded.keys()
                and all(_same(decoded[k], claimed[k]) for k in decoded))
    return type(decoded) is type(claimed) and bool(decoded == claimed)
