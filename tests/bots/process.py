"""A bot run as a child process (`python -m bots.NAME --config FILE`), its output in a log file the tests
read and wait on."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import pytest

from oracle.devnet import LocalStack
from oracle.devnet.harness import SIGNER_ENV, DaemonProcess, dev_config, wait_until, write_config
from oracle.devnet.model_server import ModelServer

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Answering:
    """A chain of its own with the daemon answering through the local model server."""

    stack: LocalStack
    model: ModelServer
    daemon: DaemonProcess


@contextlib.contextmanager
def answering_stack(tmp: Path) -> Iterator[Answering]:
    with LocalStack() as stack:
        model = ModelServer().start()
        daemon = DaemonProcess(write_config(dev_config(stack, model.base_url, tmp / "oracle.sqlite"),
                                            tmp / "config.toml"), {SIGNER_ENV: stack.keys.signer.private_key.hex()})
        try:
            daemon.start().wait_ready()
            yield Answering(stack, model, daemon)
        finally:
            daemon.stop()
            model.stop()


class BotProcess:
    def __init__(self, module: str, config: Path, env: Mapping[str, str], log_path: Path,
                 running: str | None = None) -> None:
        self.module = module
        self.running = running  # what the bot prints once its signal handlers are in place
        self.config = config
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.log_offset = 0  # where the latest run's output begins in the log

    def start(self) -> Self:
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", self.module, "--config", str(self.config)],
                                            cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> int:
        """SIGTERM once this run is up (one still starting has no handler yet), then its exit code."""
        running = self.running
        if running is not None:
            self.until(lambda: running in self.this_run(), f"{self.module} to be running")
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(20)

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def this_run(self) -> str:
        """The latest run's output."""
        return self.log_path.read_bytes()[self.log_offset:].decode(errors="replace") if self.log_path.exists() else ""

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", self.module, *args, "--config", str(self.config)], cwd=REPO,
                              env=self.env, capture_output=True, text=True, timeout=60)

    def until(self, predicate: Callable[[], bool], what: str, timeout: float = 60) -> None:
        """Wait for `predicate`; a bot that exits or a timeout fails with its log."""
        process = self.process
        assert process is not None
        try:
            wait_until(lambda: predicate() or process.poll() is not None, timeout, interval=0.05, what=what)
        except TimeoutError:
            pytest.fail(f"timed out waiting for {what}:\n{self.log()[-3000:]}")
        if not predicate():
            pytest.fail(f"{self.module} exited ({process.returncode}) waiting for {what}:\n{self.log()[-3000:]}")
