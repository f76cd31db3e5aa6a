"""`oracle status`, `requests`, `request-info`, `models` and `payments` as subprocesses, against the store
of a real daemon on the local stack that answered a free request, a paid one (x402) and one it refused,
while that daemon still runs and holds its store's lock. Values are checked against the chain: hashes,
gas used and cost, balances, payments. Then what each bad input gets: one line, the right exit code."""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hexbytes import HexBytes
from web3.exceptions import TransactionNotFound

from oracle.devnet import LocalStack
from oracle.devnet.answer import ask
from oracle.devnet.facilitator import Facilitator
from oracle.devnet.harness import (
    DEV_MODEL,
    PAID_MODEL,
    PAYMENT_ENV,
    SIGNER_ENV,
    DaemonProcess,
    dev_config,
    dev_model,
    paid_model,
    wait_until,
    write_config,
    x402_section,
)
from oracle.devnet.model_server import ModelServer
from oracle.devnet.paywall import Paywall
from oracle.protocol import ReasonCode, ResultSpec, ResultType, Status
from oracle.store import Store, StoreInUse, StoreLock
from tests.daemon.helpers import ask_params, gas_paid_on_chain, wait_delivered

PRICE = 2_500
UINT = ResultSpec(ResultType.UINT, min=0, max=100)
API_TOKEN = "t0ken-for-the-operator-api-0123456789abcdef"
API_TOKEN_ENV = "ORACLE_API_TOKEN"


@dataclass
class Inspected:
    stack: LocalStack
    daemon: DaemonProcess
    config_path: Path
    store_path: Path
    free_server: ModelServer
    paid_server: ModelServer
    free: bytes = b""  # request ids: answered by the free local model
    paid: bytes = b""  # answered by the model behind the x402 paywall
    refused: bytes = b""  # names no model the catalog has: answered on-chain with a failure


@pytest.fixture(scope="module")
def inspected(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inspected]:
    tmp = tmp_path_factory.mktemp("inspect")
    with LocalStack() as stack:
        network = f"eip155:{stack.chain_id}"
        facilitator = Facilitator(stack.rpc_url, stack.keys.facilitator.private_key, [network]).start()
        free_server = ModelServer().start()
        paid_server = ModelServer(paywall=Paywall(facilitator.url, network, stack.addresses["TestUSD"],
                                                  stack.keys.owner.address, PRICE)).start()
        config = dev_config(stack, free_server.base_url, tmp / "oracle.sqlite")
        config["models"] = [dev_model(free_server.base_url), paid_model(stack, paid_server.base_url, PRICE)]
        config["x402"] = x402_section(stack, reconcile_interval=1.0)
        config["api"] = {"operator": {"port": 0}, "public": {"enabled": True, "port": 0}, "token_env": API_TOKEN_ENV}
        config_path = write_config(config, tmp / "config.toml")
        daemon = DaemonProcess(config_path, {SIGNER_ENV: stack.keys.signer.private_key.hex(),
                                             PAYMENT_ENV: stack.keys.payment_wallet.private_key.hex(),
                                             API_TOKEN_ENV: API_TOKEN}).start()
        try:
            daemon.wait_ready()
            run = Inspected(stack, daemon, config_path, tmp / "oracle.sqlite", free_server, paid_server)
            run.free = ask(stack, ask_params(run, UINT, prompt="free")).request_id
            run.paid = ask(stack, ask_params(run, UINT, prompt="paid", model_spec=PAID_MODEL)).request_id
            run.refused = ask(stack, ask_params(run, UINT, model_spec="no-such-model-2020-01-01")).request_id
            for request_id in (run.free, run.paid, run.refused):
                wait_delivered(run, request_id, timeout=60)
            # settled in the store too, every transaction final and the payment settled: nothing moves after
            wait_until(lambda: _settled(run), 60, what="the store to settle the three requests")
            yield run
        finally:
            code = daemon.stop()
            paid_server.stop()
            free_server.stop()
            facilitator.stop()
            assert code == 0, daemon.log()[-3000:]
            assert API_TOKEN not in daemon.log()


