"""One daemon per store: `oracle run` holds an advisory lock on `<store>.lock` for as long as it runs.

The lock is the kernel's (`flock`), so a daemon killed with SIGKILL leaves no stale lock behind; the file
also holds the holder's pid, which is what a second daemon's refusal names. Commands that only read the
store (`oracle receipt`, the live count of `oracle dev`) never take it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType


class StoreInUse(RuntimeError):
    """Another daemon runs on this store; the message names its pid and what to do."""


class StoreLock:
    def __init__(self, store_path: Path) -> None:
        self.path = Path(f"{store_path}.lock")
        self._fd: int | None = None

    def acquire(self) -> StoreLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreInUse(f"the store {str(self.path)[:-5]} is in use by another oracle daemon (pid {holder}): "
                             f"stop that one first, or give this one its own [store] path") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
