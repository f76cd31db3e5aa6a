"""The operations files: ops/alerts.yml loads in Prometheus and each alert fires when it should and only
then (promtool's rule unit tests, on series shaped like the daemon's /metrics), and ops/oracle.service
runs the daemon the way the README says, hardened."""

from __future__ import annotations

import configparser
import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "ops" / "alerts.yml"
UNIT = ROOT / "ops" / "oracle.service"

TARGET = {"job": "oracle", "instance": "127.0.0.1:8547"}  # what Prometheus adds to each scraped series
CHAIN = "base"
CONFIG = "/etc/oracle/config.toml"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: run `make test`, which installs it (Debian's prometheus package)")
    return path


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120, check=False)


# --- series and expected alerts ---------------------------------------------------------------------------


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    """An input series as the daemon's scrape gives it (target labels added), in promtool's notation."""
    pairs = ", ".join(f'{k}="{v}"' for k, v in sorted({**TARGET, **labels}.items()))
    return {"series": f"{name}{{{pairs}}}", "values": values}


def chain_series(name: str, values: str) -> dict[str, str]:
    return series(name, values, chain=CHAIN)


def alert(severity: str, summary: str, description: str, **labels: str) -> dict[str, Any]:
    return {"exp_labels": {"severity": severity, **TARGET, **labels},
            "exp_annotations": {"summary": summary, "description": description}}


def down() -> dict[str, Any]:
    i = TARGET["instance"]
    return alert("critical", f"oracle daemon {i} is not answering /metrics",
                 f"Prometheus cannot scrape {i}: no request is being seen or answered. Check `systemctl status "
                 "oracle` and `journalctl -u oracle`; exit status 2 is a config or start-up check error that "
                 "restarts do not fix (the log line says what to change).")


def stalled() -> dict[str, Any]:
    return alert("critical", f"chain {CHAIN}: the intake has not moved for 15 minutes while the head has",
                 f"The intake of chain {CHAIN} on {TARGET['instance']} reads no new blocks: new requests are not "
                 "seen. Check its WebSocket and RPC errors in `journalctl -u oracle` and `oracle status --config "
                 f"{CONFIG}`; restart the daemon (`systemctl restart oracle`) if the node is fine.", chain=CHAIN)


def lag(blocks: int) -> dict[str, Any]:
    return alert("warning", f"chain {CHAIN}: the intake is {blocks} blocks behind the head",
                 f"The intake of chain {CHAIN} on {TARGET['instance']} is {blocks} blocks behind the node's head, "
                 "so requests are seen late and may expire before they are answered. Check the node's latency "
                 f"and the RPC errors (`oracle status --config {CONFIG}`, `journalctl -u oracle`).", chain=CHAIN)


def paused() -> dict[str, Any]:
    return alert("info", f"chain {CHAIN}: the intake has been paused for an hour",
                 f"The operator paused the intake of chain {CHAIN} on {TARGET['instance']}: no new request is "
                 f"taken. Resume it with `POST /v1/chains/{CHAIN}/resume` on the operator listener (bearer token "
                 "ORACLE_API_TOKEN) when done.", chain=CHAIN)


def halted() -> dict[str, Any]:
    return alert("critical", f"chain {CHAIN}: halted by a reorg deeper than max_reorg_depth",
                 f"Chain {CHAIN} on {TARGET['instance']} saw a reorg deeper than its max_reorg_depth and takes no "
                 "new work until the daemon restarts. Check the chain first (the node's canonical chain against "
                 "another node or an explorer), then `systemctl restart oracle`.", chain=CHAIN)


FUND = f"Fund the signer at its address (the `signer` line of `oracle status --config {CONFIG}`)"


def signer_low(wei: int) -> dict[str, Any]:
    return alert("warning", f"chain {CHAIN}: the signer's balance is under twice its low mark",
                 f"The fulfilment signer of chain {CHAIN} holds {wei} wei, under twice the low mark at which the "
                 f"daemon stops taking new work. {FUND}.", chain=CHAIN)


def signer_critical(wei: int) -> dict[str, Any]:
    return alert("critical", f"chain {CHAIN}: the signer's balance is under its low mark, no new work",
                 f"The fulfilment signer of chain {CHAIN} holds {wei} wei, under the chain's low_balance: the "
                 f"daemon takes no new work there. {FUND}; work resumes by itself once the balance is read above "
                 "the mark.", chain=CHAIN)


def sending_held() -> dict[str, Any]:
    return alert("critical", f"chain {CHAIN}: sending fulfilments is held",
                 f"The daemon on {TARGET['instance']} sends no fulfilment on chain {CHAIN}, so requests there will "
                 f"expire. `oracle status --config {CONFIG}` and the log say why: a signer balance under the low "
                 "mark (fund the signer) or the day's gas budget spent (see OracleGasBudgetNearlySpent).",
                 chain=CHAIN)


