"""Turning a request's model spec into a model's typed answer: `await router.answer(...) -> Answer`
(or, for the gateway's chats, into the model's text).

The router never touches the chain; the pipeline never touches a provider. `catalog` holds what is
offered, `decision` chooses (a pure function), `model_router` calls and falls back, `health` keeps
latency, error rates and breakers, `adapters/` speak each provider's wire format.
"""

from oracle.router.catalog import Catalog
from oracle.router.model_router import ModelRouter
from oracle.router.types import Answer, ChatTurns, RouteLog, Router, RouteRequest

__all__ = ["Answer", "Catalog", "ChatTurns", "ModelRouter", "RouteLog", "RouteRequest", "Router"]
