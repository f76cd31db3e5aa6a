"""`GatewayClient`: an agent's calls to the oracle's public gateway, paid per call over x402 from the
agent's own wallet, through the same `PayingClient` (spending policy, budgets, ledger, payment
identifiers) the daemon pays its providers with.

    pin = X402Pin(network="eip155:8453", asset=USDC, pay_to=GATEWAY_PAYEE)   # whom the agent agrees to pay
    async with GatewayClient.open("http://127.0.0.1:8548", agent_key, "agent-payments.sqlite", pin=pin,
                                  max_payment=5_000, budget_total=1_000_000, rpc_url=BASE_RPC) as gateway:
        reply = await gateway.chat([{"role": "user", "content": "One word for the sea?"}], key="sea-1")
        print(reply.content, reply.model, reply.paid)

        analysis = await gateway.analyze(chain_id=8453, model="cheapest", prompt=context,
                                         result=ResultSpec(ResultType.UINT, min=0, max=100),
                                         consumer=sentinel.address, signer=ORACLE_SIGNER, key="risk-42")
        await send_call(w3, sentinel.functions.acceptSignedResult(*analysis.as_call_args()), bot_key)

        await gateway.reconcile()   # now and then: settles or expires payments whose fate is unknown
        account = await gateway.account()   # what the gateway has on record for this payer

Every call has an idempotency key (`key`, a fresh one when not given). Its payment is stored in the
ledger, signed, before the paid request is sent; the gateway binds the payment's identifier to the
answer. So a call made again with the same key and the same arguments (after a timeout, a crash, a
restart) re-sends the stored payment and gets the stored answer: it never pays twice. An agent that
must not pay twice for one question chooses the key and keeps it until it has the answer.

Amounts are in the payment asset's base units (micro-USD for USD stablecoins). Errors are
`ClientError`s: `GatewayError` (the gateway answered with an error, or not at all), `PaymentDeclined`
(this client would not pay: policy or budget), `AnswerRefused` (a paid answer that does not check out).
The payment key is never logged nor part of an error.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
from eth_utils import is_address

from oracle.client.analysis import AnalysisQuery, AnswerRefused, SignedAnalysis, verify_analysis
from oracle.client.transact import ClientError
from oracle.config import KeySource, X402Pin, X402Settings
from oracle.protocol import ACCOUNT_MESSAGE_HEADER, ACCOUNT_SIGNATURE_HEADER, ResultSpec, account_message
from oracle.results import load_untrusted_json
from oracle.x402 import Paid, PaidReply, PayingClient, PaymentContext, PaymentWallet
from oracle.x402.ledger import Ledger
from oracle.x402.network import PaymentNetworks
from oracle.x402.reconciler import Reconciler, ReconcileReport

CHAT_ROUTE = "/v1/chat/completions"
ANALYZE_ROUTE = "/v1/analyze"
ACCOUNT_ROUTE = "/v1/account/{address}"
ACCOUNT_MESSAGE_VALIDITY = 300  # seconds a signed account message is good for (the gateway takes at most 600)
DEFAULT_TIMEOUT = 120.0  # seconds for one call: a model's answer, a settlement
MAX_KEY_CHARS = 200
_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


class GatewayError(ClientError):
    """The gateway answered with an error status (or, `status` 0, not at all). `error` is its own text;
    `reason` the ReasonCode name when no model answered (502); `retry_after` seconds when rate limited."""

    def __init__(self, message: str, status: int, error: str = "", reason: str = "",
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.reason = reason
        self.retry_after = retry_after


class PaymentDeclined(GatewayError):
    """This client did not pay the gateway's 402: `outcome` is "refused" (the spending policy), "budget"
    (a budget or the cap on unresolved payments) or "resent" (the key's stored payment cannot be used);
    `detail` says why. Nothing new was signed."""

    def __init__(self, message: str, outcome: str, detail: str) -> None:
        super().__init__(message, 402, detail)
        self.outcome = outcome
        self.detail = detail


@dataclass(frozen=True)
class ChatReply:
    content: str
    model: str  # the model id that answered
    deployment: str
    usage: dict[str, Any]  # prompt_tokens, completion_tokens, total_tokens, cost (USD)
    paid: int  # what the gateway says it charged, in the payment asset's base units
    raw: dict[str, Any]  # the gateway's answer as received


@dataclass(frozen=True)
class GatewayAccount:
    """What the gateway has on record for one payer: its paid calls that were answered (a failed one
    is not kept), what those settling or settled cost and what of it settled, the newest call's time
    (None: never), today's spend (UTC) against the daily cap, and what its calls being answered or
    settled now hold of its balance."""

    address: str
    calls: int
    spent: int
    settled: int
    last_seen: float | None
    spent_today: int
    daily_cap: int
    reserved: int


class GatewayClient:
    """One gateway, one payment wallet, one ledger file (held while open). Use `open` unless the agent
    already has `X402Settings`; close it (or use `async with`) to release the ledger."""

    def __init__(self, url: str, wallet: PaymentWallet, settings: X402Settings, pin: X402Pin, ledger: Path | str, *,
                 session: aiohttp.ClientSession | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url = url.rstrip("/")
        self.pin = pin
        self.settings = settings
        self.timeout = timeout
        self.payer = wallet.address
        self._wallet = wallet
        self._ledger = Ledger.open(ledger)
        self._own_session = session is None
        self._session = aiohttp.ClientSession() if session is None else session
        networks = PaymentNetworks(self._session, settings)
        self._reconciler = Reconciler(self._ledger.payments, settings, self._session, networks=networks)
        self._paying = PayingClient(self._session, wallet, settings, self._ledger.payments,
                                    resolve=self._reconciler.resolve, networks=networks)

    @classmethod
    def open(cls, url: str, key: bytes | PaymentWallet, ledger: Path | str, *, pin: X402Pin, max_payment: int,
             budget_total: int, rpc_url: str, budget_window: float = 86_400.0, max_validity_seconds: int = 300,
             max_unresolved: int = 32, session: aiohttp.ClientSession | None = None,
             timeout: float = DEFAULT_TIMEOUT) -> GatewayClient:
        """A client paying only `pin` (the network, asset and payee the agent agrees to pay), at most
        `max_payment` a call and `budget_total` per `budget_window` seconds; `rpc_url` is a node of the
        pin's network (the token's EIP-712 domain, reconciling payments). Call it in a coroutine."""
        settings = X402Settings.model_validate({
            # X402Settings names where the daemon reads its key; this client is handed the wallet itself.
            "wallet": KeySource(key_env="ORACLE_AGENT_PAYMENT_KEY"),
            "networks": [{"network": pin.network, "rpc_url": rpc_url}],
            "max_payment": max_payment, "max_validity_seconds": max_validity_seconds,
            "max_unresolved": max_unresolved,
            # One payee, one payer: every budget scope is the agent's whole budget.
            "budget": {"window": budget_window, "total": budget_total, "per_provider": budget_total,
                       "per_requester": budget_total},
        })
        wallet = key if isinstance(key, PaymentWallet) else PaymentWallet(key)
        return cls(url, wallet, settings, pin, ledger, session=session, timeout=timeout)

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        try:
            if self._own_session:
                await self._session.close()
        finally:
            self._ledger.close()

    async def chat(self, messages: Sequence[Mapping[str, str]], *, model: str = "cheapest", max_tokens: int = 256,
                   temperature: float = 0.0, seed: int = 0, schema: Mapping[str, Any] | None = None,
                   max_price: int | None = None, key: str | None = None) -> ChatReply:
        """An OpenAI-style chat completion (`messages` of role and content), paid at most `max_price`
        (default: the per-payment cap). `schema`: a JSON schema the answer must follow. Calling again
        with the same `key` and arguments resumes the stored payment and gets the stored answer without
        paying twice (after a timeout, or a restart of this process)."""
        body: dict[str, Any] = {"model": model, "messages": [dict(m) for m in messages], "max_tokens": max_tokens,
                                "temperature": float(temperature), "seed": seed}
        if schema is not None:
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": "answer", "schema": dict(schema)}}
        doc = await self._call(CHAT_ROUTE, body, key, max_price)
        return _chat_reply(doc)

    async def analyze(self, *, chain_id: int, model: str, prompt: str, result: ResultSpec, consumer: str, signer: str,
                      oracle: str | None = None, max_tokens: int = 256, temperature: int = 0, seed: int = 0,
                      max_price: int | None = None, key: str | None = None) -> SignedAnalysis:
        """A typed answer signed for `consumer`'s `acceptSignedResult`, checked before it is returned
        (`verify_analysis`): the question asked, this chain and consumer, signed by `signer` (the oracle's
        registered fulfillment signer the agent trusts; in the domain of `oracle` when given), not
        expired, its bytes decoding to its value; AnswerRefused otherwise. `temperature` is an integer in
        the on-chain unit. Calling again with the same `key` and arguments resumes the stored payment and
        gets the stored answer without paying twice (after a timeout, or a restart of this process)."""
        for name, address in (("consumer", consumer), ("signer", signer), ("oracle", oracle)):
            if address is not None and not is_address(address):
                raise ValueError(f"{name} {address!r} is not an address (0x and 40 hex digits)")
        asked = AnalysisQuery(chain_id, model, prompt, result, consumer, signer, oracle)
        body = {"chain_id": chain_id, "model": model, "prompt": prompt, "result": result.to_json(),
                "consumer": consumer, "max_tokens": max_tokens, "temperature": temperature, "seed": seed}
        return verify_analysis(await self._call(ANALYZE_ROUTE, body, key, max_price), asked)

    async def account(self) -> GatewayAccount:
        """This payer's account at the gateway (free), read with a fresh message signed by its wallet
        (`oracle.protocol.account_message`: a random nonce, valid ACCOUNT_MESSAGE_VALIDITY seconds)."""
        route = ACCOUNT_ROUTE.format(address=self.payer)
        message = account_message(self.payer, self.pin.pay_to, secrets.token_hex(16),
                                  int(time.time()) + ACCOUNT_MESSAGE_VALIDITY)
        headers = {"Accept": "application/json",
                   ACCOUNT_MESSAGE_HEADER: base64.b64encode(message.encode()).decode(),
                   ACCOUNT_SIGNATURE_HEADER: "0x" + self._wallet.sign_message(message).hex()}
        try:
            async with self._session.get(self.url + route, headers=headers, allow_redirects=False,
                                         timeout=aiohttp.ClientTimeout(total=self.timeout)) as resp:
                reply = PaidReply(resp.status, resp.headers.copy(), await resp.read())
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise GatewayError(f"{route}: the gateway at {self.url} did not answer ({type(exc).__name__})", 0) from None
        if reply.status != 200:
            raise _http_error(route, "", reply)
        try:
            doc = load_untrusted_json(reply.raw)
        except (ValueError, RecursionError):
            doc = None
        return _account(route, doc)

    async def reconcile(self) -> ReconcileReport:
        """Resolve this ledger's payments whose fate is unknown from the token's own records (settled or
        expired), so they stop counting against `max_unresolved`. Run it now and then."""
        return await self._reconciler.run_once()

    async def _call(self, route: str, body: dict[str, Any], key: str | None, max_price: int | None) -> dict[str, Any]:
        """POST `body`, paying the 402 under `key`; the answer's JSON object, or the error raised."""
        key = uuid.uuid4().hex if key is None else key
        if not key or len(key) > MAX_KEY_CHARS:
            raise ValueError(f"a call's key is 1 to {MAX_KEY_CHARS} characters")
        limit = self.settings.max_payment if max_price is None else max_price
        if limit <= 0:
            raise ValueError(f"max_price must be positive, got {limit}")
        ctx = PaymentContext(request_key=key, requester=self.payer, attempt_id=1, max_amount=limit)
        # The same arguments give the same bytes: a resumed payment is bound to the body it paid for.
        data = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        try:
            reply = await self._paying.post(self.url + route, data, _HEADERS, self.timeout, ctx, self.pin, self.url)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise GatewayError(f"{route}: the gateway at {self.url} did not answer ({type(exc).__name__}); calling "
                               f"again with key {key!r} re-sends the same payment, never a new one", 0) from None
        await self._ledger.payments.commit()  # what became of the payment, before anything else happens
        if reply.outcome in (Paid.REFUSED, Paid.BUDGET, Paid.RESENT):
            raise _declined(route, key, reply)
        if not 200 <= reply.status < 300:
            raise _http_error(route, key, reply)
        try:
            doc = load_untrusted_json(reply.raw)
        except (ValueError, RecursionError):
            doc = None
        if not isinstance(doc, dict):
            raise AnswerRefused(f"{route}: the gateway's answer (HTTP {reply.status}) is not a JSON object",
                                reply.raw[:2000])
        return doc


