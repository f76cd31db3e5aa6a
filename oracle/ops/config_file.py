"""Writing a deployed oracle's address into the operator's config file, the rest of it kept as it was.

The file is edited as text, not re-written from parsed TOML, so comments, order and layout survive:
the chain's `oracle = "0x..."` line gets the new value (its comment kept), or is inserted after the
chain's name / chain_id / rpc_url / ws_url lines. The result is parsed again and must equal the old
file with only that value changed; otherwise nothing is written and the error says what to add.
"""

from __future__ import annotations

import os
import re
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from oracle.config import ConfigError

_HEADER = re.compile(r"^\s*\[")  # a table or array-of-tables header starts a new section
_CHAINS = re.compile(r"^\s*\[\[\s*chains\s*\]\]\s*(#.*)?$")
_ORACLE = re.compile(r"""^(\s*(?:oracle|"oracle"|'oracle')\s*=\s*)("[^"\n]*"|'[^'\n]*')(.*)$""", re.DOTALL)
_ANCHORS = re.compile(r"""^\s*(?:name|chain_id|rpc_url|ws_url|"name"|"chain_id"|"rpc_url"|"ws_url")\s*=""")


def with_oracle_address(text: str, index: int, address: str) -> str:
    """`text` with the `index`-th `[[chains]]` table's `oracle` set to `address` (ConfigError if it cannot
    be done safely)."""
    lines = text.splitlines(keepends=True)
    headers = [i for i, line in enumerate(lines) if _CHAINS.match(line)]
    if index >= len(headers):
        raise ConfigError(f"chains[{index}] is not written as a [[chains]] table, so the oracle's address cannot "
                          f"be added to it: add `oracle = \"{address}\"` to that chain yourself")
    start = headers[index] + 1
    end = next((i for i in range(start, len(lines)) if _HEADER.match(lines[i])), len(lines))
    value = f'"{address}"'
    for i in range(start, end):
        found = _ORACLE.match(lines[i])
        if found is not None:
            lines[i] = found.group(1) + value + found.group(3)
            break
    else:
        anchors = [i for i in range(start, end) if _ANCHORS.match(lines[i])]
        at = anchors[-1] + 1 if anchors else start
        newline = "\r\n" if lines[at - 1].endswith("\r\n") else "\n"
        if not lines[at - 1].endswith(("\n", "\r")):
            lines[at - 1] += newline
        lines.insert(at, f"oracle = {value}{newline}")
    edited = "".join(lines)
    _check(text, edited, index, address)
    return edited


def _check(before: str, after: str, index: int, address: str) -> None:
    expected: dict[str, Any] = tomllib.loads(before)
    expected["chains"][index]["oracle"] = address
    try:
        same = tomllib.loads(after) == expected
    except tomllib.TOMLDecodeError:
        same = False
    if not same:
        raise ConfigError(f"the config's chains[{index}] is laid out in a way this edit does not follow: add "
                          f"`oracle = \"{address}\"` to it yourself")


def check_writable(path: Path, index: int) -> None:
    """Before deploying: the address could be written (ConfigError otherwise), so a deployment is never left
    with its address unsaved."""
    with_oracle_address(path.read_bytes().decode("utf-8"), index, "0x" + "00" * 20)
    if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK):
        raise ConfigError(f"{path}: cannot write the oracle's address here (permissions of the file or its "
                          "directory): make them writable, or run where they are")


def write_oracle_address(path: Path, index: int, address: str) -> bool:
    """Set the `index`-th chain's oracle address in the file at `path`; False if it was already that.
    The file is replaced at once (a crash leaves the old or the new file, never half of one)."""
    text = path.read_bytes().decode("utf-8")
    edited = with_oracle_address(text, index, address)
    if edited == text:
        return False
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(edited.encode("utf-8"))
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True
