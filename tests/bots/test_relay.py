"""The webhook relay (`python -m bots.relay`) as a child process, following a daemon that answers on
anvil and pushing to receivers in this process: a receiver that answers 503 for a while gets every result
once deduplicated by webhook id, each signature checked by a Standard Webhooks verifier written from the
spec; a message refused with 400 is dead at once while the later ones are delivered, listed by
`dead-letters` and delivered by `--resend` once the receiver is fixed; a filter sends only what matches;
bad config input is one line and exit 2."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from oracle.devnet import LocalStack
from oracle.devnet.answer import ask
from oracle.devnet.harness import write_config
from oracle.devnet.loopback import LoopbackServer
from oracle.events import RequestedEvent
from oracle.protocol import ResultSpec, ResultType
from tests.bots.process import REPO, BotProcess, answering_stack
from tests.daemon.helpers import anvil_rpc, ask_params, wait_delivered

SECRET = "whsec_" + base64.b64encode(b"relay test key, 32 bytes long!!!").decode()
NEW_SECRET = "whsec_" + base64.b64encode(b"the key it is rotated to, 32 B.!").decode()
TOLERANCE = 5 * 60  # seconds a timestamp may be off, as the spec's verifiers allow


# ---------------------------------------------------------------- a Standard Webhooks verifier, from the spec


class BadSignature(Exception):
    pass


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None) -> None:
    """Standard Webhooks: the key is the base64 after `whsec_`; `webhook-signature` holds space-separated
    `v<n>,<base64>` entries, of which a `v1` one must be HMAC-SHA256 over `{id}.{timestamp}.{body}`; a
    timestamp more than 5 minutes from now is refused (a replay)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    message_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    if abs((time.time() if now is None else now) - int(timestamp)) > TOLERANCE:
        raise BadSignature(f"timestamp {timestamp} is more than 5 minutes off")
    expected = base64.b64encode(hmac.new(key, f"{message_id}.{timestamp}.".encode() + body,
                                         hashlib.sha256).digest())
    for entry in headers["webhook-signature"].split(" "):
        version, _, signature = entry.partition(",")
        if version == "v1" and hmac.compare_digest(signature.encode(), expected):
            return
    raise BadSignature("no v1 signature matches")


# ---------------------------------------------------------------- receivers and the relay process


@dataclass(frozen=True)
class Arrival:
    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.body)
        return doc

    @property
    def request_id(self) -> bytes:
        return bytes.fromhex(self.doc["data"]["request_id"][2:])


class Receiver(LoopbackServer):
    """A webhook endpoint that keeps every request and answers with the status `answer` picks for it."""

    def __init__(self, answer: Callable[[Arrival, list[Arrival]], int] = lambda _a, _seen: 200) -> None:
        super().__init__()
        self.answer = answer
        self._arrivals: list[Arrival] = []
        self._lock = threading.Lock()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        return app

    async def _hook(self, request: web.Request) -> web.Response:
        arrival = Arrival({k.lower(): v for k, v in request.headers.items()}, await request.read(), 0)
        with self._lock:
            status = self.answer(arrival, list(self._arrivals))
            self._arrivals.append(Arrival(arrival.headers, arrival.body, status))
        return web.Response(status=status, text="busy" if status >= 500 else "",
                            headers={"Retry-After": "1"} if status == 503 else {})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def arrivals(self) -> list[Arrival]:
        with self._lock:
            return list(self._arrivals)

    def taken(self) -> dict[str, Arrival]:
        """What it answered 2xx to, by webhook id (a repeat of an id is the same message)."""
        return {a.webhook_id: a for a in self.arrivals() if 200 <= a.answered < 300}


def endpoint(name: str, url: str, env: str, **more: Any) -> dict[str, Any]:
    return {"name": name, "url": url, "secret_env": env, "timeout": 5.0, **more}


class Relay(BotProcess):
    """`python -m bots.relay` as a child process, its output in a log file."""

    def __init__(self, tmp: Path, chain: dict[str, Any], endpoints: list[dict[str, Any]],
                 env: Mapping[str, str]) -> None:
        super().__init__("bots.relay", write_config({"chain": chain, "store": {"path": str(tmp / "relay.sqlite")},
                                                     "endpoints": endpoints}, tmp / "relay.toml"), env,
                         tmp / "relay.log", running="relay running")

    def until(self, predicate: Callable[[], bool], what: str, timeout: float = 45) -> None:
        super().until(predicate, what, timeout)


