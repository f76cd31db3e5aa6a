"""The trading agent (`python -m bots.trading_agent`) as a child process, asking a fresh RiskSentinel for
scores that the real daemon answers on anvil through the local model server (a context holding
`[[score:N]]` is scored N): a score above reduce_above halves the deposit, with the receipt hash the
sentinel emitted; one at the sentinel's threshold pauses the vault and is recorded as not acted, the
vault left paused; a score between the bounds after a reduce holds, one below reopen_below reopens; a
stale score is ignored; SIGKILLs mid-run leave exactly one decision per request, and one between a
withdrawal being sent and mined withdraws once; on another chain (answered by the test) decisions are
on paper, and a reorg is recorded without deciding the result twice; bad config is one line and exit
2, a node that does not answer exit 1."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from bots.trading_agent.book import Book, Decision
from bots.trading_agent.rule import Action, Bounds, PositionState, decide, target_wei
from oracle.chain.calldata import fulfill_calldata
from oracle.config import ConfigError
from oracle.devnet import LocalStack
from oracle.devnet.answer import send_raw_call, signer_for, success_response
from oracle.devnet.harness import wait_until, write_config
from oracle.devnet.stack import StackSettings
from oracle.events import REQUESTED_TOPIC, RequestedEvent, decode_requested
from tests.bots.process import REPO, BotProcess, answering_stack
from tests.daemon.helpers import anvil_rpc
from tests.risk_sentinel import Pair, deploy_pair

KEY_ENV = "TRADING_AGENT_KEY"
POSITION = 10**18
def deposit_of(stack: LocalStack, pair: Pair) -> int:
    return int(stack.contract("ExampleVault", pair.vault).functions.deposits(stack.keys.bots.address).call())


def sentinel_events(stack: LocalStack, pair: Pair, name: str) -> list[Any]:
    event = getattr(stack.contract("RiskSentinel", pair.sentinel).events, name)
    return list(event().get_logs(from_block=0))


class Agent(BotProcess):
    """`python -m bots.trading_agent` as a child process, its output in a log file; the context it asks
    about is a file the test rewrites."""

    def __init__(self, stack: LocalStack, tmp: Path, pair: Pair, score: int, **agent: Any) -> None:
        self.stack, self.tmp, self.pair = stack, tmp, pair
        self.store = tmp / "trading_agent.sqlite"
        self.context = tmp / "context.txt"
        self.set_score(score)
        self.chain: dict[str, Any] = {"rpc_url": stack.rpc_url, "ws_url": stack.ws_url,
                                      "oracle": stack.addresses["AIOracle"], "confirmations": 0}
        self.agent: dict[str, Any] = {"key_env": KEY_ENV, "store": str(self.store), "interval": 3600,
                                      "max_score_age": 600, "reduce_above": 50, "close_above": 70, "reopen_below": 30,
                                      "position_wei": str(POSITION), **agent}
        self.asset: dict[str, Any] = {"name": "ETH", "sentinel": pair.sentinel, "vault": pair.vault,
                                      "context_file": str(self.context)}
        super().__init__("bots.trading_agent", tmp / "trading_agent.toml", {KEY_ENV: stack.keys.bots.private_key.hex()},
                         tmp / "agent.log", running="trading agent running")
        self.write()

    def write(self) -> None:
        write_config({"chain": self.chain, "agent": self.agent, "assets": [self.asset]}, self.config)

    def set_score(self, score: int) -> None:
        self.context.write_text(f"ETH market: funding rates, liquidations, depth. [[score:{score}]]")

    def decisions(self) -> list[Decision]:
        try:
            book = Book.open_read_only(self.store)
        except ConfigError:  # not there yet, or being created
            return []
        try:
            return book.decisions()
        finally:
            book.close()

    def decided(self, predicate: Callable[[Decision], bool]) -> list[Decision]:
        """Finished decisions (acted on, or not acting) that match."""
        return [d for d in self.decisions() if d.outcome != "pending" and predicate(d)]

    def has_decision_on(self, score: int, after: int) -> bool:
        """Whether a decision on `score` is written among those after the first `after`."""
        return any(d.score == score for d in self.decisions()[after:])


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """anvil with the oracle deployed and the daemon answering through the local model server."""
    with answering_stack(tmp_path_factory.mktemp("trading-daemon")) as answering:
        yield answering.stack


# ---------------------------------------------------------------- the tests


def test_a_score_above_reduce_above_halves_the_deposit_with_the_sentinels_receipt_hash(chain: LocalStack,
                                                                                       tmp_path: Path) -> None:
    pair = deploy_pair(chain)
    with Agent(chain, tmp_path, pair, score=60) as agent:
        agent.until(lambda: bool(agent.decided(lambda d: d.action == "reduce")), "a reduce")
        assert agent.stop() == 0
    (decision,) = agent.decisions()
    (scored,) = sentinel_events(chain, pair, "RiskScored")
    assert decision.request_id == bytes(scored["args"]["requestId"])
    assert (decision.score, scored["args"]["score"]) == (60, 60)
    assert decision.receipt_hash == "0x" + bytes(scored["args"]["receiptHash"]).hex()
    assert decision.outcome == f"withdrew {POSITION // 2} wei" and decision.tx_hash.startswith("0x")
    assert deposit_of(chain, pair) == POSITION // 2  # opened at the full position at start, then halved
    log = agent.log()
    assert f"ETH position open: deposited {POSITION} wei" in log
    assert f"risk check asked: request 0x{decision.request_id.hex()}" in log
    assert f"ETH score 60 model {decision.model} receipt {decision.receipt_hash} -> reduce: withdrew " \
           f"{POSITION // 2} wei (tx {decision.tx_hash})" in log
    listed = agent.command("decisions")
    assert listed.returncode == 0 and decision.line() in listed.stdout, listed.stdout + listed.stderr


def test_a_score_at_the_sentinels_threshold_pauses_the_vault_and_the_agent_does_not_act(chain: LocalStack,
                                                                                       tmp_path: Path) -> None:
    pair = deploy_pair(chain)
    vault = chain.contract("ExampleVault", pair.vault)
    with Agent(chain, tmp_path, pair, score=90) as agent:
        agent.until(lambda: bool(agent.decided(lambda d: d.action == "close")), "a close")
        assert agent.stop() == 0
    (decision,) = agent.decisions()
    assert (decision.score, decision.outcome, decision.tx_hash) == (90, "vault paused: not acted", "")
    assert vault.functions.paused().call()  # the sentinel paused it; the agent left it so
    assert len(sentinel_events(chain, pair, "VaultPaused")) == 1
    assert list(vault.events.Unpaused().get_logs(from_block=0)) == []
    assert deposit_of(chain, pair) == POSITION  # nothing withdrawn from a paused vault
    assert "-> close: vault paused: not acted" in agent.log()


def test_between_the_bounds_nothing_changes_until_a_score_below_reopen_below(chain: LocalStack,
                                                                           tmp_path: Path) -> None:
    pair = deploy_pair(chain)
    with Agent(chain, tmp_path, pair, score=60, interval=1) as agent:
        agent.until(lambda: bool(agent.decided(lambda d: d.action == "reduce")), "a reduce")
        agent.set_score(40)  # below reduce_above, above reopen_below
        agent.until(lambda: bool(agent.decided(lambda d: d.score == 40)), "a score of 40")
        assert deposit_of(chain, pair) == POSITION // 2
        agent.set_score(25)
        agent.until(lambda: bool(agent.decided(lambda d: d.score == 25)), "a score of 25")
        assert agent.stop() == 0
    scored = [d for d in agent.decisions() if d.score is not None]
    actions = {(d.score, d.action) for d in scored}
    assert (40, "hold") in actions and (25, "reopen") in actions and (60, "reduce") in actions
    assert all(d.action == "hold" for d in scored if d.score == 40)
    assert next(d.action for d in scored if d.score == 25) == "reopen"
    assert deposit_of(chain, pair) == POSITION


def test_a_score_older_than_max_score_age_is_ignored(chain: LocalStack, tmp_path: Path) -> None:
    pair = deploy_pair(chain)
    with Agent(chain, tmp_path, pair, score=60, max_score_age=30) as agent:
        agent.chain["confirmations"] = 1  # the result is decided on once the test has mined the next block
        agent.write()
        agent.until(lambda: bool(sentinel_events(chain, pair, "RiskScored")), "the sentinel's score")
        anvil_rpc(chain, "evm_increaseTime", [120])
        anvil_rpc(chain, "anvil_mine", [1])
        agent.until(lambda: bool(agent.decided(lambda d: True)), "a decision")
        assert agent.stop() == 0
    (decision,) = agent.decisions()
    assert (decision.score, decision.action) == (60, "ignored")
    assert decision.outcome.startswith("stale (the score is ") and "max_score_age 30)" in decision.outcome
    assert deposit_of(chain, pair) == POSITION
    assert "-> ignored: stale" in agent.log()


def test_sigkill_mid_run_leaves_one_decision_per_result_and_the_deposit_where_the_book_says(
        chain: LocalStack, tmp_path: Path) -> None:
    pair = deploy_pair(chain)
    agent = Agent(chain, tmp_path, pair, score=60, interval=1)
    try:
        for score in (60, 20, 75, 20):  # reduce, reopen, close, reopen: a withdrawal or deposit each
            agent.set_score(score)
            seen = len(agent.decisions())
            agent.start()
            # killed as soon as a decision on the new score is seen written, which may be before its
            # acting finished, or while the next check is on its way
            agent.until(partial(agent.has_decision_on, score, seen), f"a decision on a score of {score}")
            agent.kill()
        agent.agent["interval"] = 3600  # no more checks (the last was a second ago): let everything settle
        agent.write()
        requested = Requests(chain, pair)
        agent.start()
        agent.until(lambda: requested.all_settled()
                    and len(agent.decided(lambda d: True)) == len(requested.ids()), "a decision on every request")
        assert agent.stop() == 0
    finally:
        agent.__exit__()
    decisions = agent.decisions()
    by_request = {d.request_id: d for d in decisions}
    assert len(by_request) == len(decisions) == len(requested.ids())  # one row per request, none twice
    assert set(by_request) == requested.ids()
    scored = sentinel_events(chain, pair, "RiskScored")
    failed = sentinel_events(chain, pair, "RiskCheckFailed")
    for event in scored:  # every result the sentinel took is decided on with its score and receipt hash
        decision = by_request[bytes(event["args"]["requestId"])]
        assert (decision.score, decision.receipt_hash) == (event["args"]["score"],
                                                           "0x" + bytes(event["args"]["receiptHash"]).hex())
        assert decision.action in ("close", "reduce", "reopen", "hold"), decision
    for event in failed:
        assert by_request[bytes(event["args"]["requestId"])].action == "no score"
    taken = {bytes(e["args"]["requestId"]) for e in [*scored, *failed]}
    assert all(d.outcome.startswith("superseded") for d in decisions if d.request_id not in taken)
    assert all(d.outcome != "pending" for d in decisions)
    assert {"reduce", "reopen", "close"} <= {d.action for d in decisions}
    state = {"open": POSITION, "reduced": POSITION // 2, "closed": 0}
    book = sqlite3.connect(agent.store)
    (position,) = book.execute("SELECT state FROM positions WHERE asset='ETH'").fetchone()
    book.close()
    assert deposit_of(chain, pair) == state[position]


def test_a_restart_keeps_the_rhythm_of_risk_checks(chain: LocalStack, tmp_path: Path) -> None:
    """Each check costs a fee: a restart sends the next one an interval after the last, not at once."""
    pair = deploy_pair(chain)
    agent = Agent(chain, tmp_path, pair, score=40)
    try:
        agent.start()
        agent.until(lambda: "risk check asked" in agent.log(), "the first check")
        assert agent.stop() == 0
        agent.start()
        agent.until(lambda: "next risk check at" in agent.this_run(), "the restart's schedule")
        assert agent.stop() == 0
    finally:
        agent.__exit__()
    assert agent.log().count("risk check asked") == 1
    assert len(Requests(chain, pair).ids()) == 1  # counted on-chain: one check sent, by the first run


def test_a_crash_after_the_withdrawal_is_sent_finishes_the_decision_without_withdrawing_again(
        chain: LocalStack, tmp_path: Path) -> None:
    pair = deploy_pair(chain)
    vault = chain.contract("ExampleVault", pair.vault)
    agent = Agent(chain, tmp_path, pair, score=60)
    agent.chain["confirmations"] = 1  # the result is decided on once the test mines the block after it
    agent.write()
    try:
        agent.start()
        agent.until(lambda: bool(sentinel_events(chain, pair, "RiskScored")), "the sentinel's score")
        anvil_rpc(chain, "evm_setAutomine", [False])
        try:
            anvil_rpc(chain, "anvil_mine", [1])
            # the decision is written and its withdrawal sent, but nothing is mined: the agent waits for it
            agent.until(lambda: [d.outcome for d in agent.decisions()] == ["pending"], "a pending decision")
            wait_until(lambda: chain.w3.eth.get_block("pending")["transactions"], 30, what="the withdrawal sent")
            agent.kill()
            anvil_rpc(chain, "anvil_mine", [1])  # the withdrawal the killed agent sent lands
        finally:
            anvil_rpc(chain, "evm_setAutomine", [True])
        assert deposit_of(chain, pair) == POSITION // 2
        agent.start()
        agent.until(lambda: bool(agent.decisions()) and agent.decisions()[0].outcome != "pending",
                    "the decision finished")
        assert agent.stop() == 0
    finally:
        agent.__exit__()
    decision = agent.decisions()[0]
    assert (decision.action, decision.outcome, decision.tx_hash) == ("reduce", f"at target: {POSITION // 2} wei", "")
    withdrawn = list(vault.events.Withdrawn().get_logs(from_block=0))
    assert [e["args"]["amount"] for e in withdrawn] == [POSITION // 2]  # once, not again after the restart
    assert deposit_of(chain, pair) == POSITION // 2


class Requests:
    """The sentinel's requests as the oracle's events say."""

    def __init__(self, stack: LocalStack, pair: Pair) -> None:
        self.stack, self.pair = stack, pair
        self.oracle = stack.contract("AIOracle")

    def events(self) -> list[RequestedEvent]:
        logs = self.stack.w3.eth.get_logs({"address": self.oracle.address, "fromBlock": 0,
                                           "topics": ["0x" + REQUESTED_TOPIC.hex()]})
        events = [decode_requested(log) for log in logs]
        return [e for e in events if e.params.callback.lower() == self.pair.sentinel.lower()]

    def ids(self) -> set[bytes]:
        return {e.request_id for e in self.events()}

    def all_settled(self) -> bool:
        settled = {bytes(e["args"]["requestId"]) for e in self.oracle.events.Fulfilled().get_logs(from_block=0)}
        return self.ids() <= settled


@pytest.fixture(scope="module")
def other_chain() -> Iterator[LocalStack]:
    """anvil under another chain id, with no daemon: the test answers the sentinel's requests itself."""
    with LocalStack(StackSettings(chain_id=1337)) as stack:
        yield stack


