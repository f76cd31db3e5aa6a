"""`OrderedRouter`: an ordered list of OpenAI-compatible deployments, tried in turn.

Candidates follow the model spec: an exact id or fallback list names deployments by model id, in that
order; `cheapest` orders by price, `fastest` and `best` keep the configured order; `ensemble:k` is not
served by this router and is refused as unsupported. Each attempt is written to the store before the
call (and committed), its outcome and raw response after; a resumed request replays finished attempts
from the store and re-issues an unfinished one under the same idempotency key, so a provider that
honours the key never answers the same attempt twice.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from oracle.config import ModelDeployment, PipelineSettings
from oracle.protocol import InvalidModelSpec, PolicyClass, ReasonCode, RequestParams, Status, parse_model_spec
from oracle.results import ResultError, answer_to_result, json_schema
from oracle.router.openai import OpenAIChat, ProviderReply
from oracle.router.prompts import system_prompt, user_message
from oracle.router.receipts import canonical_json, receipt_hash
from oracle.router.types import Answer, RouteRequest
from oracle.store import Attempt, Store

_STOP_OUTCOMES = {"refused": ReasonCode.MODEL_REFUSED, "filtered": ReasonCode.CONTENT_FILTERED}
# Rough bytes per token for estimating a prompt's size before asking (a safe side for most tokenizers).
_BYTES_PER_TOKEN = 3
_PROMPT_OVERHEAD_TOKENS = 200


class OrderedRouter:
    def __init__(self, deployments: list[ModelDeployment], session: aiohttp.ClientSession, store: Store,
                 settings: PipelineSettings) -> None:
        self.deployments = list(deployments)
        self.store = store
        self.settings = settings
        self.adapter = OpenAIChat(session)
        catalog = canonical_json([{**d.model_dump(mode="json", exclude={"timeout"}),
                                   "timeout_ms": int(d.timeout * 1000)} for d in deployments])
        self.catalog_version = "0x" + receipt_hash(catalog).hex()
        self.health: dict[str, dict[str, int]] = {d.id: {"calls": 0, "errors": 0} for d in deployments}

    # ------------------------------------------------------------ choosing

    def _candidates(self, params: RequestParams) -> tuple[list[ModelDeployment], list[dict[str, Any]], ReasonCode,
                                                          str]:
        try:
            spec = parse_model_spec(params.model_spec)
        except InvalidModelSpec as exc:
            return [], [], ReasonCode.INVALID_MODEL_SPEC, str(exc)
        if spec.policy == PolicyClass.ENSEMBLE:
            return [], [], ReasonCode.UNSUPPORTED, "ensembles are not served by this operator"
        if spec.policy == PolicyClass.EXACT:
            ordered = [d for model in spec.models for d in self.deployments if model in (d.model, d.id)]
            if not ordered:
                return [], [], ReasonCode.UNKNOWN_MODEL, f"no deployment serves {', '.join(spec.models)}"
        elif spec.policy == PolicyClass.CHEAPEST:
            ordered = sorted(self.deployments, key=lambda d: d.input_price + d.output_price)
        else:
            ordered = list(self.deployments)
        cap = spec.options.get("max_price")
        prompt_tokens = len(params.prompt) // _BYTES_PER_TOKEN + _PROMPT_OVERHEAD_TOKENS
        kept: list[ModelDeployment] = []
        notes: list[dict[str, Any]] = []
        for d in ordered:
            cost = _cost(d, prompt_tokens, params.max_tokens)
            if prompt_tokens + min(params.max_tokens, d.max_output) > d.context_window:
                notes.append({"deployment": d.id, "kept": False, "reason": "prompt does not fit the context window"})
            elif cap is not None and cap.isdigit() and cost > int(cap):
                notes.append({"deployment": d.id, "kept": False, "reason": f"estimated cost {cost} above max_price"})
            else:
                notes.append({"deployment": d.id, "kept": True, "reason": f"estimated cost {cost}"})
                kept.append(d)
        if not kept:
            too_big = all("context" in n["reason"] for n in notes)
            return [], notes, (ReasonCode.PROMPT_TOO_LARGE if too_big else ReasonCode.FEE_TOO_LOW), \
                "no deployment fits the request"
        return kept, notes, ReasonCode.NONE, ""

    def estimate_cost(self, params: RequestParams) -> int | None:
        kept, _, _, _ = self._candidates(params)
        if not kept:
            return None
        return _cost(kept[0], len(params.prompt) // _BYTES_PER_TOKEN + _PROMPT_OVERHEAD_TOKENS, params.max_tokens)

    # ------------------------------------------------------------ answering

    async def answer(self, request: RouteRequest, deadline: float, prior_attempts: list[Attempt]) -> Answer:
        params = request.params
        candidates, notes, refusal, detail = self._candidates(params)
        section: dict[str, Any] = {"catalog_version": self.catalog_version, "candidates": notes, "attempts": [],
                                   "health": {d.id: dict(self.health[d.id]) for d in candidates}}
        if refusal != ReasonCode.NONE:
            return Answer(Status.FAILURE, refusal, b"", (), detail, section)
        prior = {a.attempt_id: a for a in prior_attempts}
        schema = json_schema(params.result)
        system, user = system_prompt(params.result), user_message(request.prompt, params.result)

        attempt_id = 0
        malformed_retried = False
        last = (ReasonCode.PROVIDERS_UNAVAILABLE, "no deployment answered", candidates[0].model)
        queue = list(candidates)
        while queue and attempt_id < self.settings.max_attempts:
            d = queue[0]
            if time.time() + 1 > deadline:
                return Answer(Status.FAILURE, ReasonCode.DEADLINE_TOO_SHORT, b"", (d.model,),
                              "the deadline came before an answer", section)
            attempt_id += 1
            reply = await self._attempt(request, d, attempt_id, prior.get(attempt_id), system, user, schema)
            section["attempts"].append(_attempt_note(attempt_id, d, reply))
            if reply.outcome == "ok":
                try:
                    result = answer_to_result(params.result, reply.text)
                except ResultError as exc:
                    last = (ReasonCode.MALFORMED, f"{d.id}: {exc}", d.model)
                    if malformed_retried:
                        break
                    malformed_retried = True  # the same deployment once more, then report it
                    continue
                section["answer"] = {"deployment": d.id, "model": d.model}
                return Answer(Status.SUCCESS, ReasonCode.NONE, result, (d.model,), "", section)
            if reply.outcome in _STOP_OUTCOMES:
                return Answer(Status.FAILURE, _STOP_OUTCOMES[reply.outcome], b"", (d.model,),
                              f"{d.id}: {reply.error}", section)
            if reply.outcome == "truncated":
                last = (ReasonCode.TRUNCATED, f"{d.id}: answer cut at max tokens", d.model)
            else:
                last = (ReasonCode.PROVIDERS_UNAVAILABLE, f"{d.id}: {reply.error}", d.model)
            queue.pop(0)
            if reply.retryable and reply.retry_after is not None:
                await asyncio.sleep(min(reply.retry_after, max(0.0, deadline - time.time() - 1)))
        reason, why, model = last
        return Answer(Status.FAILURE, reason, b"", (model,), why, section)

    async def _attempt(self, request: RouteRequest, d: ModelDeployment, attempt_id: int, prior: Attempt | None,
                       system: str, user: str, schema: dict[str, Any]) -> ProviderReply:
        if prior is not None and prior.deployment != d.id:
            prior = None  # the catalog changed since: a new attempt in this slot, not a replay
        if prior is not None and prior.state == "done":
            raw = self.store.raw_response(prior.raw_sha256) if prior.raw_sha256 else b""
            return ProviderReply(prior.outcome, text=prior.answer, usage=prior.usage, raw=raw or b"",
                                 error=prior.error, retryable=prior.outcome == "error",
                                 latency_ms=int(prior.latency_ms))
        if prior is None:
            self.store.start_attempt(request.key, attempt_id, d.id)
            await self.store.commit()  # the attempt is on record before the provider sees it
        params = request.params
        reply = await self.adapter.complete(
            d, system=system, user=user, schema=schema, max_tokens=params.max_tokens,
            temperature=params.temperature, seed=params.seed,
            headers={"X-Oracle-Request": request.key,
                     "Idempotency-Key": f"{request.key}/{request.params_hash.hex()[:16]}/{d.id}/{attempt_id}"},
        )
        health = self.health[d.id]
        health["calls"] += 1
        health["errors"] += reply.outcome == "error"
        cost = _cost(d, reply.usage.get("input", 0), reply.usage.get("output", 0))
        self.store.finish_attempt(Attempt(request.key, attempt_id, d.id, "done", reply.outcome, reply.latency_ms,
                                          reply.usage, cost, reply.raw_sha256, reply.text, reply.error), reply.raw)
        await self.store.commit()
        return reply


def _cost(d: ModelDeployment, input_tokens: int, output_tokens: int) -> int:
    """Micro-USD, rounded up: prices are per million tokens."""
    return -(-(input_tokens * d.input_price + output_tokens * d.output_price) // 1_000_000)


def _attempt_note(attempt_id: int, d: ModelDeployment, reply: ProviderReply) -> dict[str, Any]:
    return {"attempt": attempt_id, "deployment": d.id, "model": d.model, "outcome": reply.outcome,
            "latency_ms": reply.latency_ms, "usage": reply.usage,
            "cost": _cost(d, reply.usage.get("input", 0), reply.usage.get("output", 0)), "payment_id": None,
            "response_sha256": reply.raw_sha256, "error": reply.error}

