"""Standard Webhooks signatures (https://www.standardwebhooks.com): the secret's form and the header.

A secret is `whsec_` and the base64 of the HMAC key. An endpoint's environment variable may hold several,
separated by spaces, while one is rotated out: each signs, and `webhook-signature` carries one
`v1,<base64>` per secret, so the receiver passes a message signed with any key it still holds.

    keys = load_keys(endpoint)                     # ConfigError naming the variable, never its value
    header = signature_header(keys, "msg_...", 1767225600, body)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

from oracle.config import ConfigError

PREFIX = "whsec_"
MIN_KEY_BYTES, MAX_KEY_BYTES = 24, 64  # the range the spec asks of a symmetric key
MAKE_ONE = "python -c \"import base64,os; print('whsec_' + base64.b64encode(os.urandom(32)).decode())\""


def parse_secrets(text: str, variable: str, endpoint: str) -> list[bytes]:
    """The HMAC keys of one or more space-separated `whsec_<base64>` secrets. The error names the variable
    and which secret in it is wrong, never any part of one."""
    words = text.split()
    where = f"environment variable {variable}"
    if not words:
        raise ConfigError(f"{where} (endpoint {endpoint!r} secret) is empty: set it to the endpoint's whsec_... "
                          f"secret (make one with {MAKE_ONE})")
    keys = []
    for position, word in enumerate(words, 1):
        nth = "" if len(words) == 1 else f" {position} of {len(words)}"
        which = f"{where} (endpoint {endpoint!r} secret{nth})"
        if not word.startswith(PREFIX):
            raise ConfigError(f"{which} does not start with {PREFIX}: set it to whsec_ and the base64 of the "
                              f"key (make one with {MAKE_ONE})")
        try:
            key = base64.b64decode(word[len(PREFIX):], validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{which} is not whsec_ followed by base64: copy the whole secret, or make one "
                              f"with {MAKE_ONE}") from None
        if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
            raise ConfigError(f"{which} holds a {len(key)}-byte key; Standard Webhooks asks for {MIN_KEY_BYTES} to "
                              f"{MAX_KEY_BYTES} bytes: make one with {MAKE_ONE}")
        keys.append(key)
    return keys


def load_keys(endpoint_name: str, variable: str) -> list[bytes]:
    """An endpoint's keys, read from its environment variable."""
    text = os.environ.get(variable)
    if text is None:
        raise ConfigError(f"environment variable {variable} (endpoint {endpoint_name!r} secret) is not set: export "
                          f"it with the endpoint's whsec_... secret (make one with {MAKE_ONE})")
    return parse_secrets(text, variable, endpoint_name)


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature: HMAC-SHA256 over `{id}.{timestamp}.{body}`."""
    signed = message_id.encode() + b"." + str(timestamp).encode() + b"." + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signature_header(keys: list[bytes], message_id: str, timestamp: int, body: bytes) -> str:
    return " ".join(sign(key, message_id, timestamp, body) for key in keys)