def answer_with(stack: LocalStack, pair: Pair, score: int) -> bytes:
    """The sentinel's one open request answered with `score`; the calldata sent, to send again."""
    (request,) = Requests(stack, pair).events()
    response = success_response(request, score)
    data = fulfill_calldata(response, request.commitment, signer_for(stack).sign_response(response))
    send_raw_call(stack, stack.addresses["AIOracle"], data, stack.keys.signer)
    return data


def test_on_another_chain_decisions_are_on_paper_and_nothing_is_sent(other_chain: LocalStack, tmp_path: Path) -> None:
    pair = deploy_pair(other_chain)
    with Agent(other_chain, tmp_path, pair, score=60) as agent:
        agent.until(lambda: "risk check asked" in agent.log(), "a risk check")
        answer_with(other_chain, pair, 60)
        agent.until(lambda: bool(agent.decided(lambda d: True)), "a decision")
        assert agent.stop() == 0
    (decision,) = agent.decisions()
    assert (decision.score, decision.action, decision.tx_hash) == (60, "reduce", "")
    assert decision.outcome == f"paper: target {POSITION // 2} wei, nothing sent"
    assert deposit_of(other_chain, pair) == 0  # not even opened
    assert agent.log().count("paper mode: chain 1337 is not the local chain") == 1


