"""Decisions: table-driven cases per policy and filter, properties that no hard filter is ever violated,
and the same decision whatever the catalog order or the interpreter's hash seed."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from eth_utils import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from oracle.config import DATA_POLICY_RANK
from oracle.protocol import ReasonCode, ResultType
from oracle.router import decision as decision_module
from oracle.router.catalog import CAPABILITY_BITS, Catalog
from oracle.router.decision import (
    DEGRADED_PPM,
    MIN_SAMPLES,
    DecisionInput,
    HealthPoint,
    decide,
    estimate_prompt_tokens,
)
from oracle.router.receipts import canonical_json
from tests.router.conftest import dep

ROOT = Path(__file__).resolve().parents[2]


def inputs(spec: str = "cheapest", kind: ResultType = ResultType.UINT, prompt_bytes: int = 300,
           max_tokens: int = 100, allowance: int = 10**12, time_left_ms: int = 60_000,
           request_id: bytes = b"\x01" * 32) -> DecisionInput:
    return DecisionInput(request_id, spec, kind, prompt_bytes, max_tokens, allowance, time_left_ms)


def plan(d: Any) -> list[str]:
    return [e.id for e in d.plan]


def dropped(d: Any) -> dict[str, str]:
    return dict(d.dropped)


MEASURED = MIN_SAMPLES


# ---------------------------------------------------------------- policies

def test_cheapest_orders_by_the_most_a_call_can_cost() -> None:
    catalog = Catalog([dep("a", input_price=3_000_000), dep("b", input_price=1_000_000),
                       dep("c", input_price=2_000_000)])
    d = decide(inputs(), catalog, {})
    assert plan(d) == ["b", "c", "a"]
    tokens = estimate_prompt_tokens(300)
    assert d.estimates[0] == -(-(tokens * 1_000_000 + 100 * 1_000_000) // 1_000_000)


def test_fastest_uses_measured_p50_else_the_catalog_prior() -> None:
    catalog = Catalog([dep("a", expected_latency_ms=900), dep("b", expected_latency_ms=300), dep("c")])
    assert plan(decide(inputs("fastest"), catalog, {})) == ["b", "a", "c"]  # unknown latency goes last
    health = {"a": HealthPoint(p50_ms=100, p90_ms=200, samples=MEASURED)}
    assert plan(decide(inputs("fastest"), catalog, health)) == ["a", "b", "c"]


def test_best_orders_by_quality_then_cost() -> None:
    catalog = Catalog([dep("a", quality=2), dep("b", quality=5, input_price=9_000_000), dep("c", quality=5)])
    assert plan(decide(inputs("best"), catalog, {})) == ["c", "b", "a"]


def test_an_exact_list_is_tried_in_order_and_same_model_deployments_by_cost() -> None:
    catalog = Catalog([dep("x1", model="m-x-1", input_price=5_000_000), dep("x2", model="m-x-1"),
                       dep("y", model="m-y-1"), dep("z", model="m-z-1")])
    d = decide(inputs("m-y-1,m-x-1"), catalog, {})
    assert plan(d) == ["y", "x2", "x1"] and "z" not in dropped(d)
    assert plan(decide(inputs("x1"), catalog, {})) == ["x1"]  # a deployment id names exactly one
    unknown = decide(inputs("m-q-1"), catalog, {})
    assert unknown.refusal == ReasonCode.UNKNOWN_MODEL and "m-q-1" in unknown.detail


def test_a_degraded_deployment_goes_after_healthy_ones() -> None:
    catalog = Catalog([dep("cheap", input_price=1), dep("dear", input_price=9_000_000)])
    sick = {"cheap": HealthPoint(10, 20, DEGRADED_PPM, MEASURED)}
    assert plan(decide(inputs(), catalog, sick)) == ["dear", "cheap"]


# ---------------------------------------------------------------- hard filters

@pytest.mark.parametrize(
    ("spec", "kind", "fields", "stage"),
    [
        ("cheapest;needs=tools", ResultType.UINT, {"capabilities": ["json_schema"]}, "capability"),
        ("cheapest", ResultType.BOOL, {"capabilities": []}, "capability"),  # typed results need json_schema
        ("cheapest;data=zero_retention", ResultType.UINT, {"data_policy": "no_training"}, "data_policy"),
        ("cheapest", ResultType.UINT, {"context_window": 399, "max_output": 100}, "context_window"),
        ("cheapest;max_price=100", ResultType.UINT, {}, "price_cap"),
    ],
)
def test_each_filter_drops_with_its_stage(spec: str, kind: ResultType, fields: dict[str, Any], stage: str) -> None:
    everything = {"capabilities": sorted(CAPABILITY_BITS), "data_policy": "zero_retention"}
    catalog = Catalog([dep("keep", **everything), dep("drop", **(everything | fields))] if stage != "price_cap"
                      else [dep("keep", input_price=1, output_price=1), dep("drop")])
    d = decide(inputs(spec, kind), catalog, {})
    assert plan(d) == ["keep"] and dropped(d) == {"drop": stage}


def test_text_results_do_not_need_json_schema() -> None:
    catalog = Catalog([dep("plain", capabilities=[])])
    assert plan(decide(inputs(kind=ResultType.TEXT), catalog, {})) == ["plain"]


def test_the_fee_open_breakers_and_slow_deployments_drop() -> None:
    catalog = Catalog([dep("dear", input_price=90_000_000), dep("open"), dep("slow"), dep("ok")])
    health = {"open": HealthPoint(breaker="open"), "slow": HealthPoint(5_000, 90_000, 0, MEASURED),
              "ok": HealthPoint(1_000, 2_000, 0, MEASURED)}
    d = decide(inputs(allowance=1_000), catalog, health)
    assert plan(d) == ["ok"]
    assert dropped(d) == {"dear": "fee", "open": "circuit_open", "slow": "too_slow"}
    assert decide(inputs(), Catalog([dep("h")]), {"h": HealthPoint(breaker="half_open")}).plan  # one probe allowed
    prior = Catalog([dep("p", expected_latency_ms=120_000)])
    assert dropped(decide(inputs(), prior, {})) == {"p": "too_slow"}  # the prior counts until measured


@pytest.mark.parametrize(
    ("catalog_fields", "spec", "health", "reason", "words"),
    [
        ([{"capabilities": []}], "cheapest", {}, ReasonCode.UNSUPPORTED, "capabilities"),
        ([{"capabilities": []}, {"context_window": 300, "max_output": 100}], "cheapest", {},
         ReasonCode.PROMPT_TOO_LARGE, "context window"),
        ([{}], "cheapest;max_price=1", {}, ReasonCode.PRICE_CAP_TOO_LOW, "max_price"),
        ([{"data_policy": "no_training"}], "cheapest;data=zero_retention", {}, ReasonCode.DATA_POLICY_UNAVAILABLE,
         "data policy"),
        ([{}], "cheapest", {"d0": HealthPoint(breaker="open")}, ReasonCode.PROVIDERS_UNAVAILABLE, "breaker"),
        ([{"expected_latency_ms": 10**6}], "cheapest", {}, ReasonCode.DEADLINE_TOO_SHORT, "deadline"),
        ([{}], "cheapest;colour=red", {}, ReasonCode.UNSUPPORTED, "unknown model spec option"),
        ([{}], "cheapest;needs=telepathy", {}, ReasonCode.UNSUPPORTED, "unknown capability"),
        ([{}], "cheapest;max_price=cheap", {}, ReasonCode.INVALID_MODEL_SPEC, "max_price"),
        ([{}], "cheapest;data=whatever", {}, ReasonCode.UNSUPPORTED, "data policy"),
        ([{}], "ensemble:2", {}, ReasonCode.PROVIDERS_UNAVAILABLE, "needs 2 providers"),
        ([{}], "", {}, ReasonCode.INVALID_MODEL_SPEC, "empty model id"),
    ],
)
def test_refusals_name_the_furthest_filter(catalog_fields: list[dict[str, Any]], spec: str,
                                           health: dict[str, HealthPoint], reason: ReasonCode, words: str) -> None:
    catalog = Catalog([dep(f"d{i}", **f) for i, f in enumerate(catalog_fields)])
    d = decide(inputs(spec), catalog, health)
    assert d.refusal == reason and words in d.detail and d.plan == ()


def test_a_cap_below_what_the_fee_also_refuses_is_named_as_the_cap() -> None:
    # both the cap and the fee stop the one deployment: the cap is what the model spec can change
    d = decide(inputs("cheapest;max_price=1", allowance=1), Catalog([dep("d")]), {})
    assert d.refusal == ReasonCode.PRICE_CAP_TOO_LOW and dropped(d) == {"d": "price_cap"}
    # a cap above the deployment's cost leaves the fee to refuse it
    assert decide(inputs("cheapest;max_price=10000000", allowance=1), Catalog([dep("d")]), {}).refusal == (
        ReasonCode.FEE_TOO_LOW)


# ---------------------------------------------------------------- ensembles

def test_an_ensemble_takes_k_providers_best_first_then_reserves() -> None:
    catalog = Catalog([dep("a1", provider="a", quality=9), dep("a2", provider="a", quality=8),
                       dep("b1", provider="b", quality=7), dep("c1", provider="c", quality=1)])
    d = decide(inputs("ensemble:2"), catalog, {})
    assert d.ensemble == 2 and plan(d) == ["a1", "b1", "a2", "c1"]
    assert decide(inputs("ensemble:2", kind=ResultType.TEXT), catalog, {}).refusal == ReasonCode.UNSUPPORTED


def test_an_ensemble_member_must_fit_its_share_of_the_fee() -> None:
    catalog = Catalog([dep("a"), dep("b")])
    one = decide(inputs("cheapest"), catalog, {}).estimates[0]
    assert decide(inputs("ensemble:2", allowance=2 * one), catalog, {}).ensemble == 2
    assert decide(inputs("ensemble:2", allowance=2 * one - 1), catalog, {}).refusal == ReasonCode.FEE_TOO_LOW


# ---------------------------------------------------------------- ties

@pytest.mark.parametrize("scalar_max", [0, 10**6])  # numpy columns, then the loop
def test_ties_are_broken_by_keccak_of_request_and_deployment(monkeypatch: pytest.MonkeyPatch,
                                                             scalar_max: int) -> None:
    monkeypatch.setattr(decision_module, "SCALAR_MAX", scalar_max)
    catalog = Catalog([dep(name) for name in "pqrs"])
    firsts = {plan(decide(inputs(request_id=i.to_bytes(32, "big")), catalog, {}))[0] for i in range(64)}
    assert firsts == set("pqrs")  # equal deployments share the traffic ...
    once = plan(decide(inputs(request_id=b"\x07" * 32), catalog, {}))
    assert all(plan(decide(inputs(request_id=b"\x07" * 32), catalog, {})) == once for _ in range(5))  # ... stably
    key = sorted("pqrs", key=lambda d: keccak(b"\x07" * 32 + d.encode()))
    assert once == key


# ---------------------------------------------------------------- properties

_caps = st.lists(st.sampled_from(sorted(CAPABILITY_BITS)), unique=True)
_deployment = st.fixed_dictionaries({
    "provider": st.sampled_from("abcd"), "input_price": st.integers(0, 20_000_000),
    "output_price": st.integers(0, 20_000_000), "call_price": st.integers(0, 5_000),
    "context_window": st.integers(500, 50_000), "max_output": st.integers(1, 500), "capabilities": _caps,
    "data_policy": st.sampled_from(sorted(DATA_POLICY_RANK)), "quality": st.integers(1, 10),
    "expected_latency_ms": st.none() | st.integers(1, 100_000),
})
_health = st.builds(HealthPoint, st.integers(0, 50_000), st.integers(0, 100_000), st.integers(0, 1_000_000),
                    st.integers(0, 20), st.sampled_from(["closed", "open", "half_open"]))
_spec = st.sampled_from(["cheapest", "fastest", "best", "ensemble:2", "ensemble:3", "d0-2026-01-01,d3-2026-01-01"]) \
    .flatmap(lambda base: st.tuples(st.just(base), st.none() | st.integers(0, 50_000), st.none() | _caps,
                                    st.none() | st.sampled_from(sorted(DATA_POLICY_RANK))))


def _spec_text(parts: tuple[str, int | None, list[str] | None, str | None]) -> str:
    base, cap, needs, data = parts
    text = base
    if cap is not None:
        text += f";max_price={cap}"
    if needs:
        text += ";needs=" + "+".join(needs)
    if data is not None:
        text += f";data={data}"
    return text


@settings(max_examples=400, deadline=None)
@given(st.lists(_deployment, min_size=1, max_size=30), st.lists(_health, min_size=30, max_size=30), _spec,
       st.sampled_from([ResultType.TEXT, ResultType.UINT, ResultType.BOOL]), st.integers(0, 60_000),
       st.integers(1, 2_000), st.integers(0, 200_000), st.integers(0, 120_000), st.binary(min_size=32, max_size=32),
       st.randoms())
def test_no_hard_filter_is_ever_violated(fields: list[dict[str, Any]], points: list[HealthPoint],
                                         spec_parts: Any, kind: ResultType, prompt_bytes: int, max_tokens: int,
                                         allowance: int, time_left: int, request_id: bytes, rnd: random.Random) -> None:
    fields = [f | {"max_output": min(f["max_output"], f["context_window"])} for f in fields]
    deployments = [dep(f"d{i}", **f) for i, f in enumerate(fields)]
    catalog = Catalog(deployments)
    health = {f"d{i}": points[i] for i in range(len(deployments))}
    spec = _spec_text(spec_parts)
    base, cap, needs, data = spec_parts
    inp = DecisionInput(request_id, spec, kind, prompt_bytes, max_tokens, allowance, time_left)
    d = decide(inp, catalog, health)

    need = sum(CAPABILITY_BITS[c] for c in (needs or [])) | (0 if kind == ResultType.TEXT else 1)
    k = int(base[-1]) if base.startswith("ensemble") else 1
    tokens = estimate_prompt_tokens(prompt_bytes)
    for e, estimate in zip(d.plan, d.estimates, strict=True):
        h = health[e.id]
        assert e.capabilities & need == need
        assert e.data_rank >= DATA_POLICY_RANK[data or "retained"]
        assert tokens + min(max_tokens, e.max_output) <= e.context_window
        assert estimate == e.estimate(tokens, max_tokens)
        assert cap is None or estimate <= cap
        assert estimate <= allowance // k
        assert h.breaker != "open"
        p90 = h.p90_ms if h.samples >= MIN_SAMPLES else e.expected_latency_ms
        assert p90 is None or p90 <= time_left
    if d.ensemble > 1:
        assert len({e.provider for e in d.plan[:d.ensemble]}) == d.ensemble
    named = {e.id for e in d.plan} | {i for i, _ in d.dropped}
    assert len(named) == len(d.plan) + len(d.dropped)  # each considered deployment once: kept or dropped
    if d.refusal == ReasonCode.NONE:
        assert d.plan
    else:
        assert not d.plan

    shuffled = list(deployments)
    rnd.shuffle(shuffled)
    again = decide(inp, Catalog(shuffled), dict(reversed(list(health.items()))))
    assert canonical_json(again.record(inp, health)) == canonical_json(d.record(inp, health))
    # Small catalogs are decided by a loop, large ones over numpy columns: the same decision either way.
    other_path = decision_module.SCALAR_MAX
    try:
        decision_module.SCALAR_MAX = 0 if len(deployments) <= other_path else 10**6
        vector = decide(inp, catalog, health)
    finally:
        decision_module.SCALAR_MAX = other_path
    assert canonical_json(vector.record(inp, health)) == canonical_json(d.record(inp, health))


_SCRIPT = """
import json, random, sys
from oracle.config import ModelDeployment
from oracle.protocol import ResultType
from oracle.router.catalog import Catalog
from oracle.router.decision import DecisionInput, HealthPoint, decide
from oracle.router.receipts import canonical_json

