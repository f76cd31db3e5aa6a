"""How `oracle run` writes its log: text for people, or one JSON object per line for log collectors.

A line's structured facts travel in the record's `fields` (`log.info("...", extra={"fields": {"chain": ...,
"request": ..., "reason": ...}})`): the JSON format puts them beside time, level, logger and message;
the text format shows the message alone, which says the same facts in words.

Libraries' routine lines (apscheduler's "Running job" / "executed successfully" twice a job run, web3's
"Successfully disconnected" as each client closes) are shown only at DEBUG.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Any, Literal

LogFormat = Literal["text", "json"]
FORMATS: tuple[LogFormat, ...] = ("text", "json")
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_CHATTY_LIBRARIES = ("apscheduler", "web3.providers")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for name, value in fields.items():
                line.setdefault(str(name), value)  # never over the four above
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, separators=(",", ":"))


def configure_logging(level: str, fmt: LogFormat = "text") -> None:
    """The root logger to stderr at `level` (debug, info, warning, error) in `fmt`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    numeric = getattr(logging, level.upper())
    root.setLevel(numeric)
    for name in _CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.DEBUG if numeric <= logging.DEBUG else logging.WARNING)
