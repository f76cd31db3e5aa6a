"""The config file: the example parses, and every bad setting is refused with where and what."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from oracle.config import ConfigError, KeySource, load_config, parse_config

ROOT = Path(__file__).resolve().parents[1]


def _base() -> dict[str, Any]:
    return {
        "signer": {"key_env": "K"},
        "chains": [{"name": "c", "chain_id": 1, "rpc_url": "http://x", "oracle": "0x" + "11" * 20,
                    "native_price_micro_usd": 1}],
        "models": [{"id": "m", "provider": "p", "api": "openai", "base_url": "http://m/v1", "model": "m-2024-01-01",
                    "payer": "none", "context_window": 8192, "max_output": 1024}],
    }


_PIN = {"network": "eip155:8453", "asset": "0x" + "33" * 20, "pay_to": "0x" + "44" * 20}


def _wallet(network: str) -> dict[str, Any]:
    return {"wallet": {"key_env": "P"}, "networks": [{"network": network, "rpc_url": "http://rpc"}],
            "max_payment": 10_000, "budget": {"total": 1, "per_provider": 1, "per_requester": 1}}


def test_example_config_parses() -> None:
    config = load_config(ROOT / "config.example.toml")
    assert config.chains[0].confirmations == 3
    assert config.models[0].model == "gpt-4o-mini-2024-07-18"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["chains"][0].update(oracle="0x12"), "chains[0] (c).oracle: not an address: '0x12'"),
        (lambda c: c["chains"][0].update(rpc_url="ftp://x"), "chains[0] (c).rpc_url: rpc_url must be http(s)://"),
        (lambda c: c["chains"][0].update(confirmations=-1), "chains[0] (c).confirmations"),
        (lambda c: c["chains"][0].update(colour="blue"), "chains[0] (c).colour: Extra inputs are not permitted"),
        # The catalog: each bad entry is named by index and id, with the field.
        (lambda c: c["models"][0].update(model="gpt-4o-latest"), "models[0] (m).model: use an exact versioned"),
        (lambda c: c["models"][0].update(model="auto"), "models[0] (m).model: use an exact versioned"),
        (lambda c: c["models"][0].update(input_price=-1), "models[0] (m).input_price: Input should be greater"),
        (lambda c: c["models"][0].update(call_price=-5), "models[0] (m).call_price"),
        (lambda c: c["models"][0].update(api="cohere"), "models[0] (m).api: Input should be 'openai', 'anthropic'"),
        (lambda c: c["models"][0].update(capabilities=["vision"]), "models[0] (m).capabilities[0]"),
        (lambda c: c["models"][0].update(data_policy="maybe"), "models[0] (m).data_policy"),
        (lambda c: c["models"][0].pop("provider"), "models[0] (m).provider: Field required"),
        (lambda c: c["models"][0].pop("context_window"), "models[0] (m).context_window: Field required"),
        (lambda c: c["models"][0].update(payer="api_key"), "models[0] (m): payer 'api_key' needs api_key_env"),
        (lambda c: c["models"][0].update(api_key_env="K"), "api_key_env is only read when payer is 'api_key'"),
        (lambda c: c["models"][0].update(max_output=10**6), "max_output is larger than context_window"),
        (lambda c: c["models"].append(dict(c["models"][0])), "models[].id: duplicate 'm'"),
        (lambda c: c["models"][0].update(schema_format="xml"),
         "models[0] (m).schema_format: Input should be 'json_schema' or 'json_object'"),
        (lambda c: c["models"][0].update(api="gemini", schema_format="json_object"),
         "schema_format is only read with api 'openai' (api is 'gemini'): remove it"),
        # x402: a paid deployment needs a pin and a wallet section naming its network.
        (lambda c: c["models"][0].update(payer="x402"), "payer 'x402' needs an x402 table"),
        (lambda c: c["models"][0].update(payer="x402", x402=_PIN), "'x402' needs an [x402] section with the wallet"),
        (lambda c: c["models"][0].update(payer="x402", x402=_PIN) or c.update(x402=_wallet("eip155:1")),
         "models[0] (m).x402.network: eip155:8453 is not in x402.networks"),
        (lambda c: c["models"][0].update(payer="x402", x402=dict(_PIN, pay_to="0x12")), "x402.pay_to: not an address"),
        (lambda c: c["models"][0].update(payer="x402", x402=dict(_PIN, network="base")), "x402.network: String should"),
        (lambda c: c.update(x402=dict(_wallet("eip155:8453"), max_payment=0)), "x402.max_payment"),
        (lambda c: c["models"][0].update(payer="x402", x402=dict(_PIN, domain_separator="0x12")),
         "x402.domain_separator: must be 0x and 64 hex digits"),
        (lambda c: c.update(x402=dict(_wallet("eip155:8453"), networks=[
            {"network": "eip155:8453", "rpc_url": "http://rpc", "confirmations": -1}])),
         "x402.networks[0].confirmations: Input should be greater than or equal to 0"),
        (lambda c: c.update(x402=dict(_wallet("eip155:8453"), networks=[
            {"network": "eip155:8453", "rpc_url": "http://rpc", "max_log_range": 0}])),
         "x402.networks[0].max_log_range: Input should be greater than or equal to 1"),
        (lambda c: c.update(signer={}), "signer: give exactly one of key_env or keystore"),
        (lambda c: c.update(chains=[]), "chains: List should have at least 1 item"),
    ],
)
def test_bad_settings_are_named(change: Any, message: str) -> None:
    config = _base()
    change(config)
    with pytest.raises(ConfigError) as err:
        parse_config(config)
    assert message in str(err.value)


def test_missing_or_bad_key_is_named_without_showing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("K", raising=False)
    with pytest.raises(ConfigError, match=r"environment variable K .* is not set"):
        KeySource(key_env="K").load()
    monkeypatch.setenv("K", "0xnothex")
    with pytest.raises(ConfigError, match="not a hex private key") as err:
        KeySource(key_env="K").load()
    assert "nothex" not in str(err.value)


def test_keystore_with_password_file(tmp_path: Path) -> None:
    key = bytes(range(1, 33))
    (tmp_path / "ks.json").write_text(json.dumps(Account.encrypt(key, "pw", iterations=2)))
    (tmp_path / "pw").write_text("pw\n")
    assert KeySource(keystore=tmp_path / "ks.json", password_file=tmp_path / "pw").load() == key
    (tmp_path / "pw").write_text("wrong")
    with pytest.raises(ConfigError, match="wrong password"):
        KeySource(keystore=tmp_path / "ks.json", password_file=tmp_path / "pw").load()


def test_a_deployment_whose_key_is_not_set_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from oracle.router import Catalog

    config = _base()
    config["models"][0].update(payer="api_key", api_key_env="ORACLE_TEST_MISSING_KEY")
    catalog = Catalog(parse_config(config).models)
    monkeypatch.delenv("ORACLE_TEST_MISSING_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"models\[id=m\]\.api_key_env: environment variable "
                                          r"ORACLE_TEST_MISSING_KEY is not set"):
        catalog.check_keys()
    monkeypatch.setenv("ORACLE_TEST_MISSING_KEY", "sk-secret-value")
    catalog.check_keys()


def test_a_setting_added_later_leaves_the_version_of_catalogs_without_it_as_it_was() -> None:
    """A deployment at the default schema_format is described as before the setting existed (so catalogs
    stored then keep their version hash and their receipts still audit); a deployment that sets it is
    described with it."""
    from oracle.router import Catalog

    plain = Catalog(parse_config(_base()).models)
    assert "schema_format" not in plain.body
    config = _base()
    config["models"][0]["schema_format"] = "json_object"
    llama = Catalog(parse_config(config).models)
    assert '"schema_format":"json_object"' in llama.body and llama.version != plain.version
    assert Catalog.from_body(llama.body).version == llama.version
    assert Catalog.from_body(plain.body).version == plain.version



def test_the_api_listeners_cannot_share_a_port_and_the_token_variable_must_be_a_name() -> None:
    base = tomllib.loads((ROOT / "config.example.toml").read_text())
    same = {**base, "api": {"operator": {"port": 9000}, "public": {"enabled": True, "port": 9000}}}
    with pytest.raises(ConfigError, match="the two listeners never share routes: give them different ports"):
        parse_config(same)
    with pytest.raises(ConfigError, match=r"api\.token_env"):
        parse_config({**base, "api": {"token_env": "MY TOKEN; rm -rf"}})
    assert parse_config(base).api.operator.port == 8547 and not parse_config(base).api.public.enabled
