"""The daemon's HTTP API over HTTP, against a daemon on the local stack that answered a free request, a
paid one (x402) and one it refused (the inspection commands' run, with both listeners and a token):
every route's answers validated against its listener's OpenAPI document, values checked against the
chain and the servers' own books, metrics checked by promtool, the mutating routes refused without the
token (nothing changes), the public listener serving none of the operator's routes. What hostile input
gets: a malformed query, id, cursor or body is a 400 with what is accepted; an unknown one a 404; a
wrong token a 401."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from eth_utils import keccak
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

from oracle.devnet.answer import ask
from oracle.devnet.harness import wait_until
from tests.commands.test_inspection_commands import API_TOKEN, PRICE, UINT, Inspected, inspected
from tests.daemon.helpers import ask_params, gas_paid_on_chain, wait_delivered
from tests.http import Reply, send

__all__ = ["inspected"]  # the module-scoped daemon run this file reads (a module of its own, here)

TOKEN = API_TOKEN


class Served:
    """The daemon run of `inspected`, with its listeners' URLs."""

    def __init__(self, run: Inspected) -> None:
        self.run, self.stack, self.daemon = run, run.stack, run.daemon
        self.operator, self.public = run.daemon.api_url("operator"), run.daemon.api_url("public")
        self.free_server, self.paid_server = run.free_server, run.paid_server
        self.free, self.paid, self.refused = run.free, run.paid, run.refused


@pytest.fixture(scope="module")
def served(inspected: Inspected) -> Served:
    return Served(inspected)


# ---------------------------------------------------------------- HTTP as a client sends it


def call(url: str, method: str = "GET", token: str | None = None, body: Any = None,
         host: str | None = None) -> Reply:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    if host is not None:
        headers["Host"] = host
    return send(url, method, body, headers, timeout=30)


class Documented:
    """A listener's OpenAPI document, and the check of a reply against what it says."""

    def __init__(self, base: str) -> None:
        got = call(base + "/openapi.json")
        assert got.status == 200
        self.document = got.json()
        validate(self.document)  # a valid OpenAPI 3.1 document

    def check(self, template: str, method: str, reply: Reply) -> Any:
        responses = self.document["paths"][template][method.lower()]["responses"]
        assert str(reply.status) in responses, f"{method} {template} answered {reply.status}: not documented"
        content = responses[str(reply.status)]["content"]
        kind = reply.headers["Content-Type"].split(";")[0]
        assert kind in content, f"{method} {template}: {kind} is not documented"
        if kind != "application/json":
            return reply.body.decode()
        value = reply.json()
        schema = {**content[kind]["schema"], "components": self.document["components"]}
        Draft202012Validator(schema).validate(value)
        return value


def _route(run: Served, request_id: bytes) -> str:
    return f"/v1/requests/{run.stack.chain_id}/0x{request_id.hex()}"


def _fulfilled(run: Served, request_id: bytes) -> Any:
    (event,) = run.stack.contract("AIOracle").events.Fulfilled().get_logs(
        from_block=0, argument_filters={"requestId": request_id})
    return event


# ---------------------------------------------------------------- the operator's read routes