def test_a_reorg_is_recorded_and_the_result_included_again_is_not_decided_twice(other_chain: LocalStack,
                                                                               tmp_path: Path) -> None:
    pair = deploy_pair(other_chain)
    with Agent(other_chain, tmp_path, pair, score=60) as agent:
        agent.until(lambda: "risk check asked" in agent.log(), "a risk check")
        snapshot = anvil_rpc(other_chain, "evm_snapshot", [])
        data = answer_with(other_chain, pair, 60)
        agent.until(lambda: bool(agent.decided(lambda d: True)), "a decision")
        anvil_rpc(other_chain, "evm_revert", [snapshot])
        anvil_rpc(other_chain, "anvil_mine", [3])  # a longer chain without the answer
        send_raw_call(other_chain, other_chain.addresses["AIOracle"], data, other_chain.keys.signer)  # and again
        agent.until(lambda: "was removed by a reorg" in agent.log(), "the retraction")
        (scored,) = sentinel_events(other_chain, pair, "RiskScored")  # the answer as it stands now
        agent.until(lambda: f"block {scored['blockNumber']} was decided on before (reduce); not decided again"
                    in agent.log(), "the result included again")
        listed = agent.command("decisions")
        assert agent.stop() == 0
    (decision,) = agent.decisions()
    assert (decision.request_id, decision.action) == (bytes(scored["args"]["requestId"]), "reduce")
    assert agent.log().count("-> reduce:") == 1
    assert listed.returncode == 0 and "retracted" in listed.stdout and decision.line() in listed.stdout