# ---------------------------------------------------------------- results the daemon answered


@dataclass
class Answered:
    stack: LocalStack
    chain: dict[str, Any]  # the relay's [chain] table, following from just before the first request
    events: list[RequestedEvent]  # in the order asked; the last (a bool) settles last

    @property
    def request_ids(self) -> set[bytes]:
        return {e.request_id for e in self.events}

    def of_type(self, kind: ResultType) -> set[bytes]:
        return {e.request_id for e in self.events if e.params.result.kind == kind}


class _On:
    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack


SPECS = [ResultSpec(ResultType.UINT, min=0, max=100), ResultSpec(ResultType.TEXT, max_bytes=40),
         ResultSpec(ResultType.BOOL), ResultSpec(ResultType.CHOICE, labels=("yes", "no")),
         ResultSpec(ResultType.UINT, min=5, max=9)]


@pytest.fixture(scope="module")
def answered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Answered]:
    with answering_stack(tmp_path_factory.mktemp("relay-daemon")) as answering:
        stack = answering.stack
        on = _On(stack)
        start = stack.w3.eth.block_number + 1
        events = [ask(stack, ask_params(on, spec, prompt=f"question {i}")) for i, spec in enumerate(SPECS)]
        for event in events:
            wait_delivered(on, event.request_id)
        last = ask(stack, ask_params(on, ResultSpec(ResultType.BOOL), prompt="the last question"))
        wait_delivered(on, last.request_id)
        anvil_rpc(stack, "anvil_mine", [1])  # the last result one block deep: the relay's default depth
        chain = {"rpc_url": stack.rpc_url, "ws_url": stack.ws_url, "oracle": stack.addresses["AIOracle"],
                 "from_block": start}
        yield Answered(stack, chain, [*events, last])


# ---------------------------------------------------------------- the tests


def test_a_receiver_that_is_down_for_a_while_gets_every_result_once_each_signed(answered: Answered,
                                                                               tmp_path: Path) -> None:
    receiver = Receiver(lambda _arrival, seen: 503 if len(seen) < 4 else 200).start()
    # the variable holds the new secret and the one being rotated out: a receiver with either verifies
    with Relay(tmp_path, answered.chain, [endpoint("hooks", receiver.url, "HOOKS_SECRET")],
               {"HOOKS_SECRET": f"{NEW_SECRET} {SECRET}"}) as relay:
        try:
            relay.until(lambda: len(receiver.taken()) == len(answered.events), "every result taken")
            assert relay.stop() == 0
        finally:
            receiver.stop()

    arrivals = receiver.arrivals()
    taken = receiver.taken()
    assert sorted(a.request_id for a in taken.values()) == sorted(answered.request_ids)  # each once, by id
    assert [a.answered for a in arrivals[:4]] == [503] * 4 and len(arrivals) > len(taken)  # retried
    for arrival in arrivals:
        verify(SECRET, arrival.headers, arrival.body)
        verify(NEW_SECRET, arrival.headers, arrival.body)
        assert arrival.body == taken[arrival.webhook_id].body  # a retry sends the same bytes
        assert arrival.headers["content-type"] == "application/json"
    for arrival in taken.values():
        doc = arrival.doc
        assert doc["type"] == "oracle.result.settled"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", doc["timestamp"])
        assert (doc["data"]["event"], doc["data"]["status"]) == ("fulfilled", "success")
        assert re.fullmatch(r"msg_[0-9a-f]{32}", arrival.webhook_id)

    sample = taken[next(iter(taken))]
    with pytest.raises(BadSignature):
        verify(SECRET, sample.headers, sample.body.replace(b'"success"', b'"failure"'))  # a tampered body
    with pytest.raises(BadSignature):
        verify(SECRET, sample.headers, sample.body, now=int(sample.headers["webhook-timestamp"]) + TOLERANCE + 1)
    unversioned = " ".join(entry.removeprefix("v1,") for entry in sample.headers["webhook-signature"].split())
    with pytest.raises(BadSignature):  # a signature without its version prefix is not taken
        verify(SECRET, {**sample.headers, "webhook-signature": unversioned}, sample.body)

    log = relay.log()
    assert log.count(": delivered (200)") == len(answered.events)
    assert "attempt 1 failed: answered 503: busy; next in" in log
    for secret in (SECRET, NEW_SECRET):
        assert secret.removeprefix("whsec_") not in log