rows = json.loads(sys.argv[1])
random.Random(int(sys.argv[2])).shuffle(rows)
catalog = Catalog(ModelDeployment.model_validate(r) for r in rows)
health = {"d3": HealthPoint(100, 200, 0, 9), "d5": HealthPoint(0, 0, 0, 0, "open")}
out = []
for i, spec in enumerate(["cheapest", "fastest", "best", "ensemble:3", "d1-2026-01-01,d2-2026-01-01",
                          "cheapest;needs=seed;max_price=400"]):
    inp = DecisionInput(bytes([i]) * 32, spec, ResultType.UINT, 1000, 100, 10**9, 60_000)
    out.append(canonical_json(decide(inp, catalog, health).record(inp, health)))
print(json.dumps(out))
"""


def test_the_same_decision_under_any_hash_seed_and_catalog_order() -> None:
    rows = [dep(f"d{i}", provider="pq"[i % 2] + str(i % 3), input_price=1_000_000 * (i % 3),
                capabilities=["json_schema"] + (["seed"] if i % 2 else []), quality=1 + i % 4).model_dump(mode="json")
            for i in range(12)]
    outputs = set()
    for hash_seed, order_seed in [("0", 1), ("1", 2), ("4242", 3), ("random", 4)]:
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        done = subprocess.run([sys.executable, "-c", _SCRIPT, json.dumps(rows), str(order_seed)], env=env,
                              capture_output=True, text=True, check=True, cwd=ROOT)
        outputs.add(done.stdout)
    assert len(outputs) == 1
    decisions = json.loads(outputs.pop())
    assert all(json.loads(d)["plan"] for d in decisions)  # every spec above routes somewhere
