"""Finding video files and recognising unchanged ones."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable

__all__ = ["VIDEO_EXTENSIONS", "discover_videos", "file_digest"]

VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts",
    ".m2ts", ".wmv", ".flv", ".ogv", ".3gp",
})


def discover_videos(paths: Iterable[str | os.PathLike[str]], recursive: bool = True) -> list[Path]:
    """Expand files and folders into video files (absolute, sorted, without duplicates).

    Files named explicitly are always returned, whatever their extension, so a bad file is
    reported rather than silently ignored; inside folders only known video extensions count.
    Hidden files and folders are skipped.
    """
    found: dict[Path, None] = {}
    for raw in paths:
        path = Path(raw).expanduser().resolve()
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            for child in sorted(path.glob(pattern)):
                rel = child.relative_to(path)
                if any(part.startswith(".") for part in rel.parts):
                    continue
                if child.is_file() and child.suffix.lower() in VIDEO_EXTENSIONS:
                    found[child] = None
        else:
            found[path] = None
    return list(found)


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """BLAKE2b content hash of a file (hex, 32 chars)."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
