"""What the operator has handed over and not yet been paid for stays bounded: with settlements behind
(the facilitator says "pending"), paid calls beyond `max_unsettled` get 503 before the model is asked,
and are served again once the settlements are through (found on-chain)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from oracle.devnet.harness import wait_until
from tests.gateway.conftest import Gateway, chat, running_gateway

MAX_UNSETTLED = 2


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(tmp_path_factory.mktemp("backpressure"), max_unsettled=MAX_UNSETTLED) as running:
        yield running


def test_paid_calls_wait_while_too_many_answers_are_unsettled(gateway: Gateway) -> None:
    payer = gateway.payer(6, 50_000)
    start = gateway.stack.w3.eth.block_number
    gateway.facilitator.knobs.pending = True  # every settlement answers "pending": they pile up
    try:
        for n in range(MAX_UNSETTLED):
            got, _ = gateway.paid_call("/v1/chat/completions", chat(f"[[tag:held-{n}]]"), payer)
            assert got.status == 200, got.body
        held, _ = gateway.paid_call("/v1/chat/completions", chat("[[tag:held-back]]"), payer)
        assert held.status == 503 and "still being settled" in held.json()["error"], held.body
        assert held.headers["Retry-After"] == "1"
        assert gateway.model.books.tags["held-back"] == 0
    finally:
        gateway.facilitator.knobs.pending = False
    # the facilitator did settle them on-chain; asked again, the gateway finds them so and takes calls again
    wait_until(lambda: len(gateway.transfers(payer.address, start)) == MAX_UNSETTLED, 30,
               what="the held settlements on-chain")

    def served() -> bool:
        got, _ = gateway.paid_call("/v1/chat/completions", chat("[[tag:served-again]]"), payer)
        return got.status == 200

    wait_until(served, 60, interval=1.0, what="a paid call served again")
