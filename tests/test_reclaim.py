"""`oracle reclaim ID`: the fee of a request nobody answered goes back after its deadline, rebuilt from
the chain alone; every request that cannot be reclaimed (by this key, now) is refused with what to do."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_utils import keccak
from web3 import Web3

from oracle.abi import abi
from oracle.cli import main
from oracle.devnet import LocalStack
from oracle.devnet.answer import ask, fulfill, requested_events, success_response
from oracle.devnet.harness import dev_config, write_config
from oracle.devnet.keys import DevKey
from oracle.events import RequestedEvent
from oracle.ops.reclaim import (
    BALANCE_OF,
    CANCEL,
    COMMITMENTS,
    PAYER_OF,
    RECLAIM_FEE,
    RECLAIM_FEE_TO,
    REFUND_OF,
    WITHDRAW,
)
from oracle.protocol import RequestParams, ResultSpec, ResultType

KEY_ENV = "RECLAIM_TEST_KEY"
RECIPIENT = Web3.to_checksum_address("0x000000000000000000000000000000000000beef")


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, Path]]:
    """A stack of its own (these tests move its clock forward) and a config naming it."""
    tmp = tmp_path_factory.mktemp("reclaim")
    with LocalStack() as stack:
        config = dev_config(stack, "http://127.0.0.1:9/v1", tmp / "oracle.sqlite")
        yield stack, write_config(config, tmp / "config.toml")


def _params(stack: LocalStack, callback: str, seconds: int = 60) -> RequestParams:
    now = stack.w3.eth.get_block("latest")["timestamp"]
    return RequestParams(callback, 100_000, now + seconds, 16, 0, 0, "fastest", b"will anyone answer?",
                         ResultSpec(ResultType.BOOL))


def _ask_through_consumer(stack: LocalStack, seconds: int = 60) -> RequestedEvent:
    """Asked through the TypedResultsConsumer (an AIConsumer), paid by the bots key."""
    return ask(stack, _params(stack, stack.addresses["TypedResultsConsumer"], seconds), stack.keys.bots)


def _ask_directly(stack: LocalStack, requester: DevKey) -> RequestedEvent:
    """Asked straight at the oracle by an account (its own requester); the callback is the consumer."""
    oracle = stack.contract("AIOracle")
    params = _params(stack, stack.addresses["TypedResultsConsumer"])
    fee = oracle.functions.quote(params.model_spec, params.max_tokens, params.callback_gas_limit).call()
    (event,) = requested_events(stack.transact(oracle.functions.request(params.to_abi()), requester, value=fee),
                                stack.addresses["AIOracle"])
    return event


def _pass_deadline(stack: LocalStack, event: RequestedEvent) -> None:
    now = stack.w3.eth.get_block("latest")["timestamp"]
    stack.w3.provider.make_request("evm_increaseTime", [max(0, event.params.deadline - now + 1)])  # type: ignore[arg-type]
    stack.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


def _reclaim(chain: tuple[LocalStack, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
             request_id: bytes | str, key: DevKey | None, *extra: str) -> tuple[int, str, str]:
    if key is not None:
        monkeypatch.setenv(KEY_ENV, "0x" + key.private_key.hex())
    rid = request_id if isinstance(request_id, str) else "0x" + request_id.hex()
    code = main(["reclaim", rid, "--config", str(chain[1]), "--key-env", KEY_ENV, *extra])
    out, err = capsys.readouterr()
    return code, out, err


def _open(stack: LocalStack, event: RequestedEvent) -> bool:
    return any(stack.contract("AIOracle").functions.commitments(event.request_id).call())


def test_the_calls_made_are_the_shipped_contracts(chain: tuple[LocalStack, Path]) -> None:
    def selectors(contract: str) -> set[bytes]:
        found = set()
        for item in abi(contract):
            if item["type"] == "function":
                types = ",".join(_canonical(p) for p in item["inputs"])
                found.add(keccak(text=f"{item['name']}({types})")[:4])
        return found

    assert {PAYER_OF, REFUND_OF, RECLAIM_FEE, RECLAIM_FEE_TO} <= selectors("AIConsumer")
    assert {COMMITMENTS, BALANCE_OF, CANCEL, WITHDRAW} <= selectors("AIOracle")


def _canonical(param: dict[str, Any]) -> str:
    kind = str(param["type"])
    if not kind.startswith("tuple"):
        return kind
    return "(" + ",".join(_canonical(c) for c in param["components"]) + ")" + kind[len("tuple"):]


def test_the_payer_reclaims_through_the_consumer_to_a_recipient_it_names(
    chain: tuple[LocalStack, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = chain[0]
    event = _ask_through_consumer(stack)
    _pass_deadline(stack, event)
    before = stack.w3.eth.get_balance(RECIPIENT)
    code, out, err = _reclaim(chain, monkeypatch, capsys, event.request_id, stack.keys.bots, "--to", RECIPIENT)
    assert code == 0, err
    assert f"reclaimFee(0x{event.request_id.hex()}, commitment, {RECIPIENT})" in out
    assert "simulated: ok" in out and f"done: {event.fee} wei sent to {RECIPIENT}" in out
    assert stack.w3.eth.get_balance(RECIPIENT) - before == event.fee
    assert not _open(stack, event)


def test_anyone_elses_reclaim_credits_the_payer(
    chain: tuple[LocalStack, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = chain[0]
    consumer = stack.contract("TypedResultsConsumer")
    event = _ask_through_consumer(stack)
    _pass_deadline(stack, event)
    owed = consumer.functions.refundOf(stack.keys.bots.address).call()
    # a third party cannot say where the fee goes...
    code, _, err = _reclaim(chain, monkeypatch, capsys, event.request_id, stack.keys.agents, "--to", RECIPIENT)
    assert code == 1 and f"only the payer of 0x{event.request_id.hex()} ({stack.keys.bots.address})" in err
    # ...but may give it back to the payer
    code, out, err = _reclaim(chain, monkeypatch, capsys, event.request_id, stack.keys.agents)
    assert code == 0, err
    assert f"credited to the payer {stack.keys.bots.address}" in out
    assert consumer.functions.refundOf(stack.keys.bots.address).call() - owed == event.fee
    # asked again, the refusal points the payer at the credit waiting for it
    code, _, err = _reclaim(chain, monkeypatch, capsys, event.request_id, stack.keys.bots)
    assert code == 1 and "already cancelled in block" in err and "withdrawRefund(to)" in err


def test_a_requester_that_is_an_account_cancels_and_withdraws(
    chain: tuple[LocalStack, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = chain[0]
    event = _ask_directly(stack, stack.keys.agents)
    _pass_deadline(stack, event)
    code, _, err = _reclaim(chain, monkeypatch, capsys, event.request_id, stack.keys.bots)
    assert code == 1
    assert (f"only the requester of 0x{event.request_id.hex()} may cancel it: the requester is "
            f"{stack.keys.agents.address}, this key is {stack.keys.bots.address}") in err
    before = stack.w3.eth.get_balance(RECIPIENT)
    code, out, err = _reclaim(chain, monkeypatch, capsys, event.request_id, stack.keys.agents, "--to", RECIPIENT)
    assert code == 0, err
    assert "cancel(" in out and f"withdraw({RECIPIENT})" in out and out.count("sent 0x") == 2
    assert stack.w3.eth.get_balance(RECIPIENT) - before == event.fee


def test_a_cancel_whose_withdraw_never_went_out_is_finished_by_a_withdraw(
    chain: tuple[LocalStack, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The cancel was mined and the withdraw was not sent (the command was stopped, the node went away):
    the fee sits in the requester's oracle balance, and running it again withdraws it."""
    stack = chain[0]
    event = _ask_directly(stack, stack.keys.agents)
    _pass_deadline(stack, event)
    oracle = stack.contract("AIOracle")
    stack.transact(oracle.functions.cancel(event.request_id, event.commitment.to_abi()), stack.keys.agents)
    credited = oracle.functions.balanceOf(stack.keys.agents.address).call()
    assert credited >= event.fee
    before = stack.w3.eth.get_balance(RECIPIENT)

    code, out, err = _reclaim(chain, monkeypatch, capsys, event.request_id, stack.keys.agents, "--to", RECIPIENT)

    assert code == 0, err
    assert "was already cancelled in block" in out and "withdrawing it" in out, out
    assert "cancel(" not in out and out.count("sent 0x") == 1
    assert stack.w3.eth.get_balance(RECIPIENT) - before == credited
    assert oracle.functions.balanceOf(stack.keys.agents.address).call() == 0
    # Nothing left: a third run says what settled it and sends nothing.
    code, _, err = _reclaim(chain, monkeypatch, capsys, event.request_id, stack.keys.agents)
    assert code == 1 and "was already cancelled in block" in err

