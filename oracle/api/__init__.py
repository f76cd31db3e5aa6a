"""The daemon's HTTP API: an operator listener (health, readiness, metrics, the read side, a few
actions, the status page) and a public one (receipts). See `operator` and `public` for the routes."""

from oracle.api.control import ActionRefused, ChainLive, Control
from oracle.api.server import ApiServer

__all__ = ["ActionRefused", "ApiServer", "ChainLive", "Control"]
