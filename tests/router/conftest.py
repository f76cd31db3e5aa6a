"""Router tests: the real router, real aiohttp, a real store, and local servers speaking each wire format."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from oracle.config import ModelDeployment, RouterSettings
from oracle.devnet.model_server import Knobs, ModelServer
from oracle.protocol import RequestParams, ResultSpec, ResultType
from oracle.router import Catalog, ChatTurns, ModelRouter, RouteRequest
from oracle.router.prompts import chat_prompt
from oracle.store import Store

UINT = ResultSpec(ResultType.UINT, min=0, max=100)
FAST = RouterSettings(backoff=0.01, backoff_max=0.2, breaker_cooldown=0.5)


def dep(id: str, **fields: Any) -> ModelDeployment:
    """A deployment no test calls (its URL goes nowhere): for decisions and health alone."""
    values: dict[str, Any] = {"id": id, "provider": id, "api": "openai", "base_url": "http://127.0.0.1:1/v1",
                              "model": f"{id}-2026-01-01", "payer": "none", "input_price": 1_000_000,
                              "output_price": 1_000_000, "context_window": 100_000, "max_output": 4_000,
                              "capabilities": ["json_schema", "seed"]}
    values.update(fields)
    return ModelDeployment.model_validate(values)


def deployment(id: str, server: ModelServer, api: str = "openai", **fields: Any) -> ModelDeployment:
    base = server.base_url if api == "openai" else server.root_url
    values: dict[str, Any] = {"id": id, "provider": id, "api": api, "base_url": base, "model": f"{id}-2026-01-01",
                              "payer": "none", "input_price": 100_000, "output_price": 400_000,
                              "context_window": 32_000, "max_output": 2_000,
                              "capabilities": ["json_schema", "seed"], "timeout": 5.0}
    values.update(fields)
    return ModelDeployment.model_validate(values)


def route_request(prompt: str = "How risky is this vault?", spec: str = "cheapest", result: ResultSpec = UINT,
                  allowance: int = 10**9, n: int = 0, max_tokens: int = 256) -> RouteRequest:
    params = RequestParams("0x" + "11" * 20, 100_000, 2**40, max_tokens, 0, 42, spec, prompt.encode(), result)
    request_id = hashlib.sha256(f"{prompt}/{spec}/{n}".encode()).digest()
    return RouteRequest(f"31337:0xoracle:0x{request_id.hex()}", request_id, "0x" + "22" * 20, params, prompt,
                        params.hash(), allowance)


def chat_request(messages: tuple[tuple[str, str], ...] = (("user", "What is 2+2?"),),
                 schema: dict[str, Any] | None = None, spec: str = "cheapest", allowance: int = 10**9, n: int = 0,
                 max_tokens: int = 256) -> RouteRequest:
    """A chat as the gateway asks it: its turns' canonical JSON as the prompt, a text or JSON result."""
    prompt = chat_prompt(messages)
    result = ResultSpec(ResultType.JSON if schema else ResultType.TEXT, max_bytes=4_096)
    params = RequestParams("0x" + "11" * 20, 0, 2**40, max_tokens, 0, 42, spec, prompt, result)
    key = json.dumps([prompt.decode(), schema, spec, n, allowance, max_tokens])
    request_id = hashlib.sha256(key.encode()).digest()
    return RouteRequest(f"gateway:0x{request_id.hex()}", request_id, "0x" + "22" * 20, params, prompt.decode(),
                        params.hash(), allowance, ChatTurns(messages, schema))


@pytest.fixture
def servers() -> Iterator[Callable[..., ModelServer]]:
    started: list[ModelServer] = []

    def start(knobs: Knobs | None = None, **kw: Any) -> ModelServer:
        server = ModelServer(knobs, **kw).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "router.sqlite")
    yield s
    s.close()


@asynccontextmanager
async def router_for(deployments: list[ModelDeployment], store: Store,
                     settings: RouterSettings = FAST) -> AsyncIterator[ModelRouter]:
    async with aiohttp.ClientSession() as session:
        yield ModelRouter(Catalog(deployments), session, store.routing, settings)
