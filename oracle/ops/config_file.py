"""Writing a deployed contract's address into a config file, the rest of it kept as it was: the oracle's
into the operator's `[[chains]]` table, a bot's consumer contract into its own table (`AddressSlot`).

The file is edited as text, not re-written from parsed TOML, so comments, order and layout survive:
the table's `oracle = "0x..."` line gets the new value (its comment kept), or is inserted after the
table's anchor lines (for a chain: name / chain_id / rpc_url / ws_url). The result is parsed again and
must equal the old file with only that value changed; otherwise nothing is written and the error says
what to add.
"""

from __future__ import annotations

import os
import re
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oracle.config import ConfigError

_HEADER = re.compile(r"^\s*\[")  # a table or array-of-tables header starts a new section


@dataclass(frozen=True)
class AddressSlot:
    """Where an address goes: the `key` of the `index`-th `[[table]]`, inserted after its `anchors` keys."""

    table: str
    index: int
    key: str
    anchors: tuple[str, ...]

    def line(self) -> re.Pattern[str]:
        k = re.escape(self.key)
        return re.compile(rf"""^(\s*(?:{k}|"{k}"|'{k}')\s*=\s*)("[^"\n]*"|'[^'\n]*')(.*)$""", re.DOTALL)

    def header(self) -> re.Pattern[str]:
        return re.compile(rf"^\s*\[\[\s*{re.escape(self.table)}\s*\]\]\s*(#.*)?$")

    def anchor(self) -> re.Pattern[str]:
        names = "|".join(f'{re.escape(a)}|"{re.escape(a)}"' for a in self.anchors)
        return re.compile(rf"^\s*(?:{names})\s*=")


def chain_oracle(index: int) -> AddressSlot:
    return AddressSlot("chains", index, "oracle", ("name", "chain_id", "rpc_url", "ws_url"))


def with_address(text: str, slot: AddressSlot, address: str) -> str:
    """`text` with `slot` set to `address` (ConfigError if it cannot be done safely)."""
    where = f"{slot.table}[{slot.index}]"
    lines = text.splitlines(keepends=True)
    header = slot.header()
    headers = [i for i, line in enumerate(lines) if header.match(line)]
    if slot.index >= len(headers):
        raise ConfigError(f"{where} is not written as a [[{slot.table}]] table, so the address cannot be added to "
                          f"it: add `{slot.key} = \"{address}\"` to it yourself")
    start = headers[slot.index] + 1
    end = next((i for i in range(start, len(lines)) if _HEADER.match(lines[i])), len(lines))
    value = f'"{address}"'
    found_line = slot.line()
    for i in range(start, end):
        found = found_line.match(lines[i])
        if found is not None:
            lines[i] = found.group(1) + value + found.group(3)
            break
    else:
        anchor = slot.anchor()
        anchors = [i for i in range(start, end) if anchor.match(lines[i])]
        at = anchors[-1] + 1 if anchors else start
        newline = "\r\n" if lines[at - 1].endswith("\r\n") else "\n"
        if not lines[at - 1].endswith(("\n", "\r")):
            lines[at - 1] += newline
        lines.insert(at, f"{slot.key} = {value}{newline}")
    edited = "".join(lines)
    _check(text, edited, slot, address)
    return edited


def with_oracle_address(text: str, index: int, address: str) -> str:
    """`text` with the `index`-th `[[chains]]` table's `oracle` set to `address`."""
    return with_address(text, chain_oracle(index), address)


def _check(before: str, after: str, slot: AddressSlot, address: str) -> None:
    expected: dict[str, Any] = tomllib.loads(before)
    expected[slot.table][slot.index][slot.key] = address
    try:
        same = tomllib.loads(after) == expected
    except tomllib.TOMLDecodeError:
        same = False
    if not same:
        raise ConfigError(f"the config's {slot.table}[{slot.index}] is laid out in a way this edit does not follow: "
                          f"add `{slot.key} = \"{address}\"` to it yourself")


def check_writable(path: Path, slot: AddressSlot | int) -> None:
    """Before deploying: the address could be written (ConfigError otherwise), so a deployment is never left
    with its address unsaved. An int is a chain's index (its oracle)."""
    slot = chain_oracle(slot) if isinstance(slot, int) else slot
    with_address(path.read_bytes().decode("utf-8"), slot, "0x" + "00" * 20)
    if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK):
        raise ConfigError(f"{path}: cannot write the address here (permissions of the file or its "
                          "directory): make them writable, or run where they are")


def write_address(path: Path, slot: AddressSlot | int, address: str) -> bool:
    """Set `slot` (an int: that chain's oracle) in the file at `path` to `address`; False if it was already
    that. The file is replaced at once (a crash leaves the old or the new file, never half of one)."""
    slot = chain_oracle(slot) if isinstance(slot, int) else slot
    text = path.read_bytes().decode("utf-8")
    edited = with_address(text, slot, address)
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