def test_a_dry_run_sends_nothing(
    chain: tuple[LocalStack, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = chain[0]
    event = _ask_through_consumer(stack)
    _pass_deadline(stack, event)
    code, out, err = _reclaim(chain, monkeypatch, capsys, event.request_id, stack.keys.bots, "--dry-run")
    assert code == 0, err
    assert "simulated: ok" in out and "dry run: nothing sent" in out
    assert _open(stack, event)


def test_an_unknown_id_is_refused(
    chain: tuple[LocalStack, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _reclaim(chain, monkeypatch, capsys, b"\x42" * 32, chain[0].keys.bots)
    assert code == 1 and f"no request 0x{'42' * 32} on chain local" in err and "--from-block" in err


def test_a_request_not_yet_expired_says_when_it_will_be(
    chain: tuple[LocalStack, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = chain[0]
    event = _ask_through_consumer(stack, seconds=3_600)
    code, _, err = _reclaim(chain, monkeypatch, capsys, event.request_id, stack.keys.bots)
    assert code == 1
    assert f"is not expired: its deadline is {event.params.deadline} (" in err
    found = re.search(r"in about (\d+) s", err)
    assert found is not None and 3_590 <= int(found.group(1)) <= 3_601, err
    assert _open(stack, event)


def test_a_fulfilled_request_is_refused(
    chain: tuple[LocalStack, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = chain[0]
    event = _ask_through_consumer(stack)
    fulfill(stack, event, success_response(event, True))
    _pass_deadline(stack, event)
    code, _, err = _reclaim(chain, monkeypatch, capsys, event.request_id, stack.keys.bots)
    assert code == 1 and "already fulfilled in block" in err and "status success" in err


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["0x1234"], "0x" + "11" * 32, "a request id is 32 bytes of hex"),
        (["0x" + "00" * 32, "--to", "0xnot"], "0x" + "11" * 32, "argument --to: not an address"),
        (["0x" + "00" * 32], None, f"environment variable {KEY_ENV} (a private key) is not set"),
        (["0x" + "00" * 32], "0xabc", f"environment variable {KEY_ENV} is not a hex private key"),
        (["0x" + "00" * 32, "--chain", "mainnet"], "0x" + "11" * 32, "no chain named 'mainnet' in the config"),
    ],
    ids=["bad id", "bad recipient", "no key", "bad key", "unknown chain"],
)
def test_bad_inputs_are_refused_before_any_call(
    chain: tuple[LocalStack, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    args: list[str], env: str | None, message: str
) -> None:
    if env is None:
        monkeypatch.delenv(KEY_ENV, raising=False)
    else:
        monkeypatch.setenv(KEY_ENV, env)
    try:
        code = main(["reclaim", *args, "--config", str(chain[1]), "--key-env", KEY_ENV])
    except SystemExit as refused:  # argparse refuses a value of the wrong type before the command runs
        code = int(str(refused.code))
    assert code == 2 and message in capsys.readouterr().err
