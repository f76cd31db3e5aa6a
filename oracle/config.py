"""The operator's one config file (TOML), checked at start-up.

Every bad setting is refused with a message naming the entry and the field, e.g.
`chains[0].oracle: not an address: '0x12'`. Secrets are never in the file: keys come from an
environment variable named here (or an encrypted keystore with its password in the environment or
a file).

    config = load_config(Path("config.toml"))
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from eth_account import Account
from eth_utils import is_address, to_checksum_address
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)


def _checksummed(value: str) -> str:
    if not is_address(value):
        raise ValueError(f"not an address: {value!r}")
    return to_checksum_address(value)


def _http_url(value: str, info: ValidationInfo) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"{info.field_name} must be http(s)://, got {value!r}")
    return value


Address = Annotated[str, AfterValidator(_checksummed), Field(description="checksummed EVM address")]
HttpUrl = Annotated[str, AfterValidator(_http_url)]


class ConfigError(ValueError):
    """A setting is wrong; the message names where and what to change."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeySource(_Strict):
    """Where a private key comes from: an environment variable, or an encrypted keystore file."""

    key_env: str | None = None
    keystore: Path | None = None
    password_env: str | None = None
    password_file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> KeySource:
        if (self.key_env is None) == (self.keystore is None):
            raise ValueError("give exactly one of key_env or keystore")
        if self.keystore is not None and (self.password_env is None) == (self.password_file is None):
            raise ValueError("a keystore needs exactly one of password_env or password_file")
        return self

    def load(self) -> bytes:
        """Read the key. Errors name the variable or file, never the key."""
        if self.key_env is not None:
            return key_from_env(self.key_env)
        assert self.keystore is not None
        return decrypt_keystore(self.keystore, self.password())

    def password(self) -> str:
        """The keystore's password, from its environment variable or file."""
        if self.password_env is not None:
            password = os.environ.get(self.password_env)
            if password is None:
                raise ConfigError(f"environment variable {self.password_env} (keystore password) is not set")
            return password
        assert self.password_file is not None
        try:
            return self.password_file.read_text().rstrip("\n")
        except OSError as exc:
            raise ConfigError(f"keystore password file {self.password_file}: {exc.strerror}") from None

    def describe(self) -> str:
        """How an operator knows the key: the environment variable or keystore it is read from."""
        return f"environment variable {self.key_env}" if self.key_env else f"keystore {self.keystore}"


def key_from_env(name: str, role: str = "a private key") -> bytes:
    """The one reader of a raw private key from the environment (hex, with or without 0x). Errors name the
    variable and what it should hold, never its value."""
    raw = os.environ.get(name)
    if not raw:
        raise ConfigError(f"environment variable {name} ({role}) is not set")
    return parse_private_key(raw, f"environment variable {name}")


def parse_private_key(raw: str, where: str) -> bytes:
    """32 bytes from 64 hex digits (0x optional, surrounding whitespace ignored); the error shows no part
    of what was given."""
    text = raw.strip().removeprefix("0x").removeprefix("0X")
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ConfigError(f"{where} is not a hex private key (64 hex digits, 0x optional)") from None
    if len(key) != 32 or not 0 < int.from_bytes(key) < _SECP256K1_ORDER:
        raise ConfigError(f"{where} is not a 32-byte private key (64 hex digits, 0x optional)")
    return key


_SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def _keystore_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"keystore {path}: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(f"keystore {path}: not a keystore (not JSON)") from None


def decrypt_keystore(path: Path, password: str) -> bytes:
    """The key inside a Web3 Secret Storage (v3) keystore file."""
    document = _keystore_json(path)
    if not isinstance(document, dict) or not isinstance(document.get("crypto", document.get("Crypto")), dict):
        raise ConfigError(f"keystore {path}: not a keystore (no crypto section: is it a Web3 Secret Storage file?)")
    try:
        return bytes(Account.decrypt(document, password))
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise ConfigError(f"keystore {path}: wrong password") from None
        raise ConfigError(f"keystore {path}: not a readable keystore ({exc})") from None
    except (KeyError, TypeError):
        raise ConfigError(f"keystore {path}: not a readable keystore (fields missing)") from None