RULE = [  # (state, score) -> (action, state after), with reopen_below 30, reduce_above 50, close_above 70
    ("open", 49, "hold", "open"), ("open", 50, "reduce", "reduced"), ("open", 70, "close", "closed"),
    ("reduced", 69, "hold", "reduced"), ("reduced", 31, "hold", "reduced"), ("reduced", 30, "reopen", "open"),
    ("reduced", 90, "close", "closed"), ("closed", 69, "hold", "closed"), ("closed", 50, "hold", "closed"),
    ("closed", 30, "reopen", "open"), ("closed", 70, "close", "closed"), ("open", 0, "hold", "open"),
]


@pytest.mark.parametrize(("state", "score", "action", "after"), RULE)
def test_the_rule_trades_only_across_a_bound_and_holds_between_them(state: str, score: int, action: str,
                                                                    after: str) -> None:
    assert decide(PositionState(state), score, Bounds(30, 50, 70)) == (Action(action), PositionState(after))
    assert target_wei(PositionState(after), POSITION) == {"open": POSITION, "reduced": POSITION // 2,
                                                          "closed": 0}[after]


BAD_CONFIG: dict[str, tuple[Callable[[Agent], object], str]] = {  # case: (change, the line says)
    "bounds above the threshold": (lambda a: a.agent.update(close_above=85, reduce_above=75),
                                   "agent.close_above 85 is not below the pauseThreshold 80 of assets[0] (ETH)."
                                   "sentinel"),
    "a key that does not own the sentinel": (lambda a: a.env.update({KEY_ENV: a.stack.keys.agents.private_key.hex()}),
                                             "is owned by 0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65, not by "
                                             "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc (the key in "
                                             "TRADING_AGENT_KEY)"),
    "no context": (lambda a: a.asset.pop("context_file"),
                   "assets[0] (ETH): give exactly one of context (the text) or context_file"),
    "a context file that is not there": (lambda a: a.asset.update(context_file=str(a.tmp / "nowhere.txt")),
                                         "assets[0] (ETH).context_file "),
    "unordered bounds": (lambda a: a.agent.update(reopen_below=60),
                         "agent: bounds must be ordered reopen_below < reduce_above < close_above, not 60, 50, 70"),
    "unknown key": (lambda a: a.agent.update(intervall=5), "agent.intervall: unknown setting"),
    "no key": (lambda a: a.env.pop(KEY_ENV), "environment variable TRADING_AGENT_KEY (agent.key_env) is not set"),
}