def _declined(route: str, key: str, reply: PaidReply) -> PaymentDeclined:
    if reply.outcome == Paid.RESENT:
        state = reply.payment.state if reply.payment is not None else "unknown"
        detail = f"the payment stored under key {key!r} ({state}) cannot be used again"
        return PaymentDeclined(
            f"{route}: not paid: {detail} (never signed, expired, or refused when sent again: it may have been "
            f"spent with its answer lost); nothing new was signed. reconcile() learns from the token whether it "
            f"moved money; call with a new key to pay again", str(reply.outcome), detail)
    which = "the budget" if reply.outcome == Paid.BUDGET else "the spending policy"
    return PaymentDeclined(f"{route}: not paid, {which} refuses the gateway's 402: {reply.detail}; nothing was "
                           f"signed, and key {key!r} stays refused: change what was refused, then call with a new "
                           f"key", str(reply.outcome), reply.detail)


def _http_error(route: str, key: str, reply: PaidReply) -> GatewayError:
    try:
        doc = load_untrusted_json(reply.raw) if reply.raw else None
    except (ValueError, RecursionError):
        doc = None
    error = str(doc.get("error", ""))[:500] if isinstance(doc, dict) else ""
    reason = str(doc.get("reason", ""))[:80] if isinstance(doc, dict) else ""
    retry_after = _seconds(reply.headers.get("Retry-After"))
    text = error or reply.raw[:200].decode("utf-8", "replace") or "no reason given"
    message = f"{route}: HTTP {reply.status}: {text}"
    if reason:
        message += f" (reason {reason}; nothing is charged)"
    if reply.status == 402 and reply.outcome == Paid.PAID:
        message += "; the payment was refused: the ledger keeps it unresolved until reconcile() reads the token"
    if reply.status == 409:
        message += f"; key {key!r} was used for another call: give each call its own key"
    if retry_after is not None:
        message += f"; retry after {retry_after:g} s"
    return GatewayError(message, reply.status, error, reason, retry_after)


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: the gateway sends seconds


