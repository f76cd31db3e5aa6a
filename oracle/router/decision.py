"""Which deployments answer a request, in which order: a pure function of (request, catalog, health).

    decision = decide(DecisionInput(...), catalog, health_snapshot)

Hard filters first, in a fixed order of stages — capabilities the result type and the spec need,
data policy, prompt vs context window, the spec's price cap, the request's fee, an open circuit
breaker, the deadline vs the deployment's p90 latency — then a score by policy, and ties broken by
keccak(request id, deployment id). Nothing here reads a clock, a random source or a set's order, so
the decision recorded in a receipt can be recomputed from the receipt's inputs and health snapshot
and must come out the same.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from eth_utils import keccak

from oracle.config import DATA_POLICY_RANK
from oracle.protocol import InvalidModelSpec, ModelSpec, PolicyClass, ReasonCode, ResultType, parse_model_spec
from oracle.router.catalog import CAPABILITY_BITS, Catalog, Entry

# Estimating a prompt's tokens before asking: bytes / 3 is on the safe side for common tokenizers. The
# bytes are those of the message as sent (`prompts.sent_bytes`: system prompt, user message with the
# prompt JSON-escaped, answer schema; a gateway chat's by `prompts.chat_sent_bytes`); a provider's chat
# framing adds fewer than 200 tokens.
BYTES_PER_TOKEN = 3
PROMPT_OVERHEAD_TOKENS = 200
# Health figures count once a deployment has this many calls; before that the catalog's prior is used.
MIN_SAMPLES = 5
# A deployment failing at least half its recent calls is tried after the healthy ones.
DEGRADED_PPM = 500_000
# Bounds that keep every figure a decision computes inside int64 (the catalog bounds prices).
_MAX_PROMPT_BYTES = 10**8
_INT64_CAP = 2**62
_LATENCY_CAP = 2**17 - 1  # ms (over two minutes): a score packs latency in 17 bits
_QUALITY_TOP = 15

# Result types an ensemble can combine: numbers by median, bools and choices by majority.
ENSEMBLE_KINDS = frozenset({ResultType.BOOL, ResultType.UINT, ResultType.INT, ResultType.CHOICE})

# Filter stages, in the order they apply; when nothing is kept, the furthest stage any deployment
# reached says why.
STAGES = ("capability", "data_policy", "context_window", "price_cap", "fee", "circuit_open", "too_slow")
_STAGE_DETAIL = {
    "capability": "no deployment has the capabilities the result type and the model spec need",
    "data_policy": "no deployment keeps to the data policy the model spec asks for",
    "context_window": "the prompt and the answer fit no eligible deployment's context window",
    "price_cap": "every eligible deployment may cost more than the model spec's max_price",
    "fee": "the fee, after gas, does not cover any eligible deployment",
    "circuit_open": "every eligible deployment's circuit breaker is open",
    "too_slow": "no eligible deployment answers before the deadline (by its p90 latency)",
}
_STAGE_REASON = {
    "capability": ReasonCode.UNSUPPORTED, "data_policy": ReasonCode.DATA_POLICY_UNAVAILABLE,
    "context_window": ReasonCode.PROMPT_TOO_LARGE, "price_cap": ReasonCode.PRICE_CAP_TOO_LOW,
    "fee": ReasonCode.FEE_TOO_LOW,
    "circuit_open": ReasonCode.PROVIDERS_UNAVAILABLE, "too_slow": ReasonCode.DEADLINE_TOO_SHORT,
}


class HealthPoint(NamedTuple):
    """One deployment's health as a decision sees it (integers, so receipts hold it exactly)."""

    p50_ms: int = 0
    p90_ms: int = 0
    error_ppm: int = 0  # failed calls per million, over the health window
    samples: int = 0
    breaker: str = "closed"  # closed | open | half_open


HEALTHY = HealthPoint()


@dataclass(frozen=True, slots=True)
class DecisionInput:
    request_id: bytes
    model_spec: str
    result_kind: ResultType
    prompt_bytes: int  # of the whole message as sent (`prompts.sent_bytes`), not of the prompt alone
    max_tokens: int
    allowance: int  # micro-USD the request's fee leaves for the model(s) after gas
    time_left_ms: int  # until the answer must be ready

    def record(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "model_spec": self.model_spec,
                "result_type": self.result_kind.name.lower(), "prompt_bytes": self.prompt_bytes,
                "max_tokens": self.max_tokens, "allowance": self.allowance, "time_left_ms": self.time_left_ms}

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> DecisionInput:
        rid = r["request_id"]
        return cls(bytes.fromhex(rid.removeprefix("0x")) if isinstance(rid, str) else bytes(rid), r["model_spec"],
                   ResultType[r["result_type"].upper()], int(r["prompt_bytes"]), int(r["max_tokens"]),
                   int(r["allowance"]), int(r["time_left_ms"]))


