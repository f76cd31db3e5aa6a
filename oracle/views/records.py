"""The records the read side returns: plain values only (str, int, float, bool, None, lists, dicts), so
each is JSON as it is. Amounts of wei or token base units are decimal strings (they exceed what a JSON
number holds exactly); times are UTC ISO-8601 strings, None when not known; hashes and ids 0x-hex."""

from __future__ import annotations

import dataclasses
import datetime
import json
from dataclasses import dataclass
from typing import Any


def iso(t: float | None) -> str | None:
    """UTC ISO-8601 with milliseconds, or None for an unknown (zero) time."""
    if not t:
        return None
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def hex0x(b: bytes | None) -> str | None:
    return None if b is None else "0x" + b.hex()


@dataclass(frozen=True)
class RequestSummary:
    key: str  # chain id:oracle:request id, unique
    chain_id: int
    oracle: str
    request_id: str
    requester: str
    state: str
    status: str  # none | success | failure: the response's status once answered
    reason: str  # the reason code's name (none when it succeeded or is not answered)
    fee_wei: str
    deadline: int  # unix seconds
    block_number: int
    seen_at: str | None
    updated_at: str | None
    fulfill_tx: str | None


@dataclass(frozen=True)
class StateChangeRecord:
    at: str | None
    state: str
    reason: str
    detail: str


@dataclass(frozen=True)
class AttemptRecord:
    attempt_id: int
    deployment: str
    model: str  # the deployment's model id in the config ("" if the config no longer has it)
    outcome: str
    kind: str
    http_status: int
    latency_ms: float
    usage: dict[str, int]
    cost_micro_usd: int
    payment_id: int | None
    payment_state: str | None
    payment_amount: str | None
    error: str


@dataclass(frozen=True)
class TransactionRecord:
    tx_hash: str
    state: str
    sender: str
    nonce: int
    sent_at: str | None
    block_number: int | None
    gas_used: int | None  # from the chain's receipt, once mined
    gas_cost_wei: str | None  # gas used x effective gas price
    max_fee_wei: str
    priority_fee_wei: str
    requests_carried: int


@dataclass(frozen=True)
class PaymentRecord:
    id: int
    request_key: str
    attempt_id: int
    provider: str
    state: str
    amount: str  # base units of the asset
    asset: str
    network: str
    pay_to: str
    payer: str
    tx_hash: str
    error: str
    updated_at: str | None


@dataclass(frozen=True)
class RequestDetail:
    request: RequestSummary
    model_spec: str
    result_type: str
    prompt_bytes: int
    detail: str  # why it was refused or failed, as logged and put in its receipt
    history: list[StateChangeRecord]
    attempts: list[AttemptRecord]
    transactions: list[TransactionRecord]
    payments: list[PaymentRecord]
    receipt_hash: str | None
    receipt: dict[str, Any] | None  # the canonical receipt whose keccak is the receipt hash


@dataclass(frozen=True)
class DeploymentRecord:
    id: str
    provider: str
    api: str
    model: str
    payer: str
    input_price: int  # micro-USD per million tokens
    cached_input_price: int | None
    output_price: int
    call_price: int  # micro-USD per call
    context_window: int
    max_output: int
    capabilities: list[str]
    data_policy: str
    quality: int
    health: str  # ok | failing | unused: from its latest calls on record
    calls: int  # its latest finished calls on record (at most the router's health window)
    failures: int
    p50_ms: float
    last_call_at: str | None
    last_outcome: str
    last_error: str


@dataclass(frozen=True)
class ChainStatus:
    name: str
    chain_id: int
    oracle: str | None
    head: int | None  # from the chain; None when not read or not reachable
    cursor: int | None  # the last block the intake has read
    lag: int | None
    requests_by_state: dict[str, int]
    pending: int  # requests not yet settled or given up
    failures_today: int
    gas_spent_today_wei: str
    gas_daily_budget_wei: str
    gas_left_today_wei: str
    model_spend_today_micro_usd: int
    x402_spend_today: dict[str, str]  # asset -> base units
    signer: str | None
    signer_balance_wei: str | None
    payment_wallet: str | None
    payment_wallet_balances: dict[str, str]  # asset -> base units, on this chain
    chain_error: str | None  # why the chain could not be read, when it could not


def as_dict(record: Any) -> Any:
    """A record (or a list of them) as plain JSON values."""
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return dataclasses.asdict(record)
    if isinstance(record, list):
        return [as_dict(r) for r in record]
    if isinstance(record, dict):
        return {k: as_dict(v) for k, v in record.items()}
    return record


def as_json(record: Any) -> str:
    return json.dumps(as_dict(record), indent=2)
