"""The example consumer project (examples/consumer) as an outside project uses the oracle: built by forge
through its remappings to the kit, deployed on a local chain, its bool, bounded uint and choice answered
by the real daemon and decoded on-chain; a question nobody answers is reclaimed with `oracle reclaim`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_abi import decode
from eth_utils import keccak
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError

from oracle.abi import abi
from oracle.devnet import LocalStack
from oracle.devnet.answer import requested_events
from oracle.devnet.harness import wait_until
from oracle.devnet.keys import DevKey
from oracle.devnet.model_server import ModelServer
from oracle.protocol import Status
from oracle.store import request_key
from tests.daemon.helpers import Running, start_daemon

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "consumer"
RECIPIENT = Web3.to_checksum_address("0x000000000000000000000000000000000000beef")
LISTING = "TKN: 1B supply, 90% held by the deployer, no audit."
ANSWER_WITHIN = 300  # seconds a question stays open
LEGITIMATE, RISK, TIER = range(3)


def _forge() -> str:
    found = sorted((ROOT / "contracts" / "node_modules" / "@foundry-rs").glob("forge-*/bin/forge"))
    assert found, "forge not found under contracts/node_modules: run `make install`"
    return str(found[0])


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """ListingReview as `forge build` compiles the example project (into a folder of the test's own)."""
    out = tmp_path_factory.mktemp("consumer-build")
    subprocess.run([_forge(), "build", "--out", str(out / "out"), "--cache-path", str(out / "cache")],
                   cwd=EXAMPLE, check=True, capture_output=True, timeout=600)
    built: dict[str, Any] = json.loads((out / "out" / "ListingReview.sol" / "ListingReview.json").read_text())
    return built


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[Running]:
    """A daemon on a stack of the test's own: the test moves its clock forward."""
    with LocalStack() as stack:
        model = ModelServer().start()
        run = start_daemon(stack, model, tmp_path)
        try:
            yield run
        finally:
            run.daemon.stop()
            model.stop()


def _deploy(stack: LocalStack, artifact: dict[str, Any]) -> Contract:
    factory = stack.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"]["object"])
    receipt = stack.transact(factory.constructor(stack.addresses["AIOracle"], "cheapest;max_price=20000",
                                                 ANSWER_WITHIN), stack.keys.owner)
    return stack.w3.eth.contract(address=Web3.to_checksum_address(str(receipt["contractAddress"])),
                                 abi=artifact["abi"])


def _ask(stack: LocalStack, review: Contract, question: int, payer: DevKey) -> bytes:
    call = [review.functions.askLegitimate, review.functions.askRisk, review.functions.askTier][question](LISTING)
    receipt = stack.transact(call, payer, value=review.functions.quote().call())
    (event,) = requested_events(receipt, stack.addresses["AIOracle"])
    return event.request_id


def _review(review: Contract, request_id: bytes) -> dict[str, Any]:
    names = ["question", "answered", "status", "reasonCode", "value"]
    return dict(zip(names, review.functions.reviews(request_id).call(), strict=True))


def test_the_consumer_abi_names_the_oracles_errors(artifact: dict[str, Any]) -> None:
    oracle_errors = {item["name"] for item in abi("IAIOracle") if item["type"] == "error"}
    assert {"FeeBelowQuote", "InvalidModelSpec", "NotExpired", "WithdrawFailed"} <= oracle_errors
    for errors in ({i["name"] for i in artifact["abi"] if i["type"] == "error"},
                   {i["name"] for i in abi("AIConsumer") if i["type"] == "error"}):
        assert oracle_errors <= errors, oracle_errors - errors


def test_the_example_consumer_is_answered_by_the_daemon_and_reclaimed_after_its_deadline(
    artifact: dict[str, Any], own_stack: Running
) -> None:
    stack, model = own_stack.stack, own_stack.model
    review = _deploy(stack, artifact)

    # a short fee reverts with the oracle's own error, which the consumer's ABI decodes
    quote = review.functions.quote().call()
    with pytest.raises(ContractCustomError) as refused:
        review.functions.askRisk(LISTING).call({"from": stack.keys.bots.address, "value": quote - 1})
    assert _decode_error(artifact, str(refused.value.data)) == ("FeeBelowQuote", [quote - 1, quote])

    asked = {question: _ask(stack, review, question, stack.keys.bots) for question in (LEGITIMATE, RISK, TIER)}
    for request_id in asked.values():
        wait_until(lambda rid=request_id: _review(review, rid)["answered"], 30, what="the answer on-chain")
    answers = {q: model.books.answers[request_key(stack.chain_id, stack.addresses["AIOracle"], rid)]
               for q, rid in asked.items()}
    stored = {q: _review(review, rid) for q, rid in asked.items()}
    assert all(s["status"] == Status.SUCCESS for s in stored.values()), stored
    assert stored[LEGITIMATE]["value"] == int(answers[LEGITIMATE] is True)
    assert stored[RISK]["value"] == answers[RISK] and 0 <= answers[RISK] <= 100
    assert review.functions.tiers().call()[stored[TIER]["value"]] == answers[TIER]

    # nobody answers the next question: the daemon is down until after its deadline
    assert own_stack.daemon.stop() == 0
    unanswered = _ask(stack, review, TIER, stack.keys.agents)
    fee = review.functions.quote().call()
    stack.w3.provider.make_request("evm_increaseTime", [ANSWER_WITHIN + 1])  # type: ignore[arg-type]
    stack.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    before = stack.w3.eth.get_balance(RECIPIENT)
    reclaimed = subprocess.run(
        [sys.executable, "-m", "oracle", "reclaim", "0x" + unanswered.hex(), "--config",
         str(own_stack.tmp / "config.toml"), "--key-env", "PAYER_KEY", "--to", RECIPIENT],
        env={**os.environ, "PAYER_KEY": "0x" + stack.keys.agents.private_key.hex()},
        capture_output=True, text=True, timeout=120)
    assert reclaimed.returncode == 0, reclaimed.stderr
    assert f"done: {fee} wei sent to {RECIPIENT}" in reclaimed.stdout
    assert stack.w3.eth.get_balance(RECIPIENT) - before == fee
    assert not _review(review, unanswered)["answered"]
    assert review.functions.payerOf(unanswered).call() == "0x" + "0" * 40


def _decode_error(artifact: dict[str, Any], data: str) -> tuple[str, list[Any]]:
    """Name the custom error in revert data from the consumer's ABI alone, as a wallet or explorer would."""
    raw = bytes.fromhex(data.removeprefix("0x"))
    for item in artifact["abi"]:
        if item["type"] == "error":
            types = [p["type"] for p in item["inputs"]]
            if keccak(text=f"{item['name']}({','.join(types)})")[:4] == raw[:4]:
                return item["name"], list(decode(types, raw[4:]))
    raise AssertionError(f"no error in the consumer's ABI has selector 0x{raw[:4].hex()}")