@dataclass(frozen=True, slots=True)
class Decision:
    policy: str
    ensemble: int  # members answering at once (1 unless ensemble:k)
    plan: tuple[Entry, ...]  # kept deployments, best first; an ensemble's members are the first `ensemble`
    estimates: tuple[int, ...]  # most each planned call can cost, micro-USD
    dropped: tuple[tuple[str, str], ...]  # (deployment id, stage that dropped it), in id order
    refusal: ReasonCode = ReasonCode.NONE
    detail: str = ""

    def record(self, inputs: DecisionInput, health: Mapping[str, HealthPoint]) -> dict[str, Any]:
        """What a receipt keeps: enough to recompute this decision and compare."""
        dropped: dict[str, list[str]] = {}
        for deployment, stage in self.dropped:
            dropped.setdefault(stage, []).append(deployment)
        # The health it read: of every deployment that passed the filters before the breaker's.
        consulted = [e.id for e in self.plan] + dropped.get("circuit_open", []) + dropped.get("too_slow", [])
        return {
            "inputs": inputs.record(), "policy": self.policy, "ensemble": self.ensemble,
            "health": {d: list(health.get(d, HEALTHY)) for d in consulted},
            "plan": [[e.id, cost] for e, cost in zip(self.plan, self.estimates, strict=True)],
            "dropped": dropped, "refusal": self.refusal.name.lower(), "detail": self.detail,
        }


def estimate_prompt_tokens(prompt_bytes: int) -> int:
    return prompt_bytes // BYTES_PER_TOKEN + PROMPT_OVERHEAD_TOKENS


@dataclass(frozen=True, slots=True)
class _Spec:
    spec: ModelSpec
    needs: int
    data_rank: int
    max_price: int | None


@lru_cache(maxsize=4096)
def _spec(text: str) -> _Spec | tuple[ReasonCode, str]:
    """A model spec's meaning, or why it has none. Specs repeat, so the parse is cached."""
    try:
        spec = parse_model_spec(text)
    except InvalidModelSpec as exc:
        return ReasonCode.INVALID_MODEL_SPEC, str(exc)
    needs, data_rank, max_price = 0, 0, None
    for key, value in sorted(spec.options.items()):
        if key == "max_price":
            if not value.isdigit():
                return ReasonCode.INVALID_MODEL_SPEC, f"max_price must be whole micro-USD, got {value!r}"
            max_price = int(value)
        elif key == "needs":
            for capability in value.split("+"):
                if capability not in CAPABILITY_BITS:
                    return ReasonCode.UNSUPPORTED, f"unknown capability {capability!r} in needs"
                needs |= CAPABILITY_BITS[capability]
        elif key == "data":
            if value not in DATA_POLICY_RANK:
                return ReasonCode.UNSUPPORTED, f"unknown data policy {value!r}"
            data_rank = DATA_POLICY_RANK[value]
        else:
            return ReasonCode.UNSUPPORTED, f"unknown model spec option {key!r}"
    return _Spec(spec, needs, data_rank, max_price)


def _refuse(policy: str, reason: ReasonCode, detail: str, dropped: tuple[tuple[str, str], ...] = ()) -> Decision:
    return Decision(policy, 1, (), (), dropped, reason, detail)


_HealthColumns = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_]]


def health_row(catalog: Catalog, index: int, h: HealthPoint) -> tuple[int, int, int, bool]:
    """What decisions read of one entry's health: p50 and p90 latency (measured once there are
    MIN_SAMPLES calls, else the catalog's prior; an unknown p50 sorts last, an unknown p90 is -1 and
    never too slow), degraded (1 or 0), and whether its breaker is open."""
    prior = int(catalog.prior_latency[index])
    if h.samples >= MIN_SAMPLES:
        return min(h.p50_ms, _LATENCY_CAP), h.p90_ms, int(h.error_ppm >= DEGRADED_PPM), h.breaker == "open"
    return (_LATENCY_CAP if prior < 0 else min(prior, _LATENCY_CAP)), prior, 0, h.breaker == "open"