def gas_budget(percent: str) -> dict[str, Any]:
    return alert("warning", f"chain {CHAIN}: {percent} of today's gas budget spent",
                 f"Chain {CHAIN} on {TARGET['instance']} has spent {percent} of its daily gas budget (UTC day); "
                 "once it is spent no fulfilment is sent until midnight UTC. If the traffic is genuine, raise "
                 f"`gas.daily_budget` of the chain in {CONFIG} and restart (`systemctl restart oracle`: chain "
                 "settings are not reloaded by SIGHUP).", chain=CHAIN)


def x402_budget(percent: str, budget: str, provider: str = "") -> dict[str, Any]:
    labels = {"budget": budget} | ({"provider": provider} if provider else {})  # an empty label is no label
    return alert("warning",
                 f"x402 budget {budget}{f' of {provider}' if provider else ''}: under 10% left",
                 f"Only {percent} of the x402 {budget} budget"
                 f"{f' of provider {provider}' if provider else ''} is left over its rolling window on "
                 f"{TARGET['instance']}; paid model calls are refused once it is spent. Check the spend (`oracle "
                 f"payments --config {CONFIG}`); if it is genuine, raise `[x402.budget]` in the config and reload "
                 "(`systemctl reload oracle`, SIGHUP).", **labels)


def breakers_open() -> dict[str, Any]:
    return alert("critical", f"no model deployment has a closed breaker on {TARGET['instance']}",
                 "Every model deployment of the catalog is failing (its circuit breaker open or half-open), so "
                 "requests are answered with failures. Check the providers (outages, API keys, quotas, x402 "
                 f"payments) with `oracle models --config {CONFIG}` and `journalctl -u oracle`.")


def unresolved(count: int) -> dict[str, Any]:
    return alert("warning", f"{count} x402 payments unresolved on {TARGET['instance']}, near x402.max_unresolved",
                 f"{count} x402 payments are reserved, signed, sent or unknown and not yet settled or expired; at "
                 "x402.max_unresolved paid model calls stop. Check the facilitator and the providers, list them "
                 f"with `oracle payments --config {CONFIG} --state unresolved`, and look them up now with `POST "
                 "/v1/reconcile` on the operator listener (bearer token ORACLE_API_TOKEN).")


def rpc_errors(per_second: str) -> dict[str, Any]:
    return alert("warning", f"chain {CHAIN}: {per_second} RPC errors per second",
                 f"The node of chain {CHAIN} fails {per_second} JSON-RPC calls per second from "
                 f"{TARGET['instance']}. Check the node (`rpc_url` of the chain in {CONFIG}) and `journalctl -u "
                 "oracle`; switch to another node and restart if it does not recover.", chain=CHAIN)


# --- the cases: one alert, a scrape history, when to look, what must be firing then -------------------------


@dataclass
class Case:
    name: str
    alertname: str
    input_series: list[dict[str, str]]
    eval_time: str
    firing: list[dict[str, Any]] = field(default_factory=list)  # empty: the alert must be silent


LOW = 10**16  # the chain's low_balance, wei
HEALTHY_UP = [series("up", "1x10")]
PAYMENTS = "oracle_x402_payments"


def signer(balance: int) -> list[dict[str, str]]:
    return [chain_series("oracle_signer_balance_wei", f"{balance}x5"),
            chain_series("oracle_signer_low_balance_wei", f"{LOW}x5")]


def breakers(closed_a: int) -> list[dict[str, str]]:
    states = {"a": {"closed": closed_a, "open": 1 - closed_a, "half_open": 0},
              "b": {"closed": 0, "open": 0, "half_open": 1}}
    return [series("oracle_breaker_state", f"{value}x5", deployment=d, state=s)
            for d, by_state in states.items() for s, value in by_state.items()]


def payments(counts: dict[tuple[str, str], int], limit: int = 32) -> list[dict[str, str]]:
    return [series("oracle_x402_unresolved_limit", f"{limit}x15"),
            *(series(PAYMENTS, f"{n}x15", provider=p, state=s) for (p, s), n in counts.items())]


def intake(cursor: str, head: str, paused: str = "0x20", halted: str = "0x20") -> list[dict[str, str]]:
    return [chain_series("oracle_cursor_block", cursor), chain_series("oracle_head_block", head),
            chain_series("oracle_intake_paused", paused), chain_series("oracle_chain_halted", halted)]


def x402(left: int, budget: str = "total", provider: str = "") -> list[dict[str, str]]:
    labels = {"budget": budget, "provider": provider}
    return [series("oracle_x402_budget_left", f"{left}x5", **labels),
            series("oracle_x402_budget_limit", "1000x5", **labels)]


