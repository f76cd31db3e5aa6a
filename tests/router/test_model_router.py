"""The router against local providers: retries, fallbacks, stops, breakers, ensembles, resumes and receipts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from oracle.config import ModelDeployment, RouterSettings
from oracle.devnet.harness import until
from oracle.devnet.model_server import Knobs, ModelServer, seed_of
from oracle.protocol import ReasonCode, ResultSpec, ResultType, Status
from oracle.results import decode_result
from oracle.router import Answer, ModelRouter, RouteRequest
from oracle.router.audit import audit_receipt
from oracle.router.prompts import user_message
from oracle.router.receipts import canonical_json
from oracle.store import Store
from tests.router.conftest import FAST, deployment, route_request, router_for

Servers = Callable[..., ModelServer]


def _later() -> float:
    return time.time() + 60


async def _answer(deployments: list[ModelDeployment], store: Store, request: RouteRequest | None = None,
                  settings: RouterSettings = FAST) -> tuple[Answer, ModelRouter]:
    async with router_for(deployments, store, settings) as router:
        request = request or route_request()
        return await router.answer(request, _later()), router


def _outcomes(answer: Answer) -> list[tuple[str, str, str]]:
    return [(a["deployment"], a["outcome"], a["kind"]) for a in answer.receipt["attempts"]]


# ---------------------------------------------------------------- fallbacks and stops

@pytest.mark.parametrize(
    ("first", "api", "why"),
    [("context", "openai", "context_length"), ("policy", "anthropic", "content_policy"),
     ("402", "gemini", "unavailable"), ("truncate", "openai", ""), ("filter", "anthropic", "")],
)
async def test_falls_back_at_once(servers: Servers, store: Store, first: str, api: str, why: str) -> None:
    bad, good = servers(Knobs(force=first)), servers()
    answer, _ = await _answer([deployment("a", bad, api, input_price=1), deployment("b", good, "gemini")], store)
    assert answer.status == Status.SUCCESS and answer.model_ids == ("b-2026-01-01",)
    assert bad.books.total == 1 and good.books.total == 1  # no retry of a request-specific failure
    assert _outcomes(answer)[0][0] == "a" and _outcomes(answer)[0][2] == why


@pytest.mark.parametrize(("first", "reason"), [("401", ReasonCode.PROVIDERS_UNAVAILABLE),
                                               ("400", ReasonCode.PROVIDERS_UNAVAILABLE),
                                               ("refuse", ReasonCode.MODEL_REFUSED)])
async def test_stops_on_a_bad_request_a_bad_key_or_a_refusal(servers: Servers, store: Store, first: str,
                                                             reason: ReasonCode) -> None:
    bad, good = servers(Knobs(force=first)), servers()
    answer, _ = await _answer([deployment("a", bad, input_price=1), deployment("b", good)], store)
    assert (answer.status, answer.reason) == (Status.FAILURE, reason)
    assert bad.books.total == 1 and good.books.total == 0


@pytest.mark.parametrize("api", ["openai", "anthropic", "gemini"])
async def test_transient_errors_are_retried_then_fall_back(servers: Servers, store: Store, api: str) -> None:
    flaky, good = servers(Knobs(force="500")), servers()
    answer, _ = await _answer([deployment("a", flaky, api, input_price=1), deployment("b", good)], store)
    assert answer.status == Status.SUCCESS
    assert flaky.books.total == 1 + FAST.retries and good.books.total == 1


async def test_retry_after_is_honoured(servers: Servers, store: Store) -> None:
    limited = servers(Knobs(force="429", retry_after="0.4"))
    started = time.monotonic()
    settings = FAST.model_copy(update={"retries": 2, "attempt_budget": 1, "backoff_max": 1.0})
    answer, _ = await _answer([deployment("a", limited)], store, settings=settings)
    assert answer.reason == ReasonCode.PROVIDERS_UNAVAILABLE and limited.books.total == 3
    assert time.monotonic() - started >= 0.8  # two waits of Retry-After, not the 10 ms backoff
    # A wait longer than backoff_max is not shortened: the deployment is left for the next one.
    later, good = servers(Knobs(force="429", retry_after="30")), servers()
    answer, _ = await _answer([deployment("a", later, input_price=1), deployment("b", good)], store,
                              route_request(n=1), settings=settings.model_copy(update={"attempt_budget": 2}))
    assert answer.status == Status.SUCCESS and later.books.total == 1


async def test_an_error_inside_http_200_is_a_failure(servers: Servers, store: Store) -> None:
    odd, good = servers(Knobs(force="200error")), servers()
    answer, _ = await _answer([deployment("a", odd, input_price=1), deployment("b", good)], store)
    assert answer.status == Status.SUCCESS and _outcomes(answer)[0] == ("a", "error", "transient")


async def test_a_malformed_answer_is_asked_once_more_then_falls_back(servers: Servers, store: Store) -> None:
    broken, good = servers(Knobs(force="malformed")), servers()
    answer, _ = await _answer([deployment("a", broken, input_price=1), deployment("b", good)], store)
    assert answer.status == Status.SUCCESS and broken.books.total == 2 and good.books.total == 1
    alone, _ = await _answer([deployment("a", broken)], store, route_request(n=1))
    assert alone.reason == ReasonCode.MALFORMED


async def test_the_last_failure_names_the_reason(servers: Servers, store: Store) -> None:
    a, b = servers(Knobs(force="truncate")), servers(Knobs(force="context"))
    answer, _ = await _answer([deployment("a", a, input_price=1), deployment("b", b)], store)
    assert answer.reason == ReasonCode.PROMPT_TOO_LARGE and "b:" in answer.detail


async def test_the_attempt_budget_bounds_calls(servers: Servers, store: Store) -> None:
    down = [servers(Knobs(force="500")) for _ in range(6)]
    settings = FAST.model_copy(update={"attempt_budget": 4, "retries": 1, "breaker_min_calls": 100})
    answer, _ = await _answer([deployment(f"d{i}", s) for i, s in enumerate(down)], store, settings=settings)
    assert answer.reason == ReasonCode.PROVIDERS_UNAVAILABLE
    assert sum(s.books.total for s in down) == 4 * 2  # four deployments, each called once and retried once
    assert len(answer.receipt["attempts"]) == 8


async def test_the_plan_is_walked_again_while_budget_is_left(servers: Servers, store: Store) -> None:
    flaky = servers(Knobs(fail_rate=0.5, fail_kinds=("500",), seed=3))
    settings = FAST.model_copy(update={"attempt_budget": 4, "retries": 0, "breaker_min_calls": 100})
    wins = 0
    async with router_for([deployment("a", flaky)], store, settings) as router:
        for n in range(40):
            request = route_request(n=n)
            wins += (await router.answer(request, _later())).status == Status.SUCCESS
    assert wins >= 36  # 1 - 0.5**4 of them, give or take


async def test_the_deadline_stops_the_walk(servers: Servers, store: Store) -> None:
    slow = servers(Knobs(force="timeout", timeout_sleep=3.0))
    async with router_for([deployment("a", slow)], store) as router:
        started = time.monotonic()
        answer = await router.answer(route_request(), time.time() + 1.5)
    assert answer.reason in (ReasonCode.DEADLINE_TOO_SHORT, ReasonCode.PROVIDERS_UNAVAILABLE)
    assert time.monotonic() - started < 2.0


# ---------------------------------------------------------------- breakers and health

async def test_the_breaker_stops_traffic_to_a_dead_deployment_even_alone(servers: Servers, store: Store) -> None:
    dead = servers(Knobs(force="500"))
    settings = FAST.model_copy(update={"breaker_min_calls": 3, "retries": 0, "breaker_cooldown": 0.3})
    async with router_for([deployment("dead", dead)], store, settings) as router:
        now = [1_000.0]
        router.health.clock = lambda: now[0]  # the breaker's cooldowns pass when the test says so
        answers = [await router.answer(route_request(n=n), _later()) for n in range(10)]
        assert dead.books.total == 3  # then the breaker opened
        assert all(a.reason == ReasonCode.PROVIDERS_UNAVAILABLE for a in answers)
        assert "breaker" in answers[-1].detail and answers[-1].receipt["attempts"] == []
        assert router.health.report()["dead"]["breaker"] == "open"
        now[0] += 0.29
        await router.answer(route_request(n=10), _later())
        assert dead.books.total == 3  # still cooling down: no call
        now[0] += 0.02
        await router.answer(route_request(n=11), _later())
        assert dead.books.total == 4  # one probe after the cooldown, which failed: open again
        dead.knobs.force = None
        now[0] += 0.59  # the cooldown doubled: not yet
        assert (await router.answer(route_request(n=13), _later())).reason == ReasonCode.PROVIDERS_UNAVAILABLE
        assert dead.books.total == 4
        now[0] += 0.02
        healed = await router.answer(route_request(n=12), _later())
        assert healed.status == Status.SUCCESS and router.health.report()["dead"]["breaker"] == "closed"


async def test_health_is_in_the_receipt_and_in_the_report(servers: Servers, store: Store) -> None:
    server = servers(Knobs(latency=0.02))
    async with router_for([deployment("a", server)], store) as router:
        for n in range(6):
            await router.answer(route_request(n=n), _later())
        answer = await router.answer(route_request(n=99), _later())
        report = router.health.report()["a"]
    p50, p90, error_ppm, samples, breaker = answer.receipt["decision"]["health"]["a"]
    assert samples == 6 and error_ppm == 0 and breaker == "closed" and 20 <= p50 <= p90 < 1000
    assert report["calls"] == 7 and report["failures"] == 0 and int(report["p99_ms"]) >= 20


# ---------------------------------------------------------------- ensembles

async def test_an_ensemble_takes_the_median_of_numbers(servers: Servers, store: Store) -> None:
    members = [servers(answer_seed=s) for s in (1, 2, 3)]
    request = route_request(spec="ensemble:3", result=ResultSpec(ResultType.UINT, min=0, max=10**6))
    answer, _ = await _answer([deployment(f"m{i}", s, api) for i, (s, api)
                               in enumerate(zip(members, ["openai", "anthropic", "gemini"], strict=True))],
                              store, request)
    assert answer.status == Status.SUCCESS and len(answer.model_ids) == 3
    values = sorted(next(iter(s.books.answers.values())) for s in members)
    assert decode_result(request.params.result, answer.result) == values[1]
    ensemble = answer.receipt["ensemble"]
    assert ensemble["method"] == "median" and ensemble["disagreement"] == values[2] - values[0]
    assert sorted(m["value"] for m in ensemble["members"]) == values


async def test_an_ensemble_takes_the_majority_of_bools_and_replaces_a_failed_member(servers: Servers,
                                                                                     store: Store) -> None:
    user = user_message("q", ResultSpec(ResultType.BOOL))  # what each member is asked
    says_yes = {s: seed_of(f"{s}:{user}") % 2 == 0 for s in range(40)}  # the server's answer for each seed
    yes = [s for s, v in says_yes.items() if v][:2]
    no = [s for s, v in says_yes.items() if not v][:1]
    broken = servers(Knobs(force="500"))
    members = [servers(answer_seed=s) for s in (*yes, *no)]
    deployments = [deployment("x-broken", broken, quality=10)] + [
        deployment(f"m{i}", s, quality=5 - i) for i, s in enumerate(members)]
    request = route_request("q", spec="ensemble:3", result=ResultSpec(ResultType.BOOL))
    answer, _ = await _answer(deployments, store, request)
    assert answer.status == Status.SUCCESS, answer.detail
    assert decode_result(request.params.result, answer.result) is True
    ensemble = answer.receipt["ensemble"]
    assert ensemble["method"] == "majority" and ensemble["agree"] == 2 and ensemble["disagreement"] == 1
    assert broken.books.total == 1 + FAST.retries  # it failed; a reserve from another provider took its place
    assert sorted(m["deployment"] for m in ensemble["members"]) == ["m0", "m1", "m2"]


# ---------------------------------------------------------------- resume and receipts

async def test_a_resumed_request_replays_its_calls_and_reuses_its_idempotency_key(servers: Servers,
                                                                                  store: Store) -> None:
    slow = servers(Knobs(latency=0.5))
    request = route_request()
    async with router_for([deployment("a", slow)], store) as router:
        task = asyncio.create_task(router.answer(request, _later()))
        await until(lambda: slow.books.total >= 1, 10, what="the call to reach the provider")
        task.cancel()  # as if the daemon died mid-call
        with pytest.raises(asyncio.CancelledError):
            await task
    started = store.routing.attempts(request.key)
    assert [(a.attempt_id, a.state) for a in started] == [(1, "started")]
    slow.knobs.latency = 0
    answer, _ = await _answer([deployment("a", slow)], store, request)
    assert answer.status == Status.SUCCESS
    keys = [h["Idempotency-Key"] for h in slow.books.headers]
    assert len(keys) == 2 and keys[0] == keys[1] and slow.books.answered[request.key] == 1
    # Once finished, a third run replays from the store: no call at all, the same answer and receipt.
    again, _ = await _answer([deployment("a", slow)], store, request)
    assert slow.books.total == 2 and again.result == answer.result
    assert canonical_json(again.receipt) == canonical_json(answer.receipt)


async def test_the_context_window_is_checked_against_the_message_as_sent(servers: Servers, store: Store) -> None:
    server = servers()
    small = deployment("a", server, context_window=4_096, max_output=256)
    # 5,000 control bytes: 1,867 tokens by their own length, 30,000 bytes (10,000 tokens) once JSON-escaped
    escaped, _ = await _answer([small], store, route_request(prompt="\x01" * 5_000))
    assert (escaped.status, escaped.reason) == (Status.FAILURE, ReasonCode.PROMPT_TOO_LARGE)
    assert escaped.receipt["decision"]["inputs"]["prompt_bytes"] > 30_000
    assert escaped.receipt["attempts"] == [] and server.books.total == 0  # no model was asked
    plain, _ = await _answer([small], store, route_request(prompt="x" * 5_000))  # as long, nothing to escape
    assert plain.status == Status.SUCCESS
    async with router_for([small], store) as router:
        assert router.estimate_cost(route_request(prompt="\x01" * 5_000).params) is None  # no plan fits


async def test_a_resumed_request_keeps_its_decision(servers: Servers, store: Store) -> None:
    a, b = servers(), servers()
    request = route_request()
    first, _ = await _answer([deployment("a", a), deployment("b", b)], store, request)
    decided = first.receipt["decision"]
    async with router_for([deployment("a", a), deployment("b", b)], store) as router:
        for n in range(8):  # health now differs from when the request was first decided
            await router.answer(route_request(n=100 + n), _later())
        again = await router.answer(request, time.time() + 5)
    assert again.receipt["decision"] == decided


async def test_a_receipt_decision_recomputes_and_a_forged_one_does_not(servers: Servers, store: Store) -> None:
    import json

    a, b = servers(), servers()
    answer, _ = await _answer([deployment("a", a), deployment("b", b, input_price=1)], store)
    body = canonical_json({"router": answer.receipt})
    assert audit_receipt(body, store.routing) == []
    forged = json.loads(body)
    forged["router"]["decision"]["plan"].reverse()
    assert "does not recompute" in audit_receipt(canonical_json(forged), store.routing)[0]
    forged = json.loads(body)
    forged["router"]["decision"]["health"]["b"][4] = "open"
    assert audit_receipt(canonical_json(forged), store.routing)
    forged = json.loads(body)
    forged["router"]["catalog_version"] = "0x" + "00" * 32
    assert "not stored" in audit_receipt(canonical_json(forged), store.routing)[0]


async def test_attempts_carry_cost_usage_and_the_raw_response_hash(servers: Servers, store: Store) -> None:
    import hashlib

    server = servers()
    answer, _ = await _answer([deployment("a", server, input_price=2_000_000, output_price=8_000_000,
                                               call_price=3)], store)
    (note,) = answer.receipt["attempts"]
    usage = note["usage"]
    assert note["cost"] == -(-(usage["input"] * 2_000_000 + usage["output"] * 8_000_000) // 1_000_000) + 3
    raw = store.routing.raw_response(note["response_sha256"])
    assert raw is not None and hashlib.sha256(raw).hexdigest() == note["response_sha256"]
    assert note["payment_id"] is None  # paid by key, not over x402



# ---------------------------------------------------------------- spend per request

def _worst(answer: Answer) -> dict[str, int]:
    return {d: c for d, c in answer.receipt["decision"]["plan"]}


@pytest.mark.parametrize("api", ["openai", "anthropic", "gemini"])
async def test_calls_stop_when_their_worst_case_no_longer_fits_the_fee(servers: Servers, store: Store,
                                                                       api: str) -> None:
    # every answer malformed: without a bound, 4 slots of 2 calls on each of 2 deployments
    a, b = servers(Knobs(force="malformed")), servers(Knobs(force="malformed"))
    # priced per call, so each call costs exactly its worst case
    flat = {"input_price": 0, "output_price": 0}
    deployments = [deployment("a", a, api, call_price=100, **flat), deployment("b", b, api, call_price=150, **flat)]
    allowance = 350  # room for three calls
    async with router_for(deployments, store, FAST.model_copy(update={"attempt_budget": 4})) as router:
        request = route_request(allowance=allowance)
        answer = await router.answer(request, _later())
    attempts = answer.receipt["attempts"]
    assert answer.status == Status.FAILURE and answer.reason in (ReasonCode.MALFORMED, ReasonCode.BUDGET_EXHAUSTED)
    assert sum(x["cost"] for x in attempts) <= allowance
    assert a.books.total + b.books.total == 3, _outcomes(answer)  # 4 slots x 2 calls without the bound


async def test_a_call_that_never_answers_keeps_its_worst_case_reserved(servers: Servers, store: Store) -> None:
    silent = servers(Knobs(force="timeout", timeout_sleep=2.0))
    d = deployment("a", silent, timeout=0.2, input_price=0, output_price=0, call_price=100)
    async with router_for([d], store, FAST.model_copy(update={"attempt_budget": 4, "retries": 2})) as router:
        answer = await router.answer(route_request(allowance=200), _later())
    # the provider may have done (and billed) the work of a call that timed out: two such calls fill
    # an allowance of two worst cases, where 4 slots x 3 tries would have been made
    assert answer.status == Status.FAILURE and silent.books.total == 2, _outcomes(answer)


async def test_ensemble_members_reserve_their_share_before_they_call(servers: Servers, store: Store) -> None:
    members = [servers(Knobs(force="timeout", timeout_sleep=2.0)) for _ in range(3)]
    deployments = [deployment(f"m{i}", s, timeout=0.2, input_price=0, output_price=0, call_price=100)
                   for i, s in enumerate(members)]
    async with router_for(deployments, store, FAST.model_copy(update={"attempt_budget": 4, "retries": 2})) as router:
        answer = await router.answer(route_request(spec="ensemble:2", allowance=300), _later())
    # two members call at once, each holding 100 before it sends; the third call fills the allowance
    assert answer.status == Status.FAILURE
    assert sum(s.books.total for s in members) == 3, _outcomes(answer)