def blank_health(catalog: Catalog) -> _HealthColumns:
    """Health columns with nothing measured yet: every entry at its catalog prior."""
    rows = [health_row(catalog, i, HEALTHY) for i in range(len(catalog.entries))]
    return (np.array([r[0] for r in rows], dtype=np.int64), np.array([r[1] for r in rows], dtype=np.int64),
            np.zeros(len(rows), dtype=np.int64), np.zeros(len(rows), dtype=np.bool_))


class HealthSnapshot(Mapping[str, HealthPoint]):
    """Health as a decision reads it: a mapping of deployment id to point, and the same as columns in a
    catalog's order (given by `Health`, which keeps them current, or built once per catalog)."""

    def __init__(self, points: Mapping[str, HealthPoint], columns: _HealthColumns | None = None,
                 catalog_version: str = "") -> None:
        self._points = dict(points)
        self._columns: dict[str, _HealthColumns] = {catalog_version: columns} if columns is not None else {}

    def __getitem__(self, key: str) -> HealthPoint:
        return self._points[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._points)

    def __len__(self) -> int:
        return len(self._points)

    def columns(self, catalog: Catalog) -> _HealthColumns:
        found = self._columns.get(catalog.version)
        if found is None:
            found = blank_health(catalog)
            for deployment, h in self._points.items():
                i = catalog.index.get(deployment)
                if i is not None:
                    found[0][i], found[1][i], found[2][i], found[3][i] = health_row(catalog, i, h)
            self._columns[catalog.version] = found
        return found


_STAGE_CODES = {stage: np.int8(i) for i, stage in enumerate(STAGES)}


# Catalogs up to this size are decided by a plain loop; above it, over numpy columns (whose fixed cost
# per call only pays off with many entries). Both give the same decision: a property test checks it.
SCALAR_MAX = 24
_CHEAPEST, _FASTEST, _BEST, _EXACT = range(4)


def decide(inputs: DecisionInput, catalog: Catalog, health: Mapping[str, HealthPoint]) -> Decision:
    parsed = _spec(inputs.model_spec)
    if not isinstance(parsed, _Spec):
        return _refuse("invalid", *parsed)
    spec = parsed.spec
    policy = spec.policy.name.lower()
    k = spec.ensemble_size if spec.policy == PolicyClass.ENSEMBLE else 1
    if k > 1 and inputs.result_kind not in ENSEMBLE_KINDS:
        return _refuse(policy, ReasonCode.UNSUPPORTED, "ensembles combine bool, uint, int and choice results only")
    ranks: dict[int, int] | None = None
    if spec.policy == PolicyClass.EXACT:
        ranks = {}
        for i, name in enumerate(spec.models):
            for e in catalog.by_name.get(name, ()):
                ranks.setdefault(catalog.index[e.id], i)
        if not ranks:
            return _refuse(policy, ReasonCode.UNKNOWN_MODEL, f"no deployment serves {', '.join(spec.models)}")
    mode = (_EXACT if ranks is not None else _FASTEST if spec.policy == PolicyClass.FASTEST
            else _BEST if spec.policy == PolicyClass.BEST or k > 1 else _CHEAPEST)
    cap = parsed.max_price
    allowance = inputs.allowance // k
    request = _Request(
        need=parsed.needs | (0 if inputs.result_kind == ResultType.TEXT else CAPABILITY_BITS["json_schema"]),
        data_rank=parsed.data_rank, prompt_tokens=estimate_prompt_tokens(min(inputs.prompt_bytes, _MAX_PROMPT_BYTES)),
        max_tokens=min(inputs.max_tokens, _INT64_CAP), cap=None if cap is None else min(cap, _INT64_CAP),
        limit=min(allowance if cap is None else min(cap, allowance), _INT64_CAP),
        time_left=min(inputs.time_left_ms, _INT64_CAP), mode=mode, ranks=ranks, request_id=inputs.request_id)
    scalar = len(catalog.entries) <= SCALAR_MAX
    order, costs, dropped = (_scalar if scalar else _vector)(request, catalog, health)
    if not order:
        furthest = max((STAGES.index(stage) for _, stage in dropped), default=0)
        return _refuse(policy, _STAGE_REASON[STAGES[furthest]], _STAGE_DETAIL[STAGES[furthest]], tuple(dropped))
    if k > 1:
        # An ensemble's members: the best-placed deployment of each of the first k providers; the rest
        # follow in order, as reserves.
        members: list[int] = []
        providers: set[str] = set()
        for place, i in enumerate(order):
            if catalog.providers[i] not in providers:
                providers.add(catalog.providers[i])
                members.append(place)
                if len(members) == k:
                    break
        if len(members) < k:
            return _refuse(policy, ReasonCode.PROVIDERS_UNAVAILABLE,
                           f"ensemble:{k} needs {k} providers; {len(members)} eligible", tuple(dropped))
        chosen = set(members)
        places = members + [p for p in range(len(order)) if p not in chosen]
        order, costs = [order[p] for p in places], [costs[p] for p in places]
    plan = itemgetter(*order)(catalog.entries) if len(order) > 1 else (catalog.entries[order[0]],)
    return Decision(policy, k, plan, tuple(costs), tuple(dropped))


