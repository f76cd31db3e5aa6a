"""Every result type through the real daemon to SmolLM2 on llama.cpp's server, and on-chain.

The model is tiny and its answers are weak; the schema (a grammar on llama.cpp's side) makes them
valid. Each request must be fulfilled with success, the consumer must decode exactly the value the
model gave (read back from the server's own response, which the daemon stored and the receipt hashes),
and the receipt must carry the token usage that response reported.

What can be compared about usage: the receipt's figures against the usage object of the stored raw
response (the bytes the receipt's sha256 names: the server's own words), and the server's prompt count
against a second, direct call with the same body (the daemon's adapter builds it from the request). At
temperature 0 decoding is greedy, so the direct call's answer and completion count must match too.
What cannot: that the server counted tokens right; its tokenizer is the only one here.
"""

from __future__ import annotations

import hashlib
import json
import urllib.request
from dataclasses import dataclass
from typing import Any

import pytest

from oracle.config import ModelDeployment
from oracle.devnet.answer import ask
from oracle.devnet.llama_server import LOCAL_MODEL
from oracle.events import FULFILLED_TOPIC, FulfilledEvent, decode_fulfilled
from oracle.protocol import ReasonCode, ResultSpec, ResultType, Status
from oracle.results import json_schema, parse_answer
from oracle.router.adapters.base import Call
from oracle.router.adapters.openai import OpenAIChat
from oracle.router.prompts import system_prompt, user_message
from oracle.store import Store
from tests.daemon.helpers import ask_params, key_of, wait_delivered
from tests.llm.conftest import LlmRun


@dataclass(frozen=True)
class Case:
    spec: ResultSpec
    prompt: str
    max_tokens: int = 96


CASES = [
    Case(ResultSpec(ResultType.TEXT, max_bytes=64), "In one line: what does a price oracle do?"),
    Case(ResultSpec(ResultType.BOOL), "Is a loan safe when its collateral is worth half the debt?"),
    Case(ResultSpec(ResultType.UINT, min=0, max=100), "From 0 to 100, how risky is an unaudited lending pool?"),
    # A range without 0 or the small numbers a model reaches for: only the grammar keeps the answer in it.
    Case(ResultSpec(ResultType.INT, min=-40, max=-20), "By how many degrees does the air cool in a cold front?"),
    Case(ResultSpec(ResultType.CHOICE, labels=("approve", "reject", "abstain")),
         "A proposal doubles the team's token allocation with no vesting. Your vote?"),
    # The grammar bounds a JSON answer's shape, not its size (a schema cannot bound the bytes of any JSON
    # value): maxBytes has room for all 64 tokens can say, at most 32 bytes each in this vocabulary.
    Case(ResultSpec(ResultType.JSON, max_bytes=2_048), "Name two risks of a cross-chain bridge.", max_tokens=64),
    # The tuple the example consumer decodes; its string is as unbounded, 96 tokens encode in 3,200 bytes.
    Case(ResultSpec(ResultType.ABI, max_bytes=4_096, abi_type="(string,uint256,bool)"),
         "Proposal: raise the ETH collateral factor to 90%. Give a summary, a risk score and whether to pause."),
]


def _matches(spec: ResultSpec, value: Any, d: dict[str, Any]) -> bool:
    """The consumer's decoded fields hold `value`, the model's answer as the results module reads it."""
    kind = spec.kind
    if kind == ResultType.TEXT:
        return bool(d["text"] == value)
    if kind == ResultType.BOOL:
        return bool(d["flag"] is value)
    if kind in (ResultType.UINT, ResultType.CHOICE):
        return bool(d["unsignedValue"] == value)
    if kind == ResultType.INT:
        return bool(d["signedValue"] == value)
    if kind == ResultType.JSON:
        return bool(json.loads(d["text"]) == value)
    return bool((d["text"], d["unsignedValue"], d["flag"]) == tuple(value))


def _in_type(spec: ResultSpec, value: Any) -> bool:
    kind = spec.kind
    if kind == ResultType.BOOL:
        return isinstance(value, bool)
    if kind in (ResultType.UINT, ResultType.INT):
        return isinstance(value, int) and spec.min <= value <= spec.max
    if kind == ResultType.CHOICE:
        return isinstance(value, int) and 0 <= value < len(spec.labels)
    if kind == ResultType.TEXT:
        return isinstance(value, str) and len(value.encode()) <= spec.max_bytes
    return True  # JSON and ABI: parse_answer already refused anything outside the type


