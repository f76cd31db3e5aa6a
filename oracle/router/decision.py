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

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

from eth_utils import keccak

from oracle.config import DATA_POLICY_RANK
from oracle.protocol import InvalidModelSpec, ModelSpec, PolicyClass, ReasonCode, ResultType, parse_model_spec
from oracle.router.catalog import CAPABILITY_BITS, Catalog, Entry

# Estimating a prompt's tokens before asking: bytes / 3 is on the safe side for common tokenizers;
# the system prompt and the answer schema add about 200.
BYTES_PER_TOKEN = 3
PROMPT_OVERHEAD_TOKENS = 200
# Health figures count once a deployment has this many calls; before that the catalog's prior is used.
MIN_SAMPLES = 5
# A deployment failing at least half its recent calls is tried after the healthy ones.
DEGRADED_PPM = 500_000
UNKNOWN_LATENCY_MS = 600_000

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
    "capability": ReasonCode.UNSUPPORTED, "data_policy": ReasonCode.UNSUPPORTED,
    "context_window": ReasonCode.PROMPT_TOO_LARGE, "price_cap": ReasonCode.FEE_TOO_LOW, "fee": ReasonCode.FEE_TOO_LOW,
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
    prompt_bytes: int
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
    dropped: tuple[tuple[str, str], ...]  # (deployment id, stage that dropped it)
    consulted: tuple[str, ...]  # deployments whose health the decision read
    refusal: ReasonCode = ReasonCode.NONE
    detail: str = ""

    def record(self, inputs: DecisionInput, health: Mapping[str, HealthPoint]) -> dict[str, Any]:
        """What a receipt keeps: enough to recompute this decision and compare."""
        dropped: dict[str, list[str]] = {}
        for deployment, stage in self.dropped:
            dropped.setdefault(stage, []).append(deployment)
        return {
            "inputs": inputs.record(), "policy": self.policy, "ensemble": self.ensemble,
            "health": {d: list(health.get(d, HEALTHY)) for d in self.consulted},
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


def _refuse(policy: str, reason: ReasonCode, detail: str, dropped: tuple[tuple[str, str], ...] = (),
            consulted: tuple[str, ...] = ()) -> Decision:
    return Decision(policy, 1, (), (), dropped, consulted, reason, detail)


def decide(inputs: DecisionInput, catalog: Catalog, health: Mapping[str, HealthPoint]) -> Decision:
    parsed = _spec(inputs.model_spec)
    if not isinstance(parsed, _Spec):
        return _refuse("invalid", *parsed)
    spec = parsed.spec
    policy = spec.policy.name.lower()
    k = spec.ensemble_size if spec.policy == PolicyClass.ENSEMBLE else 1
    if k > 1 and inputs.result_kind not in ENSEMBLE_KINDS:
        return _refuse(policy, ReasonCode.UNSUPPORTED, "ensembles combine bool, uint, int and choice results only")

    if spec.policy == PolicyClass.EXACT:
        rank: dict[str, int] = {}
        pool: list[Entry] = []
        for i, name in enumerate(spec.models):
            for e in catalog.by_name.get(name, ()):
                if e.id not in rank:
                    rank[e.id] = i
                    pool.append(e)
        if not pool:
            return _refuse(policy, ReasonCode.UNKNOWN_MODEL, f"no deployment serves {', '.join(spec.models)}")
    else:
        rank = {}
        pool = list(catalog.entries)

    need = parsed.needs | (0 if inputs.result_kind == ResultType.TEXT else CAPABILITY_BITS["json_schema"])
    data_rank = parsed.data_rank
    prompt_tokens = estimate_prompt_tokens(inputs.prompt_bytes)
    max_tokens = inputs.max_tokens
    cap = parsed.max_price
    allowance = inputs.allowance // k
    time_left = inputs.time_left_ms
    by_latency = spec.policy == PolicyClass.FASTEST
    best = spec.policy == PolicyClass.BEST or k > 1

    dropped: list[tuple[str, str]] = []
    consulted: list[str] = []
    scored: list[tuple[tuple[int, ...], Entry, int]] = []
    for e in pool:
        if e.capabilities & need != need:
            dropped.append((e.id, "capability"))
            continue
        if e.data_rank < data_rank:
            dropped.append((e.id, "data_policy"))
            continue
        answer_tokens = max_tokens if max_tokens < e.max_output else e.max_output
        if prompt_tokens + answer_tokens > e.context_window:
            dropped.append((e.id, "context_window"))
            continue
        cost = -(-(prompt_tokens * e.input_price + answer_tokens * e.output_price) // 1_000_000) + e.call_price
        if cap is not None and cost > cap:
            dropped.append((e.id, "price_cap"))
            continue
        if cost > allowance:
            dropped.append((e.id, "fee"))
            continue
        consulted.append(e.id)
        h = health.get(e.id, HEALTHY)
        if h.breaker == "open":
            dropped.append((e.id, "circuit_open"))
            continue
        measured = h.samples >= MIN_SAMPLES
        p90 = h.p90_ms if measured else e.expected_latency_ms
        if p90 is not None and p90 > time_left:
            dropped.append((e.id, "too_slow"))
            continue
        degraded = 1 if measured and h.error_ppm >= DEGRADED_PPM else 0
        if rank:
            key: tuple[int, ...] = (rank[e.id], degraded, cost)
        elif by_latency:
            p50 = h.p50_ms if measured else (e.expected_latency_ms or UNKNOWN_LATENCY_MS)
            key = (degraded, p50, cost)
        elif best:
            key = (degraded, -e.quality, cost)
        else:
            key = (degraded, cost)
        scored.append((key, e, cost))

    if not scored:
        furthest = max((STAGES.index(stage) for _, stage in dropped), default=0)
        stage = STAGES[furthest]
        return _refuse(policy, _STAGE_REASON[stage], _STAGE_DETAIL[stage],
                       tuple(dropped), tuple(consulted))
    scored.sort(key=lambda s: s[0])
    _break_ties(scored, inputs.request_id)
    plan = [s[1] for s in scored]
    estimates = [s[2] for s in scored]
    if k > 1:
        members: list[int] = []
        providers: set[str] = set()
        for i, e in enumerate(plan):
            if e.provider not in providers:
                providers.add(e.provider)
                members.append(i)
                if len(members) == k:
                    break
        if len(members) < k:
            return _refuse(policy, ReasonCode.PROVIDERS_UNAVAILABLE,
                           f"ensemble:{k} needs {k} providers; {len(members)} eligible", tuple(dropped),
                           tuple(consulted))
        rest = [i for i in range(len(plan)) if i not in members]
        plan = [plan[i] for i in members + rest]
        estimates = [estimates[i] for i in members + rest]
    return Decision(policy, k, tuple(plan), tuple(estimates), tuple(dropped), tuple(consulted))


def _break_ties(scored: list[tuple[tuple[int, ...], Entry, int]], request_id: bytes) -> None:
    """Order runs of equal scores by keccak(request id, deployment id): fair across requests, fixed per request."""
    i = 0
    n = len(scored)
    while i < n:
        j = i + 1
        while j < n and scored[j][0] == scored[i][0]:
            j += 1
        if j - i > 1:
            scored[i:j] = sorted(scored[i:j], key=lambda s: keccak(request_id + s[1].id.encode()))
        i = j


def recompute(record: Mapping[str, Any], catalog: Catalog) -> dict[str, Any]:
    """The decision a receipt's inputs and health snapshot give under `catalog`, as a receipt records it."""
    inputs = DecisionInput.from_record(record["inputs"])
    health = {d: HealthPoint(*v) for d, v in record["health"].items()}
    return decide(inputs, catalog, health).record(inputs, health)
