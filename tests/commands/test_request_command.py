"""`oracle request` against the real daemon on the local stack: every result type decoded from the chain,
a refusal's reason, `--no-wait`, and what each bad input gets (a one-line error, exit 2, nothing sent)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from oracle.client import ClientError, OracleClient
from oracle.devnet import LocalStack
from oracle.devnet.harness import write_config
from oracle.protocol import ReasonCode, RequestParams, ResultSpec, ResultType
from tests.daemon.helpers import Running

DEV_MODEL = "dev-model-2026-01-01"


def oracle_request(run: Running, *args: str, key: bytes | None = None,
                   env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **(env or {})}
    environment["ORACLE_REQUESTER_KEY"] = "0x" + (key or run.stack.keys.agents.private_key).hex()
    return subprocess.run([sys.executable, "-m", "oracle", "request", "--config", str(run.tmp / "config.toml"),
                           "--timeout", "60", *args], capture_output=True, text=True, timeout=120, env=environment)


def request_id_of(stdout: str) -> bytes:
    found = re.search(r"^request   0x([0-9a-f]{64})", stdout, re.MULTILINE)
    assert found, stdout
    return bytes.fromhex(found.group(1))


def fulfilled_on_chain(stack: LocalStack, request_id: bytes) -> list[object]:
    events = stack.contract("AIOracle").events.Fulfilled().get_logs(
        from_block=0, argument_filters={"requestId": request_id})
    return list(events)


@pytest.mark.parametrize(("args", "value"), [
    (["--type", "bool"], r"(True|False)"),
    (["--type", "uint", "--min", "10", "--max", "20"], r"(1\d|20)"),
    (["--type", "int", "--min", "-5", "--max", "5"], r"-?[0-5]"),
    (["--type", "choice", "--label", "low", "--label", "high"], r"[01] \('(low|high)'\)"),
    (["--type", "text", "--max-bytes", "64"], r"'answer \d+'"),
    (["--type", "json"], r"\{.*\}"),
    (["--type", "abi", "--abi-type", "(string,uint8)"], r"\('answer \d+', \d+\)"),
])
def test_each_result_type_comes_back_decoded(running: Running, args: list[str], value: str) -> None:
    done = oracle_request(running, "--prompt", "Is the sky blue?", "--model", DEV_MODEL, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "status    success" in done.stdout
    assert re.search(rf"^value     {value}$", done.stdout, re.MULTILINE), done.stdout
    receipt = re.search(r"^receipt   0x([0-9a-f]{64})", done.stdout, re.MULTILINE)
    assert receipt
    (event,) = fulfilled_on_chain(running.stack, request_id_of(done.stdout))
    assert event["args"]["receiptHash"].hex() == receipt.group(1)  # type: ignore[index]


def test_a_refused_request_prints_its_reason_and_exits_1(running: Running) -> None:
    done = oracle_request(running, "--prompt", "hello", "--model", "no-such-model-2020-01-01")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "status    failure" in done.stdout
    assert f"reason    UNKNOWN_MODEL ({int(ReasonCode.UNKNOWN_MODEL)})" in done.stdout


def test_no_wait_prints_the_id_only(running: Running) -> None:
    done = oracle_request(running, "--prompt", "hello", "--model", DEV_MODEL, "--no-wait")
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"0x[0-9a-f]{64}\n", done.stdout)


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--type", "uint"], {}, "a uint result needs --min and --max"),
    (["--type", "uint", "--min", "5", "--max", "1"], {}, "--min 5 is above --max 1"),
    (["--type", "uint", "--min", "-1", "--max", "1"], {}, "cannot have a negative --min"),
    (["--type", "bool", "--label", "a"], {}, "--label applies to choice results"),
    (["--type", "choice", "--label", "a"], {}, "at least two --label"),
    (["--type", "abi"], {}, "needs --abi-type"),
    (["--chain", "mainnet"], {}, "no chain named 'mainnet'"),
    (["--key-env", "NOT_SET_ANYWHERE"], {}, "NOT_SET_ANYWHERE (the requester's private key) is not set"),
    (["--key-env", "BAD_KEY"], {"BAD_KEY": "0x1234"}, "BAD_KEY is not a 32-byte private key"),
    (["--prompt-file", "/nonexistent/prompt.txt"], {}, "cannot read --prompt-file"),
    (["--model", "cheapest;max_price=1;max_price=2"], {}, "the oracle refuses: "
                                                          "DuplicateModelSpecOption(offset=21)"),
    (["--fee", "1"], {}, "the oracle refuses this request: FeeBelowQuote(sent=1, quote="),
    (["--type", "text", "--max-bytes", "100000000"], {}, "InvalidResultSize(maxBytes=100000000"),
])
def test_bad_inputs_get_one_line_and_nothing_is_sent(running: Running, args: list[str], env: dict[str, str],
                                                    message: str) -> None:
    nonce = running.stack.w3.eth.get_transaction_count(running.stack.keys.agents.address)
    prompt = [] if "--prompt-file" in args else ["--prompt", "hello"]
    done = oracle_request(running, *prompt, *args, env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert running.stack.w3.eth.get_transaction_count(running.stack.keys.agents.address) == nonce


@pytest.mark.parametrize(("args", "message"), [
    (["--max-tokens", "-5"], "argument --max-tokens: must not be negative: '-5'"),
    (["--seed", "seven"], "argument --seed: not a whole number: 'seven'"),
    (["--temperature", "70000"], "argument --temperature: must be below 2**16 (the contract's uint16)"),
    (["--callback-gas", str(2**32)], "argument --callback-gas: must be below 2**32"),
    (["--callback", "0x1234"], "argument --callback: not an address (0x and 40 hex digits): '0x1234'"),
    (["--fee", "-1"], "argument --fee: must not be negative"),
    (["--timeout", "0"], "argument --timeout: must be above 0 seconds"),
])
def test_values_of_the_wrong_shape_are_refused_by_the_parser(running: Running, args: list[str], message: str) -> None:
    """Refused with the usage line and what the value must be, never a traceback from an encoder."""
    nonce = running.stack.w3.eth.get_transaction_count(running.stack.keys.agents.address)
    done = oracle_request(running, "--prompt", "hello", *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert running.stack.w3.eth.get_transaction_count(running.stack.keys.agents.address) == nonce

def test_an_unreachable_node_is_one_line(tmp_path: Path, running: Running) -> None:
    config = dict(running.config)
    config["chains"] = [{**running.config["chains"][0], "rpc_url": "http://127.0.0.1:9", "ws_url": None}]
    write_config(config, tmp_path / "config.toml")
    done = subprocess.run([sys.executable, "-m", "oracle", "request", "--config", str(tmp_path / "config.toml"),
                           "--prompt", "x"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "ORACLE_REQUESTER_KEY": "0x" + "11" * 32})
    assert done.returncode == 2
    assert "the node at http://127.0.0.1:9 does not answer" in done.stderr and "Traceback" not in done.stderr


def test_client_reports_a_request_left_unanswered_past_its_deadline_as_expired(own_stack: LocalStack) -> None:
    """No daemon runs on this stack: the deadline passes (anvil's clock moved on; no x402 here)."""

    stack = own_stack

    async def scenario() -> None:
        client = await OracleClient.connect(stack.rpc_url, oracle=stack.addresses["AIOracle"])
        try:
            now = stack.w3.eth.get_block("latest")["timestamp"]
            params = RequestParams(stack.keys.agents.address, 0, now + 30, 16, 0, 0, DEV_MODEL, b"hello",
                                   ResultSpec(ResultType.BOOL))
            request_id = await client.request(params, stack.keys.agents.private_key)
            stack.w3.provider.make_request("evm_increaseTime", [60])  # type: ignore[arg-type]
            stack.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
            result = await client.wait(request_id, timeout=30)
            assert result.status == "expired" and result.value is None and "reclaim" in result.note
            with pytest.raises(ClientError, match="no request 0x00"):
                await client.wait(b"\0" * 32, timeout=1)
        finally:
            await client.close()

    asyncio.run(scenario())
