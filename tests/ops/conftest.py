"""A bare anvil for the deploy and admin tests (nothing deployed until `oracle deploy` does it), and the
keys the test configs name in the environment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from oracle.devnet.anvil import Anvil
from oracle.devnet.harness import SIGNER_ENV
from tests.ops.helpers import KEYS, OWNER_ENV


def running_anvil(chain_id: int = 31337) -> Iterator[Anvil]:
    """A bare anvil for as long as the fixture that yields from this lasts."""
    anvil = Anvil(chain_id=chain_id)
    anvil.start()
    try:
        yield anvil
    finally:
        anvil.stop()


@pytest.fixture(scope="module")
def bare_chain() -> Iterator[Anvil]:
    yield from running_anvil()


@pytest.fixture
def keys_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The owner's and the signer's keys where the config says they are."""
    monkeypatch.setenv(OWNER_ENV, "0x" + KEYS.owner.private_key.hex())
    monkeypatch.setenv(SIGNER_ENV, "0x" + KEYS.signer.private_key.hex())
