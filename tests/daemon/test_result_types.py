"""Every result type through the running daemon: the consumer decodes exactly what the model answered."""

from __future__ import annotations

from typing import Any

import pytest

from oracle.devnet.answer import ask
from oracle.protocol import ReasonCode, ResultSpec, ResultType, Status
from oracle.store import request_key
from tests.daemon.helpers import Running, ask_params, wait_delivered

CASES = [
    (ResultSpec(ResultType.TEXT, max_bytes=40), lambda v, d: d["text"] == v),
    (ResultSpec(ResultType.BOOL), lambda v, d: d["flag"] == v),
    (ResultSpec(ResultType.UINT, min=10, max=20), lambda v, d: d["unsignedValue"] == v),
    (ResultSpec(ResultType.INT, min=-50, max=-10), lambda v, d: d["signedValue"] == v),
    (ResultSpec(ResultType.CHOICE, labels=("for", "against", "abstain")),
     lambda v, d: d["unsignedValue"] == ["for", "against", "abstain"].index(v)),
    (ResultSpec(ResultType.JSON, max_bytes=200), lambda v, d: d["text"].replace(" ", "") ==
     __import__("json").dumps(v, separators=(",", ":"))),
    (ResultSpec(ResultType.ABI, max_bytes=512, abi_type="(string,uint256,bool)"),
     lambda v, d: (d["text"], d["unsignedValue"], d["flag"]) == tuple(v)),
]


@pytest.mark.parametrize(("spec", "matches"), CASES, ids=[c[0].kind.name for c in CASES])
def test_consumer_decodes_what_the_model_answered(running: Running, spec: ResultSpec, matches: Any) -> None:
    event = ask(running.stack, ask_params(running, spec, prompt=f"question about {spec.kind.name}"))
    decoded = wait_delivered(running, event.request_id)
    key = request_key(running.stack.chain_id, running.stack.addresses["AIOracle"], event.request_id)
    assert decoded["status"] == Status.SUCCESS, running.daemon.log()[-2000:]
    answered = running.model.books.answers[key]
    assert matches(answered, decoded), (answered, decoded)
    assert running.model.books.answered[key] == 1


def test_malformed_answer_ends_as_an_onchain_malformed_failure(running: Running) -> None:
    event = ask(running.stack, ask_params(running, ResultSpec(ResultType.UINT, min=0, max=9),
                                       prompt="[[malformed]] how risky?"))
    decoded = wait_delivered(running, event.request_id)
    assert (decoded["status"], decoded["reasonCode"]) == (Status.FAILURE, ReasonCode.MALFORMED)
    key = request_key(running.stack.chain_id, running.stack.addresses["AIOracle"], event.request_id)
    assert running.model.books.calls[key] == 2  # asked once more, then reported
