"""A bare anvil for the deploy and admin tests: nothing deployed until `oracle deploy` does it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from oracle.devnet.anvil import Anvil
from tests.ops.helpers import keys_in_env

__all__ = ["keys_in_env"]


@pytest.fixture(scope="module")
def bare_chain() -> Iterator[Anvil]:
    anvil = Anvil()
    anvil.start()
    try:
        yield anvil
    finally:
        anvil.stop()