CASES = [
    Case("daemon down for a minute", "OracleDown", [series("up", "0x5")], "2m", [down()]),
    Case("one failed scrape", "OracleDown", [series("up", "0 1 1 1")], "2m"),
    Case("daemon up", "OracleDown", HEALTHY_UP, "5m"),

    Case("head moves, cursor stands", "OracleIntakeStalled", intake("100x20", "100+1x20"), "16m", [stalled()]),
    Case("cursor follows the head", "OracleIntakeStalled", intake("90+1x20", "100+1x20"), "16m"),
    Case("no new block at all", "OracleIntakeStalled", intake("100x20", "100x20"), "16m"),
    Case("intake paused by the operator", "OracleIntakeStalled", intake("100x20", "100+1x20", paused="1x20"),
         "16m"),
    Case("chain halted (its own alert)", "OracleIntakeStalled", intake("100x20", "100+1x20", halted="1x20"),
         "16m"),

    Case("lag of 100 blocks for 5m", "OracleHeadLag", [chain_series("oracle_head_lag_blocks", "100x10")], "6m",
         [lag(100)]),
    Case("lag at the threshold", "OracleHeadLag", [chain_series("oracle_head_lag_blocks", "64x10")], "6m"),
    Case("lag while the intake is paused", "OracleHeadLag",
         [chain_series("oracle_head_lag_blocks", "100x10"), chain_series("oracle_intake_paused", "1x10")], "6m"),
    Case("lag for 3 minutes only", "OracleHeadLag", [chain_series("oracle_head_lag_blocks", "0 100 100 100 0 0")],
         "3m"),

    Case("intake paused for an hour", "OracleIntakePaused", [chain_series("oracle_intake_paused", "1x70")], "61m",
         [paused()]),
    Case("intake paused for half an hour", "OracleIntakePaused", [chain_series("oracle_intake_paused", "1x70")],
         "30m"),

    Case("deep reorg", "OracleChainHalted", [chain_series("oracle_chain_halted", "0 1 1")], "1m", [halted()]),
    Case("chain running", "OracleChainHalted", [chain_series("oracle_chain_halted", "0 0 0")], "2m"),

    Case("signer under twice the mark", "OracleSignerBalanceLow", signer(15 * 10**15), "1m",
         [signer_low(15 * 10**15)]),
    Case("signer under the mark (critical instead)", "OracleSignerBalanceLow", signer(5 * 10**15), "1m"),
    Case("signer funded", "OracleSignerBalanceLow", signer(3 * LOW), "1m"),
    Case("signer under the mark", "OracleSignerBalanceCritical", signer(5 * 10**15), "1m",
         [signer_critical(5 * 10**15)]),
    Case("signer under twice the mark only", "OracleSignerBalanceCritical", signer(15 * 10**15), "1m"),

    Case("sending held for 5m", "OracleSendingHeld", [chain_series("oracle_sending_paused", "1x10")], "6m",
         [sending_held()]),
    Case("sending going", "OracleSendingHeld", [chain_series("oracle_sending_paused", "0x10")], "6m"),
    Case("sending held for 3m", "OracleSendingHeld", [chain_series("oracle_sending_paused", "0 1 1 1 1")], "3m"),
    Case("sending held by a halt (its own alert)", "OracleSendingHeld",
         [chain_series("oracle_sending_paused", "1x10"), chain_series("oracle_chain_halted", "1x10")], "6m"),

    Case("95% of the gas budget spent", "OracleGasBudgetNearlySpent",
         [chain_series("oracle_gas_spent_today_wei", f"{95 * 10**16}x5"),
          chain_series("oracle_gas_daily_budget_wei", f"{10**18}x5")], "1m", [gas_budget("95%")]),
    Case("half the gas budget spent", "OracleGasBudgetNearlySpent",
         [chain_series("oracle_gas_spent_today_wei", f"{5 * 10**17}x5"),
          chain_series("oracle_gas_daily_budget_wei", f"{10**18}x5")], "1m"),

    Case("total x402 budget 5% left", "OracleX402BudgetNearlySpent", x402(50), "1m", [x402_budget("5%", "total")]),
    Case("a provider's x402 budget 1% left", "OracleX402BudgetNearlySpent",
         x402(10, "per_provider", "paid-local"), "1m", [x402_budget("1%", "per_provider", "paid-local")]),
    Case("x402 budget half left", "OracleX402BudgetNearlySpent", x402(500), "1m"),

    Case("every breaker open or half-open", "OracleAllBreakersOpen", breakers(closed_a=0), "3m",
         [breakers_open()]),
    Case("one breaker closed", "OracleAllBreakersOpen", breakers(closed_a=1), "3m"),
    Case("no deployment at all", "OracleAllBreakersOpen", HEALTHY_UP, "3m"),

    Case("26 of 32 payments unresolved, over two providers", "OracleX402UnresolvedPayments",
         payments({("p1", "reserved"): 10, ("p1", "sent"): 5, ("p2", "signed"): 5, ("p2", "unknown"): 6,
                   ("p1", "settled"): 100, ("p2", "rejected"): 3, ("p2", "expired"): 2}), "11m", [unresolved(26)]),
    Case("20 of 32 unresolved, many settled", "OracleX402UnresolvedPayments",
         payments({("p1", "reserved"): 10, ("p1", "signed"): 5, ("p1", "sent"): 5, ("p1", "settled"): 100}), "11m"),
    Case("26 unresolved for 5m only", "OracleX402UnresolvedPayments",
         payments({("p1", "unknown"): 26}), "5m"),

    Case("an RPC error a second", "OracleRpcErrors", [chain_series("oracle_rpc_errors_total", "0+60x15")], "11m",
         [rpc_errors("1.00")]),
    Case("an RPC error a minute", "OracleRpcErrors", [chain_series("oracle_rpc_errors_total", "0+1x15")], "11m"),
]


