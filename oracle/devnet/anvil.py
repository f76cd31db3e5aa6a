"""Start and stop a local anvil node on a free loopback port."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

_REPO_CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"


class AnvilNotFound(FileNotFoundError):
    pass


def find_anvil() -> str:
    """`$ANVIL`, then `anvil` on PATH, then the npm package under contracts/node_modules."""
    explicit = os.environ.get("ANVIL")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise AnvilNotFound(f"$ANVIL={explicit} is not an executable file")
        return explicit
    on_path = shutil.which("anvil")
    if on_path:
        return on_path
    for candidate in sorted((_REPO_CONTRACTS / "node_modules" / "@foundry-rs").glob("anvil-*/bin/anvil")):
        if os.access(candidate, os.X_OK):
            return str(candidate)
    raise AnvilNotFound(
        "anvil not found: set $ANVIL, put anvil on PATH, or run `npm ci` in contracts/ (make install)"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Anvil:
    """One anvil process. `block_time=None` mines a block per transaction (automine)."""

    def __init__(
        self,
        *,
        chain_id: int = 31337,
        block_time: float | None = None,
        hardfork: str = "prague",
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.chain_id = chain_id
        self.block_time = block_time
        self.hardfork = hardfork
        self.extra_args = extra_args
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        binary = find_anvil()
        # A port picked free can be taken before anvil binds it; try a few.
        for _ in range(5):
            self.port = free_port()
            args = [binary, "--host", "127.0.0.1", "--port", str(self.port), "--chain-id", str(self.chain_id),
                    "--hardfork", self.hardfork, "--silent", *self.extra_args]
            if self.block_time is not None:
                args += ["--block-time", str(self.block_time)]
            self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                ready = self._wait_ready(timeout)
            except BaseException:  # Ctrl-C or SIGTERM while it starts: leave no anvil behind
                self.stop()
                raise
            if ready:
                return
            self.stop()
        raise RuntimeError("anvil did not start on a free loopback port after 5 tries")

    def _wait_ready(self, timeout: float) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                req = urllib.request.Request(self.rpc_url, body, {"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=1) as resp:
                    return int(json.loads(resp.read())["result"], 16) == self.chain_id
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
