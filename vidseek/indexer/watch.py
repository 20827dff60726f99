"""Watching folders for new and changed videos, and waiting until they stop growing.

Polling rather than inotify: it works the same on network shares, removable drives and
every OS, and one ``stat`` per file per poll is cheap next to decoding video.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .discover import discover_videos

__all__ = ["FileState", "FolderWatcher"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileState:
    """A file as one ``stat`` saw it."""

    path: Path
    size: int
    mtime_ns: int


class FolderWatcher:
    """Reports each video file under ``folders`` once it has settled.

    A file has settled when the same size and modification time were seen across scans at
    least ``settle_seconds`` apart, so a video still being copied in is not reported until
    the copy has finished. Each settled state of a file is reported once; a later change
    (a new copy over it) is reported again after it settles.
    """

    def __init__(self, folders: Iterable[str | Path], settle_seconds: float = 5.0,
                 recursive: bool = True) -> None:
        self.folders = [Path(f).expanduser().resolve() for f in folders]
        self.settle_seconds = settle_seconds
        self.recursive = recursive
        self._first_seen: dict[Path, tuple[FileState, float]] = {}
        self._reported: dict[Path, FileState] = {}

    def scan(self, now: float | None = None) -> list[FileState]:
        """Look once; return the files that have settled since the last report."""
        now = time.monotonic() if now is None else now
        present = [f for f in self.folders if f.is_dir()]
        for missing in set(self.folders) - set(present):
            logger.warning("%s: watched folder is missing", missing)
        settled = []
        seen: set[Path] = set()
        for path in discover_videos(present, recursive=self.recursive):
            try:
                st = path.stat()
            except OSError:  # deleted between listing and stat
                continue
            state = FileState(path, st.st_size, st.st_mtime_ns)
            seen.add(path)
            if self._reported.get(path) == state:
                continue
            first = self._first_seen.get(path)
            if first is None or first[0] != state:
                self._first_seen[path] = (state, now)  # new, or still changing
                continue
            if now - first[1] >= self.settle_seconds:  # empty files too: they fail, visibly
                settled.append(state)
                self._reported[path] = state
                del self._first_seen[path]
        for gone in set(self._first_seen) - seen:
            del self._first_seen[gone]
        for gone in set(self._reported) - seen:
            del self._reported[gone]
        return settled

    @property
    def settling(self) -> int:
        """Files seen but not yet settled (still being written, or seen only once)."""
        return len(self._first_seen)