def alert_names() -> list[str]:
    return re.findall(r"^\s*- alert: (\w+)\s*$", ALERTS.read_text(), re.MULTILINE)


def test_rules_load() -> None:
    result = run_promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in result.stdout


def test_each_alert_fires_when_it_should_and_only_then(tmp_path: Path) -> None:
    names = alert_names()
    assert len(names) == len(set(names)) >= 12
    for name in names:  # every alert shown firing and shown silent
        outcomes = {bool(c.firing) for c in CASES if c.alertname == name}
        assert outcomes == {True, False}, f"{name}: a case where it fires and one where it does not, please"
    assert {c.alertname for c in CASES} <= set(names)

    tests = [{"name": f"{c.alertname}: {c.name}", "interval": "1m", "input_series": c.input_series,
              "alert_rule_test": [{"eval_time": c.eval_time, "alertname": c.alertname, "exp_alerts": c.firing}]}
             for c in CASES]
    unit_tests = tmp_path / "alerts_test.yml"  # JSON is YAML
    unit_tests.write_text(json.dumps({"rule_files": [str(ALERTS)], "evaluation_interval": "1m", "tests": tests},
                                     indent=1))
    result = run_promtool("test", "rules", str(unit_tests))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


# --- the systemd unit -------------------------------------------------------------------------------------

EXEC_START = "/opt/oracle/.venv/bin/python -m oracle run --config /etc/oracle/config.toml --log-format json"
SERVICE = {
    "Type": "simple",
    "User": "oracle",
    "ExecStart": EXEC_START,
    "WorkingDirectory": "/var/lib/oracle",
    "EnvironmentFile": "/etc/oracle/oracle.env",
    "ExecReload": "/bin/kill -HUP $MAINPID",
    "KillSignal": "SIGTERM",
    "TimeoutStopSec": "30",
    "Restart": "on-failure",
    "RestartSec": "5",
    "RestartPreventExitStatus": "2",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ReadWritePaths": "/var/lib/oracle",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
    "UMask": "0077",
    "StateDirectory": "oracle",
}


def read_unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    unit.read_string(UNIT.read_text())
    return unit


def test_unit_settings() -> None:
    unit = read_unit()
    assert set(unit.sections()) == {"Unit", "Service", "Install"}
    service = dict(unit["Service"])
    assert {k: service.get(k) for k in SERVICE} == SERVICE
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    # the keys come from the environment file only: nothing secret in the unit, which anyone may read
    assert "Environment" not in service
    assert not re.search(r"0x[0-9a-fA-F]{64}", UNIT.read_text())


def test_unit_exec_start_exits_2_on_a_bad_config(tmp_path: Path) -> None:
    """The daemon takes the unit's arguments, and a config error is exit 2: the status the unit does not
    restart on."""
    bad = tmp_path / "config.toml"
    bad.write_text('[store]\npath = "oracle.sqlite"\nbogus = 1\n')
    argv = shlex.split(read_unit()["Service"]["ExecStart"])
    argv[0] = sys.executable
    argv[argv.index("--config") + 1] = str(bad)
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "store.bogus: Extra inputs are not permitted" in result.stderr


def test_unit_verifies(tmp_path: Path) -> None:
    """systemd's own check, where systemd-analyze is installed. The daemon's interpreter (/opt/oracle/.venv)
    is not on a build machine, so the copy checked runs this test's interpreter instead."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: test_unit_settings checks the unit's keys")
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace(EXEC_START.split()[0], sys.executable))
    result = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=120,
                            check=False)
    # unknown keys and bad values are warnings with exit 0: any line about the unit fails the test
    assert result.returncode == 0 and UNIT.name not in result.stdout + result.stderr, result.stdout + result.stderr
