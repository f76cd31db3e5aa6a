from __future__ import annotations

from collections.abc import Iterator

import pytest

from oracle.devnet import LocalStack


@pytest.fixture(scope="module")
def own_stack() -> Iterator[LocalStack]:
    """A chain for this module alone: its tests stop mining, drop transactions and move the base fee."""
    with LocalStack() as s:
        yield s
