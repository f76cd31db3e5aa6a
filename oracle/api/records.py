"""Records the API returns beyond the read side's (oracle.views)."""

from __future__ import annotations

from dataclasses import dataclass

from oracle.views import ChainStatus, DeploymentRecord


@dataclass(frozen=True)
class CatalogEntry:
    deployment: DeploymentRecord
    breaker: str  # the daemon's live breaker: closed, open, half_open ("" if the router does not know it)


@dataclass(frozen=True)
class LiveChainStatus:
    """A chain's status with what only the running daemon knows: why its intake or sending is held."""

    status: ChainStatus
    intake_paused: str | None  # the operator's reason; a pause lasts until resumed or the daemon restarts
    sending_held: str | None  # low signer balance, daily gas budget spent
    halted: str | None  # a reorg deeper than max_reorg_depth: no new work until a restart
