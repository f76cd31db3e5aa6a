"""The daemon end to end: a local stack, a local model server, and `oracle run` as a child process."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from oracle.devnet import LocalStack
from oracle.devnet.harness import SIGNER_ENV, DaemonProcess, dev_config, write_config
from oracle.devnet.model_server import ModelServer


@dataclass
class Running:
    stack: LocalStack
    model: ModelServer
    daemon: DaemonProcess
    config: dict[str, Any]
    tmp: Path

    def restart(self) -> None:
        self.daemon.start()


def start_daemon(stack: LocalStack, model: ModelServer, tmp: Path, **overrides: Any) -> Running:
    config = dev_config(stack, model.base_url, tmp / "oracle.sqlite", **overrides)
    path = write_config(config, tmp / "config.toml")
    daemon = DaemonProcess(path, {SIGNER_ENV: stack.keys.signer.private_key.hex()}).start()
    return Running(stack, model, daemon, config, tmp)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("daemon")
    with LocalStack() as stack:
        model = ModelServer().start()
        run = start_daemon(stack, model, tmp)
        try:
            yield run
        finally:
            code = run.daemon.stop()
            model.stop()
            assert code == 0, run.daemon.log()[-3000:]
