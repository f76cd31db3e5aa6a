"""What every provider adapter shares: the provider-neutral call, the reply, error classes, and the
one function that makes the HTTP request on the shared aiohttp session.

An adapter is pure: `request()` builds (url, headers, body) for its wire format and `parse()` maps a
status and body to a `ProviderReply`. Only `send()` does I/O, so each wire format is tested without a
network and the router has one place where calls are made and timed.
"""

from __future__ import annotations

import email.utils
import functools
import hashlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any, Protocol

import aiohttp

from oracle.config import ModelDeployment
from oracle.results import load_untrusted_json
from oracle.x402 import Paid, PaidReply, PayingClient, PaymentContext

# Outcomes of a call, one per reply.
OUTCOMES = ("ok", "truncated", "refused", "filtered", "malformed", "error")
# What an error means for the router: retry the same deployment, fall back to the next one, or stop.
TRANSIENT = "transient"  # 408, 429, 5xx, timeouts, dropped connections, an error inside an HTTP 200
CONTEXT_LENGTH = "context_length"  # the prompt is too long for this model: fall back
CONTENT_POLICY = "content_policy"  # the provider's policy blocked the request: fall back
UNAVAILABLE = "unavailable"  # model not served, out of credits (a 402 that is not x402): fall back
FATAL = "fatal"  # other 400s, 401, 403: our request or our key is wrong; stop
PAYMENT = "payment"  # an x402 payment the policy refused or that failed: fall back
BUDGET = "budget"  # an x402 payment beyond a budget: fall back
RESENT = "resent"  # a payment sent before a restart was refused: retried (paying anew), not the provider's fault

_CONTEXT_MARKERS = ("context_length", "context length", "maximum context", "context window", "prompt is too long",
                    "too many tokens", "exceeds the maximum number of tokens", "input token count")
_POLICY_MARKERS = ("content_policy", "content policy", "content_filter", "content management policy",
                   "responsibleaipolicyviolation", "safety", "prohibited_content", "flagged")


@dataclass(frozen=True)
class Call:
    """One question, provider-neutral. Temperature is in hundredths, as requests carry it.

    A typed request asks `system` and `user` and always has a schema; a gateway chat gives its own
    `messages` (role, content) instead, and a schema only when its caller asked for one: an empty
    schema asks for free text, with no response format sent.
    """

    system: str
    user: str
    schema: dict[str, Any]
    max_tokens: int
    temperature: int
    seed: int
    headers: Mapping[str, str]  # X-Oracle-Request and Idempotency-Key
    messages: tuple[tuple[str, str], ...] = ()  # a chat's turns, sent instead of system and user


def system_texts(messages: tuple[tuple[str, str], ...]) -> list[str]:
    """A chat's system turns, for APIs that take the system text apart from the conversation."""
    return [content for role, content in messages if role == "system"]


def alternating(messages: tuple[tuple[str, str], ...]) -> list[tuple[str, list[str]]]:
    """A chat's user and assistant turns, consecutive turns of one role merged into one (role, texts):
    Anthropic requires the roles to alternate, and Gemini expects it."""
    merged: list[tuple[str, list[str]]] = []
    for role, content in messages:
        if role == "system":
            continue
        if merged and merged[-1][0] == role:
            merged[-1][1].append(content)
        else:
            merged.append((role, [content]))
    return merged


@dataclass
class ProviderReply:
    outcome: str  # one of OUTCOMES
    kind: str = ""  # for outcome "error": TRANSIENT, CONTEXT_LENGTH, CONTENT_POLICY, UNAVAILABLE or FATAL
    text: str = ""
    usage: dict[str, int] = field(default_factory=dict)  # input, output, cached, reasoning
    reported_cost: int | None = None  # micro-USD, when the provider says what the call cost
    raw: bytes = b""
    http_status: int = 0
    error: str = ""
    retry_after: float | None = None
    latency_ms: int = 0
    payment_id: int | None = None  # the x402 ledger row of this call's payment

    @functools.cached_property
    def raw_sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest() if self.raw else ""

    @property
    def provider_failed(self) -> bool:
        """Does this reply count against the deployment's health and breaker? Errors about this
        request (too long, blocked by policy) and the model's own behaviour do not."""
        return self.outcome == "error" and self.kind in (TRANSIENT, UNAVAILABLE, FATAL)


class WireFormat(Protocol):
    def request(self, d: ModelDeployment, call: Call) -> tuple[str, dict[str, str], bytes]: ...

    def parse(self, status: int, headers: Mapping[str, str], raw: bytes) -> ProviderReply: ...


def api_key(d: ModelDeployment) -> str:
    return os.environ.get(d.api_key_env, "") if d.api_key_env else ""


