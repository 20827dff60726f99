"""An inter-process write lock on an archive (``fcntl.flock`` on ``.write.lock``).

Readers never take it: SQLite WAL and the rename-into-place of every index file let them
read while a writer commits. The lock is re-entrant within one :class:`WriteLock` object
(and thread-safe), so a commit may call helpers that take it too.
"""

from __future__ import annotations

import fcntl
import threading
import time
from pathlib import Path

from ..errors import ArchiveLockedError

__all__ = ["WriteLock"]


class WriteLock:
    """``with lock:`` holds the archive's write lock; waits up to ``timeout`` seconds."""

    def __init__(self, root: Path, timeout: float = 600.0) -> None:
        self.path = Path(root) / ".write.lock"
        self.timeout = timeout
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fh = None

    def __enter__(self) -> "WriteLock":
        deadline = time.monotonic() + self.timeout
        if not self._thread_lock.acquire(timeout=self.timeout):
            raise ArchiveLockedError(f"{self.path.parent}: write lock busy in this process")
        try:
            if self._depth == 0:
                self._fh = self._acquire_file_lock(deadline)
            self._depth += 1
        except BaseException:
            self._thread_lock.release()
            raise
        return self

    def _acquire_file_lock(self, deadline: float):
        fh = open(self.path, "a+")
        try:
            while True:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return fh
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise ArchiveLockedError(
                            f"{self.path.parent}: another process has held the write lock "
                            f"for more than {self.timeout:.0f}s") from None
                    time.sleep(0.05)
        except BaseException:
            fh.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
        self._thread_lock.release()
