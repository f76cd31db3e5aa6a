"""Shared fixtures: one local stack (anvil on a free loopback port, contracts deployed) per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from oracle.devnet import LocalStack


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    with LocalStack() as s:
        yield s
