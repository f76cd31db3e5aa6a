"""What `oracle dev` shows: one request on the local stack, answered and fulfilled from Python.

A keeper asks the RiskSentinel example for a 0..100 risk score of its vault; the answer is encoded
as the typed result the request asked for, signed by the fulfillment signer, and fulfilled; the
sentinel decodes it with `abi.decode` and pauses the vault because the score crosses its bound.
"""

from __future__ import annotations

from collections.abc import Callable

from oracle.chain.events import FULFILLED_TOPIC, decode_fulfilled
from oracle.devnet.answer import fulfill, requested_events, success_response
from oracle.devnet.stack import LocalStack
from oracle.protocol import ResultType

DEMO_SCORE = 87  # the stand-in answer; the daemon will ask a model instead


def run_demo(stack: LocalStack, say: Callable[[str], None] = print) -> dict[str, object]:
    k = stack.keys
    say(f"anvil        {stack.rpc_url} (chain {stack.chain_id})")
    for name, address in stack.addresses.items():
        say(f"deployed     {name:<22} {address}")
    say(f"roles        owner {k.owner.address}, signer {k.signer.address}, bots {k.bots.address}")

    sentinel = stack.contract("RiskSentinel")
    vault = stack.contract("ExampleVault")
    fee = sentinel.functions.quote().call()
    context = b"ETH fell 30% in one hour; the vault is 92% utilised; oracle deviation 4%."
    receipt = stack.transact(sentinel.functions.requestRiskCheck(context), k.bots, value=fee)
    (event,) = requested_events(receipt, stack.addresses["AIOracle"])
    spec = event.params.result
    say(f"requested    id 0x{event.request_id.hex()} fee {event.fee} wei, model spec "
        f"{event.params.model_spec!r}, result {ResultType(spec.kind).name} in [{spec.min}, {spec.max}]")
    say(f"prompt       {event.params.prompt.decode()!r}")

    response = success_response(event, DEMO_SCORE)
    say(f"answer       {DEMO_SCORE} -> result 0x{response.result.hex()} (abi.encode(uint256))")
    receipt = fulfill(stack, event, response)
    fulfilled = [decode_fulfilled(log) for log in receipt["logs"]
                 if log["topics"] and bytes(log["topics"][0]) == FULFILLED_TOPIC]
    say(f"fulfilled    tx {receipt['transactionHash'].hex()} gas {receipt['gasUsed']}, signed by "
        f"{fulfilled[0].signer}, callback ok {fulfilled[0].callback_success}")

    score = sentinel.functions.lastScore().call()
    paused = vault.functions.paused().call()
    payee_balance = stack.contract("AIOracle").functions.balanceOf(k.owner.address).call()
    say(f"consumer     RiskSentinel.lastScore() = {score}; ExampleVault.paused() = {paused}")
    say(f"fee          {payee_balance} wei credited to the signer's payee {k.owner.address}")
    return {"request_id": event.request_id, "score": score, "paused": paused, "gas_used": receipt["gasUsed"]}
