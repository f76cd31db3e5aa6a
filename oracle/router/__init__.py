"""Turning a request's model spec into a model's typed answer: `await router.answer(...) -> Answer`.

The router never touches the chain; the pipeline never touches a provider. This seam is all the
pipeline knows, so a richer router plugs in without changing it.
"""

from oracle.router.ordered import OrderedRouter
from oracle.router.types import Answer, Router, RouteRequest

__all__ = ["Answer", "OrderedRouter", "RouteRequest", "Router"]