def body_bytes(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


async def send(session: aiohttp.ClientSession, fmt: WireFormat, d: ModelDeployment, call: Call,
               timeout: float, paying: PayingClient | None = None,
               payment: PaymentContext | None = None) -> ProviderReply:
    """POST one call (paying its 402 over x402 when the deployment's payer is x402); never raises for
    anything the provider, the payment or the network does."""
    url, headers, body = fmt.request(d, call)
    started = time.perf_counter()
    paid: PaidReply | None = None
    try:
        if d.payer == "x402":
            if paying is None or payment is None or d.x402 is None:
                return ProviderReply("error", FATAL, error="payer x402 without a payment wallet")
            try:
                paid = await paying.post(url, body, headers, timeout, payment, d.x402, d.provider)
            except (aiohttp.ClientError, TimeoutError):
                raise
            except Exception as exc:  # a provider's hostile payment answer must not stop the request
                return ProviderReply("error", PAYMENT, error=f"payment failed: {type(exc).__name__}: {exc}"[:500],
                                     latency_ms=_ms(started), payment_id=_payment_id(paying, payment))
            status, response_headers, raw = paid.status, paid.headers, paid.raw
        else:
            # No redirects: a key (Authorization, x-api-key, x-goog-api-key) never goes to another origin.
            async with session.post(url, data=body, headers=headers, allow_redirects=False,
                                    timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                raw = await resp.read()
                status = resp.status
                response_headers = resp.headers
    except (aiohttp.ClientError, TimeoutError) as exc:
        return ProviderReply("error", TRANSIENT, error=f"{type(exc).__name__}: {exc}"[:500],
                             latency_ms=_ms(started), payment_id=_payment_id(paying, payment))
    if 300 <= status < 400:
        # A provider that redirects a call misbehaves: its answer is not followed, not retried elsewhere.
        where = str(response_headers.get("Location", ""))[:200]
        reply = ProviderReply("error", UNAVAILABLE, raw=raw, http_status=status,
                              error=f"HTTP {status} redirect to {where!r} not followed: provider calls never follow "
                                    "redirects (fix the deployment's base_url if the provider moved)")
    elif paid is not None and paid.outcome in (Paid.REFUSED, Paid.BUDGET):
        reply = ProviderReply("error", BUDGET if paid.outcome == Paid.BUDGET else PAYMENT, raw=raw,
                              http_status=status, error=f"payment not made: {paid.detail}"[:500])
    elif paid is not None and paid.outcome == Paid.RESENT:
        reply = ProviderReply("error", RESENT, raw=raw, http_status=status,
                              error="a payment sent earlier was refused (answer lost?): a new attempt pays anew")
    else:
        reply = fmt.parse(status, response_headers, raw)
    if paid is not None:
        reply.payment_id = paid.payment_id
        if paid.cost is not None:
            reply.reported_cost = paid.cost  # what was paid, in the asset's base units
    if reply.retry_after is None:
        reply.retry_after = retry_after(response_headers.get("Retry-After"))
    reply.latency_ms = _ms(started)
    return reply


def _payment_id(paying: PayingClient | None, payment: PaymentContext | None) -> int | None:
    if paying is None or payment is None:
        return None
    return paying.payment_id(payment.request_key, payment.attempt_id)


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def classify(status: int, code: str, message: str) -> str:
    """The error class of a non-success reply, from its HTTP status and the provider's code and message
    (context-length and content-policy errors arrive as 400s from some providers, so the text decides)."""
    text = f"{code} {message}".lower()
    if status == 413 or any(m in text for m in _CONTEXT_MARKERS):
        return CONTEXT_LENGTH
    if status in (400, 403, 422, 200) and any(m in text for m in _POLICY_MARKERS):
        return CONTENT_POLICY
    if status in (402, 404):
        return UNAVAILABLE
    if status in (408, 409, 425, 429) or status >= 500 or status == 200:
        return TRANSIENT
    return FATAL


def error_reply(status: int, raw: bytes, code: str, message: str) -> ProviderReply:
    kind = classify(status, code, message)
    return ProviderReply("error", kind, raw=raw, http_status=status,
                         error=f"HTTP {status} {code}: {message}".strip()[:500])


def json_object(status: int, raw: bytes) -> dict[str, Any] | ProviderReply:
    """A reply body as a JSON object, or the error reply saying it is not one."""
    try:
        doc = load_untrusted_json(raw)
    except ValueError:
        return not_json(status, raw)
    return doc if isinstance(doc, dict) else not_json(status, raw)


def error_body(status: int, raw: bytes, err: Any, *code_fields: str) -> ProviderReply:
    """The error reply for a provider's `error` member: its code from the first of `code_fields` it has."""
    if not isinstance(err, dict):
        return error_reply(status, raw, "", str(err))
    code = next((err[f] for f in code_fields if err.get(f)), "")
    return error_reply(status, raw, str(code), str(err.get("message", "")))


def not_json(status: int, raw: bytes) -> ProviderReply:
    return ProviderReply("error", classify(status, "", "") if status != 200 else TRANSIENT, raw=raw,
                         http_status=status, error=f"HTTP {status}: body is not a JSON object")


# Bounds on what a provider may claim (tokens, micro-USD): enough for any real call, small enough that a
# cost computed from them stays a SQLite INTEGER.
CLAIM_MAX = 2**40


def count(v: Any) -> int:
    """A token count from an untrusted body: a non-negative integer, at most CLAIM_MAX, else 0."""
    return min(v, CLAIM_MAX) if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0


def micro_usd(v: Any) -> int | None:
    """A cost a provider reports in dollars (a JSON number), as whole micro-USD rounded up."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        amount = Decimal(repr(v)) * 1_000_000
    except InvalidOperation:
        return None
    if amount < 0 or not amount.is_finite() or amount > CLAIM_MAX:
        return None
    return int(amount.to_integral_value(rounding=ROUND_CEILING))


def answer_text(text: Any, status: int, raw: bytes, usage: dict[str, int]) -> str | ProviderReply:
    """`text` if it is usable answer text; else the malformed reply that says why."""
    if not isinstance(text, str):
        return ProviderReply("malformed", raw=raw, http_status=status, usage=usage, error="answer is not text")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return ProviderReply("malformed", raw=raw, http_status=status, usage=usage, error="answer is not UTF-8")
    return text