def keystore_address(path: Path) -> str | None:
    """The address a keystore file declares (no password needed), or None when it declares none."""
    document = _keystore_json(path)
    address = document.get("address") if isinstance(document, dict) else None
    if isinstance(address, str) and is_address(address if address.startswith("0x") else "0x" + address):
        return to_checksum_address(address if address.startswith("0x") else "0x" + address)
    return None


class GasSettings(_Strict):
    max_fee_per_gas: int = Field(200 * 10**9, gt=0, description="cap on maxFeePerGas, wei")
    priority_fee: int = Field(10**9, ge=0, description="maxPriorityFeePerGas, wei (capped by max_fee_per_gas)")
    daily_budget: int = Field(10**18, gt=0, description="most wei spent on gas per UTC day")
    low_balance: int = Field(10**16, ge=0, description="below this signer balance, stop taking new work")
    batch_max: int = Field(20, ge=1, le=64, description="most responses in one fulfillBatch")
    batch_gas_max: int = Field(15_000_000, ge=500_000, description="most gas one fulfillment tx may reserve")
    replace_after: float = Field(30.0, gt=0, description="seconds before a stuck transaction is re-priced")
    fee_bump_percent: int = Field(15, ge=10, le=200, description="re-pricing step (nodes require >= 10%)")
    fulfill_gas_overhead: int = Field(60_000, gt=0, description="gas of one fulfillment besides the callback")


PolicyClassName = Literal["exact", "cheapest", "fastest", "best", "ensemble"]  # the contract's PolicyClass, in order
POLICY_CLASSES: tuple[str, ...] = get_args(PolicyClassName)


class FeeScheduleSettings(_Strict):
    """One policy class's fee, in wei: quote = k * (base_fee + per_output_token * maxTokens)
    + per_callback_gas * callbackGasLimit (k is an ensemble's size, else 1)."""

    base_fee: int = Field(ge=0, le=2**96 - 1)
    per_callback_gas: int = Field(ge=0, le=2**64 - 1)
    per_output_token: int = Field(ge=0, le=2**96 - 1)


class LimitSettings(_Strict):
    """The oracle's request limits (the contract's `Limits`); the defaults are the local stack's."""

    max_callback_gas: int = Field(2_000_000, ge=1, le=2**32 - 1)
    max_prompt_bytes: int = Field(16_384, ge=1, le=2**32 - 1)
    max_result_bytes: int = Field(8_192, ge=1, le=2**32 - 1)
    max_tokens: int = Field(16_384, ge=1, le=2**32 - 1)
    max_deadline_window: int = Field(86_400, ge=1, le=2**32 - 1, description="seconds")
    max_model_spec_bytes: int = Field(256, ge=1, le=2**16 - 1)
    max_choice_labels: int = Field(32, ge=2, le=2**8 - 1)

    def limits(self) -> tuple[int, ...]:
        """The contract's `Limits` struct, in its field order (the order of the fields above)."""
        return tuple(getattr(self, name) for name in LimitSettings.model_fields)


class DeploySettings(LimitSettings):
    """What `oracle deploy` deploys and keeps the oracle at: its owner, the signer's payee, the limits
    and the fee schedule. A policy class with no fees gets ones that pay for a response at the chain's
    gas cap and the dearest deployment of the catalog (`oracle/ops/fees.py`)."""

    owner: KeySource = Field(description="the deployer, who owns the oracle and sends its admin transactions")
    payee: Address | None = Field(None, description="credited with the signer's fees (default: the owner)")
    fees: dict[PolicyClassName, FeeScheduleSettings] = Field(default_factory=dict)


