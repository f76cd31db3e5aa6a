"""`ModelRouter`: a request's model spec in, a typed answer and the record of how it was made out.

    router = ModelRouter(Catalog(config.models), session, store.routing, config.router)
    answer = await router.answer(route_request, deadline)

A gateway chat (`RouteRequest.chat`) is routed the same way, but its own turns are sent and the
model's text is its answer, as is (JSON when it asked for a schema, which deployments must then take).

The decision (`decision.py`) orders the deployments; this module walks that plan:
- a deployment is tried once per slot of the attempt budget; transient errors (408, 429, 5xx,
  timeouts, an error inside an HTTP 200) are retried on it `retries` times with exponential backoff,
  honouring Retry-After; after that the next deployment is tried, and the plan is walked again while
  budget is left, skipping deployments that failed for good;
- context-length and content-policy errors, an unavailable model and a 402 that is not x402 (out of
  credits) fall back to the next deployment at once; other 400s, 401 and 403 stop the request;
- a malformed answer is asked again of the same deployment once, then falls back;
- a model's refusal is its answer: the request fails with MODEL_REFUSED;
- every call asks the deployment's breaker first and reports to its health afterwards.
An ensemble runs its k members at once, each walking the plan with providers no other member uses.

Every call is on record (committed) before it is sent and its outcome and raw response after; the
decision is stored with the first call. A resumed request is routed by the stored decision, replays
finished calls from the store and re-sends an unfinished one under the same idempotency key.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from oracle.config import RouterSettings
from oracle.protocol import ReasonCode, RequestParams, ResultSpec, ResultType, Status
from oracle.results import ResultError, answer_to_result, json_schema, load_untrusted_json
from oracle.router.adapters import FORMATS, Call, ProviderReply, send
from oracle.router.adapters.base import (
    BUDGET,
    CONTENT_POLICY,
    CONTEXT_LENGTH,
    FATAL,
    PAYMENT,
    RESENT,
    TRANSIENT,
    UNAVAILABLE,
)
from oracle.router.catalog import Catalog, Entry
from oracle.router.decision import PROMPT_OVERHEAD_TOKENS, Decision, DecisionInput, HealthPoint, decide
from oracle.router.ensemble import combine
from oracle.router.health import Health
from oracle.router.prompts import chat_sent_bytes, sent_bytes, system_prompt, user_message
from oracle.router.types import Answer, RouteLog, RouteRequest
from oracle.store import Attempt
from oracle.x402 import PayingClient, PaymentContext

UNLIMITED = 2**255
# Why a deployment stopped being tried, and what the request fails with if it was the last one.
_FALLBACK_REASON = {CONTEXT_LENGTH: ReasonCode.PROMPT_TOO_LARGE, CONTENT_POLICY: ReasonCode.CONTENT_FILTERED,
                    UNAVAILABLE: ReasonCode.PROVIDERS_UNAVAILABLE, TRANSIENT: ReasonCode.PROVIDERS_UNAVAILABLE,
                    FATAL: ReasonCode.PROVIDERS_UNAVAILABLE, PAYMENT: ReasonCode.PAYMENT_FAILED,
                    BUDGET: ReasonCode.BUDGET_EXHAUSTED, RESENT: ReasonCode.PAYMENT_FAILED}


@dataclass
class _Outcome:
    ok: bool
    reason: ReasonCode
    detail: str
    model: str
    result: bytes = b""
    deployment: str = ""
    stop: bool = False  # no other deployment is to be tried


class ModelRouter:
    def __init__(self, catalog: Catalog, session: aiohttp.ClientSession, store: RouteLog, settings: RouterSettings,
                 clock: Callable[[], float] = time.time, paying: PayingClient | None = None) -> None:
        self.catalog = catalog
        self.paying = paying  # for deployments paid over x402
        self.catalog_version = catalog.version
        self.session = session
        self.store = store
        self.settings = settings
        self.clock = clock
        self.health = Health(catalog, settings)
        # Told of each finished call (deployment, outcome, seconds, cost in micro-USD): the metrics.
        self.on_call: Callable[[str, str, float, int], None] | None = None
        self._instructions: dict[ResultSpec, tuple[str, dict[str, Any]]] = {}
        store.save_catalog(catalog.version, catalog.body)

    def reload(self, catalog: Catalog, settings: RouterSettings) -> None:
        """Route new requests by `catalog` and `settings` (a reloaded config). The catalog is stored first,
        so every receipt naming its version can be recomputed; requests already being answered finish
        on the plan they were given."""
        if catalog.version != self.catalog.version:
            self.store.save_catalog(catalog.version, catalog.body)
        self.health = self.health.rebuilt(catalog, settings)
        self.catalog = catalog
        self.catalog_version = catalog.version
        self.settings = settings

    def instructions(self, spec: ResultSpec) -> tuple[str, dict[str, Any]]:
        """The system prompt and JSON schema for a result type: the same for every request asking it."""
        found = self._instructions.get(spec)
        if found is None:
            if len(self._instructions) >= 4_096:  # specs come from anyone (the gateway): kept bounded
                self._instructions.clear()
            found = self._instructions[spec] = (system_prompt(spec), json_schema(spec))
        return found

    def estimate_cost(self, params: RequestParams) -> int | None:
        """The least the request's model spec can cost (its cheapest eligible plan), before health."""
        sent = sent_bytes(params.prompt.decode("utf-8", "replace"), params.result, self.instructions(params.result)[1])
        decision = self._eligible(params.model_spec, sent, params.max_tokens, params.result.kind)
        if decision.refusal != ReasonCode.NONE:
            return None
        return sum(sorted(decision.estimates)[:decision.ensemble])

    def worst_case(self, model_spec: str, sent: int, max_tokens: int,
                   kind: ResultType) -> tuple[int, list[tuple[Entry, int]]] | str:
        """What a call may cost before it is made, for a price quoted up front (the gateway's): the
        deployments the spec may use, each with its worst case in micro-USD, and the most the call may
        cost; or why no deployment may answer it.

        A price quoted to anyone must hold against any text: each deployment's worst case counts one
        token per byte sent (no tokenizer makes more; the decision's own estimate assumes fewer, as
        text usually takes), `max_tokens` of answer, and its per-call price. An ensemble of k members
        may cost k times the dearest, which also leaves each member its share of the allowance.

            quote = router.worst_case("cheapest", chat_sent_bytes(turns, schema), 512, ResultType.TEXT)
        """
        decision = self._eligible(model_spec, sent, max_tokens, kind)
        if decision.refusal != ReasonCode.NONE:
            return decision.detail
        each = [(e, e.estimate(sent + PROMPT_OVERHEAD_TOKENS, max_tokens)) for e in decision.plan]
        return decision.ensemble * max(cost for _, cost in each), each

    def _eligible(self, model_spec: str, sent: int, max_tokens: int, kind: ResultType) -> Decision:
        """The decision by the spec and the catalog's hard filters alone: any fee, time and health."""
        return decide(DecisionInput(b"", model_spec, kind, sent, max_tokens, UNLIMITED, 2**62), self.catalog, {})

    def _asked(self, request: RouteRequest) -> tuple[ResultType, int]:
        """The result kind a request's deployments must answer, and the bytes each is sent."""
        chat = request.chat
        if chat is not None:
            return chat.kind, chat_sent_bytes(chat.messages, chat.schema)
        p = request.params
        return p.result.kind, sent_bytes(request.prompt, p.result, self.instructions(p.result)[1])

    def decision_for(self, request: RouteRequest, deadline: float) -> tuple[Decision, dict[str, Any]]:
        """The stored decision of a resumed request (same catalog), else a new one, recorded."""
        stored = self.store.route_decision(request.key)
        if stored is not None and stored[0] == self.catalog.version:
            record = json.loads(stored[1])
            inputs = DecisionInput.from_record(record["inputs"])
            health: Mapping[str, HealthPoint] = {d: HealthPoint(*v) for d, v in record["health"].items()}
        else:
            p = request.params
            kind, sent = self._asked(request)
            inputs = DecisionInput(request.request_id, p.model_spec, kind, sent, p.max_tokens,
                                   request.allowance, max(0, int((deadline - self.clock()) * 1000)))
            health = self.health.snapshot()
        decision = decide(inputs, self.catalog, health)
        record = decision.record(inputs, health)
        if stored is None or stored[0] != self.catalog.version:
            # Read back only by this router on resume: plain JSON will do (the receipt is canonical).
            self.store.save_route_decision(request.key, self.catalog.version,
                                           json.dumps(record, default=_hex, separators=(",", ":")))
        return decision, record

    async def answer(self, request: RouteRequest, deadline: float) -> Answer:
        """Answer `request` before the unix time `deadline`, resuming after the calls on record for it."""
        prior_attempts = self.store.attempts(request.key)
        decision, record = self.decision_for(request, deadline)
        section: dict[str, Any] = {"catalog_version": self.catalog.version, "decision": record, "attempts": []}
        if decision.refusal != ReasonCode.NONE:
            return Answer(Status.FAILURE, decision.refusal, b"", (), decision.detail, section)
        run = _Run(self, request, decision, prior_attempts, deadline, section)
        if decision.ensemble == 1:
            out = await run.walk(0)
            if not out.ok:
                return Answer(Status.FAILURE, out.reason, b"", (out.model,) if out.model else (), out.detail, section)
            section["answer"] = {"deployment": out.deployment, "model": out.model}
            return Answer(Status.SUCCESS, ReasonCode.NONE, out.result, (out.model,), "", section)
        async with asyncio.TaskGroup() as members:  # one member failing unexpectedly stops the others
            tasks = [members.create_task(run.walk(m)) for m in range(decision.ensemble)]
        outs = [t.result() for t in tasks]
        failed = next((o for o in outs if not o.ok), None)
        models = tuple(o.model for o in outs if o.model)
        if failed is not None:
            return Answer(Status.FAILURE, failed.reason, b"", models, f"ensemble member: {failed.detail}", section)
        combined = combine(request.params.result, [(o.deployment, o.result) for o in outs])
        section["ensemble"] = combined.record
        section["answer"] = {"deployments": [o.deployment for o in outs], "models": list(models)}
        return Answer(Status.SUCCESS, ReasonCode.NONE, combined.result, models, "", section)


