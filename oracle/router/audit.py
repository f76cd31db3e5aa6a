"""Checking a stored receipt: its decision recomputed from the catalog it names must come out the same.

    problems = audit_receipt(receipt_body, store.routing)   # [] when the receipt holds up
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from oracle.router.catalog import Catalog
from oracle.router.decision import recompute
from oracle.router.receipts import canonical_json


class CatalogSource(Protocol):
    def catalog(self, version: str) -> str | None: ...


def audit_receipt(body: str, catalogs: CatalogSource) -> list[str]:
    """What does not hold up in a receipt's routing record (nothing, for an honest one)."""
    receipt: dict[str, Any] = json.loads(body)
    if canonical_json(receipt) != body:
        return ["the receipt is not in canonical form"]
    router = receipt.get("router", {})
    if "decision" not in router:
        return []  # refused before routing: nothing was decided
    version = router.get("catalog_version", "")
    catalog_body = catalogs.catalog(version)
    if catalog_body is None:
        return [f"catalog {version} is not stored"]
    catalog = Catalog.from_body(catalog_body)
    if catalog.version != version:
        return [f"the stored catalog hashes to {catalog.version}, not {version}"]
    problems = []
    again = canonical_json(recompute(router["decision"], catalog))
    if again != canonical_json(router["decision"]):
        problems.append("the decision does not recompute from its inputs, health and catalog")
    planned = {entry[0] for entry in router["decision"]["plan"]}
    strays = sorted({a["deployment"] for a in router.get("attempts", [])} - planned)
    if strays:
        problems.append(f"attempts went to deployments outside the plan: {', '.join(strays)}")
    return problems