class ChainSettings(_Strict):
    name: str = Field(min_length=1)
    chain_id: int = Field(gt=0)
    rpc_url: HttpUrl
    ws_url: str | None = None
    # Absent until `oracle deploy` writes it; everything that serves the chain reads `oracle`.
    oracle_address: Address | None = Field(None, alias="oracle")
    confirmations: int = Field(0, ge=0, le=1_000)
    start_block: int = Field(0, ge=0)
    max_log_range: int = Field(2_000, ge=1)
    sweep_interval: float = Field(2.0, gt=0, description="seconds between sweeps of the head")
    max_reorg_depth: int = Field(64, ge=1, le=2_048, description=(
        "deepest reorg followed back; a deeper one stops this chain's intake until an operator looks"))
    rpc_timeout: float = Field(10.0, gt=0, description="seconds for one JSON-RPC call")
    native_price_micro_usd: int = Field(gt=0, description="price of 1 native coin (1e18 wei) in micro-USD")
    gas: GasSettings = GasSettings()
    deploy: DeploySettings | None = None

    @property
    def oracle(self) -> str:
        """The oracle's address; a chain with none cannot be served (ConfigError)."""
        return self.require_oracle()

    def require_oracle(self) -> str:
        if self.oracle_address is None:
            raise ConfigError(f"chains[{self.name}].oracle: no oracle address: deploy one with `oracle deploy "
                              f"--config FILE --chain {self.name}`, which writes it into the config, then start again")
        return self.oracle_address

    @model_validator(mode="after")
    def _depths(self) -> ChainSettings:
        if self.max_reorg_depth < self.confirmations:
            raise ValueError(f"max_reorg_depth ({self.max_reorg_depth}) must be at least confirmations "
                             f"({self.confirmations}): a final transaction must lie within the reorgs followed")
        return self

    @field_validator("ws_url")
    @classmethod
    def _ws(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("ws://", "wss://")):
            raise ValueError(f"ws_url must be ws(s)://, got {value!r}")
        return value


Capability = Literal["json_schema", "seed", "tools"]
DataPolicy = Literal["retained", "no_training", "zero_retention"]
DATA_POLICY_RANK: dict[str, int] = {"retained": 0, "no_training": 1, "zero_retention": 2}


class X402Pin(_Strict):
    """Where a provider paid over x402 may be paid: anything else it asks for is refused."""

    network: str = Field(pattern=r"^eip155:[0-9]+$", description="CAIP-2 network, e.g. eip155:8453")
    asset: Address
    pay_to: Address
    domain_separator: str | None = Field(None, description=(
        "the asset's EIP-712 domain separator: when set, a 402's domain must build exactly this and the token "
        "is not asked; when not, it is read from the token (DOMAIN_SEPARATOR(), or EIP-5267 eip712Domain())"))

    @field_validator("domain_separator")
    @classmethod
    def _separator(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"0x[0-9a-fA-F]{64}", value):
            raise ValueError(f"must be 0x and 64 hex digits (the 32 bytes the token's DOMAIN_SEPARATOR() returns, "
                             f"or oracle.x402.signer.domain_separator(name, version, chain_id, token)), got {value!r}")
        return value


class ModelDeployment(_Strict):
    """One endpoint serving one exact model version, with what it costs and what it can do.

    Prices are integers in micro-USD: per million tokens, plus `call_price` per call for providers
    that charge per call (over x402). They are configured, never fetched: a receipt's catalog version
    pins exactly what the router knew.
    """

    id: str = Field(min_length=1, description="deployment id, unique")
    provider: str = Field(min_length=1, description="who serves it; ensemble members use different providers")
    api: Literal["openai", "anthropic", "gemini"] = Field(description="wire format")
    base_url: HttpUrl
    model: str = Field(min_length=1, description="exact versioned model id, as requests name it")
    payer: Literal["api_key", "x402", "none"] = Field(
        description="api_key: a key from api_key_env; x402: paid per call from the payment wallet; none: local")
    api_key_env: str | None = None
    x402: X402Pin | None = Field(None, description="with payer x402: the only (network, asset, payTo) paid")
    # Upper bounds keep every cost a decision computes (tokens x price) exact in 64-bit integers.
    input_price: int = Field(0, ge=0, le=10**10, description="micro-USD per million input tokens")
    cached_input_price: int | None = Field(None, ge=0, le=10**10,
                                           description="micro-USD per million cached input tokens")
    output_price: int = Field(0, ge=0, le=10**10, description="micro-USD per million output tokens")
    call_price: int = Field(0, ge=0, le=10**10, description="micro-USD per call")
    context_window: int = Field(gt=0, le=10**9, description="tokens, prompt and answer together")
    max_output: int = Field(gt=0, le=10**7, description="most answer tokens")
    capabilities: tuple[Capability, ...] = ()
    schema_format: Literal["json_schema", "json_object"] = Field("json_schema", description=(
        "with api 'openai': how the answer's JSON schema is sent. json_schema: response_format {type: "
        "json_schema, json_schema: {name, strict, schema}} (OpenAI, OpenRouter, vLLM, Ollama, llama.cpp's "
        "llama-server); json_object: response_format {type: json_object, schema} (llama-cpp-python's server; "
        "its grammar ignores integer minimum/maximum, so ranges of up to 1,024 integers are sent as an enum)"))
    data_policy: DataPolicy = "retained"
    quality: int = Field(1, ge=1, le=10, description="quality tier for `best`: higher is better")
    expected_latency_ms: int | None = Field(None, gt=0, le=10**9, description="p90 latency assumed until measured")
    timeout: float = Field(60.0, gt=0, description="seconds per attempt")

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("model")
    @classmethod
    def _versioned(cls, value: str) -> str:
        if value.endswith("latest") or value in ("auto", "default"):
            raise ValueError(f"use an exact versioned model id, not an alias: {value!r}")
        return value

    @field_validator("capabilities")
    @classmethod
    def _sorted(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(set(value)))

    @model_validator(mode="after")
    def _key(self) -> ModelDeployment:
        if self.payer == "api_key" and not self.api_key_env:
            raise ValueError("payer 'api_key' needs api_key_env, the environment variable holding the key")
        if self.payer != "api_key" and self.api_key_env:
            raise ValueError(f"api_key_env is only read when payer is 'api_key' (payer is {self.payer!r})")
        if (self.payer == "x402") != (self.x402 is not None):
            raise ValueError("payer 'x402' needs an x402 table (network, asset, pay_to), and only it has one")
        if self.max_output > self.context_window:
            raise ValueError("max_output is larger than context_window")
        if self.api != "openai" and self.schema_format != "json_schema":
            raise ValueError(f"schema_format is only read with api 'openai' (api is {self.api!r}): remove it")
        return self

    def check_key(self) -> None:
        """At start-up: the key this deployment pays with is present (its value is never shown)."""
        if self.payer == "api_key" and not os.environ.get(self.api_key_env or ""):
            raise ConfigError(f"models[id={self.id}].api_key_env: environment variable {self.api_key_env} "
                              "is not set")


