"""The `[chains.deploy]` table and the default fees figured from it, without a chain."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from oracle.chain.fee_schedule import schedule_shortfalls
from oracle.config import POLICY_CLASSES, Config, ConfigError, LimitSettings, load_config, parse_config
from oracle.ops.calls import output_fields
from oracle.ops.fees import default_schedule
from oracle.protocol import PolicyClass

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


def test_the_tables_limits_are_the_contracts_limits_in_its_order() -> None:
    snake = [re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() for name in output_fields("limits")]
    assert list(LimitSettings.model_fields) == snake
    assert [c.name.lower() for c in PolicyClass] == list(POLICY_CLASSES)


def test_the_examples_deploy_table_parses_and_its_commented_fees_would_pass() -> None:
    chain = load_config(EXAMPLE).chains[0]
    assert chain.deploy is not None and chain.deploy.owner.key_env == "ORACLE_OWNER_KEY"
    # The fees the example shows in a comment, uncommented: deploy would accept them.
    text = EXAMPLE.read_text()
    block = text[text.index("# [chains.deploy.fees.best]"):].split("\n\n")[0]
    fees = tomllib.loads("\n".join(line.removeprefix("# ") for line in block.splitlines()))["chains"]["deploy"]
    schedule = tuple(fees["fees"]["best"][k] for k in ("base_fee", "per_callback_gas", "per_output_token"))
    assert schedule_shortfalls({PolicyClass.BEST: schedule}, chain, chain.gas.max_fee_per_gas) == []


def _config(**models: Any) -> dict[str, Any]:
    model = {"id": "m", "provider": "p", "api": "openai", "base_url": "http://m/v1", "model": "m-2024-01-01",
             "payer": "none", "context_window": 8192, "max_output": 1024, **models}
    return {"signer": {"key_env": "K"}, "models": [model],
            "chains": [{"name": "c", "chain_id": 1, "rpc_url": "http://x", "native_price_micro_usd": 3 * 10**9,
                        "gas": {"max_fee_per_gas": 10**9}, "deploy": {"owner": {"key_env": "O"}}}]}


def _default(config: Config) -> tuple[int, int, int]:
    chain = config.chains[0]
    assert chain.deploy is not None
    return default_schedule(chain, chain.deploy, config.models)


def test_a_free_catalog_still_gets_a_fee_in_every_part() -> None:
    config = parse_config(_config())
    schedule = _default(config)
    assert min(schedule) >= 1
    chain = config.chains[0]
    assert schedule_shortfalls({PolicyClass.EXACT: schedule}, chain, chain.gas.max_fee_per_gas) == []


def test_the_dearest_model_sets_the_fee() -> None:
    cheap, dear = _config(output_price=1_000_000), _config(output_price=3_000_000, call_price=5_000)
    # 1 and 3 USD per million tokens at 3,000 USD a coin, rounded up to the wei.
    assert [_default(parse_config(c))[2] for c in (cheap, dear)] == [-(-10**18 // (10**6 * 3_000)), 10**9]
    both = dict(cheap, models=cheap["models"] + [dict(dear["models"][0], id="dear")])
    assert _default(parse_config(both)) == _default(parse_config(dear))
    assert _default(parse_config(both))[0] > _default(parse_config(cheap))[0]  # the per-call price is in baseFee


def test_a_default_that_does_not_fit_the_contract_is_refused() -> None:
    data = _config()
    data["chains"][0]["gas"]["max_fee_per_gas"] = 10**30
    with pytest.raises(ConfigError, match=r"chains\[c\]\.deploy: the default baseFee .* does not fit the contract's "
                                          r"uint96: lower gas.max_fee_per_gas"):
        _default(parse_config(data))
