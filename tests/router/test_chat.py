"""The router answering a gateway chat: the caller's turns sent as given, the model's text back as is, and
everything else (decision, fallbacks, receipts, worst cases) as for on-chain requests."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from oracle.devnet.model_server import Knobs, ModelServer
from oracle.protocol import ReasonCode, ResultType, Status
from oracle.router import ChatTurns
from oracle.router.prompts import chat_sent_bytes
from oracle.store import Store
from tests.router.conftest import FAST, chat_request, dep, deployment, router_for

Servers = Callable[..., ModelServer]
DIGIT = {"type": "object", "properties": {"value": {"type": "integer", "minimum": 0, "maximum": 9}},
         "required": ["value"], "additionalProperties": False}


def _later() -> float:
    return time.time() + 60


@pytest.mark.parametrize("api", ["openai", "anthropic", "gemini"])
async def test_a_chat_is_answered_with_the_model_s_text(servers: Servers, store: Store, api: str) -> None:
    server = servers()
    turns = (("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!"), ("user", "What is 2+2?"))
    async with router_for([deployment("a", server, api)], store) as router:
        answer = await router.answer(chat_request(turns), _later())
    assert (answer.status, answer.result) == (Status.SUCCESS, b"You said: What is 2+2?")
    assert answer.model_ids == ("a-2026-01-01",) and answer.receipt["answer"] == {"deployment": "a",
                                                                                  "model": "a-2026-01-01"}
    (attempt,) = answer.receipt["attempts"]
    assert attempt["outcome"] == "ok" and attempt["usage"]["output"] == 12 and attempt["cost"] > 0
    assert answer.receipt["decision"]["inputs"]["result_type"] == "text"


async def test_a_chat_with_a_schema_answers_json_that_follows_it(servers: Servers, store: Store) -> None:
    server = servers()
    async with router_for([deployment("a", server)], store) as router:
        answer = await router.answer(chat_request(schema=DIGIT), _later())
    assert answer.status == Status.SUCCESS
    assert json.loads(answer.result)["value"] in range(10)
    assert server.books.requests[-1]["response_format"]["json_schema"]["schema"] == DIGIT


async def test_a_free_text_chat_needs_no_json_schema_but_a_schema_does(servers: Servers, store: Store) -> None:
    server = servers()
    plain = deployment("a", server, capabilities=[])
    async with router_for([plain], store) as router:
        free = await router.answer(chat_request(), _later())
        typed = await router.answer(chat_request(schema=DIGIT), _later())
    assert free.status == Status.SUCCESS and "response_format" not in server.books.requests[-1]
    assert (typed.status, typed.reason) == (Status.FAILURE, ReasonCode.UNSUPPORTED)
    assert server.books.total == 1  # the refused one asked no model


async def test_a_chat_falls_back_when_the_first_deployment_answers_500s(servers: Servers, store: Store) -> None:
    down, good = servers(Knobs(force="500")), servers()
    async with router_for([deployment("a", down, input_price=1), deployment("b", good, "anthropic")],
                          store) as router:
        answer = await router.answer(chat_request(), _later())
    assert (answer.status, answer.result) == (Status.SUCCESS, b"You said: What is 2+2?")
    assert down.books.total == 1 + FAST.retries and good.books.total == 1
    assert [a["deployment"] for a in answer.receipt["attempts"]] == ["a"] * (1 + FAST.retries) + ["b"]


async def test_an_answer_that_is_not_json_for_a_schema_is_asked_again_then_falls_back(servers: Servers,
                                                                                    store: Store) -> None:
    broken, good = servers(Knobs(force="malformed")), servers()
    async with router_for([deployment("a", broken, input_price=1), deployment("b", good)], store) as router:
        answer = await router.answer(chat_request(schema=DIGIT), _later())
    assert answer.status == Status.SUCCESS and answer.receipt["answer"]["deployment"] == "b"
    assert broken.books.total == 2 and good.books.total == 1


async def test_a_chat_without_a_schema_takes_any_text(servers: Servers, store: Store) -> None:
    odd = servers(Knobs(force="malformed"))  # text that is no JSON: fine when none was asked for
    async with router_for([deployment("a", odd)], store) as router:
        answer = await router.answer(chat_request(), _later())
    assert answer.status == Status.SUCCESS and answer.result == b'{"value": "not what the schema asked for"'


async def test_an_ensemble_is_refused_for_a_chat(servers: Servers, store: Store) -> None:
    members = [servers() for _ in range(2)]
    async with router_for([deployment(f"m{i}", s) for i, s in enumerate(members)], store) as router:
        answer = await router.answer(chat_request(spec="ensemble:2"), _later())
    assert (answer.status, answer.reason) == (Status.FAILURE, ReasonCode.UNSUPPORTED)
    assert "ensembles combine" in answer.detail and sum(s.books.total for s in members) == 0


async def test_a_chat_too_long_for_the_context_window_asks_no_model(servers: Servers, store: Store) -> None:
    server = servers()
    small = deployment("a", server, context_window=4_096, max_output=256)
    turns = tuple(("user" if i % 2 == 0 else "assistant", "x" * 1_000) for i in range(12))  # 12,000 bytes
    async with router_for([small], store) as router:
        answer = await router.answer(chat_request(turns), _later())
    assert (answer.status, answer.reason) == (Status.FAILURE, ReasonCode.PROMPT_TOO_LARGE)
    assert server.books.total == 0


def test_a_chat_needs_known_roles_and_a_turn_besides_system() -> None:
    with pytest.raises(ValueError, match=r"messages\[1\]\.role: 'tool'"):
        ChatTurns((("user", "Hi"), ("tool", "42")))
    with pytest.raises(ValueError, match="at least one user or assistant turn"):
        ChatTurns((("system", "Be brief."),))


# ---------------------------------------------------------------- worst cases, for prices quoted up front

# Token-priced (with a per-call fee too), per-call-priced, and one that takes no schema.
CATALOG = [dep("tokens", input_price=2_000_000, output_price=8_000_000, call_price=7, max_output=4_000),
           dep("per-call", input_price=0, output_price=0, call_price=5_000),
           dep("no-schema", input_price=0, output_price=0, call_price=1, capabilities=[])]


async def test_worst_case_prices_every_eligible_deployment_at_max_tokens(store: Store) -> None:
    async with router_for(CATALOG, store) as router:
        text = router.worst_case("cheapest", 3_000, 512, ResultType.TEXT)
        json_ = router.worst_case("cheapest", 3_000, 512, ResultType.JSON)
    # quoted to anyone, so at one token per byte (3,000), plus 200 of framing; 512 answer tokens
    tokens = (3_200 * 2_000_000 + 512 * 8_000_000) // 1_000_000 + 7
    assert not isinstance(text, str) and not isinstance(json_, str)
    assert [(e.id, cost) for e, cost in text[1]] == [("no-schema", 1), ("per-call", 5_000), ("tokens", tokens)]
    assert text[0] == tokens == 10_503
    assert [e.id for e, _ in json_[1]] == ["per-call", "tokens"]  # JSON answers need json_schema


async def test_the_worst_case_of_an_ensemble_is_each_member_at_the_dearest(store: Store) -> None:
    catalog = [dep("a", provider="p1", call_price=100), dep("b", provider="p2", call_price=300),
               dep("c", provider="p3", call_price=200)]
    async with router_for(catalog, store) as router:
        quoted = router.worst_case("ensemble:3", 300, 64, ResultType.UINT)
    assert not isinstance(quoted, str) and quoted[0] == 3 * max(cost for _, cost in quoted[1])


@pytest.mark.parametrize(("spec", "why"), [("no-such-model", "no deployment serves no-such-model"),
                                           ("cheapest;max_price=10", "may cost more than the model spec's max_price"),
                                           ("ensemble:2", "ensembles combine")])
async def test_worst_case_of_a_refused_spec_says_why(store: Store, spec: str, why: str) -> None:
    async with router_for(CATALOG, store) as router:
        refusal = router.worst_case(spec, 3_000, 512, ResultType.JSON)
    assert isinstance(refusal, str) and why in refusal


async def test_the_worst_case_quoted_is_the_one_held_against_the_allowance(servers: Servers, store: Store) -> None:
    server = servers()
    deployments = [deployment("a", server), deployment("b", server, "gemini", call_price=50)]
    request = chat_request((("system", "Answer in one word."), ("user", "Is water wet?")), schema=DIGIT)
    chat: Any = request.chat
    async with router_for(deployments, store) as router:
        quoted = router.worst_case("cheapest", chat_sent_bytes(chat.messages, chat.schema), 256, ResultType.JSON)
        answer = await router.answer(request, _later())
    assert not isinstance(quoted, str) and answer.status == Status.SUCCESS
    plan = answer.receipt["decision"]["plan"]
    assert [e.id for e, _ in quoted[1]] == [deployment_id for deployment_id, _ in plan]
    assert all(cost >= held for (_, cost), (_, held) in zip(quoted[1], plan, strict=True))  # never below it
    assert answer.receipt["decision"]["inputs"]["prompt_bytes"] == chat_sent_bytes(chat.messages, chat.schema)