def _fulfilled(run: LlmRun, request_id: bytes) -> list[FulfilledEvent]:
    oracle = run.stack.contract("AIOracle").address
    logs = run.stack.w3.eth.get_logs({"address": oracle, "fromBlock": 0, "topics": ["0x" + FULFILLED_TOPIC.hex()]})
    return [e for e in map(decode_fulfilled, logs) if e.request_id == request_id]


def _stored(run: LlmRun, key: str) -> tuple[dict[str, Any], bytes, bytes]:
    """The request's receipt, its hash, and the raw body of its last model call."""
    store = Store.open(run.config["store"]["path"])
    try:
        found = store.requests.receipt(key)
        assert found is not None, f"no receipt for {key}"
        receipt = json.loads(found[0])
        raw = store.routing.raw_response(receipt["router"]["attempts"][-1]["response_sha256"])
    finally:
        store.close()
    assert raw is not None
    return receipt, found[1], raw


def _post(url: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    with urllib.request.urlopen(urllib.request.Request(url, body, headers), timeout=120) as resp:
        reply: dict[str, Any] = json.loads(resp.read())
    return reply


def _direct_call(run: LlmRun, case: Case) -> dict[str, Any]:
    """The same chat completion the daemon sent, sent straight to the server (headers aside).

    The server keeps the previous prompt's evaluated tokens and evaluates only what differs. Sent right
    after the daemon's identical prompt, this one would be evaluated from its last token alone, through
    llama.cpp's one-token kernel, whose rounding can tip a near tie between two first words; the daemon's
    call was evaluated in a batch. A one-token call with another prompt first puts this one on the same
    footing.
    """
    deployment = ModelDeployment.model_validate(run.config["models"][0])
    other = Call("", "Hi", {"type": "object"}, 1, 0, 1, {})
    _post(*OpenAIChat().request(deployment, other))
    call = Call(system_prompt(case.spec), user_message(case.prompt, case.spec), json_schema(case.spec),
                case.max_tokens, 0, 1, {})
    return _post(*OpenAIChat().request(deployment, call))


@pytest.mark.parametrize("case", CASES, ids=[c.spec.kind.name.lower() for c in CASES])
def test_result_lands_onchain_decoded_with_the_servers_usage(llm: LlmRun, case: Case) -> None:
    event = ask(llm.stack, ask_params(llm, case.spec, case.prompt, model_spec=LOCAL_MODEL,
                                      max_tokens=case.max_tokens))
    decoded = wait_delivered(llm, event.request_id, timeout=180)
    key = key_of(llm, event.request_id)
    receipt, receipt_hash, raw = _stored(llm, key)
    assert (decoded["status"], decoded["reasonCode"]) == (Status.SUCCESS, ReasonCode.NONE), (
        json.dumps(receipt["router"]["attempts"]), llm.daemon.log()[-2000:])

    # On-chain: one Fulfilled event, success, naming this receipt; the consumer's callback ran.
    (fulfilled,) = _fulfilled(llm, event.request_id)
    assert (fulfilled.status, fulfilled.callback_success, fulfilled.receipt_hash) == (Status.SUCCESS, True,
                                                                                      receipt_hash)
    assert decoded["receiptHash"] == receipt_hash

    # The value: what the server answered, read by the results module, is what the consumer decoded.
    attempt = receipt["router"]["attempts"][-1]
    assert (attempt["deployment"], attempt["model"], attempt["outcome"]) == ("local", LOCAL_MODEL, "ok")
    assert hashlib.sha256(raw).hexdigest() == attempt["response_sha256"]
    server_reply = json.loads(raw)
    answer = server_reply["choices"][0]["message"]["content"]
    value = parse_answer(case.spec, answer)
    assert _in_type(case.spec, value), (answer, value)
    assert _matches(case.spec, value, decoded), (answer, value, decoded)

    # The usage: the receipt's figures are the server's own, and a direct call counts the same.
    usage = server_reply["usage"]
    assert attempt["usage"]["input"] == usage["prompt_tokens"] > 0
    assert attempt["usage"]["output"] == usage["completion_tokens"] > 0
    prices = llm.config["models"][0]
    assert attempt["cost"] == -(-(usage["prompt_tokens"] * prices["input_price"]
                                  + usage["completion_tokens"] * prices["output_price"]) // 1_000_000)
    direct = _direct_call(llm, case)
    assert direct["usage"]["prompt_tokens"] == usage["prompt_tokens"]
    assert (direct["choices"][0]["message"]["content"], direct["usage"]["completion_tokens"]) == (
        answer, usage["completion_tokens"])
