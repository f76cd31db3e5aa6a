"""The daemon's log as an operator reads it: a JSON object per line with each request's transitions at DEBUG and
its outcomes at INFO; an RPC outage as one incident, not a line per retry; apscheduler's routine lines hidden;
and no key or keystore password anywhere in a whole run's log at DEBUG, paid requests included."""

from __future__ import annotations

import contextlib
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from oracle.devnet import LocalStack
from oracle.devnet.answer import ask
from oracle.devnet.facilitator import Facilitator
from oracle.devnet.fault_proxy import FaultProxy
from oracle.devnet.harness import (
    PAYMENT_ENV,
    SIGNER_ENV,
    DaemonProcess,
    dev_config,
    paid_model,
    wait_until,
    write_config,
    x402_section,
)
from oracle.devnet.model_server import ModelServer
from oracle.devnet.paywall import Paywall
from oracle.protocol import ResultSpec, ResultType
from tests.daemon.helpers import ask_params, fulfillments_per_request, key_of, start_daemon, wait_delivered

OUTAGE_SECONDS = 20.0


def test_json_lines_carry_each_transition_at_debug_and_each_outcome_at_info(
        env: tuple[LocalStack, ModelServer, Path]) -> None:
    stack, model, tmp = env
    config = dev_config(stack, model.base_url, tmp / "oracle.sqlite")
    daemon = DaemonProcess(write_config(config, tmp / "config.toml"),
                           {SIGNER_ENV: stack.keys.signer.private_key.hex()},
                           args=["--log-level", "debug", "--log-format", "json"]).start()
    try:
        daemon.wait_ready()
        holder = _On(stack)
        event = ask(stack, ask_params(holder, ResultSpec(ResultType.BOOL)))
        wait_delivered(holder, event.request_id)
        key = key_of(holder, event.request_id)
        wait_until(lambda: any(line.get("outcome") == "fulfilled" and line.get("request") == key
                               for line in _json_lines(daemon.log())), 30, what="the fulfilled line")
    finally:
        assert daemon.stop() == 0, daemon.log()[-3000:]
    lines = _json_lines(daemon.log())  # every line parses: nothing else is written
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    mine = [line for line in lines if line.get("request") == key]
    # one line per transition: DEBUG, but INFO for a move that is an outcome (no second line for it)
    moves = [(line["from"], line["state"], line["level"]) for line in mine if "from" in line]
    assert moves[-5:] == [("confirmed", "accepted", "DEBUG"), ("accepted", "answered", "DEBUG"),
                          ("answered", "signed", "DEBUG"), ("signed", "submitted", "DEBUG"),
                          ("submitted", "fulfilled", "INFO")], moves
    outcomes = [(line["level"], line["outcome"]) for line in mine if line.get("outcome")]
    assert outcomes == [("INFO", "answered"), ("INFO", "fulfilled")], outcomes
    answered = next(line for line in mine if line.get("outcome") == "answered")
    assert (answered["chain"], answered["chain_id"], answered["reason"]) == ("local", stack.chain_id, "")
    assert answered["message"] == f"chain local: request {key} answered by dev-model-2026-01-01"
    fulfilled = next(line for line in mine if line.get("outcome") == "fulfilled")
    assert re.fullmatch(r"0x[0-9a-f]{64}", fulfilled["tx"])


@dataclass
class _On:
    """A setup for `ask_params` and `wait_delivered`: the stack alone (the daemon here has options of its own)."""

    stack: LocalStack


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def behind_proxy(env: tuple[LocalStack, ModelServer, Path]) -> Iterator[tuple[Any, FaultProxy]]:
    stack, model, tmp = env
    proxy = FaultProxy(stack.rpc_url, stack.ws_url).start()
    run = start_daemon(stack, model, tmp, rpc_url=proxy.rpc_url, ws_url=proxy.ws_url)
    try:
        run.daemon.wait_ready()
        yield run, proxy
    finally:
        code = run.daemon.stop()
        proxy.stop()
        assert code == 0, run.daemon.log()[-3000:]


