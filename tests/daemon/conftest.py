"""The daemon end to end: a local stack, a local model server, and `oracle run` as a child process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from oracle.devnet import LocalStack
from oracle.devnet.model_server import ModelServer
from tests.daemon.helpers import Running, start_daemon


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[LocalStack, ModelServer, Path]]:
    """A local stack and model server of the test's own, for a daemon the test starts itself."""
    with LocalStack() as stack:
        model = ModelServer().start()
        try:
            yield stack, model, tmp_path
        finally:
            model.stop()


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

