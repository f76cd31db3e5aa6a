"""A bot's private key, read from the environment variable its config names: never from the file, and
never shown in an error."""

from __future__ import annotations

import os

from eth_account import Account

from oracle.config import ConfigError


def load_key(env: str, setting: str, role: str) -> bytes:
    """The key in variable `env` (named by the config's `setting`); ConfigError saying what to set."""
    value = os.environ.get(env, "").strip()
    if not value:
        raise ConfigError(f"environment variable {env} ({setting}) is not set: export it with the private key "
                          f"of {role}")
    try:
        key = bytes.fromhex(value.removeprefix("0x"))
        Account.from_key(key)
    except ValueError:
        raise ConfigError(f"{env} ({setting}) is not a private key: it must be 32 bytes of hex "
                          f"(0x and 64 hex digits)") from None
    return key
