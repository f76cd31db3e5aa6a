"""HTTP as a client sends it, for the end-to-end tests of the daemon's listeners: one request, its
status, headers and body whatever the status (an error status is an answer, not an exception)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def send(url: str, method: str | None = None, body: Any = None, headers: dict[str, str] | None = None,
         timeout: float = 60.0) -> Reply:
    """`body`: bytes as they are, anything else as JSON; the method is POST with a body, else GET."""
    headers = dict(headers or {})
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"),
                                     headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return Reply(r.status, dict(r.headers), r.read())
    except urllib.error.HTTPError as e:
        return Reply(e.code, dict(e.headers), e.read())