@dataclass(frozen=True, slots=True)
class _Request:
    """What the filters and the score read of a request, bounds applied."""

    need: int
    data_rank: int
    prompt_tokens: int
    max_tokens: int
    cap: int | None
    limit: int  # the price cap or the fee's share, whichever is lower
    time_left: int
    mode: int  # _CHEAPEST | _FASTEST | _BEST | _EXACT
    ranks: dict[int, int] | None  # for an exact list: catalog index -> place of its model in the list
    request_id: bytes


_Ranked = tuple[list[int], list[int], list[tuple[str, str]]]  # catalog indices best first, their costs, drops


# The filters and the score, each written once: every function below works on one deployment's figures
# (ints) and on the catalog's columns (numpy int64 arrays) alike, for the loop and the vectorised path.


def _answer_tokens(max_output: Any, max_tokens: int) -> Any:
    """The tokens an answer may take: the request's max, within what the deployment can write."""
    return np.minimum(max_output, max_tokens) if isinstance(max_output, np.ndarray) else min(max_output, max_tokens)


def _too_long(answer_tokens: Any, context_window: Any, prompt_tokens: int) -> Any:
    return answer_tokens > context_window - prompt_tokens


def _cost(prompt_tokens: int, answer_tokens: Any, input_price: Any, output_price: Any, call_price: Any) -> Any:
    """Micro-USD at most: the prompt and a full answer at the deployment's prices (rounded up), plus its
    per-call price."""
    return (prompt_tokens * input_price + answer_tokens * output_price + 999_999) // 1_000_000 + call_price


def _over_cap(cost: Any, cap: int) -> Any:
    """Dearer than the model spec's max_price: the `price_cap` stage (else the fee's `fee`)."""
    return cost > cap


def _too_slow(latency90: Any, time_left: int) -> Any:
    return latency90 > time_left


def _score(mode: int, rank: Any, degraded: Any, latency50: Any, quality: Any, cost: Any) -> Any:
    """One integer per deployment, lower is better: the policy's fields above the cost (below 2**40 by
    the catalog's bounds); a deployment failing often goes after healthy ones whatever the policy."""
    if mode == _EXACT:
        return rank << 58 | degraded << 57 | cost
    if mode == _FASTEST:
        return degraded << 62 | latency50 << 40 | cost
    if mode == _BEST:
        return degraded << 62 | (_QUALITY_TOP - quality) << 57 | cost
    return degraded << 62 | cost


def _scalar(r: _Request, catalog: Catalog, health: Mapping[str, HealthPoint]) -> _Ranked:
    """The filters and the score, one entry at a time (small catalogs)."""
    dropped: list[tuple[str, str]] = []
    scored: list[tuple[int, int, int]] = []
    for i, e in enumerate(catalog.entries):
        if r.ranks is not None and i not in r.ranks:
            continue
        if e.capabilities & r.need != r.need:
            dropped.append((e.id, "capability"))
            continue
        if e.data_rank < r.data_rank:
            dropped.append((e.id, "data_policy"))
            continue
        answer_tokens = _answer_tokens(e.max_output, r.max_tokens)
        if _too_long(answer_tokens, e.context_window, r.prompt_tokens):
            dropped.append((e.id, "context_window"))
            continue
        cost = _cost(r.prompt_tokens, answer_tokens, e.input_price, e.output_price, e.call_price)
        if cost > r.limit:
            dropped.append((e.id, "price_cap" if r.cap is not None and _over_cap(cost, r.cap) else "fee"))
            continue
        latency50, latency90, degraded, is_open = health_row(catalog, i, health.get(e.id, HEALTHY))
        if is_open:
            dropped.append((e.id, "circuit_open"))
            continue
        if _too_slow(latency90, r.time_left):
            dropped.append((e.id, "too_slow"))
            continue
        rank = r.ranks[i] if r.ranks is not None else 0
        scored.append((_score(r.mode, rank, degraded, latency50, e.quality, cost), i, cost))
    scored.sort()
    tied = [p for p in range(len(scored) - 1) if scored[p][0] == scored[p + 1][0]]
    if tied:
        scored = _break_ties(scored, tied, catalog, r.request_id)
    return [i for _, i, _ in scored], [cost for _, _, cost in scored], dropped