class PipelineSettings(_Strict):
    concurrency: int = Field(64, ge=1, le=10_000, description="requests answered at once")
    deadline_margin: float = Field(10.0, ge=0, description="seconds kept for submitting before a deadline")


class RouterSettings(_Strict):
    attempt_budget: int = Field(4, ge=1, le=20, description="deployment attempts per request (per ensemble member)")
    retries: int = Field(1, ge=0, le=5, description="extra calls to one deployment on 408/429/5xx/timeouts")
    backoff: float = Field(0.25, ge=0, description="seconds before the first retry; doubles after each")
    backoff_max: float = Field(8.0, ge=0, description="longest wait before a retry, Retry-After included")
    breaker_window: int = Field(20, ge=1, le=10_000, description="latest calls a breaker judges a deployment by")
    breaker_min_calls: int = Field(5, ge=1, description="calls in the window before a breaker may open")
    breaker_failure_percent: int = Field(80, ge=1, le=100, description="failed share of the window that opens it")
    breaker_cooldown: float = Field(30.0, gt=0, description="seconds an open breaker waits before one probe")
    breaker_cooldown_max: float = Field(600.0, gt=0, description="longest cooldown after failed probes")
    health_window: int = Field(200, ge=10, le=100_000, description="latest calls that health figures cover")


class X402Network(_Strict):
    network: str = Field(pattern=r"^eip155:[0-9]+$", description="CAIP-2 network the wallet pays on")
    rpc_url: HttpUrl = Field(description="for reconciling payments with the token's records")
    confirmations: int = Field(12, ge=0, le=1_000, description=(
        "blocks on top of a settlement before it is final; until then the reconciler re-checks it"))
    max_log_range: int = Field(2_000, ge=1, description="most blocks one eth_getLogs asks for (halved when refused)")
    rpc_timeout: float = Field(10.0, gt=0, description="seconds for one JSON-RPC call")


class X402Budget(_Strict):
    """Rolling budgets, in the asset's base units (micro-USD for 6-decimal USD stablecoins)."""

    window: float = Field(86_400.0, gt=0, description="seconds a payment counts against the budgets")
    total: int = Field(gt=0, description="all payments")
    per_provider: int = Field(gt=0, description="payments to one provider")
    per_requester: int = Field(gt=0, description="payments for one on-chain requester")