def test_every_operator_read_route_answers_as_its_document_says(served: Served) -> None:
    doc, base = Documented(served.operator), served.operator
    assert doc.check("/health", "GET", call(base + "/health"))["status"] == "ok"
    ready = doc.check("/ready", "GET", call(base + "/ready"))
    assert ready["ready"] is True and ready["failed"] == []
    assert {c["name"] for c in ready["checks"]} >= {"store", "rpc:local", "lag:local", "signer_balance:local",
                                                    "reorg:local"}
    assert "<html" in doc.check("/", "GET", call(base + "/")).lower()
    assert "oracle_requests" in doc.check("/metrics", "GET", call(base + "/metrics"))

    (live,) = doc.check("/v1/status", "GET", call(base + "/v1/status"))
    assert (live["intake_paused"], live["sending_held"], live["halted"]) == (None, None, None)
    status = live["status"]
    assert status["requests_by_state"] == {"fulfilled": 3} and status["pending"] == 0
    assert status["head"] == served.stack.w3.eth.block_number
    assert int(status["signer_balance_wei"]) == served.stack.w3.eth.get_balance(served.stack.keys.signer.address)

    page = doc.check("/v1/requests", "GET", call(base + "/v1/requests?state=fulfilled&limit=2&chain=local"))
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = doc.check("/v1/requests", "GET", call(base + f"/v1/requests?limit=2&cursor={page['next_cursor']}"))
    assert rest["next_cursor"] is None
    ids = {r["request_id"] for r in page["items"] + rest["items"]}
    assert ids == {"0x" + r.hex() for r in (served.free, served.paid, served.refused)}

    for request_id in (served.free, served.paid, served.refused):
        detail = doc.check("/v1/requests/{chain_id}/{request_id}", "GET",
                           call(base + _route(served, request_id).upper().replace("/V1/REQUESTS", "/v1/requests")))
        assert detail["request"]["state"] == "fulfilled"
        assert detail["receipt_hash"] == "0x" + bytes(_fulfilled(served, request_id)["args"]["receiptHash"]).hex()
        assert [h["state"] for h in detail["history"]][-1] == "fulfilled"
        (tx,) = [t for t in detail["transactions"] if t["state"] == "confirmed"]
        receipt = served.stack.w3.eth.get_transaction_receipt(tx["tx_hash"])
        assert tx["gas_used"] == receipt["gasUsed"]
        assert int(tx["gas_cost_wei"]) == receipt["gasUsed"] * receipt["effectiveGasPrice"]
    paid = call(base + _route(served, served.paid)).json()
    assert [(p["state"], p["amount"]) for p in paid["payments"]] == [("settled", str(PRICE))]
    assert call(base + _route(served, served.refused)).json()["request"]["reason"] == "unknown_model"

    payments = doc.check("/v1/payments", "GET", call(base + "/v1/payments?state=settled"))
    assert [p["amount"] for p in payments["items"]] == [str(PRICE)]
    entries = doc.check("/v1/catalog", "GET", call(base + "/v1/catalog"))
    assert {e["deployment"]["id"]: e["breaker"] for e in entries} == {"local": "closed", "paid": "closed"}
    assert {e["deployment"]["id"]: e["deployment"]["calls"] for e in entries} == {"local": 1, "paid": 1}


@pytest.mark.parametrize(("path", "status", "says"), [
    ("/v1/requests?state=bogus", 400, "unknown request state 'bogus'"),
    ("/v1/requests?limit=0", 400, "limit must be"),
    ("/v1/requests?limit=abc", 400, "limit must be"),
    ("/v1/requests?since=yesterday-ish", 400, "not a time"),
    ("/v1/requests?cursor=AAAA", 400, "not a cursor of this list"),
    ("/v1/requests?chain=mainnet", 404, "no chain 'mainnet' here"),
    ("/v1/requests/31337/0x1234", 400, "not a request id"),
    ("/v1/requests/31337/" + "ab" * 32, 404, "no request"),
    ("/v1/requests/1/" + "ab" * 32, 404, "no chain '1' here"),
    ("/v1/payments?state=paid", 400, "unknown payment state"),
    ("/v1/requests?status=failed", 400, "unknown parameter 'status': /v1/requests takes chain, state, since, limit"),
    ("/v1/payments?chain=local", 400, "unknown parameter 'chain'"),
    ("/v1/requests/31337/31337:0xab:0xcd", 400, "the path takes the chain and the request id apart"),
    ("/v1/nothing", 404, "no route /v1/nothing on the operator listener"),
])
def test_bad_queries_get_a_documented_error_that_says_what_is_accepted(
        served: Served, path: str, status: int, says: str) -> None:
    got = call(served.operator + path.replace("31337", str(served.stack.chain_id)))
    assert got.status == status and says in got.json()["error"], got.body


def test_a_wrong_method_or_host_a_sloppy_body_and_a_malformed_request_get_clear_answers(served: Served) -> None:
    base = served.operator
    got = call(base + "/v1/chains/local/pause")  # curl without -X POST
    assert got.status == 405 and got.headers["Allow"] == "POST" and "takes POST, not GET" in got.json()["error"]
    assert call(base + "/v1/status", "POST", TOKEN).status == 405
    # a page that made its own name resolve to 127.0.0.1 (DNS rebinding) is not answered
    got = call(base + "/v1/status", host="evil.example:8547")
    assert got.status == 403 and "answers requests to 127.0.0.1, localhost or [::1] only" in got.json()["error"]
    assert call(base + "/health", host=f"localhost:{base.rsplit(':', 1)[1]}").status == 200
    for path, body, says in [
            ("/v1/chains/local/resume", b"[1]", "the body must be a JSON object"),
            ("/v1/reconcile", {"x": 1}, "unknown field 'x': /v1/reconcile takes no field"),
            ("/v1/chains/local/pause", {"reason": 5}, "reason: a string of one line"),
            ("/v1/chains/local/pause", {"reason": "two\nlines"}, "reason: a string of one line"),
            ("/v1/chains/local/pause", {"reason": "ok", "until": 3}, "unknown field 'until'")]:
        got = call(base + path, "POST", TOKEN, body)
        assert got.status == 400 and says in got.json()["error"], (path, got.body)
    assert call(base + "/v1/requests?chain=LOCAL&limit=1").status == 200  # chain names in any case
    lines = len(served.daemon.log().splitlines())
    assert call(base + "/v1/requests?state=" + "a" * 20_000).status == 400
    marker = call(base + "/health")  # answered after it: the daemon has logged whatever it logs of it
    assert marker.status == 200
    after = "\n".join(served.daemon.log().splitlines()[lines:])
    assert "Traceback" not in after and "ERROR" not in after, after
    m = _samples(call(base + "/metrics").body.decode())
    assert m[("oracle_intake_paused", (("chain", "local"),))] == 0  # none of the refused bodies paused it