def test_an_rpc_outage_is_logged_when_it_starts_and_ends_not_per_retry(behind_proxy: tuple[Any, FaultProxy]) -> None:
    run, proxy = behind_proxy
    first = ask(run.stack, ask_params(run, ResultSpec(ResultType.BOOL)))
    wait_delivered(run, first.request_id)
    before = len(run.daemon.log().splitlines())
    calls_before = sum(proxy.counts.calls.values())

    proxy.knobs.down = True
    began = time.monotonic()
    wait_until(lambda: "node http://127.0.0.1" in _since(run, before) and "failing" in _since(run, before), 30,
               what="the outage's first line")
    # The outage lasts OUTAGE_SECONDS, with the daemon retrying all along (each sweep, monitor pass, ...).
    wait_until(lambda: time.monotonic() - began >= OUTAGE_SECONDS, OUTAGE_SECONDS + 5, interval=0.5,
               what="the outage to last")
    retried = sum(proxy.counts.calls.values()) - calls_before
    proxy.knobs.down = False

    second = ask(run.stack, ask_params(run, ResultSpec(ResultType.BOOL)))
    wait_delivered(run, second.request_id, timeout=60)
    wait_until(lambda: "recovered after" in _since(run, before), 30, what="the outage's last line")
    during = _since(run, before).splitlines()
    warnings = [line for line in during if " WARNING " in line]
    assert retried >= 20, f"the daemon asked the node only {retried} times during the outage"
    # start and end, and a line a minute while it lasts
    assert len(warnings) <= 2 + int(OUTAGE_SECONDS // 60), "\n".join(warnings)
    assert any("failing" in line for line in warnings) and any("recovered after" in line for line in warnings)
    assert not any("sweep failed" in line or "monitoring transactions failed" in line for line in during)
    assert proxy.ws_url not in run.daemon.log()  # URLs only by their origin: a path can hold an API key


def test_scheduler_job_runs_are_not_logged_at_the_default_level(behind_proxy: tuple[Any, FaultProxy]) -> None:
    run, _ = behind_proxy
    # the stats job's own line says a job ran (every 30 s)
    wait_until(lambda: re.search(r"chain local: head \d+", run.daemon.log()), 45, interval=0.5,
               what="the stats job to run")
    log = run.daemon.log()
    assert "Running job" not in log and "executed successfully" not in log


def _since(run: Any, line_count: int) -> str:
    return "\n".join(run.daemon.log().splitlines()[line_count:])


def test_no_key_or_password_in_a_whole_run_at_debug(tmp_path: Path) -> None:
    with LocalStack() as stack:
        network = f"eip155:{stack.chain_id}"
        facilitator = Facilitator(stack.rpc_url, stack.keys.facilitator.private_key, [network]).start()
        paywall = Paywall(facilitator.url, network, stack.addresses["TestUSD"], stack.keys.owner.address, 3_000)
        model = ModelServer(paywall=paywall).start()
        password = "keystore-password-7f3a"
        signer_key = bytes(stack.keys.signer.private_key)
        keystore = tmp_path / "signer.json"
        keystore.write_text(json.dumps(Account.encrypt(signer_key, password, iterations=2)))
        (tmp_path / "pw.txt").write_text(password)
        config = dev_config(stack, model.base_url, tmp_path / "oracle.sqlite")
        config["signer"] = {"keystore": str(keystore), "password_file": str(tmp_path / "pw.txt")}
        config["models"] = [paid_model(stack, model.base_url, 3_000, model="dev-model-2026-01-01")]
        config["x402"] = x402_section(stack, reconcile_interval=1.0)
        wallet_key = bytes(stack.keys.payment_wallet.private_key)
        token = "operator-token-c41d9e"
        daemon = DaemonProcess(write_config(config, tmp_path / "config.toml"),
                               {PAYMENT_ENV: "0x" + wallet_key.hex(), "ORACLE_API_TOKEN": token},
                               args=["--log-level", "debug"]).start()
        try:
            daemon.wait_ready()
            holder = _On(stack)
            ids = [ask(stack, ask_params(holder, spec)).request_id
                   for spec in (ResultSpec(ResultType.BOOL), ResultSpec(ResultType.TEXT, 64))]
            wait_until(lambda: all(fulfillments_per_request(stack)[i] == 1 for i in ids), 60, what="fulfillments")
            wait_until(lambda: daemon.log().count("-> settled") >= 2, 30, what="both payments settled")
            # the token used, and a wrong one tried: neither is logged
            for given in (token, token + "-wrong"):
                asked = urllib.request.Request(daemon.api_url() + "/v1/chains/local/resume", method="POST",
                                               headers={"Authorization": f"Bearer {given}"})
                with contextlib.suppress(urllib.error.HTTPError), urllib.request.urlopen(asked, timeout=10):
                    pass
        finally:
            code = daemon.stop()
            model.stop()
            facilitator.stop()
        log = daemon.log().lower()
        assert code == 0 and "payment" in log and "-> fulfilled" in log
        for key in (signer_key, wallet_key):
            assert key.hex() not in log  # with or without 0x: the bare digits are in both
        assert password.lower() not in log and token not in log


def test_a_provider_down_is_one_incident_not_a_line_per_call(env: tuple[LocalStack, ModelServer, Path]) -> None:
    stack, model, tmp = env
    config = dev_config(stack, model.base_url, tmp / "oracle.sqlite")
    config["router"] = {"breaker_cooldown": 0.5, "breaker_cooldown_max": 1.0, "backoff": 0.01}
    daemon = DaemonProcess(write_config(config, tmp / "config.toml"), {SIGNER_ENV: stack.keys.signer.private_key.hex()})
    daemon.start()
    on = _On(stack)
    try:
        daemon.wait_ready()
        model.knobs.error_rate = 1.0  # every call answered with HTTP 500

        def failed_once_more() -> bool:
            # an open breaker answers without calling, so ask until the server has refused six calls
            request_id = ask(stack, ask_params(on, ResultSpec(ResultType.BOOL))).request_id
            assert wait_delivered(on, request_id)["status"] != 1  # answered with a failure status
            return model.books.total >= 6
        wait_until(failed_once_more, 120, interval=0.2, what="six failed calls to the provider")
        calls_while_down = model.books.total
        model.knobs.error_rate = 0.0

        def answered_again() -> bool:
            request_id = ask(stack, ask_params(on, ResultSpec(ResultType.BOOL))).request_id
            return bool(wait_delivered(on, request_id)["status"] == 1)
        wait_until(answered_again, 60, interval=0.2, what="a request answered once the provider is back")
        wait_until(lambda: "recovered after" in daemon.log(), 30, what="the incident's last line")
    finally:
        assert daemon.stop() == 0, daemon.log()[-3000:]
    warnings = [line for line in daemon.log().splitlines() if " WARNING " in line]
    assert calls_while_down >= 6
    assert len(warnings) == 2, "\n".join(warnings)
    assert "deployment local (local): failing (" in warnings[0]
    assert re.search(r"deployment local \(local\): recovered after \d+ s and \d+ failures", warnings[1])
