"""Finding video files and recognising unchanged ones."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..errors import VideoError

__all__ = ["VIDEO_EXTENSIONS", "Discovery", "discover_videos", "file_digest", "real_path", "scan_paths"]

VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts",
    ".m2ts", ".wmv", ".flv", ".ogv", ".3gp",
})

LINKED_FOLDER = "symbolic link to a folder: not followed (name it explicitly to ingest it)"


@dataclass
class Discovery:
    """What :func:`scan_paths` found: video files, folders it did not enter, and inputs it
    could not list."""

    files: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (path, reason)
    failed: list[VideoError] = field(default_factory=list)


def real_path(raw: str | os.PathLike[str]) -> Path:
    """Absolute path with symbolic links resolved. Unlike ``Path.resolve()`` it never
    raises: a path that does not resolve to something (a link loop, a dangling link) is
    only made absolute, so the probe names the link the user gave and its problem."""
    path = Path(raw).expanduser()
    resolved = os.path.realpath(path)
    return Path(resolved if os.path.exists(resolved) else os.path.abspath(path))


def _is_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except (OSError, ValueError):  # missing, a link loop, a NUL byte: not a folder
        return False


def _unlistable(folder: Path, exc: OSError) -> VideoError:
    reason = "permission denied" if exc.errno in (errno.EACCES, errno.EPERM) else (exc.strerror or str(exc))
    return VideoError(folder, f"cannot read the folder: {reason}")


def scan_paths(paths: Iterable[str | os.PathLike[str]], recursive: bool = True) -> Discovery:
    """Expand files and folders into video files (absolute, sorted, without duplicates).

    Files named explicitly are always returned, whatever their extension or kind (a link
    loop, a dangling link, a FIFO), so a bad input is reported by the probe rather than
    silently ignored. Inside folders, entries with a known video extension count (links to
    files are followed; an entry that is not a regular file is returned for the probe to
    name); hidden files and folders are skipped silently. A symbolic link to a folder inside
    a folder is not followed (it could lead anywhere, or in a circle): it is listed in
    ``skipped``. A folder that cannot be listed is listed in ``failed``.
    """
    found: dict[Path, None] = {}
    result = Discovery()
    for raw in paths:
        path = real_path(raw)
        if _is_dir(path):
            inside: list[Path] = []
            _walk(path, recursive, inside, result)
            found.update(dict.fromkeys(sorted(inside)))
        else:
            found[path] = None
    result.files = list(found)
    return result


def _walk(folder: Path, recursive: bool, found: list[Path], result: Discovery) -> None:
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        result.failed.append(_unlistable(folder, exc))
        return
    subfolders = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        child = folder / entry.name
        try:
            is_dir = entry.is_dir()  # follows links
            is_link = entry.is_symlink()
        except OSError:  # a link loop: not a folder
            is_dir, is_link = False, True
        if is_dir:
            if is_link:
                result.skipped.append((child, LINKED_FOLDER))
            elif recursive:
                subfolders.append(child)
        elif child.suffix.lower() in VIDEO_EXTENSIONS:
            found.append(child)
    for sub in subfolders:
        _walk(sub, recursive, found, result)


def discover_videos(paths: Iterable[str | os.PathLike[str]], recursive: bool = True) -> list[Path]:
    """The video files of :func:`scan_paths` (folders skipped or unreadable left out)."""
    return scan_paths(paths, recursive).files


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """BLAKE2b content hash of a file (hex, 32 chars)."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