def _cost_unknown(reply: ProviderReply) -> bool:
    """No answer came back (a timeout or a dropped connection): the provider may have done, and billed,
    the work; so may a payment whose fate is not known."""
    return reply.outcome == "error" and (reply.http_status == 0 or reply.kind == RESENT)


def _attempt_cost_unknown(a: Attempt) -> bool:
    return a.outcome == "error" and (a.http_status == 0 or a.kind == RESENT)


def _hex(value: object) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    raise TypeError(f"cannot store {type(value).__name__}")


class _Run:
    """One request's walk over its plan (one per member for an ensemble), sharing calls and budget."""

    def __init__(self, router: ModelRouter, request: RouteRequest, decision: Decision, prior: list[Attempt],
                 deadline: float, section: dict[str, Any]) -> None:
        self.r = router
        self.request = request
        self.decision = decision
        self.deadline = deadline
        self.section = section
        self.notes: list[dict[str, Any]] = section["attempts"]
        # Calls are matched to the record by (deployment, n-th call to it): deterministic whichever
        # member or order makes them.
        self.prior: dict[tuple[str, int], Attempt] = {}
        seen: dict[str, int] = {}
        for a in sorted(prior, key=lambda a: a.attempt_id):
            n = seen.get(a.deployment, 0)
            seen[a.deployment] = n + 1
            self.prior[(a.deployment, n)] = a
        # New attempt ids also clear the payments of a request re-included with other content, whose
        # attempts were dropped but whose payments stay on the ledger.
        # (Only a router that pays over x402 has payments to look up: no query on the common path.)
        # (The x402 client caps the sum of the request's payments at its allowance from the ledger.)
        last_paid = router.paying.last_paid_attempt(request.key) if router.paying is not None else 0
        self.next_id = max(max((a.attempt_id for a in prior), default=0), last_paid) + 1
        # What the request's calls may cost, micro-USD, held against its allowance across every attempt,
        # fallback and ensemble member: a call reserves its worst case (its answer at max tokens at the
        # deployment's prices, or its per-call price) before it is made and is settled at its cost after.
        self.worst = {e.id: cost for e, cost in zip(decision.plan, decision.estimates, strict=True)}
        self.reserved = sum(a.cost if a.state == "done" and not _attempt_cost_unknown(a)
                            else max(a.cost, self.worst.get(a.deployment, 0)) for a in prior)
        self.calls_on: dict[str, int] = {}
        self.finished: set[str] = set()  # deployments that failed for good for this request
        self.not_before: dict[str, float] = {}  # deployment -> when its Retry-After allows another call
        self.in_use: dict[int, str] = {}  # ensemble member -> provider it is using or used
        params = request.params
        if request.chat is None:
            system, schema = router.instructions(params.result)
            self.call = Call(system, user_message(request.prompt, params.result), schema, params.max_tokens,
                             params.temperature, params.seed, {})
        else:  # the gateway's caller pays for and reads the answer: its own turns, as given
            self.call = Call("", "", dict(request.chat.schema or {}), params.max_tokens, params.temperature,
                             params.seed, {}, request.chat.messages)

    async def walk(self, member: int) -> _Outcome:
        plan = self.decision.plan
        k = self.decision.ensemble
        order = [plan[member], *list(plan[k:])] if k > 1 else list(plan)
        budget = self.r.settings.attempt_budget
        last = _Outcome(False, ReasonCode.PROVIDERS_UNAVAILABLE, "no deployment answered", "")
        tried = 0
        while tried < budget:
            progressed = False
            for e in order:
                if tried >= budget:
                    break
                if (e.id in self.finished or self._taken(member, e.provider)
                        or self.not_before.get(e.id, 0.0) > self.r.clock()):
                    continue
                if self.deadline - self.r.clock() < 0.5:
                    return _Outcome(False, ReasonCode.DEADLINE_TOO_SHORT, "the deadline came before an answer",
                                    last.model or e.model)
                if not self._replayable(e) and not self._fits(e):
                    last = _Outcome(False, ReasonCode.BUDGET_EXHAUSTED,
                                    f"{e.id}: a call may cost {self.worst.get(e.id, 0)} micro-USD; "
                                    f"{max(0, self.request.allowance - self.reserved)} of the request's "
                                    f"{self.request.allowance} are left", e.model)
                    continue
                if not self._replayable(e) and not self.r.health.allow(e.id):
                    last = _Outcome(False, ReasonCode.PROVIDERS_UNAVAILABLE, f"{e.id}: circuit open", e.model)
                    continue
                tried += 1
                progressed = True
                if k > 1:
                    self.in_use[member] = e.provider
                out = await self._try(e)
                if out.ok or out.stop:
                    return out
                last = out
            if not progressed:
                # Only Retry-After waits left? Wait for the first to pass if the deadline allows.
                waits = [self.not_before[e.id] for e in order if e.id in self.not_before and e.id not in self.finished
                         and not self._taken(member, e.provider)]
                resume_at = min(waits, default=self.deadline)
                if resume_at > self.deadline - 1.0 or resume_at <= self.r.clock():
                    break
                await asyncio.sleep(resume_at - self.r.clock())
        return last

    def _fits(self, e: Entry) -> bool:
        return self.reserved + self.worst.get(e.id, 0) <= self.request.allowance

    def _taken(self, member: int, provider: str) -> bool:
        return any(p == provider for m, p in self.in_use.items() if m != member)

    def _replayable(self, e: Entry) -> bool:
        a = self.prior.get((e.id, self.calls_on.get(e.id, 0)))
        return a is not None and a.state == "done"

    async def _try(self, e: Entry) -> _Outcome:
        """One slot of the budget on `e`: transient errors retried, a malformed answer asked once more."""
        retries = 0
        malformed_again = True
        backoff = self.r.settings.backoff
        while True:
            reply = await self._call(e)
            if reply.outcome == "ok":
                try:
                    result = self._result(reply.text)
                except ResultError as exc:
                    if malformed_again and (self._replayable(e) or self._fits(e)):
                        malformed_again = False
                        continue
                    self.finished.add(e.id)
                    return _Outcome(False, ReasonCode.MALFORMED, f"{e.id}: {exc}", e.model)
                return _Outcome(True, ReasonCode.NONE, "", e.model, result, e.id)
            if reply.outcome == "malformed" and malformed_again and (self._replayable(e) or self._fits(e)):
                malformed_again = False
                continue
            if reply.outcome == "refused":
                return _Outcome(False, ReasonCode.MODEL_REFUSED, f"{e.id}: {reply.error}", e.model, stop=True)
            if reply.outcome in ("malformed", "truncated", "filtered"):
                self.finished.add(e.id)
                reason = {"malformed": ReasonCode.MALFORMED, "truncated": ReasonCode.TRUNCATED,
                          "filtered": ReasonCode.CONTENT_FILTERED}[reply.outcome]
                return _Outcome(False, reason, f"{e.id}: {reply.outcome} {reply.error}".strip(), e.model)
            # outcome "error"
            if reply.kind == FATAL:
                self.finished.add(e.id)
                return _Outcome(False, ReasonCode.PROVIDERS_UNAVAILABLE, f"{e.id}: {reply.error}", e.model, stop=True)
            if reply.kind not in (TRANSIENT, RESENT):
                self.finished.add(e.id)
                return _Outcome(False, _FALLBACK_REASON[reply.kind], f"{e.id}: {reply.error}", e.model)
            time_left = self.deadline - self.r.clock() - 0.5
            # Never call again before a provider's Retry-After; a longer wait than backoff_max moves on.
            wait = reply.retry_after if reply.retry_after is not None else min(
                backoff * (0.5 + random.random()), self.r.settings.backoff_max)
            if (retries >= self.r.settings.retries or wait > self.r.settings.backoff_max or wait >= time_left
                    or not self._may_retry(e) or not (self._replayable(e) or self._fits(e))):
                if reply.retry_after is not None:
                    self.not_before[e.id] = self.r.clock() + reply.retry_after
                return _Outcome(False, ReasonCode.PROVIDERS_UNAVAILABLE, f"{e.id}: {reply.error}", e.model)
            retries += 1
            backoff *= 2
            await asyncio.sleep(wait)

    def _result(self, text: str) -> bytes:
        """The answer in an "ok" reply: a typed value ABI-encoded, or a chat's text as is (which must be
        JSON when the chat gave a schema); ResultError when it is malformed."""
        chat = self.request.chat
        if chat is None:
            return answer_to_result(self.request.params.result, text)
        if chat.schema:
            try:
                load_untrusted_json(text)
            except ValueError as exc:
                raise ResultError(f"the answer is not the JSON the schema asks for: {exc}"[:300]) from None
        return text.encode()

    def _may_retry(self, e: Entry) -> bool:
        return self._replayable(e) or self.r.health.allow(e.id)

    async def _call(self, e: Entry) -> ProviderReply:
        """One HTTP call to `e`, or its replay from the store when a previous run finished it."""
        n = self.calls_on.get(e.id, 0)
        prior = self.prior.get((e.id, n))
        worst = self.worst.get(e.id, 0)
        if prior is None:
            if not self._fits(e):
                self.r.health.release(e.id)
                return ProviderReply("error", BUDGET, error=f"a call may cost {worst} micro-USD; "
                                     f"{max(0, self.request.allowance - self.reserved)} of the request's "
                                     f"allowance left")
            self.reserved += worst  # at once, with no wait after the check: concurrent members see it
        self.calls_on[e.id] = n + 1
        store = self.r.store
        if prior is not None and prior.state == "done":
            raw = store.raw_response(prior.raw_sha256) if prior.raw_sha256 else None
            paying = self.r.paying
            paid = paying.payment_id(self.request.key, prior.attempt_id) if paying is not None else None
            reply = ProviderReply(prior.outcome, prior.kind, text=prior.answer, usage=prior.usage, raw=raw or b"",
                                  http_status=prior.http_status, error=prior.error, latency_ms=int(prior.latency_ms),
                                  payment_id=paid)
            self._note(prior.attempt_id, e, reply, prior.cost)
            return reply  # not counted in health again: it was when it was made
        request = self.request
        try:  # from here on the call holds its breaker slot (a half-open probe): released if we stop early
            if prior is not None:
                attempt_id = prior.attempt_id  # sent before a crash, never answered: same idempotency key
            else:
                attempt_id = self.next_id
                self.next_id += 1
                store.start_attempt(request.key, attempt_id, e.id)
                await store.commit()  # on record before the provider sees it
            call = dataclasses.replace(self.call, headers={
                "X-Oracle-Request": request.key,
                "Idempotency-Key": f"{request.key}/{request.params_hash.hex()[:16]}/{e.id}/{attempt_id}"})
            timeout = min(e.deployment.timeout, max(0.1, self.deadline - self.r.clock() - 0.5))
            payment = PaymentContext(request.key, request.requester, attempt_id, request.allowance, call_max=worst)
            reply = await send(self.r.session, FORMATS[e.deployment.api], e.deployment, call, timeout,
                               self.r.paying, payment)
        except BaseException:
            self.r.health.release(e.id)
            raise
        self.r.health.record(e.id, reply.latency_ms, reply.provider_failed, reply.error)
        cost = e.cost(reply.usage, reply.reported_cost)
        if not _cost_unknown(reply):
            self.reserved += cost - worst  # settled at what it cost; a call of unknown fate keeps its worst case
        store.finish_attempt(Attempt(request.key, attempt_id, e.id, "done", reply.outcome, reply.latency_ms,
                                     reply.usage, cost, reply.raw_sha256, reply.text, reply.error, reply.kind,
                                     reply.http_status), reply.raw)
        await store.commit()
        if self.r.on_call is not None:
            self.r.on_call(e.id, reply.outcome, reply.latency_ms / 1_000, cost)
        self._note(attempt_id, e, reply, cost)
        return reply

    def _note(self, attempt_id: int, e: Entry, reply: ProviderReply, cost: int) -> None:
        self.notes.append({"attempt": attempt_id, "deployment": e.id, "model": e.model, "outcome": reply.outcome,
                           "kind": reply.kind, "http_status": reply.http_status, "latency_ms": reply.latency_ms,
                           "usage": reply.usage, "cost": cost, "payment_id": reply.payment_id,
                           "response_sha256": reply.raw_sha256, "error": reply.error})
