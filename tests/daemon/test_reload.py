"""SIGHUP to a running daemon on the local stack: a new price routes new requests by the new catalog while the
old receipts still recompute; a chain setting is reported and kept; a file that fails the config's checks is
refused and the daemon keeps answering."""

from __future__ import annotations

import copy
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from oracle.devnet import LocalStack
from oracle.devnet.answer import ask
from oracle.devnet.harness import SIGNER_ENV, DaemonProcess, dev_config, dev_model, wait_until, write_config
from oracle.devnet.model_server import ModelServer
from oracle.protocol import ResultSpec, ResultType
from oracle.store import Store
from tests.daemon.helpers import Running, ask_params, key_of, start_daemon, wait_delivered


def _two_deployments(model: ModelServer) -> list[dict[str, Any]]:
    """Two deployments of the same local model at different prices: `cheapest` picks by price alone."""
    cheap = {**dev_model(model.base_url), "output_price": 600_000}
    dear = {**dev_model(model.base_url), "id": "local-b", "provider": "local-b", "output_price": 900_000}
    return [cheap, dear]


def _reload(run: Running, config: dict[str, Any], outcome: str) -> str:
    """Write `config`, send SIGHUP, wait for the daemon to say `outcome` once more; what it logged since."""
    before = run.daemon.log()
    count = before.count(outcome)
    write_config(config, run.tmp / "config.toml")
    assert run.daemon.process is not None
    run.daemon.process.send_signal(signal.SIGHUP)
    wait_until(lambda: run.daemon.log().count(outcome) > count, 30, what=f"the daemon to log {outcome!r}")
    return run.daemon.log()[len(before):]


def _routed(run: Running, request_id: bytes) -> tuple[str, str]:
    """(deployment that answered, catalog version) from the request's stored receipt."""
    store = Store.open(run.config["store"]["path"])
    try:
        stored = store.requests.receipt(key_of(run, request_id))
    finally:
        store.close()
    assert stored is not None
    router = json.loads(stored[0])["router"]
    return router["answer"]["deployment"], router["catalog_version"]


def _receipt_check(run: Running, request_id: bytes) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "oracle", "receipt", "--config", str(run.tmp / "config.toml"),
                           key_of(run, request_id)], capture_output=True, text=True, timeout=60)


def _answered(run: Running, spec: str = "cheapest") -> bytes:
    event = ask(run.stack, ask_params(run, ResultSpec(ResultType.BOOL), model_spec=spec))
    wait_delivered(run, event.request_id)
    return event.request_id


def test_a_new_price_routes_new_requests_and_old_receipts_still_recompute(
        env: tuple[LocalStack, ModelServer, Path]) -> None:
    stack, model, tmp = env
    config = dev_config(stack, model.base_url, tmp / "oracle.sqlite")
    config["models"] = _two_deployments(model)
    daemon = DaemonProcess(write_config(config, tmp / "config.toml"), {SIGNER_ENV: stack.keys.signer.private_key.hex()})
    run = Running(stack, model, daemon.start(), config, tmp)
    try:
        run.daemon.wait_ready()
        before = _answered(run)
        changed = copy.deepcopy(run.config)
        changed["models"][1]["output_price"] = 100_000  # local-b is now the cheaper
        said = _reload(run, changed, "config reloaded")
        assert "models applied to new requests" in said and "needs a restart" not in said
        after = _answered(run)
        (first, old_catalog), (second, new_catalog) = _routed(run, before), _routed(run, after)
        assert (first, second) == ("local", "local-b")
        assert old_catalog != new_catalog and f"catalog {new_catalog}" in said
        for request_id in (before, after):
            check = _receipt_check(run, request_id)
            assert check.returncode == 0 and "decision recomputed, matches" in check.stderr, check.stderr
    finally:
        assert run.daemon.stop() == 0, run.daemon.log()[-3000:]


def test_a_changed_chain_setting_is_reported_and_kept(env: tuple[LocalStack, ModelServer, Path]) -> None:
    stack, model, tmp = env
    run = start_daemon(stack, model, tmp)
    try:
        run.daemon.wait_ready()
        changed = copy.deepcopy(run.config)
        changed["chains"][0]["confirmations"] = 5  # on an automining chain a request would wait for 5 more blocks
        said = _reload(run, changed, "config reloaded")
        assert ("config reload: chains[local].confirmations changed; it needs a restart and is kept as it was "
                "until then") in said
        assert "nothing live changed" in said
        _answered(run, "dev-model-2026-01-01")  # answered at once: the running depth (0) stays
    finally:
        assert run.daemon.stop() == 0, run.daemon.log()[-3000:]


def test_an_invalid_file_is_refused_and_the_daemon_keeps_answering(env: tuple[LocalStack, ModelServer, Path]) -> None:
    stack, model, tmp = env
    run = start_daemon(stack, model, tmp)
    try:
        run.daemon.wait_ready()
        bad = copy.deepcopy(run.config)
        bad["models"][0]["api"] = "telepathy"
        said = _reload(run, bad, "config reload refused")
        assert ("config reload refused; the running config stays: bad config:\n  models[0] (local).api: Input "
                "should be 'openai', 'anthropic' or 'gemini'") in said
        (tmp / "config.toml").write_text("this is [not toml")
        assert run.daemon.process is not None
        count = run.daemon.log().count("config reload refused")
        run.daemon.process.send_signal(signal.SIGHUP)
        wait_until(lambda: run.daemon.log().count("config reload refused") > count, 30, what="the second refusal")
        assert f"config {tmp / 'config.toml'} is not valid TOML" in run.daemon.log()
        assert run.daemon.alive()
        _answered(run, "dev-model-2026-01-01")
    finally:
        assert run.daemon.stop() == 0, run.daemon.log()[-3000:]