def test_bad_config_is_one_line_saying_what_to_change_and_exit_2(chain: LocalStack, tmp_path: Path) -> None:
    pair = deploy_pair(chain)
    running = {}
    for case, (change, _) in BAD_CONFIG.items():
        folder = tmp_path / case.replace(" ", "-")
        folder.mkdir()
        agent = Agent(chain, folder, pair, score=10)
        change(agent)
        agent.write()
        running[case] = subprocess.Popen([sys.executable, "-m", "bots.trading_agent", "--config", str(agent.config)],
                                         cwd=REPO, env=agent.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True)
    for case, process in running.items():
        out, err = process.communicate(timeout=60)
        if case == "a context file that is not there":
            assert "nowhere.txt: No such file or directory: write the context there" in err
        expected = BAD_CONFIG[case][1]
        assert process.returncode == 2, (case, out, err)
        assert len(err.splitlines()) == 1 and expected in err, (case, err)
        assert "risk check asked" not in out, case
    assert sentinel_events(chain, pair, "RiskScored") == [] and deposit_of(chain, pair) == 0


def test_a_node_that_does_not_answer_is_exit_1(tmp_path: Path) -> None:
    config = write_config({
        "chain": {"rpc_url": "http://127.0.0.1:9", "oracle": "0x5FbDB2315678afecb367f032d93F642f64180aa3"},
        "agent": {"key_env": KEY_ENV, "store": str(tmp_path / "agent.sqlite"), "position_wei": str(POSITION)},
        "assets": [{"name": "ETH", "sentinel": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
                    "vault": "0x5FbDB2315678afecb367f032d93F642f64180aa3", "context": "ETH [[score:10]]"}]},
        tmp_path / "agent.toml")
    done = subprocess.run([sys.executable, "-m", "bots.trading_agent", "--config", str(config)], cwd=REPO,
                          env={**os.environ, KEY_ENV: "0x" + "11" * 32}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "does not answer" in done.stderr, done.stderr
