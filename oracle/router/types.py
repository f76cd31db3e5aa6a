"""The seam between the pipeline and the router."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from oracle.protocol import ReasonCode, RequestParams, ResultType, Status
from oracle.store import Attempt

CHAT_ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class ChatTurns:
    """A conversation asked as given, for the OpenAI-compatible gateway: the caller's own turns go to the
    model instead of the fixed system prompt and the escaped data, and its text comes back as is.

    `schema` is the JSON schema the answer must follow (OpenAI's `response_format` json_schema); None
    or empty asks for free text.
    """

    messages: tuple[tuple[str, str], ...]  # (role, content), role one of CHAT_ROLES
    schema: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        for i, (role, _) in enumerate(self.messages):
            if role not in CHAT_ROLES:
                raise ValueError(f"messages[{i}].role: {role!r} is not one of {', '.join(CHAT_ROLES)}")
        # Anthropic and Gemini take system turns apart from the conversation, which cannot be empty.
        if all(role == "system" for role, _ in self.messages):
            raise ValueError("messages: a chat needs at least one user or assistant turn")

    @property
    def kind(self) -> ResultType:
        """JSON when the answer follows a schema (deployments need json_schema), else free TEXT."""
        return ResultType.JSON if self.schema else ResultType.TEXT


@dataclass(frozen=True)
class RouteRequest:
    key: str
    request_id: bytes
    requester: str
    params: RequestParams
    prompt: str  # the prompt as text (the pipeline refuses prompts that are not UTF-8)
    params_hash: bytes  # what exactly is asked: part of each attempt's idempotency key
    allowance: int  # micro-USD the escrowed fee leaves for the model(s) once gas is paid
    chat: ChatTurns | None = None  # a gateway chat: these turns are sent, and the answer is the model's text


@dataclass
class Answer:
    status: Status
    reason: ReasonCode
    result: bytes  # ABI-encoded typed value (a chat's: the model's text, UTF-8); empty on failure
    model_ids: tuple[str, ...]  # the model(s) whose answer this is (or was last tried)
    detail: str = ""
    receipt: dict[str, Any] = field(default_factory=dict)  # catalog, health, candidates, attempts


class RouteLog(Protocol):
    """The store as the router uses it: attempts on record before each call, decisions and catalogs kept."""

    def attempts(self, request_key: str) -> list[Attempt]: ...

    def start_attempt(self, request_key: str, attempt_id: int, deployment: str) -> None: ...

    def finish_attempt(self, a: Attempt, raw_body: bytes | None) -> None: ...

    def raw_response(self, sha256: str) -> bytes | None: ...

    def save_route_decision(self, request_key: str, catalog_version: str, body: str) -> None: ...

    def route_decision(self, request_key: str) -> tuple[str, str] | None: ...

    def save_catalog(self, version: str, body: str) -> None: ...

    async def commit(self) -> None: ...


class Router(Protocol):
    catalog_version: str

    async def answer(self, request: RouteRequest, deadline: float) -> Answer:
        """Answer `request` before the unix time `deadline`, resuming after the calls on record for it."""
        ...

    def estimate_cost(self, params: RequestParams) -> int | None:
        """Micro-USD the first eligible model would cost at most, or None if none is eligible."""
        ...
