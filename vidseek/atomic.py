"""Atomic, durable file writes: the one way vidseek puts a file or folder in place.

Every write follows the same four steps: write under a temporary name in the target's
folder, fsync the data, rename over the target, fsync the folder (a rename is on disk only
once its folder is). A crash at any point leaves either the old file or the new one, never
a mix; a leftover temporary name is harmless and is overwritten by the next write.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

__all__ = ["fsync_directory", "atomic_write", "atomic_write_bytes", "atomic_write_text",
           "atomic_replace_dir", "temporary_path"]


def fsync_directory(path: str | os.PathLike) -> None:
    """Make renames inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temporary_path(path: str | os.PathLike) -> Path:
    """The temporary name a write of ``path`` uses: hidden, beside it, per process (two
    processes writing the same file never share one), keeping the suffix for writers that
    look at it (``np.savez``, PIL)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Put a file at ``path`` atomically: ``write(tmp)`` writes it under a temporary name."""
    path = Path(path)
    tmp = temporary_path(path)
    try:
        write(tmp)
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_replace_dir(built: str | os.PathLike, path: str | os.PathLike, *,
                       keep_existing: bool = False) -> Path:
    """Move a fully written folder ``built`` to ``path``, replacing what was there.

    The files of ``built`` are fsynced first. An existing ``path`` is renamed aside and
    deleted after the swap, so a crash leaves the old folder or the new one at ``path`` (and
    at worst a stray ``.old`` folder beside it). With ``keep_existing``, a ``path`` that
    already exists (another process finished first) wins and ``built`` is discarded.
    """
    built, path = Path(built), Path(path)
    if keep_existing and path.exists():
        shutil.rmtree(built, ignore_errors=True)
        return path
    for file in built.rglob("*"):
        if file.is_file():
            _fsync_file(file)
    fsync_directory(built)
    old = path.with_name(f"{path.name}.old{os.getpid()}")
    if path.exists():
        os.replace(path, old)
    os.replace(built, path)
    fsync_directory(path.parent)
    shutil.rmtree(old, ignore_errors=True)
    return path