def test_a_refused_message_is_dead_at_once_while_later_ones_go_and_is_resent_once_fixed(answered: Answered,
                                                                                      tmp_path: Path) -> None:
    refused: set[str] = set()

    def picky(arrival: Arrival, seen: list[Arrival]) -> int:
        if not seen:
            refused.add(arrival.webhook_id)  # the first message it gets, until it is fixed
        return 400 if arrival.webhook_id in refused else 200

    receiver = Receiver(picky).start()
    with Relay(tmp_path, answered.chain, [endpoint("picky", receiver.url, "PICKY_SECRET")],
               {"PICKY_SECRET": SECRET}) as relay:
        try:
            relay.until(lambda: len(receiver.taken()) == len(answered.events) - 1, "the later results")
            (dead_id,) = refused
            assert [a.answered for a in receiver.arrivals() if a.webhook_id == dead_id] == [400]  # not retried

            listed = relay.command("dead-letters")
            assert listed.returncode == 0, listed.stderr
            (row,) = [line for line in listed.stdout.splitlines() if not line.startswith("\t")]
            number, name, webhook_id, attempts, status, event = row.split("\t")
            assert (name, webhook_id, attempts, status) == ("picky", dead_id, "attempts 1", "last status 400")
            assert event.startswith("settled 31337:") and "refused it" in listed.stdout

            still = relay.command("dead-letters", "--resend", number)  # the receiver still refuses it
            assert still.returncode == 1 and "still dead: answered 400" in still.stdout
            assert "attempts 2" in relay.command("dead-letters").stdout

            refused.clear()  # fixed
            sent = relay.command("dead-letters", "--resend", number)
            assert sent.returncode == 0, sent.stdout + sent.stderr
            assert f"{number}\tpicky\t{dead_id}\tdelivered (200)" in sent.stdout
            assert relay.command("dead-letters").stdout.strip() == "no dead messages"
            assert relay.stop() == 0
        finally:
            receiver.stop()

    taken = receiver.taken()
    assert sorted(a.request_id for a in taken.values()) == sorted(answered.request_ids)
    verify(SECRET, taken[dead_id].headers, taken[dead_id].body)
    assert "dead after 1 attempt(s): answered 400" in relay.log()


def test_sigkills_lose_nothing_and_a_repeat_keeps_its_id_and_body(answered: Answered, tmp_path: Path) -> None:
    """SIGKILLed after its first deliveries and again at once after a restart: every result is delivered,
    and a message sent twice (its 2xx lost with the process) carries the same id and body."""
    receiver = Receiver().start()
    relay = Relay(tmp_path, answered.chain, [endpoint("hooks", receiver.url, "HOOKS_SECRET")],
                  {"HOOKS_SECRET": SECRET})
    try:
        relay.start()
        relay.until(lambda: len(receiver.taken()) >= 2, "the first deliveries")
        relay.kill()
        relay.start()
        relay.until(lambda: "relay running" in relay.this_run(), "the restarted relay")
        relay.kill()  # killed again, whatever it was doing
        relay.start()
        relay.until(lambda: len(receiver.taken()) == len(answered.events), "every result taken")
        assert relay.stop() == 0
    finally:
        relay.__exit__()
        receiver.stop()
    taken = receiver.taken()
    assert sorted(a.request_id for a in taken.values()) == sorted(answered.request_ids)
    for arrival in receiver.arrivals():
        assert arrival.body == taken[arrival.webhook_id].body
        verify(SECRET, arrival.headers, arrival.body)


def test_a_redirect_is_not_followed_and_a_message_retried_past_its_window_is_dead(answered: Answered,
                                                                                 tmp_path: Path) -> None:
    moved = Receiver(lambda _a, _seen: 302).start()
    down = Receiver(lambda _a, _seen: 503).start()
    endpoints = [endpoint("moved", moved.url, "MOVED_SECRET"),
                 endpoint("down", down.url, "DOWN_SECRET", max_retry_hours=0.0005)]  # 1.8 s of retries
    with Relay(tmp_path, answered.chain, endpoints, {"MOVED_SECRET": SECRET, "DOWN_SECRET": SECRET}) as relay:
        try:
            def dead() -> list[str]:
                return [line for line in relay.command("dead-letters").stdout.splitlines()
                        if not line.startswith("\t")]
            relay.until(lambda: len(dead()) == 2 * len(answered.events), "every message dead at both")
            assert relay.stop() == 0
        finally:
            moved.stop()
            down.stop()
    assert all(a.answered == 302 for a in moved.arrivals())
    assert len(moved.arrivals()) == len(answered.events)  # a 3xx is not retried, nor followed
    per_message = Counter(a.webhook_id for a in down.arrivals())
    assert len(per_message) == len(answered.events) and all(n >= 2 for n in per_message.values())  # retried
    assert relay.log().count("dead after") == 2 * len(answered.events)


