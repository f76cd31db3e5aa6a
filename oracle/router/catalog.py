"""The catalog: every deployment the operator offers, what it costs, and the version hash receipts name.

Deployments are kept in id order whatever order the config lists them in, so the version hash and
every decision depend on what is offered, not on how the file is arranged. Prices live here and
only here: estimates before a call and costs after one are both computed by this module.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from oracle.config import DATA_POLICY_RANK, ConfigError, ModelDeployment
from oracle.router.receipts import canonical_json, receipt_hash

CAPABILITY_BITS = {"json_schema": 1, "seed": 2, "tools": 4}

@dataclass(frozen=True, slots=True)
class Entry:
    """A deployment with the figures decisions read, flattened for a fast loop."""

    deployment: ModelDeployment
    id: str
    provider: str
    model: str
    capabilities: int  # CAPABILITY_BITS mask
    context_window: int
    max_output: int
    input_price: int
    cached_input_price: int
    output_price: int
    call_price: int
    data_rank: int
    quality: int
    expected_latency_ms: int | None

    def estimate(self, prompt_tokens: int, max_tokens: int) -> int:
        """The most a call can cost, in micro-USD: the whole prompt uncached and every answer token used."""
        return -(-(prompt_tokens * self.input_price + min(max_tokens, self.max_output) * self.output_price)
                 // 1_000_000) + self.call_price

    def cost(self, usage: dict[str, int], reported: int | None = None) -> int:
        """What a call cost, in micro-USD: the provider's own figure when it gives one, else from usage."""
        if reported is not None:
            return reported
        cached = min(usage.get("cached", 0), usage.get("input", 0))
        fresh = usage.get("input", 0) - cached
        return -(-(fresh * self.input_price + cached * self.cached_input_price
                   + usage.get("output", 0) * self.output_price) // 1_000_000) + self.call_price


def _entry(d: ModelDeployment) -> Entry:
    mask = 0
    for capability in d.capabilities:
        mask |= CAPABILITY_BITS[capability]
    return Entry(d, d.id, d.provider, d.model, mask, d.context_window, d.max_output, d.input_price,
                 d.input_price if d.cached_input_price is None else d.cached_input_price, d.output_price,
                 d.call_price, DATA_POLICY_RANK[d.data_policy], d.quality, d.expected_latency_ms)


class Catalog:
    def __init__(self, deployments: Iterable[ModelDeployment]) -> None:
        ordered = sorted(deployments, key=lambda d: d.id)
        for a, b in itertools.pairwise(ordered):
            if a.id == b.id:
                raise ConfigError(f"models[id={a.id}].id: duplicate deployment id")
        self.entries: tuple[Entry, ...] = tuple(_entry(d) for d in ordered)
        self.by_id: dict[str, Entry] = {e.id: e for e in self.entries}
        # A request names a model by its exact id (any deployment serving it) or by a deployment id.
        self.by_name: dict[str, tuple[Entry, ...]] = {}
        for e in self.entries:
            self.by_name[e.model] = (*self.by_name.get(e.model, ()), e)
        for e in self.entries:
            self.by_name.setdefault(e.id, (e,))
        self.ids = [e.id for e in self.entries]
        self.index = {e.id: i for i, e in enumerate(self.entries)}
        # Columns for the decision's vectorised filters, in id order. Config bounds keep every product
        # a decision forms (tokens x price) inside int64.
        self.context_window = _column(e.context_window for e in self.entries)
        self.max_output = _column(e.max_output for e in self.entries)
        self.input_price = _column(e.input_price for e in self.entries)
        self.output_price = _column(e.output_price for e in self.entries)
        self.call_price = _column(e.call_price for e in self.entries)
        self.prior_latency = _column(-1 if e.expected_latency_ms is None else e.expected_latency_ms
                                     for e in self.entries)
        self.quality = _column(e.quality for e in self.entries)
        self.providers = [e.provider for e in self.entries]
        self._capabilities = _column(e.capabilities for e in self.entries)
        self._data_rank = _column(e.data_rank for e in self.entries)
        self._static: dict[tuple[int, int], npt.NDArray[np.int8]] = {}
        self.body = canonical_json([_describe(e.deployment) for e in self.entries])
        self.version = "0x" + receipt_hash(self.body).hex()

    def static_stages(self, need: int, data_rank: int) -> npt.NDArray[np.int8]:
        """Per entry, the first filter stage that drops it whatever the request's prompt, fee or time:
        0 when it lacks a capability `need` asks for, 1 when its data policy ranks below `data_rank`,
        -1 when it passes both. Few combinations recur, so each is computed once."""
        found = self._static.get((need, data_rank))
        if found is None:
            found = np.full(len(self.entries), -1, dtype=np.int8)
            found[self._data_rank < data_rank] = 1
            found[(self._capabilities & need) != need] = 0
            found.flags.writeable = False
            self._static[(need, data_rank)] = found
        return found

    def check_keys(self) -> None:
        for e in self.entries:
            e.deployment.check_key()

    @classmethod
    def from_body(cls, body: str) -> Catalog:
        """The catalog a receipt names, rebuilt from its stored canonical JSON."""
        import json

        catalog = cls(ModelDeployment.model_validate({k: v for k, v in d.items() if k != "timeout_ms"}
                                                     | {"timeout": d["timeout_ms"] / 1000})
                      for d in json.loads(body))
        if catalog.body != body:
            raise ValueError("the stored catalog does not rebuild to itself")
        return catalog


def _column(values: Iterable[int]) -> npt.NDArray[np.int64]:
    column = np.fromiter(values, dtype=np.int64)
    column.flags.writeable = False
    return column


# Settings added after the first catalogs were stored, with their defaults: left out at the default, so
# those catalogs keep their version hash (and receipts naming them still audit).
_LATER_FIELDS: dict[str, Any] = {"schema_format": "json_schema"}


def _describe(d: ModelDeployment) -> dict[str, Any]:
    """A deployment as the version hash covers it: every field, times in whole milliseconds."""
    out = d.model_dump(mode="json", exclude={"timeout"})
    out["timeout_ms"] = round(d.timeout * 1000)
    for name, default in _LATER_FIELDS.items():
        if out[name] == default:
            del out[name]
    return out
