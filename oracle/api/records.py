"""Records the API returns beyond the read side's (oracle.views)."""

from __future__ import annotations

from dataclasses import dataclass

from oracle.views import DeploymentRecord


@dataclass(frozen=True)
class CatalogEntry:
    deployment: DeploymentRecord
    breaker: str  # the daemon's live breaker: closed, open, half_open ("" if the router does not know it)