def _vector(r: _Request, catalog: Catalog, health: Mapping[str, HealthPoint]) -> _Ranked:
    """The filters and the score over the catalog's columns at once (large catalogs)."""
    static = catalog.static_stages(r.need, r.data_rank)
    if r.ranks is not None:
        in_pool = np.zeros(len(catalog.entries), dtype=np.bool_)
        in_pool[list(r.ranks)] = True
        candidate = in_pool & (static < 0)
    else:
        candidate = static < 0
    answer_tokens = _answer_tokens(catalog.max_output, r.max_tokens)
    cost = _cost(r.prompt_tokens, answer_tokens, catalog.input_price, catalog.output_price,
                 catalog.call_price).astype(np.int64, copy=False)
    too_long = _too_long(answer_tokens, catalog.context_window, r.prompt_tokens)
    over_limit = cost > r.limit
    latency50, latency90, degraded, is_open = (health if isinstance(health, HealthSnapshot)
                                               else HealthSnapshot(health)).columns(catalog)
    too_slow = _too_slow(latency90, r.time_left)
    fails = too_long | over_limit | is_open | too_slow
    kept = (candidate & ~fails).nonzero()[0]
    out = (static >= 0) | fails
    dropped_at = (out if r.ranks is None else in_pool & out).nonzero()[0]
    dropped: list[tuple[str, str]] = []
    if len(dropped_at):
        # The first stage that drops each: later stages first, so earlier ones overwrite them.
        stage = np.full(len(dropped_at), _STAGE_CODES["too_slow"], dtype=np.int8)
        stage[is_open[dropped_at]] = _STAGE_CODES["circuit_open"]
        over = over_limit[dropped_at]
        stage[over] = _STAGE_CODES["fee"]
        if r.cap is not None:
            stage[over & _over_cap(cost[dropped_at], r.cap)] = _STAGE_CODES["price_cap"]
        stage[too_long[dropped_at]] = _STAGE_CODES["context_window"]
        first = static[dropped_at]
        stage[first >= 0] = first[first >= 0]
        ids = catalog.ids
        dropped = list(zip([ids[i] for i in dropped_at.tolist()], [STAGES[c] for c in stage.tolist()], strict=True))
    if not len(kept):
        return [], [], dropped
    costs = cost[kept]
    rank = np.array([r.ranks[i] for i in kept.tolist()], dtype=np.int64) if r.ranks is not None else 0
    score = _score(r.mode, rank, degraded[kept], latency50[kept], catalog.quality[kept], costs)
    order = np.argsort(score, kind="stable")
    ranked = score[order]
    tied = (ranked[1:] == ranked[:-1]).nonzero()[0]
    indices, ordered_costs = kept[order].tolist(), costs[order].tolist()
    if len(tied):
        scored = _break_ties(list(zip(ranked.tolist(), indices, ordered_costs, strict=True)), tied.tolist(), catalog,
                             r.request_id)
        return [i for _, i, _ in scored], [c for _, _, c in scored], dropped
    return indices, ordered_costs, dropped


def _break_ties(scored: list[tuple[int, int, int]], tied: list[int], catalog: Catalog,
                request_id: bytes) -> list[tuple[int, int, int]]:
    """Order each run of equal scores by keccak(request id, deployment id): fair across requests, fixed per
    request. `scored` is (score, catalog index, cost) sorted by score; each `tied` place p ties with p + 1."""
    out = list(scored)
    ids = catalog.ids
    t = 0
    while t < len(tied):
        start = tied[t]
        while t + 1 < len(tied) and tied[t + 1] == tied[t] + 1:
            t += 1
        end = tied[t] + 2
        out[start:end] = sorted(out[start:end], key=lambda s: keccak(request_id + ids[s[1]].encode()))
        t += 1
    return out


def recompute(record: Mapping[str, Any], catalog: Catalog) -> dict[str, Any]:
    """The decision a receipt's inputs and health snapshot give under `catalog`, as a receipt records it."""
    inputs = DecisionInput.from_record(record["inputs"])
    health = {d: HealthPoint(*v) for d, v in record["health"].items()}
    return decide(inputs, catalog, health).record(inputs, health)
