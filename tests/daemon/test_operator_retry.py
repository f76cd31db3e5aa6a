"""An operator's retry through the API: an unprofitable request's signed response goes out again only
when its fee covers the gas at the price of the moment, and never once its deadline is past. Counted on
the chain: the request is fulfilled once, after the retry that came when gas was cheap."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from oracle.devnet import LocalStack
from oracle.devnet.answer import ask
from oracle.devnet.harness import SIGNER_ENV, DaemonProcess, dev_config, wait_until, write_config
from oracle.devnet.model_server import ModelServer
from oracle.protocol import PolicyClass, ResultSpec, ResultType
from oracle.store import RequestState
from tests.daemon.helpers import (
    QUICK_GAS,
    Running,
    anvil_rpc,
    ask_params,
    audit_chain,
    mining_held,
    row_of,
    wait_delivered,
)

R = RequestState
SPEC = ResultSpec(ResultType.UINT, min=0, max=9)
TOKEN = "retry-token-9f3a"


def _post(url: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, method="POST", headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _history(run: Running, base: str, request_id: bytes) -> list[str]:
    with urllib.request.urlopen(f"{base}/v1/requests/{run.stack.chain_id}/0x{request_id.hex()}", timeout=30) as r:
        return [h["state"] for h in json.loads(r.read())["history"]]


def test_retry_sends_an_unprofitable_answer_once_gas_is_cheap_and_never_after_its_deadline(
        env: tuple[LocalStack, ModelServer, Path]) -> None:
    stack, model, tmp = env
    model.knobs.latency = 0.5
    config = dev_config(stack, model.base_url, tmp / "oracle.sqlite", gas=QUICK_GAS)
    daemon = DaemonProcess(write_config(config, tmp / "config.toml"),
                           {SIGNER_ENV: stack.keys.signer.private_key.hex(), "ORACLE_API_TOKEN": TOKEN}).start()
    run = Running(stack, model, daemon, config, tmp)
    oracle = stack.contract("AIOracle")
    schedule = oracle.functions.feeSchedule(int(PolicyClass.FASTEST)).call()
    try:
        daemon.wait_ready()
        base = daemon.api_url()
        # 0.01 ETH pays for its ~0.6M gas at a few gwei, not at the 90 gwei base fee set below
        stack.transact(oracle.functions.setFeeSchedule(int(PolicyClass.FASTEST), (0, 0, 0)), stack.keys.owner)
        cheap = [ask(stack, ask_params(run, SPEC, prompt=f"cheap {i}", model_spec="fastest"), extra_fee=10**16)
                 for i in range(2)]
        stack.transact(oracle.functions.setFeeSchedule(int(PolicyClass.FASTEST), tuple(schedule)), stack.keys.owner)
        with mining_held(stack) as resume:
            for event in cheap:
                wait_until(lambda e=event: getattr(row_of(run, e.request_id), "state", None) == R.SUBMITTED, 20,
                           what="the responses to be sent")
            anvil_rpc(stack, "anvil_setNextBlockBaseFeePerGas", [hex(90 * 10**9)])
            anvil_rpc(stack, "anvil_mine", [1])
            for event in cheap:
                wait_until(lambda e=event: getattr(row_of(run, e.request_id), "state", None) == R.UNPROFITABLE, 20,
                           what="the responses to be unprofitable")
            resume()
        marker = ask(stack, ask_params(run, SPEC, prompt="a marker"), extra_fee=10**17)
        wait_delivered(run, marker.request_id)
        first, second = cheap

        # gas still dear: the retry sends nothing, the request is unprofitable again
        status, body = _post(f"{base}/v1/requests/{stack.chain_id}/0x{first.request_id.hex()}/retry")
        assert (status, body["state"]) == (200, "signed")
        wait_until(lambda: _history(run, base, first.request_id)[-2:] == ["signed", "unprofitable"], 20,
                   what="the retried request to be found unprofitable again")

        # gas cheap: the retry answers it
        anvil_rpc(stack, "anvil_setNextBlockBaseFeePerGas", [hex(10**9)])
        anvil_rpc(stack, "anvil_mine", [1])
        status, _ = _post(f"{base}/v1/requests/{stack.chain_id}/0x{first.request_id.hex()}/retry")
        assert status == 200
        wait_delivered(run, first.request_id)

        # deadline past (the daemon has seen a block after it: a marker asked then is answered): refused
        anvil_rpc(stack, "evm_increaseTime", [400])
        anvil_rpc(stack, "anvil_mine", [1])
        again = ask(stack, ask_params(run, SPEC, prompt="a later marker"), extra_fee=10**17)
        wait_delivered(run, again.request_id)
        status, body = _post(f"{base}/v1/requests/{stack.chain_id}/0x{second.request_id.hex()}/retry")
        assert status == 409 and "deadline" in body["error"], body
        assert getattr(row_of(run, second.request_id), "state", None) == R.UNPROFITABLE

        audit = audit_chain(stack)
        assert audit.fulfilled[first.request_id] == 1 and audit.fulfilled[second.request_id] == 0
        assert not audit.reverted
        assert model.books.calls[f"{stack.chain_id}:{oracle.address.lower()}:0x{first.request_id.hex()}"] == 1
    finally:
        assert daemon.stop() == 0
