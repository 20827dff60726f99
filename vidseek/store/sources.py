"""The source files of indexed videos: what identified each at ingest, and the check that a
path still holds that very file before anything reads it for a client (media, thumbnails).

Only ``os.stat`` is used here, never ``open``: opening and closing an archive file (say the
catalog, through a hard link swapped in at a video's path) by another descriptor would drop
the process's POSIX locks on it, and SQLite relies on those to know that its WAL is in use.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import VideoError
from .catalog import VideoRecord

__all__ = ["UNKNOWN", "source_identity", "source_identity_of", "checked_source", "archive_file_name"]

# Identity columns of rows committed before they existed.
UNKNOWN = -1


def source_identity(st: os.stat_result) -> dict[str, int]:
    """The catalog fields that identify a source file: size, device, inode, mtime (ns)."""
    return {"size_bytes": st.st_size, "source_dev": st.st_dev, "source_ino": st.st_ino,
            "source_mtime_ns": st.st_mtime_ns}


def source_identity_of(record: VideoRecord) -> dict[str, int]:
    """The identity ``record`` holds (fields as :func:`source_identity` gives them)."""
    return {"size_bytes": record.size_bytes, "source_dev": record.source_dev,
            "source_ino": record.source_ino, "source_mtime_ns": record.source_mtime_ns}


def checked_source(root: Path, record: VideoRecord) -> Path:
    """``record``'s file, if its path still holds the file that was indexed there.

    Raises :class:`~vidseek.errors.VideoError` (its ``problem`` names no path) when the file
    is gone, is not a regular file, is one of the archive's own files under any name, or
    differs from what ingest recorded: device, inode, size and modification time; for rows
    indexed before identity was recorded, the size.
    """
    path = Path(record.path)
    try:
        st = os.stat(path)  # follows a symlink to what would be served
    except OSError as exc:
        raise VideoError(path, f"the file cannot be reached at its path ({exc.strerror or exc})") from exc
    if not stat.S_ISREG(st.st_mode):
        raise VideoError(path, "not a regular file any more")
    own = _archive_file(Path(root), path, st)
    if own is not None:
        raise VideoError(path, f"the path now leads to one of the archive's own files ({own})")
    if record.source_ino == UNKNOWN:
        changed = st.st_size != record.size_bytes
    else:
        changed = ((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) !=
                   (record.source_dev, record.source_ino, record.size_bytes, record.source_mtime_ns))
    if changed:
        raise VideoError(path, "the file changed since it was indexed (ingest it again to refresh)")
    return path


def archive_file_name(root: Path, path: Path) -> str | None:
    """If ``path`` leads to one of the archive's own files (by name, symlink or hard link),
    that file's archive-relative name; else None (also when ``path`` cannot be stat'ed).
    Ingest asks before it opens anything: opening the catalog by another path would drop
    this process's SQLite locks."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _archive_file(Path(root), Path(path), st)


def _archive_file(root: Path, path: Path, st: os.stat_result) -> str | None:
    """The archive-relative name of the archive file ``path`` is (``st`` is its stat), else None."""
    try:
        real_root = Path(os.path.realpath(root))
        relative = Path(os.path.realpath(path)).relative_to(real_root)
        return str(relative)
    except ValueError:  # not under the archive directory by name; maybe by a hard link
        pass
    # Another name of an archive file has several names, on the archive's filesystem (a
    # directory of the archive, so a mounted subfolder is covered).
    if st.st_nlink < 2:
        return None
    try:
        with os.scandir(real_root) as top:
            devices = {os.stat(real_root).st_dev} | {
                e.stat().st_dev for e in top if e.is_dir(follow_symlinks=False)}
    except OSError:
        return None
    if st.st_dev not in devices:
        return None
    folders = [str(real_root)]
    while folders:  # readdir gives inode numbers for free; stat only a matching one
        try:
            with os.scandir(folders.pop()) as listing:
                entries = list(listing)
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(entry.path)
                elif entry.inode() == st.st_ino and entry.stat(follow_symlinks=False).st_dev == st.st_dev:
                    return os.path.relpath(entry.path, real_root)
            except OSError:  # removed meanwhile (a -wal, a temporary file)
                continue
    return None