def test_a_filter_sends_only_the_results_it_matches(answered: Answered, tmp_path: Path) -> None:
    bools, everything = Receiver().start(), Receiver().start()
    last = answered.events[-1].request_id
    endpoints = [endpoint("bools", bools.url, "BOOLS_SECRET", filter={"result_types": ["bool"],
                                                                       "events": ["settled"]}),
                 endpoint("everything", everything.url, "ALL_SECRET")]
    with Relay(tmp_path, answered.chain, endpoints, {"BOOLS_SECRET": SECRET, "ALL_SECRET": NEW_SECRET}) as relay:
        try:
            # each endpoint's messages go in chain order, and the last result is a bool: once it is taken,
            # every earlier message for that endpoint was sent
            relay.until(lambda: any(a.request_id == last for a in bools.taken().values())
                        and len(everything.taken()) == len(answered.events), "the last bool")
            assert relay.stop() == 0
        finally:
            bools.stop()
            everything.stop()
    assert {a.request_id for a in bools.arrivals()} == answered.of_type(ResultType.BOOL)
    assert {a.doc["data"]["result_type"] for a in bools.arrivals()} == {"bool"}
    assert {a.request_id for a in everything.arrivals()} == answered.request_ids


BAD_INPUT: dict[str, tuple[dict[str, Any], dict[str, str], str]] = {  # case: (change, environment, the line says)
    "missing secret": ({}, {}, "environment variable HOOKS_SECRET (endpoint 'hooks' secret) is not set"),
    "malformed secret": ({}, {"HOOKS_SECRET": "whsec_not*base64"},
                         "HOOKS_SECRET (endpoint 'hooks' secret) is not whsec_ followed by base64"),
    "unprefixed secret": ({}, {"HOOKS_SECRET": SECRET.removeprefix("whsec_")}, "does not start with whsec_"),
    "unknown key": ({"retries": 3}, {"HOOKS_SECRET": SECRET},
                    "endpoints[0] (hooks).retries: unknown setting: remove it or check its spelling"),
    "bad url": ({"url": "hooks.example/oracle"}, {"HOOKS_SECRET": SECRET},
                "endpoints[0] (hooks).url: must be a URL starting http:// or https:// with a host, not "
                "'hooks.example/oracle'"),
    "bad result type": ({"filter": {"result_types": ["boolean"]}}, {"HOOKS_SECRET": SECRET},
                        "endpoints[0] (hooks).filter.result_types: unknown result type 'boolean'"),
}


def test_bad_config_input_is_one_line_saying_what_to_change_and_exit_2(tmp_path: Path) -> None:
    chain = {"rpc_url": "http://127.0.0.1:9", "oracle": "0x5FbDB2315678afecb367f032d93F642f64180aa3"}
    env = {k: v for k, v in os.environ.items() if k != "HOOKS_SECRET"}
    running = {}
    for case, (change, secret_env, _) in BAD_INPUT.items():
        folder = tmp_path / case.replace(" ", "-")
        folder.mkdir()
        config = write_config({"chain": chain, "store": {"path": str(folder / "relay.sqlite")},
                               "endpoints": [{**endpoint("hooks", "https://hooks.example/oracle", "HOOKS_SECRET"),
                                              **change}]}, folder / "relay.toml")
        running[case] = subprocess.Popen([sys.executable, "-m", "bots.relay", "--config", str(config)], cwd=REPO,
                                         env={**env, **secret_env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True)
    for case, process in running.items():
        out, err = process.communicate(timeout=60)
        expected = BAD_INPUT[case][2]
        assert process.returncode == 2, (case, out, err)
        assert len(err.splitlines()) == 1 and expected in err, (case, err)
        assert "not*base64" not in err and SECRET.removeprefix("whsec_") not in err  # no part of a secret
