"""The spending policy, checked before anything is signed: which of a 402's offers may be paid, if any.

Only scheme "exact" on a configured network, to exactly the provider's pinned (network, asset, payTo),
at most `max_payment` and the request's allowance, with a validity window no longer than
`max_validity_seconds`. Budgets and the cap on unresolved payments are checked when the payment is
reserved in the ledger (`Store.reserve_payment`), where they can be counted atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from x402.mechanisms.evm.v1.utils import get_evm_chain_id as v1_chain_id
from x402.schemas import PaymentRequired, PaymentRequirements
from x402.schemas.v1 import PaymentRequiredV1, PaymentRequirementsV1

from oracle.config import X402Pin, X402Settings


@dataclass(frozen=True)
class Offer:
    """One payment a 402 asks for, version-neutral."""

    version: int
    scheme: str
    network: str  # CAIP-2, also for v1's named networks
    asset: str
    pay_to: str
    amount: int
    max_timeout_seconds: int
    requirements: PaymentRequirements | PaymentRequirementsV1


def offers(required: PaymentRequired | PaymentRequiredV1) -> list[Offer]:
    out = []
    for r in required.accepts:
        if isinstance(r, PaymentRequirementsV1):
            try:
                network = f"eip155:{v1_chain_id(str(r.network))}"
            except ValueError:
                network = str(r.network)
            amount_text = r.max_amount_required
        else:
            network, amount_text = str(r.network), r.amount
        text = str(amount_text)
        amount = int(text) if text.isascii() and text.isdigit() and len(text) < 78 else -1
        out.append(Offer(required.x402_version, r.scheme, network, r.asset, r.pay_to, amount,
                         r.max_timeout_seconds, r))
    return out


def choose(candidates: list[Offer], pin: X402Pin, settings: X402Settings, allowance: int) -> Offer | str:
    """The first offer the policy allows, or why none is (the reason for the first refused)."""
    networks = {n.network for n in settings.networks}
    reasons: list[str] = []
    for o in candidates:
        reason = _refusal(o, pin, networks, settings, allowance)
        if reason is None:
            return o
        reasons.append(reason)
    return reasons[0] if reasons else "the 402 offers no payment"


def _refusal(o: Offer, pin: X402Pin, networks: set[str], settings: X402Settings, allowance: int) -> str | None:
    if o.scheme != "exact":
        return f"scheme {o.scheme!r} is not paid (only exact)"
    method = (o.requirements.extra or {}).get("assetTransferMethod")
    if method not in (None, "eip3009"):
        return f"asset transfer method {str(method)[:40]!r} is not paid (only EIP-3009 authorizations)"
    if o.network not in networks:
        return f"network {o.network} is not configured"
    if o.network != pin.network:
        return f"network {o.network} is not the provider's pinned {pin.network}"
    if _lower(o.asset) != _lower(pin.asset):
        return f"asset {o.asset} is not the provider's pinned {pin.asset}"
    if _lower(o.pay_to) != _lower(pin.pay_to):
        return f"payTo {o.pay_to} is not the provider's pinned {pin.pay_to}"
    if o.amount < 0:
        return "the amount is not a whole number of base units"
    if o.amount > settings.max_payment:
        return f"price {o.amount} is above the per-payment cap {settings.max_payment}"
    if o.amount > allowance:
        return f"price {o.amount} is above the request's allowance {allowance}"
    if o.max_timeout_seconds <= 0:
        return "no validity window (maxTimeoutSeconds must be positive)"
    if o.max_timeout_seconds > settings.max_validity_seconds:
        return f"validity window {o.max_timeout_seconds} s is longer than {settings.max_validity_seconds} s"
    return None


def offered_domain(o: Offer) -> tuple[str, str, int, str] | str:
    """The EIP-712 domain (name, version, chainId, verifyingContract) a signature for `o` would be made
    in: name and version from the 402's `extra` (version "1" when absent, as the SDK does), the chain
    of its network and the asset as verifying contract; or why the 402 names none."""
    extra = o.requirements.extra
    if isinstance(extra, str):  # v1 allows `extra` as JSON text
        try:
            extra = json.loads(extra)
        except ValueError:
            return "its extra is not a JSON object"
    if not isinstance(extra, dict):
        return "its extra is not an object"
    name, version = extra.get("name"), extra.get("version", "1")
    if not isinstance(name, str) or not isinstance(version, str):
        return "its extra does not name the token's EIP-712 domain (name and version as text)"
    if len(name) > 200 or len(version) > 50:
        return "its extra's EIP-712 name or version is implausibly long"
    return name, version, int(o.network.split(":", 1)[1]), str(o.asset)


def _lower(value: Any) -> str:
    return str(value).lower()
