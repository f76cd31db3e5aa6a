"""`make dev` as a developer uses it: it stays up, prints what an outside script needs, serves that script's
requests, and leaves no process behind after Ctrl-C (SIGINT to its process group, as a terminal sends it)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from web3 import Web3

from oracle.abi import abi
from oracle.devnet.harness import wait_until

ROOT = Path(__file__).resolve().parent.parent


class Output:
    """A child's stdout, read by a thread into a list of lines."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        import threading

        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)

    def field(self, pattern: str) -> str:
        found = re.search(pattern, self.text(), re.MULTILINE)
        assert found, f"{pattern!r} not in:\n{self.text()}"
        return found.group(1)


def _session_processes(sid: int) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid:  # session id is the 6th field of /proc/PID/stat
                found.append((entry / "cmdline").read_text().replace("\0", " "))
        except (OSError, IndexError):
            continue
    return found


@pytest.fixture
def make_dev() -> Iterator[tuple[subprocess.Popen[str], Output]]:
    process = subprocess.Popen(["make", "--no-print-directory", "dev"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    output = Output(process)
    try:
        yield process, output
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def test_make_dev_stays_up_serves_an_outside_script_and_stops_clean(
        make_dev: tuple[subprocess.Popen[str], Output]) -> None:
    process, out = make_dev
    wait_until(lambda: any(line.startswith("ready") for line in out.lines) or process.poll() is not None,
               timeout=240, what="make dev to be ready")
    assert process.poll() is None, out.text()
    rpc = out.field(r"^rpc\s+(http://\S+)")
    chain_id = int(out.field(r"chain id (\d+)"))
    oracle = out.field(r"^contracts\s+AIOracle\s+(0x[0-9a-fA-F]{40})")
    key = out.field(r"^\s+agents\s+0x[0-9a-fA-F]{40}\s+(0x[0-9a-f]{64})")
    config = out.field(r"^config\s+(\S+\.toml)")
    assert out.field(r"^models\s+(http://\S+)").endswith("/v1")
    wait_until(lambda: "requests     seen 4, answered 4, failed 0" in out.lines, timeout=60,
               what="the live line to count the demo's four requests")

    # An outside script with nothing but the printed values: read the chain, then ask through the CLI.
    w3 = Web3(Web3.HTTPProvider(rpc))
    assert w3.eth.chain_id == chain_id
    contract = w3.eth.contract(address=Web3.to_checksum_address(oracle), abi=abi("AIOracle"))
    assert contract.functions.quote("cheapest", 16, 0).call() > 0
    asked = subprocess.run(
        [sys.executable, "-m", "oracle", "request", "--config", config, "--prompt", "Is the sky blue?",
         "--type", "choice", "--label", "yes", "--label", "no", "--timeout", "60"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "ORACLE_REQUESTER_KEY": key})
    assert asked.returncode == 0, asked.stdout + asked.stderr
    assert "status    success" in asked.stdout
    assert re.search(r"^value     [01] \('(yes|no)'\)$", asked.stdout, re.MULTILINE), asked.stdout
    wait_until(lambda: "requests     seen 5, answered 5, failed 0" in out.lines, timeout=30,
               what="the live line to count the outside request")

    # The operator listener as printed: the page, readiness, metrics, and the token its mutating routes take.
    operator = out.field(r"^operator\s+(http://\S+)/\s")
    token = out.field(r"Authorization: Bearer (\S+)")
    assert "Oracle status" in _get(operator + "/")
    assert json.loads(_get(operator + "/ready"))["ready"] is True
    assert 'oracle_requests{chain="local",state="fulfilled"} 5.0' in _get(operator + "/metrics")
    paused = urllib.request.Request(operator + "/v1/chains/local/pause", method="POST",
                                    headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(paused, timeout=10) as reply:
        assert json.loads(reply.read())["intake_paused"] == "paused by the operator"
    receipts = out.field(r"^public\s+(http://\S+)/v1/receipts/HASH")
    assert json.loads(_get(operator + "/v1/requests?limit=1"))["items"][0]["state"] == "fulfilled"
    with pytest.raises(urllib.error.HTTPError):
        _get(receipts + "/v1/requests")  # the public listener serves none of the operator's routes

    sid = process.pid  # start_new_session: the make process leads its own session
    assert any("anvil" in cmd for cmd in _session_processes(sid))
    os.killpg(process.pid, signal.SIGINT)
    process.wait(60)  # make itself dies of the SIGINT; what matters is what its child left behind
    wait_until(lambda: not _session_processes(sid), timeout=30, what="every process of make dev to exit")
    assert any(line.startswith("stopping") for line in out.lines), out.text()
    assert not Path(config).exists()
    with pytest.raises(Exception):  # noqa: B017 - any connection error: the chain is gone
        Web3(Web3.HTTPProvider(rpc, request_kwargs={"timeout": 2})).eth.chain_id  # noqa: B018


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return str(reply.read().decode())


def _anvil_answers(sid: int) -> bool:
    for cmd in _session_processes(sid):
        args = cmd.split()
        if args and args[0].endswith("anvil") and "--port" in args:
            port = args[args.index("--port") + 1]
            try:
                return bool(Web3(Web3.HTTPProvider(f"http://127.0.0.1:{port}",
                                                   request_kwargs={"timeout": 1})).eth.chain_id)
            except OSError:  # not listening yet (requests' errors are OSErrors)
                return False
    return False


def test_sigterm_while_it_starts_stops_what_was_started() -> None:
    """SIGTERM (a service manager, `kill`) while the contracts are being deployed: nothing is left."""
    process = subprocess.Popen([sys.executable, "-m", "oracle", "dev"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    out = Output(process)
    sid = process.pid
    try:
        # anvil answers, and the "anvil" line (printed once the contracts are deployed) is not out yet.
        wait_until(lambda: _anvil_answers(sid) or process.poll() is not None, timeout=120,
                   what="oracle dev to start anvil")
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, out.text()
        # Cut off in start-up (on a very slow machine the deploy may have finished: then the loop stops it).
        assert ("stopped      before the demo's requests were done" in out.lines
                or any(line.startswith("daemon ") for line in out.lines)), out.text()
        wait_until(lambda: not _session_processes(sid), timeout=30,
                   what=f"every process of oracle dev to exit: {_session_processes(sid)}")
        assert "Traceback" not in out.text(), out.text()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def test_the_bots_run_from_the_commands_make_dev_prints(make_dev: tuple[subprocess.Popen[str], Output],
                                                        tmp_path: Path) -> None:
    """The README's path for the bots: `make dev`, then each printed bot command as it is, in a shell."""
    process, out = make_dev
    wait_until(lambda: any(line.startswith("ready") for line in out.lines) or process.poll() is not None,
               timeout=240, what="make dev to be ready")
    assert process.poll() is None, out.text()
    commands = {m.group(2): m.group(1) for m in
                re.finditer(r"^\s+(\w+=0x[0-9a-f]{64} \S+ -m (bots\.\w+) --config \S+)$", out.text(), re.M)}
    assert set(commands) == {"bots.dao_summarizer", "bots.trading_agent"}, out.text()
    rpc = out.field(r"^rpc\s+(http://\S+)")
    w3 = Web3(Web3.HTTPProvider(rpc))
    agents_key = out.field(r"^\s+agents\s+0x[0-9a-fA-F]{40}\s+(0x[0-9a-f]{64})")  # the bots use the others
    governor = w3.eth.contract(address=Web3.to_checksum_address(out.field(r"^\s+DevGovernor\s+(0x[0-9a-fA-F]{40})")),
                               abi=abi("DevGovernor"))
    votes = Web3.to_checksum_address(out.field(r"^\s+DevVotes\s+(0x[0-9a-fA-F]{40})"))

    running: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    try:
        for module, command in commands.items():
            log = tmp_path / f"{module}.log"
            with log.open("wb") as sink:
                child = subprocess.Popen(["bash", "-c", command], stdout=sink, stderr=subprocess.STDOUT,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
            running[module] = (child, log)

        def said(module: str, text: str) -> bool:
            child, log = running[module]
            assert child.poll() is None, log.read_text()
            return text in log.read_text()

        wait_until(lambda: said("bots.dao_summarizer", "feed at http://"), 60, what="the summarizer's feed")
        feed_url = running["bots.dao_summarizer"][1].read_text().split("feed at ")[1].split()[0]
        account = w3.eth.account.from_key(agents_key)
        mint = w3.eth.contract(address=votes, abi=abi("DevVotes")).encode_abi("mint", args=[account.address, 1])
        description = "# From the README\nMint one vote, proposed while make dev runs."
        tx = governor.functions.propose([votes], [0], [bytes.fromhex(mint[2:])], description).build_transaction(
            {"from": account.address, "nonce": w3.eth.get_transaction_count(account.address, "pending")})
        w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction))

        def in_feed() -> bool:
            return any(e["description"] == description
                       for e in json.loads(_get(feed_url + "feed.json"))["proposals"])
        wait_until(in_feed, 90, what="the new proposal's summary in the feed")
        wait_until(lambda: said("bots.trading_agent", "ETH score"), 90, what="the agent's first decision")
        for child, log in running.values():
            child.send_signal(signal.SIGTERM)
            assert child.wait(30) == 0, log.read_text()
    finally:
        for child, _log in running.values():
            if child.poll() is None:
                child.kill()
                child.wait(10)
