"""The commands against the real daemon: the daemon tests' fixtures."""

from collections.abc import Iterator

import pytest

from oracle.devnet import LocalStack
from tests.daemon.conftest import env, running

__all__ = ["env", "own_stack", "running"]


@pytest.fixture
def own_stack() -> Iterator[LocalStack]:
    """A chain of the test's own, for tests that move its clock."""
    with LocalStack() as s:
        yield s
