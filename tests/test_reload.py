"""What a re-read config changes in a running daemon: the catalog, the router and the x402 limits live; the
rest reported and kept; a reloaded catalog that the kept settings cannot serve refused."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from oracle.config import ConfigError, parse_config
from oracle.reload import plan_reload

ADDRESS = "0x" + "11" * 20


def _base() -> dict[str, Any]:
    return {
        "signer": {"key_env": "K"},
        "chains": [{"name": "base", "chain_id": 8453, "rpc_url": "http://rpc", "oracle": ADDRESS,
                    "native_price_micro_usd": 3_000_000_000}],
        "models": [{"id": "m", "provider": "p", "api": "openai", "base_url": "http://m/v1", "model": "m-2026-01-01",
                    "payer": "none", "input_price": 100, "output_price": 200, "context_window": 4096,
                    "max_output": 1024, "capabilities": ["json_schema"]}],
        "x402": {"wallet": {"key_env": "W"}, "networks": [{"network": "eip155:8453", "rpc_url": "http://rpc"}],
                 "max_payment": 10, "budget": {"total": 100, "per_provider": 100, "per_requester": 100}},
    }


def _changed(change: Any) -> dict[str, Any]:
    data = copy.deepcopy(_base())
    change(data)
    return data


def test_prices_and_router_settings_apply_live() -> None:
    new = _changed(lambda c: (c["models"][0].update(output_price=900), c.update(router={"retries": 3})))
    plan = plan_reload(parse_config(_base()), parse_config(new))
    assert (plan.live, plan.restart) == (["models", "router"], [])
    assert plan.config.models[0].output_price == 900 and plan.config.router.retries == 3


def test_chain_store_and_key_changes_are_named_and_kept() -> None:
    new = _changed(lambda c: (c["chains"][0].update(confirmations=3), c.update(store={"path": "other.sqlite"}),
                              c.update(signer={"key_env": "OTHER"})))
    running = parse_config(_base())
    plan = plan_reload(running, parse_config(new))
    assert plan.live == []
    assert plan.restart == ["store.path", "signer.key_env", "chains[base].confirmations"]
    assert plan.config == running


def test_x402_limits_apply_live_and_its_wallet_needs_a_restart() -> None:
    new = _changed(lambda c: c["x402"].update(max_payment=20, budget={"total": 5, "per_provider": 5,
                                                                      "per_requester": 5},
                                              wallet={"key_env": "W2"}))
    plan = plan_reload(parse_config(_base()), parse_config(new))
    assert plan.live == ["x402.budget", "x402.max_payment"]
    assert plan.restart == ["x402.wallet.key_env"]
    assert plan.config.x402 is not None
    assert (plan.config.x402.max_payment, plan.config.x402.budget.total) == (20, 5)
    assert plan.config.x402.wallet.key_env == "W"


def test_a_catalog_the_kept_settings_cannot_serve_is_refused() -> None:
    """A deployment paid on a network added in the same edit: the network waits for a restart, so the
    deployment cannot be paid until then."""
    def change(c: dict[str, Any]) -> None:
        c["x402"]["networks"].append({"network": "eip155:1", "rpc_url": "http://rpc1"})
        c["models"].append({**c["models"][0], "id": "paid", "payer": "x402",
                            "x402": {"network": "eip155:1", "asset": ADDRESS, "pay_to": ADDRESS}})
    with pytest.raises(ConfigError, match=r"with the settings that need a restart kept as they run: bad config:\n"
                                          r"  config: models\[1\] \(paid\)\.x402\.network: eip155:1 is not in "
                                          r"x402.networks"):
        plan_reload(parse_config(_base()), parse_config(_changed(change)))