def _account(route: str, doc: Any) -> GatewayAccount:
    counts = ("calls", "spent", "settled", "spent_today", "daily_cap", "reserved")
    if (not isinstance(doc, dict) or not isinstance(doc.get("address"), str)
            or any(isinstance(doc.get(n), bool) or not isinstance(doc.get(n), int) for n in counts)
            or not (doc.get("last_seen") is None or isinstance(doc["last_seen"], (int, float)))):
        raise AnswerRefused(f"{route}: the answer is not an account (address; {', '.join(counts)} integers; "
                            f"last_seen a time or null)", doc)
    last_seen = None if doc["last_seen"] is None else float(doc["last_seen"])
    return GatewayAccount(doc["address"], doc["calls"], doc["spent"], doc["settled"], last_seen, doc["spent_today"],
                          doc["daily_cap"], doc["reserved"])


def _chat_reply(doc: dict[str, Any]) -> ChatReply:
    choices, oracle, usage = doc.get("choices"), doc.get("oracle"), doc.get("usage")
    first = choices[0] if isinstance(choices, list) and choices else None
    message = first.get("message") if isinstance(first, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str) or not isinstance(oracle, dict) or not isinstance(usage, dict):
        raise AnswerRefused(f"{CHAT_ROUTE}: the answer lacks choices[0].message.content (text), oracle or usage "
                            f"(objects)", doc)
    paid = oracle.get("paid", 0)
    if isinstance(paid, bool) or not isinstance(paid, int):
        raise AnswerRefused(f"{CHAT_ROUTE}: the answer's oracle.paid is not an integer", doc)
    return ChatReply(content, str(doc.get("model", "")), str(oracle.get("deployment", "")), usage, paid, doc)
