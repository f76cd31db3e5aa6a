"""Answering a request straight from Python on the local stack: decode the event, encode the typed
value, sign the response, send `fulfill`. The demo and the tests use it; the daemon's pipeline does
the same work with a store, a router and a transaction manager around it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_utils import keccak
from web3.types import TxReceipt

from oracle.chain.calldata import fulfill_batch_calldata, fulfill_calldata
from oracle.chain.signer import ResponseSigner
from oracle.devnet.keys import DevKey
from oracle.devnet.stack import LocalStack
from oracle.events import REQUESTED_TOPIC, RequestedEvent, decode_requested
from oracle.protocol import ReasonCode, RequestParams, Response, Status, model_used
from oracle.results import encode_result


def requested_events(receipt: TxReceipt, oracle: str) -> list[RequestedEvent]:
    return [decode_requested(log) for log in receipt["logs"]
            if log["address"] == oracle and log["topics"] and bytes(log["topics"][0]) == REQUESTED_TOPIC]


def ask(stack: LocalStack, params: RequestParams, sender: DevKey | None = None, extra_fee: int = 0) -> RequestedEvent:
    """Send `params` through the TypedResultsConsumer example, paying the quote; return the event."""
    fee = stack.contract("AIOracle").functions.quote(params.model_spec, params.max_tokens,
                                                     params.callback_gas_limit).call()
    receipt = stack.transact(stack.contract("TypedResultsConsumer").functions.ask(params.to_abi()),
                             sender or stack.keys.bots, value=fee + extra_fee)
    (event,) = requested_events(receipt, stack.addresses["AIOracle"])
    return event


def signer_for(stack: LocalStack) -> ResponseSigner:
    return ResponseSigner(stack.keys.signer.private_key, stack.chain_id, stack.addresses["AIOracle"])


def success_response(event: RequestedEvent, value: Any, model_ids: Sequence[str] = ("dev-model",)) -> Response:
    return Response(
        request_id=event.request_id,
        commitment=event.commitment.hash(),
        status=Status.SUCCESS,
        reason_code=ReasonCode.NONE,
        result=encode_result(event.params.result, value),
        model_used=model_used(model_ids),
        receipt_hash=keccak(b"receipt:" + event.request_id),
    )


def failure_response(event: RequestedEvent, reason: ReasonCode) -> Response:
    return Response(event.request_id, event.commitment.hash(), Status.FAILURE, reason, b"",
                    model_used(["dev-model"]), keccak(b"receipt:" + event.request_id))


def send_raw_call(stack: LocalStack, to: str, data: bytes, sender: DevKey, gas: int = 3_000_000) -> TxReceipt:
    tx_hash = stack.w3.eth.send_transaction({"from": sender.address, "to": to, "data": data, "gas": gas})
    return stack.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)


def fulfill(stack: LocalStack, event: RequestedEvent, response: Response, sender: DevKey | None = None) -> TxReceipt:
    """Sign `response` with the stack's fulfillment signer and send `fulfill` (by default from the signer)."""
    data = fulfill_calldata(response, event.commitment, signer_for(stack).sign_response(response))
    return send_raw_call(stack, stack.addresses["AIOracle"], data, sender or stack.keys.signer)


def fulfill_batch(stack: LocalStack, answers: Sequence[tuple[RequestedEvent, Response]]) -> TxReceipt:
    signer = signer_for(stack)
    data = fulfill_batch_calldata([(r, e.commitment, signer.sign_response(r)) for e, r in answers])
    return send_raw_call(stack, stack.addresses["AIOracle"], data, stack.keys.signer, gas=15_000_000)