def _settled(run: Inspected) -> bool:
    store = Store.open_reader(run.store_path)
    try:
        states = store.requests.count_by_state()
        txs = store.queries.txs_carrying(run.stack.chain_id, _key(run, run.free))
        payments = store.payments.payments()
        final = any(t.state == "confirmed" for t in txs) and all(t.state in ("confirmed", "replaced", "dropped")
                                                                  for t in txs)
        return states == {"fulfilled": 3} and final and [p.state for p in payments] == ["settled"]
    finally:
        store.close()


def _key(run: Inspected, request_id: bytes) -> str:
    return f"{run.stack.chain_id}:{run.stack.addresses['AIOracle'].lower()}:0x{request_id.hex()}"


def oracle(run: Inspected, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The command as an operator runs it: without the signer's or wallet's key in its environment."""
    env = {k: v for k, v in os.environ.items() if k not in (SIGNER_ENV, PAYMENT_ENV)}
    return subprocess.run([sys.executable, "-m", "oracle", args[0], "--config", str(config or run.config_path),
                           *args[1:]], capture_output=True, text=True, timeout=60, env=env)


def as_json(run: Inspected, *args: str) -> Any:
    done = oracle(run, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _fulfilled_event(run: Inspected, request_id: bytes) -> Any:
    (event,) = run.stack.contract("AIOracle").events.Fulfilled().get_logs(
        from_block=0, argument_filters={"requestId": request_id})
    return event


# ---------------------------------------------------------------- the store the daemon filled


def test_every_confirmed_transaction_carries_gas_used_and_cost_from_its_receipt(inspected: Inspected) -> None:
    store = Store.open_reader(inspected.store_path)
    try:
        txs = [t for key in {_key(inspected, r) for r in (inspected.free, inspected.paid, inspected.refused)}
               for t in store.queries.txs_carrying(inspected.stack.chain_id, key)]
    finally:
        store.close()
    # A loaded machine may have had a transaction re-priced: the one mined is confirmed with its receipt's
    # figures, the one it replaced was never mined and carries none.
    mined = [t for t in txs if t.state == "confirmed"]
    assert mined and all(t.state in ("confirmed", "replaced", "dropped") for t in txs)
    for t in mined:
        receipt = inspected.stack.w3.eth.get_transaction_receipt(HexBytes(t.tx_hash))
        assert t.gas_used == receipt["gasUsed"]
        assert t.gas_cost == receipt["gasUsed"] * receipt["effectiveGasPrice"]
        assert t.block_number == receipt["blockNumber"]
    for t in txs:
        if t.state != "confirmed":
            assert (t.gas_used, t.gas_cost, t.block_number) == (None, None, None)
            with pytest.raises(TransactionNotFound):
                inspected.stack.w3.eth.get_transaction_receipt(HexBytes(t.tx_hash))


def test_the_commands_read_while_the_daemon_runs_and_holds_the_store_lock(inspected: Inspected) -> None:
    assert inspected.daemon.alive()
    with pytest.raises(StoreInUse):
        StoreLock(inspected.store_path).acquire()
    for command in ("status", "requests", "models", "payments"):
        done = oracle(inspected, command)
        assert done.returncode == 0, (command, done.stderr)
        assert done.stderr == ""


# ---------------------------------------------------------------- oracle status


def test_status_counts_spend_and_balances_as_the_chain_shows_them(inspected: Inspected) -> None:
    stack = inspected.stack
    (status,) = as_json(inspected, "status")
    head = stack.w3.eth.block_number
    assert (status["name"], status["chain_id"], status["oracle"]) == ("local", stack.chain_id,
                                                                      stack.addresses["AIOracle"])
    assert status["chain_error"] is None
    assert status["head"] == head and status["cursor"] is not None and status["lag"] == head - status["cursor"]
    assert status["requests_by_state"] == {"fulfilled": 3} and status["pending"] == 0
    assert status["failures_today"] == 1  # the refused one, answered with a failure status
    assert int(status["gas_spent_today_wei"]) == gas_paid_on_chain(stack)
    budget = 100 * 10**18
    assert int(status["gas_left_today_wei"]) == budget - gas_paid_on_chain(stack)
    assert status["x402_spend_today"] == {stack.addresses["TestUSD"]: str(PRICE)}
    assert status["model_spend_today_micro_usd"] > 0
    # the keys are not in the command's environment: the addresses come from the store's records
    assert status["signer"] == stack.keys.signer.address
    assert int(status["signer_balance_wei"]) == stack.w3.eth.get_balance(stack.keys.signer.address)
    assert status["payment_wallet"] == stack.keys.payment_wallet.address
    held = stack.contract("TestUSD").functions.balanceOf(stack.keys.payment_wallet.address).call()
    assert status["payment_wallet_balances"] == {stack.addresses["TestUSD"]: str(held)}


def test_status_as_a_table(inspected: Inspected) -> None:
    done = oracle(inspected, "status")
    assert done.returncode == 0, done.stderr
    assert f"chain local (id {inspected.stack.chain_id}), oracle {inspected.stack.addresses['AIOracle']}" in done.stdout
    assert re.search(r"^  intake     head \d+, cursor \d+, lag \d+ blocks$", done.stdout, re.MULTILINE), done.stdout
    assert "  requests   0 pending; by state: fulfilled 3" in done.stdout
    assert re.search(rf"^  signer     {inspected.stack.keys.signer.address}, balance \d+\.\d+$", done.stdout,
                     re.MULTILINE), done.stdout


def test_status_offline_reads_no_node(inspected: Inspected, tmp_path: Path) -> None:
    # a config whose node is gone: --offline never asks it; without it, the status says it did not answer
    text = inspected.config_path.read_text().replace(inspected.stack.rpc_url, "http://127.0.0.1:9")
    gone = tmp_path / "gone.toml"
    gone.write_text(text)
    (offline,) = as_json(inspected, "status", "--offline")
    assert offline["head"] is None and offline["lag"] is None and offline["chain_error"] is None
    assert offline["requests_by_state"] == {"fulfilled": 3}
    done = oracle(inspected, "status", "--json", config=gone)
    assert done.returncode == 0, done.stderr
    (unreachable,) = json.loads(done.stdout)
    assert unreachable["head"] is None and "http://127.0.0.1:9" in unreachable["chain_error"]
    assert unreachable["gas_spent_today_wei"] == offline["gas_spent_today_wei"]


# ---------------------------------------------------------------- oracle requests


def test_requests_lists_newest_first_with_outcomes(inspected: Inspected) -> None:
    page = as_json(inspected, "requests")
    ids = [r["request_id"] for r in page["items"]]
    assert ids == ["0x" + r.hex() for r in (inspected.refused, inspected.paid, inspected.free)]
    assert page["next_cursor"] is None
    refused = page["items"][0]
    assert (refused["state"], refused["status"], refused["reason"]) == ("fulfilled", "failure", "unknown_model")
    assert refused["fulfill_tx"] == _fulfilled_event(inspected, inspected.refused)["transactionHash"].to_0x_hex()
    done = oracle(inspected, "requests")
    assert re.search(rf"local  0x{inspected.refused.hex()}  fulfilled  failure: unknown_model", done.stdout), \
        done.stdout


def test_requests_page_by_cursor_gives_each_once(inspected: Inspected) -> None:
    seen: list[str] = []
    cursor: list[str] = []
    for _ in range(4):
        page = as_json(inspected, "requests", "--limit", "1", *cursor)
        seen += [r["key"] for r in page["items"]]
        if page["next_cursor"] is None:
            break
        cursor = ["--cursor", page["next_cursor"]]
    assert seen == [_key(inspected, r) for r in (inspected.refused, inspected.paid, inspected.free)]
    text = oracle(inspected, "requests", "--limit", "1").stdout
    assert re.search(r"^more: add --cursor \S+$", text, re.MULTILINE), text


def test_requests_filters_by_state_time_and_chain(inspected: Inspected) -> None:
    assert len(as_json(inspected, "requests", "--state", "FULFILLED")["items"]) == 3
    assert as_json(inspected, "requests", "--state", "pending")["items"] == []
    assert len(as_json(inspected, "requests", "--since", "1h", "--chain", "local")["items"]) == 3
    tomorrow = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)).strftime("%Y-%m-%d")
    assert as_json(inspected, "requests", "--since", tomorrow)["items"] == []
    done = oracle(inspected, "requests", "--state", "expired")
    assert done.returncode == 0 and done.stdout.strip() == "no requests on record match"


# ---------------------------------------------------------------- oracle request-info


def test_request_info_matches_the_chain(inspected: Inspected) -> None:
    stack, event = inspected.stack, _fulfilled_event(inspected, inspected.free)
    # the id in capitals and without 0x: the same request
    info = as_json(inspected, "request-info", inspected.free.hex().upper())
    assert info["request"]["key"] == _key(inspected, inspected.free)
    assert (info["request"]["state"], info["request"]["status"]) == ("fulfilled", "success")
    assert (info["model_spec"], info["result_type"]) == (DEV_MODEL, "uint")
    (tx,) = info["transactions"]
    receipt = stack.w3.eth.get_transaction_receipt(event["transactionHash"])
    assert tx["tx_hash"] == event["transactionHash"].to_0x_hex() == info["request"]["fulfill_tx"]
    assert (tx["state"], tx["block_number"], tx["gas_used"]) == ("confirmed", receipt["blockNumber"],
                                                                  receipt["gasUsed"])
    assert int(tx["gas_cost_wei"]) == receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert info["receipt_hash"] == "0x" + event["args"]["receiptHash"].hex()
    assert info["receipt"]["final"]["status"] == "success"
    (attempt,) = info["attempts"]
    assert (attempt["deployment"], attempt["model"], attempt["outcome"]) == ("local", DEV_MODEL, "ok")
    assert attempt["cost_micro_usd"] > 0 and attempt["payment_id"] is None
    states = [h["state"] for h in info["history"]]
    assert states[0] in ("seen", "confirmed") and states[-1] == "fulfilled"
    assert {"accepted", "answered", "signed", "submitted"} <= set(states)
    times = [h["at"] for h in info["history"]]
    assert times == sorted(times)


def test_request_info_of_a_refused_request_gives_the_reason_and_detail(inspected: Inspected) -> None:
    info = as_json(inspected, "request-info", "0x" + inspected.refused.hex())
    assert (info["request"]["status"], info["request"]["reason"]) == ("failure", "unknown_model")
    assert "no deployment serves" in info["detail"]
    # the history shows the step that decided it (the router found no deployment), with the reason
    decided = [h for h in info["history"] if h["reason"] == "unknown_model"]
    assert decided[0]["state"] == "answered" and "no deployment serves" in decided[0]["detail"]
    assert info["attempts"] == []
    event = _fulfilled_event(inspected, inspected.refused)
    assert (event["args"]["status"], event["args"]["reasonCode"]) == (Status.FAILURE, ReasonCode.UNKNOWN_MODEL)
    text = oracle(inspected, "request-info", inspected.refused.hex()).stdout
    assert "state      fulfilled (failure: unknown_model)" in text and "detail     " in text
    assert f"receipt    0x{event['args']['receiptHash'].hex()}" in text


def test_request_info_of_a_paid_request_names_its_payment(inspected: Inspected) -> None:
    info = as_json(inspected, "request-info", inspected.paid.hex())
    (attempt,) = info["attempts"]
    (payment,) = info["payments"]
    assert attempt["deployment"] == "paid" and attempt["payment_id"] == payment["id"]
    assert (payment["state"], payment["amount"], payment["payer"]) == ("settled", str(PRICE),
                                                                       inspected.stack.keys.payment_wallet.address)
    settlement = inspected.stack.w3.eth.get_transaction_receipt(payment["tx_hash"])
    assert settlement["status"] == 1
    # the table's row of the call: its tokens as the provider counted them, its cost, its payment
    usage, receipt_usage = attempt["usage"], info["receipt"]["router"]["attempts"][0]["usage"]
    assert usage == receipt_usage and usage["input"] > 0
    text = oracle(inspected, "request-info", inspected.paid.hex()).stdout
    assert re.search(rf"^  1  paid .* ok .* {usage['input']}/{usage['output']}\s+{PRICE}\s+{payment['id']} settled "
                     rf"{PRICE}$", text, re.MULTILINE), text


# ---------------------------------------------------------------- oracle models, oracle payments


def test_models_lists_the_catalog_with_prices_and_health(inspected: Inspected) -> None:
    models = {m["id"]: m for m in as_json(inspected, "models")}
    assert set(models) == {"local", "paid"}
    local, paid = models["local"], models["paid"]
    assert (local["model"], local["input_price"], local["output_price"]) == (DEV_MODEL, 150_000, 600_000)
    assert (paid["model"], paid["payer"], paid["call_price"]) == (PAID_MODEL, "x402", PRICE)
    assert (local["health"], local["calls"], local["failures"]) == ("ok", 1, 0)
    assert (paid["health"], paid["calls"]) == ("ok", 1)
    assert "json_schema" in local["capabilities"]
    text = oracle(inspected, "models").stdout
    assert re.search(rf"^paid\s+{PAID_MODEL}\s+x402\s+{PRICE}/call\s", text, re.MULTILINE), text


def test_payments_lists_the_settled_payment(inspected: Inspected) -> None:
    page = as_json(inspected, "payments", "--state", "Settled")
    (payment,) = page["items"]
    assert payment["request_key"] == _key(inspected, inspected.paid)
    assert payment["asset"] == inspected.stack.addresses["TestUSD"]
    assert as_json(inspected, "payments", "--state", "unresolved")["items"] == []
    done = oracle(inspected, "payments")
    assert re.search(rf"^1\s+\S+ \S+\s+settled\s+paid-local\s+{PRICE}\s", done.stdout, re.MULTILINE), done.stdout


# ---------------------------------------------------------------- what bad input gets


@pytest.mark.parametrize(("args", "code", "says"), [
    (["requests", "--state", "bogus"], 2, "unknown request state 'bogus': use one of seen, confirmed"),
    (["requests", "--since", "last tuesday"], 2, "not a time: 'last tuesday'"),
    (["requests", "--limit", "0"], 2, "limit must be a whole number from 1 to 1000"),
    (["requests", "--cursor", "not-a-cursor"], 2, "not a cursor of this list"),
    (["requests", "--chain", "mainnet"], 2, "no chain named 'mainnet' in the config; its chains are: 'local'"),
    (["request-info", "0x1234"], 2, "not a request id: '0x1234': give 64 hex digits"),
    (["request-info", "'; DROP TABLE requests; --"], 2, "not a request id"),
    (["request-info", "ab" * 32], 1, f"no request 0x{'ab' * 32} on record in this store"),
    (["payments", "--state", "fulfilled"], 2, "unknown payment state 'fulfilled': use one of reserved"),
])
def test_bad_input_gets_one_line_and_its_exit_code(inspected: Inspected, args: list[str], code: int,
                                                   says: str) -> None:
    done = oracle(inspected, *args)
    assert done.returncode == code, done.stderr
    assert says in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stdout == ""


def test_a_payments_cursor_is_refused_by_requests(inspected: Inspected) -> None:
    from oracle.views.paging import encode_cursor

    done = oracle(inspected, "requests", "--cursor", encode_cursor("payments", [5]))
    assert done.returncode == 2 and "not a cursor of this list" in done.stderr


def test_a_missing_store_or_config_is_named(inspected: Inspected, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.toml"
    elsewhere.write_text(inspected.config_path.read_text().replace(str(inspected.store_path),
                                                                    str(tmp_path / "none.sqlite")))
    done = oracle(inspected, "status", config=elsewhere)
    assert done.returncode == 2 and f"no store at {tmp_path / 'none.sqlite'}: check [store] path" in done.stderr
    assert not (tmp_path / "none.sqlite").exists()  # reading never creates a store
    done = oracle(inspected, "models", config=tmp_path / "absent.toml")
    assert done.returncode == 2 and "cannot read config" in done.stderr and "Traceback" not in done.stderr

