"""The local model server and the x402 stack as standalone commands, as the README shows them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import requests

from oracle.devnet import LocalStack


@contextmanager
def serving(*args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    process = subprocess.Popen([sys.executable, "-m", "oracle", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})})
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r"listening on (http://\S+)", line)
        assert found, line + process.stdout.read() if process.poll() is not None else line
        yield found.group(1)
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0


def test_model_server_alone_speaks_the_openai_wire_format() -> None:
    with serving("model-server") as url:
        reply = requests.post(f"{url}/chat/completions", json={
            "model": "any-model", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}, timeout=10)
        assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"]


def test_paywalled_model_server_and_facilitator_alone(stack: LocalStack) -> None:
    network = f"eip155:{stack.chain_id}"
    key_env = {"FACILITATOR_KEY": "0x" + stack.keys.facilitator.private_key.hex()}
    with serving("facilitator", "--rpc-url", stack.rpc_url, "--key-env", "FACILITATOR_KEY", "--network", network,
                 env=key_env) as facilitator:
        supported = requests.get(f"{facilitator}/supported", timeout=10).json()
        assert any(k["network"] == network for k in supported["kinds"])
        with serving("model-server", "--x402-price", "2500", "--facilitator", facilitator, "--network", network,
                     "--asset", stack.addresses["TestUSD"], "--pay-to", stack.keys.owner.address) as url:
            reply = requests.post(f"{url}/chat/completions", json={
                "model": "m", "messages": [{"role": "user", "content": "hi"}]}, timeout=10)
            assert reply.status_code == 402 and "PAYMENT-REQUIRED" in reply.headers


def test_bad_arguments_are_one_line() -> None:
    for args, env, message in [
        (["model-server", "--x402-price", "1"], {}, "needs all of --x402-price, --facilitator"),
        (["facilitator", "--rpc-url", "http://127.0.0.1:9", "--key-env", "NOPE_NOT_SET", "--network", "eip155:1"], {},
         "NOPE_NOT_SET (the facilitator's private key) is not set"),
        (["facilitator", "--rpc-url", "http://127.0.0.1:9", "--key-env", "K", "--network", "base"],
         {"K": "0x" + "11" * 32}, "--network must be CAIP-2"),
    ]:
        done = subprocess.run([sys.executable, "-m", "oracle", *args], capture_output=True, text=True, timeout=60,
                              env={**os.environ, **env})
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