class X402Settings(_Strict):
    """Paying model providers over x402 from a wallet of its own (never the fulfillment signer's key)."""

    wallet: KeySource
    networks: list[X402Network] = Field(min_length=1)
    max_payment: int = Field(gt=0, description="most one payment may be, base units")
    max_validity_seconds: int = Field(300, gt=0, le=86_400, description="longest authorization window signed")
    max_unresolved: int = Field(32, ge=1, description="payments signed but not yet settled or expired, at most")
    reconcile_interval: float = Field(30.0, gt=0, description="seconds between passes of the reconciler")
    stale_after: float = Field(120.0, gt=0, description="seconds after which a payment still being sent is "
                                                        "looked up on-chain (longer than any paid call)")
    budget: X402Budget


class GatewaySettings(_Strict):
    """Agents pay per call over x402 on the public listener: `/v1/chat/completions` and `/v1/analyze`.

    A call's price is the larger of `price` and its worst case at the eligible deployments' prices (max
    tokens, per-call prices included), plus `margin_percent`; it is verified before the model runs and
    settled after a successful answer."""

    network: str = Field(pattern=r"^eip155:[0-9]+$", description="CAIP-2 network agents pay on, e.g. eip155:8453")
    rpc_url: HttpUrl = Field(description="a node of that network: payers' balances are read there")
    asset: Address = Field(description="the EIP-3009 token agents pay with (USDC, or TestUSD on the local stack)")
    asset_name: str = Field("USD Coin", min_length=1, description="the token's EIP-712 domain name")
    asset_version: str = Field("2", min_length=1, description="the token's EIP-712 domain version")
    pay_to: Address = Field(description="the operator's address that receives payments")
    facilitator_url: HttpUrl = Field(description="x402 facilitator that verifies and settles payments")
    price: int = Field(1_000, ge=1, le=10**12, description="least a call costs, base units (micro-USD)")
    margin_percent: int = Field(20, ge=0, le=1_000, description="added to a call's worst-case model cost")
    validity_seconds: int = Field(120, ge=30, le=3_600, description=(
        "the requirements' maxTimeoutSeconds: how long a signed payment may stay unsettled"))
    answer_timeout: float = Field(30.0, gt=0, le=600, description="seconds a paid call may take to answer")
    max_tokens: int = Field(4_096, ge=1, le=10**6, description="the most answer tokens a call may ask for")
    analysis_validity: int = Field(300, ge=10, le=86_400, description=(
        "seconds a signed analysis stays valid (its validUntil); a consumer may accept less"))
    rate_per_minute: int = Field(120, ge=1, le=10**6, description="paid calls one payer may make per minute")
    daily_cap: int = Field(10**8, ge=1, description="base units one payer may spend per UTC day")
    settle_failure_cooldown: float = Field(600.0, ge=0, description=(
        "seconds a payer whose payment failed to settle is refused"))
    max_unsettled: int = Field(2_000, ge=1, le=10**6, description=(
        "answered calls whose settlement is not done, at most: beyond it paid calls get 503 until settlements "
        "catch up (what the operator has handed over and not yet been paid for stays bounded)"))

    @model_validator(mode="after")
    def _time_to_settle(self) -> GatewaySettings:
        if self.answer_timeout + 20 > self.validity_seconds:
            raise ValueError(f"answer_timeout ({self.answer_timeout:g} s) leaves no time to settle within "
                             f"validity_seconds ({self.validity_seconds} s): keep it at least 20 s shorter")
        return self

    def charge(self, worst_case: int) -> int:
        """What a call whose models may cost `worst_case` is sold for: never below cost plus margin."""
        return self.with_margin(max(self.price, worst_case))

    def with_margin(self, cost: int) -> int:
        return -(-cost * (100 + self.margin_percent) // 100)


class StoreSettings(_Strict):
    path: Path = Path("oracle.sqlite")


class ListenerSettings(_Strict):
    enabled: bool = True
    host: str = Field("127.0.0.1", min_length=1, description="address to listen on (loopback by default)")
    port: int = Field(8547, ge=0, le=65_535, description="0 takes a free port (the daemon logs which)")


class ApiSettings(_Strict):
    """The daemon's two HTTP listeners. They never share routes: the operator's (on by default, loopback)
    serves what only the operator should see; the public one (off by default) serves receipts."""

    operator: ListenerSettings = ListenerSettings()
    public: ListenerSettings = ListenerSettings(enabled=False, port=8548)
    token_env: str = Field("ORACLE_API_TOKEN", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description=(
        "environment variable holding the bearer token of the operator's mutating routes (unset: they answer 503)"))
    ready_max_lag: int = Field(64, ge=0, description="blocks the intake may be behind the head and still be ready")

    @model_validator(mode="after")
    def _apart(self) -> ApiSettings:
        if (self.operator.enabled and self.public.enabled and self.operator.port != 0
                and (self.operator.host, self.operator.port) == (self.public.host, self.public.port)):
            raise ValueError(f"api.public: listens on {self.public.host}:{self.public.port} like api.operator; "
                             f"the two listeners never share routes: give them different ports")
        return self


class Config(_Strict):
    store: StoreSettings = StoreSettings()
    signer: KeySource
    chains: list[ChainSettings] = Field(min_length=1)
    models: list[ModelDeployment] = Field(min_length=1)
    pipeline: PipelineSettings = PipelineSettings()
    router: RouterSettings = RouterSettings()
    x402: X402Settings | None = None
    api: ApiSettings = ApiSettings()
    gateway: GatewaySettings | None = Field(None, description=(
        "agents' paid gateway on the public listener (api.public); absent: the public listener serves receipts "
        "and models only"))

    @model_validator(mode="after")
    def _gateway_listens(self) -> Config:
        if self.gateway is not None and not self.api.public.enabled:
            raise ValueError("gateway: it is served on the public listener: set api.public.enabled = true")
        return self

    def chain_named(self, name: str | None) -> tuple[int, ChainSettings]:
        """The chain called `name` (None: the only one) and its place in the list, for commands' `--chain`."""
        names = ", ".join(repr(c.name) for c in self.chains)
        if name is None:
            if len(self.chains) != 1:
                raise ConfigError(f"the config has {len(self.chains)} chains ({names}): name one with --chain")
            return 0, self.chains[0]
        for index, chain in enumerate(self.chains):
            if chain.name == name:
                return index, chain
        raise ConfigError(f"no chain named {name!r} in the config; its chains are: {names}")

    def require_oracles(self) -> None:
        """Before serving: every chain has its oracle's address (ConfigError naming the one that has not)."""
        for chain in self.chains:
            chain.require_oracle()

    @model_validator(mode="after")
    def _unique(self) -> Config:
        for what, values in (("chains[].chain_id", [c.chain_id for c in self.chains]),
                             ("chains[].name", [c.name for c in self.chains]),
                             ("models[].id", [m.id for m in self.models])):
            seen: set[Any] = set()
            for v in values:
                if v in seen:
                    raise ValueError(f"{what}: duplicate {v!r}")
                seen.add(v)
        networks = {n.network for n in self.x402.networks} if self.x402 is not None else set()
        for i, m in enumerate(self.models):
            if m.x402 is not None and m.x402.network not in networks:
                raise ValueError(f"models[{i}] ({m.id}).x402.network: {m.x402.network} is not in x402.networks"
                                 if self.x402 is not None else
                                 f"models[{i}] ({m.id}).payer: 'x402' needs an [x402] section with the wallet")
        return self


def _location(loc: tuple[int | str, ...], data: dict[str, Any] | None = None) -> str:
    """`models[2] (gpt-eu).api`: the path to a setting, with the id of the list entry it is in."""
    out = ""
    for i, part in enumerate(loc):
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        if i == 1 and isinstance(part, int) and data is not None:
            out += _entry_name(data, loc)
    return out or "config"


def _entry_name(data: dict[str, Any], loc: tuple[int | str, ...]) -> str:
    """` (id 'x')` after a list entry that has an id, so an operator finds it without counting."""
    if len(loc) >= 2 and isinstance(loc[1], int) and isinstance(data.get(str(loc[0])), list):
        entries = data[str(loc[0])]
        if loc[1] < len(entries) and isinstance(entries[loc[1]], dict):
            name = entries[loc[1]].get("id", entries[loc[1]].get("name"))
            if isinstance(name, str):
                return f" ({name})"
    return ""


def parse_config(data: dict[str, Any]) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = [f"{_location(e['loc'], data)}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()]
        raise ConfigError("bad config:\n  " + "\n  ".join(problems)) from None


def read_toml(path: Path) -> dict[str, Any]:
    """A config file's TOML as a dict; ConfigError saying why it cannot be read (the daemon's and the
    bots' configs alike)."""
    try:
        return tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from None


def load_config(path: Path) -> Config:
    return parse_config(read_toml(path))