# ---------------------------------------------------------------- metrics


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_after_three_requests_equal_what_the_chain_and_the_servers_show(served: Served,
                                                                                tmp_path: Path) -> None:
    text = call(served.operator + "/metrics").body.decode()
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian's prometheus package) is needed: make test installs it"
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    m = _samples(text)
    stack = served.stack
    fulfilled_events = stack.contract("AIOracle").events.Fulfilled().get_logs(from_block=0)
    assert m[("oracle_requests", (("chain", "local"), ("state", "fulfilled")))] == len(fulfilled_events) == 3
    assert m[("oracle_requests", (("chain", "local"), ("state", "seen")))] == 0
    for stage in ("answered", "submitted", "fulfilled"):
        assert m[("oracle_request_stage_seconds_count", (("chain", "local"), ("stage", stage)))] == 3
    # model calls as each model server counted them (the refused request asked none)
    free_calls, paid_calls = sum(served.free_server.books.calls.values()), sum(served.paid_server.books.calls.values())
    assert m[("oracle_model_calls_total", (("deployment", "local"), ("outcome", "ok")))] == free_calls == 1
    assert m[("oracle_model_calls_total", (("deployment", "paid"), ("outcome", "ok")))] == paid_calls == 1
    assert m[("oracle_model_cost_micro_usd_total", (("deployment", "paid"),))] == PRICE
    assert m[("oracle_gas_spent_today_wei", (("chain", "local"),))] == gas_paid_on_chain(stack)
    # Prometheus values are float64: a balance of 10^22 wei is exact to 1 part in 2^53
    assert m[("oracle_signer_balance_wei", (("chain", "local"),))] == pytest.approx(stack.w3.eth.get_balance(
        stack.keys.signer.address), rel=1e-15)
    usd = stack.contract("TestUSD")
    assert m[("oracle_payment_wallet_balance", (("asset", usd.address), ("chain", "local")))] == \
        usd.functions.balanceOf(stack.keys.payment_wallet.address).call()
    assert m[("oracle_x402_payments", (("provider", "paid-local"), ("state", "settled")))] == 1
    assert m[("oracle_x402_budget_left", (("budget", "per_provider"), ("provider", "paid-local")))] == 10**9 - PRICE
    assert m[("oracle_head_block", (("chain", "local"),))] == stack.w3.eth.block_number
    assert m[("oracle_head_lag_blocks", (("chain", "local"),))] == 0
    assert m[("oracle_chain_halted", (("chain", "local"),))] == 0
    assert m[("oracle_breaker_state", (("deployment", "paid"), ("state", "closed")))] == 1
    # bounded labels: no requester, payer or request id anywhere
    for address in (stack.keys.payment_wallet.address, stack.keys.owner.address):
        assert address.lower() not in text.lower()
    assert served.free.hex() not in text


# ---------------------------------------------------------------- the token and the listeners


MUTATING = ["/v1/chains/local/pause", "/v1/chains/local/resume", "/v1/reconcile"]


@pytest.mark.parametrize("token", [None, "wrong", TOKEN + "x", ""])
def test_mutating_routes_refuse_without_the_token_and_change_nothing(served: Served, token: str | None) -> None:
    doc = Documented(served.operator)
    routes = [*MUTATING, _route(served, served.refused) + "/retry"]
    templates = ["/v1/chains/{chain}/pause", "/v1/chains/{chain}/resume", "/v1/reconcile",
                 "/v1/requests/{chain_id}/{request_id}/retry"]
    for path, template in zip(routes, templates, strict=True):
        got = call(served.operator + path, "POST", token=token, body={"reason": "not allowed"})
        assert got.status == 401 and "Bearer" in got.headers.get("WWW-Authenticate", "")
        doc.check(template, "POST", got)
    m = _samples(call(served.operator + "/metrics").body.decode())
    assert m[("oracle_intake_paused", (("chain", "local"),))] == 0


