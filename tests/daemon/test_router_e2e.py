"""The router inside the running daemon: three providers, one per wire format (OpenAI, Anthropic, Gemini).
An ensemble's median lands on-chain with its members named in the receipt, a fallback list moves past a
failing provider, and `oracle receipt` recomputes each decision from the stored catalog."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from oracle.devnet import LocalStack
from oracle.devnet.answer import ask
from oracle.devnet.harness import SIGNER_ENV, DaemonProcess, dev_config, wait_until, write_config
from oracle.devnet.model_server import ModelServer
from oracle.protocol import ReasonCode, RequestParams, ResultSpec, ResultType, Status, model_used
from oracle.store import Store, request_key

APIS = ("openai", "anthropic", "gemini")


@dataclass
class Providers:
    stack: LocalStack
    servers: dict[str, ModelServer]
    daemon: DaemonProcess
    config_path: Path
    store_path: Path


@pytest.fixture(scope="module")
def providers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Providers]:
    tmp = tmp_path_factory.mktemp("providers")
    with LocalStack() as stack:
        servers = {api: ModelServer(answer_seed=i).start() for i, api in enumerate(APIS)}
        config = dev_config(stack, servers["openai"].base_url, tmp / "oracle.sqlite")
        config["models"] = [
            {"id": f"{api}-dep", "provider": api, "api": api, "model": f"{api}-model-2026-01-01",
             "base_url": server.base_url if api == "openai" else server.root_url, "payer": "none",
             "input_price": 100_000 * (i + 1), "output_price": 400_000, "context_window": 32_000,
             "max_output": 1_024, "capabilities": ["json_schema"] + (["seed"] if api != "anthropic" else []),
             "quality": 3, "timeout": 5.0}
            for i, (api, server) in enumerate(servers.items())]
        config["router"] = {"backoff": 0.01, "retries": 1}
        path = write_config(config, tmp / "config.toml")
        daemon = DaemonProcess(path, {SIGNER_ENV: stack.keys.signer.private_key.hex()}).start()
        try:
            yield Providers(stack, servers, daemon, path, tmp / "oracle.sqlite")
        finally:
            code = daemon.stop()
            for server in servers.values():
                server.stop()
            assert code == 0, daemon.log()[-3000:]


def _params(p: Providers, spec: str, result: ResultSpec, prompt: str) -> RequestParams:
    now = p.stack.w3.eth.get_block("latest")["timestamp"]
    return RequestParams(p.stack.addresses["TypedResultsConsumer"], 500_000, now + 300, 64, 0, 1, spec,
                         prompt.encode(), result)


def _delivered(p: Providers, request_id: bytes) -> dict[str, Any]:
    names = ["delivered", "status", "reasonCode", "text", "flag", "unsignedValue", "signedValue", "modelUsed",
             "receiptHash"]
    consumer = p.stack.contract("TypedResultsConsumer")
    wait_until(lambda: consumer.functions.decoded(request_id).call()[0], 30, what="fulfillment")
    return dict(zip(names, consumer.functions.decoded(request_id).call(), strict=True))


def _receipt(p: Providers, request_id: bytes) -> dict[str, Any]:
    key = request_key(p.stack.chain_id, p.stack.addresses["AIOracle"], request_id)
    store = Store.open(p.store_path)
    try:
        stored = store.requests.receipt(key)
    finally:
        store.close()
    assert stored is not None
    return dict(json.loads(stored[0]))


def _audit(p: Providers, request_id: bytes) -> subprocess.CompletedProcess[str]:
    key = request_key(p.stack.chain_id, p.stack.addresses["AIOracle"], request_id)
    return subprocess.run([sys.executable, "-m", "oracle", "receipt", "--config", str(p.config_path), key],
                          capture_output=True, text=True, timeout=60)


def test_an_ensemble_of_three_providers_answers_the_median(providers: Providers) -> None:
    result = ResultSpec(ResultType.UINT, min=0, max=1_000_000)
    event = ask(providers.stack, _params(providers, "ensemble:3", result, "How many votes will pass?"),
                extra_fee=10**16)
    decoded = _delivered(providers, event.request_id)
    assert decoded["status"] == Status.SUCCESS, providers.daemon.log()[-3000:]
    key = request_key(providers.stack.chain_id, providers.stack.addresses["AIOracle"], event.request_id)
    values = sorted(server.books.answers[key] for server in providers.servers.values())
    assert decoded["unsignedValue"] == values[1]
    models = [f"{api}-model-2026-01-01" for api in APIS]
    assert decoded["modelUsed"] == model_used(models)
    receipt = _receipt(providers, event.request_id)
    ensemble = receipt["router"]["ensemble"]
    assert ensemble["method"] == "median" and ensemble["disagreement"] == values[2] - values[0]
    assert sorted(receipt["final"]["models"]) == sorted(models)
    audit = _audit(providers, event.request_id)
    assert audit.returncode == 0 and "matches" in audit.stderr, audit.stderr


def test_a_fallback_list_moves_past_a_failing_provider(providers: Providers) -> None:
    anthropic = providers.servers["anthropic"]
    anthropic.knobs.force = "500"
    try:
        spec = "anthropic-model-2026-01-01,gemini-model-2026-01-01"
        event = ask(providers.stack, _params(providers, spec, ResultSpec(ResultType.BOOL), "Is this proposal safe?"))
        decoded = _delivered(providers, event.request_id)
    finally:
        anthropic.knobs.force = None
    assert decoded["status"] == Status.SUCCESS and decoded["modelUsed"] == model_used(["gemini-model-2026-01-01"])
    receipt = _receipt(providers, event.request_id)
    tried = [(a["deployment"], a["outcome"], a["kind"]) for a in receipt["router"]["attempts"]]
    assert tried == [("anthropic-dep", "error", "transient")] * 2 + [("gemini-dep", "ok", "")]
    assert [d for d, _ in receipt["router"]["decision"]["plan"]] == ["anthropic-dep", "gemini-dep"]
    assert _audit(providers, event.request_id).returncode == 0


def test_a_context_length_error_everywhere_is_reported_as_prompt_too_large(providers: Providers) -> None:
    event = ask(providers.stack, _params(providers, "cheapest", ResultSpec(ResultType.BOOL), "long [[context]]"))
    decoded = _delivered(providers, event.request_id)
    assert (decoded["status"], decoded["reasonCode"]) == (Status.FAILURE, ReasonCode.PROMPT_TOO_LARGE)
    receipt = _receipt(providers, event.request_id)
    assert {a["kind"] for a in receipt["router"]["attempts"]} == {"context_length"}
    assert len(receipt["router"]["attempts"]) == 3  # each provider once: no retry of a request-specific error
