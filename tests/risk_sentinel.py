"""A RiskSentinel and ExampleVault pair of a test's own, so the shared stack's pair is never disturbed."""

from __future__ import annotations

from dataclasses import dataclass

from oracle.devnet import LocalStack

THRESHOLD = 80  # the sentinel pauses its vault at this score


@dataclass(frozen=True)
class Pair:
    """A RiskSentinel owned by the bots key and the ExampleVault it guards, owned by the owner key."""

    sentinel: str
    vault: str


def deploy_pair(stack: LocalStack, threshold: int = THRESHOLD, label: str = "test") -> Pair:
    vault = stack.deploy("ExampleVault", stack.keys.owner.address, label=f"{label}-vault")
    sentinel = stack.deploy("RiskSentinel", stack.addresses["AIOracle"], vault, "fastest", threshold,
                            stack.keys.bots.address, label=f"{label}-sentinel")
    stack.transact(stack.contract("ExampleVault", vault).functions.setGuardian(sentinel), stack.keys.owner)
    return Pair(sentinel, vault)