def test_the_public_listener_serves_receipts_and_none_of_the_operator_routes(served: Served) -> None:
    doc = Documented(served.public)
    operator_routes = Documented(served.operator).document["paths"]
    for template in operator_routes:
        if template == "/openapi.json":
            continue
        path = (template.replace("{chain_id}", str(served.stack.chain_id)).replace("{chain}", "local")
                .replace("{request_id}", "0x" + served.free.hex()))
        for method in ("GET", "POST"):
            got = call(served.public + path, method, token=TOKEN)
            assert got.status == 404, (method, path, got.status)
    for request_id in (served.free, served.paid, served.refused):
        receipt_hash = bytes(_fulfilled(served, request_id)["args"]["receiptHash"])
        got = call(served.public + f"/v1/receipts/0x{receipt_hash.hex()}")
        doc.check("/v1/receipts/{hash}", "GET", got)
        assert keccak(got.body) == receipt_hash  # the bytes the chain's hash covers
        assert call(served.operator + f"/v1/receipts/0x{receipt_hash.hex()}").status == 404
    assert call(served.public + "/v1/receipts/0x" + "00" * 32).status == 404
    bad = call(served.public + "/v1/receipts/../../etc/passwd")
    assert bad.status in (400, 404)
    assert doc.check("/v1/receipts/{hash}", "GET", call(served.public + "/v1/receipts/xyz"))["error"].startswith(
        "not a receipt hash")


# ---------------------------------------------------------------- the actions, with the token


def test_pause_holds_new_requests_recorded_and_resume_answers_them(served: Served) -> None:
    doc, base = Documented(served.operator), served.operator
    paused = doc.check("/v1/chains/{chain}/pause", "POST", call(base + "/v1/chains/local/pause", "POST", TOKEN,
                                                                {"reason": "provider maintenance"}))
    assert paused == {"chain": "local", "chain_id": served.stack.chain_id, "intake_paused": "provider maintenance"}
    ready = call(base + "/ready").json()
    assert ready["ready"] is True and any(c["name"] == "intake:local" for c in ready["checks"])
    calls_before = sum(served.free_server.books.calls.values())
    held = ask(served.stack, ask_params(served, UINT, prompt="held while paused")).request_id
    marker = ask(served.stack, ask_params(served, UINT, prompt="a later one")).request_id
    wait_until(lambda: call(base + _route(served, marker)).status == 200, 30, what="the later request recorded")
    assert call(base + _route(served, held)).json()["request"]["state"] == "confirmed"
    assert sum(served.free_server.books.calls.values()) == calls_before
    m = _samples(call(base + "/metrics").body.decode())
    assert m[("oracle_intake_paused", (("chain", "local"),))] == 1
    assert call(base + "/v1/status").json()[0]["intake_paused"] == "provider maintenance"

    resumed = doc.check("/v1/chains/{chain}/resume", "POST", call(base + "/v1/chains/local/resume", "POST", TOKEN))
    assert resumed["intake_paused"] is None
    for request_id in (held, marker):
        wait_delivered(served, request_id, timeout=60)
    assert call(base + "/v1/chains/nowhere/pause", "POST", TOKEN).status == 404
    assert call(base + "/v1/chains/local/pause", "POST", TOKEN, b"[1,2]").status == 400
    assert call(base + "/v1/chains/local/pause", "POST", TOKEN, {"reason": "x" * 500}).status == 400
    assert call(base + "/v1/status").json()[0]["intake_paused"] is None


def test_retry_refuses_what_is_not_unprofitable_and_reconcile_runs_now(served: Served) -> None:
    doc, base = Documented(served.operator), served.operator
    got = call(base + _route(served, served.free) + "/retry", "POST", TOKEN)
    assert doc.check("/v1/requests/{chain_id}/{request_id}/retry", "POST", got)["error"].startswith(
        "request ") and got.status == 409 and "only an unprofitable request" in got.json()["error"]
    report = doc.check("/v1/reconcile", "POST", call(base + "/v1/reconcile", "POST", TOKEN))
    assert set(report) >= {"settled", "expired", "pending", "errors"} and report["errors"] == 0
