"""The two ways a read can fail that are the asker's to fix."""

from __future__ import annotations


class BadQuery(ValueError):
    """A filter, id, cursor or time that cannot be read; the message says what is accepted."""


class NotFound(LookupError):
    """Nothing on record matches; the message says what was looked for."""
