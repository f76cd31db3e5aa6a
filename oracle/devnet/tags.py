"""Tags that let an outside observer follow one request through every server that sees it.

A request's prompt carries `[[tag:NAME]]`; the local model server counts calls per tag and the paywall
records which payment nonce paid for which tag. The tag survives the daemon's JSON escaping of the
prompt (it holds no character JSON escapes), so servers find it in the raw body they receive.
"""

from __future__ import annotations

import re

_TAG = re.compile(r"\[\[tag:([A-Za-z0-9_.-]{1,64})]]")


def tagged(name: str, text: str = "") -> str:
    """`text` carrying the tag `name`."""
    if not _TAG.fullmatch(f"[[tag:{name}]]"):
        raise ValueError(f"a tag is 1-64 characters of A-Z a-z 0-9 _ . -, not {name!r}")
    return f"[[tag:{name}]] {text}".rstrip()


def tag_of(text: str) -> str | None:
    """The first tag in `text`, if any."""
    found = _TAG.search(text)
    return found.group(1) if found else None
