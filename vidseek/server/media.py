"""Reading indexed videos for the server: the file itself (checked), thumbnails, MIME types."""

from __future__ import annotations

import os
from functools import lru_cache
from io import BytesIO
from pathlib import Path

from fastapi import HTTPException
from PIL import Image

import vidseek

import vidseek.indexer
__all__ = ["servable_path", "thumbnail_jpeg", "media_type"]


def servable_path(record: vidseek.VideoRecord) -> Path:
    """The video's file, if it is still the video that was indexed at that path.

    The path must be a regular file and resolve to itself, or (footage linked into a folder)
    to a file with a video extension and the size the file had at ingest. So a symlink
    swapped in after ingest, pointing at the catalog or a key file, is refused.
    """
    path = Path(record.path)
    gone = HTTPException(404, f"the file of video {record.id} is no longer at its path")
    try:
        real = Path(os.path.realpath(path))
        if not real.is_file():
            raise gone
        if real != path and (real.suffix.lower() not in vidseek.indexer.VIDEO_EXTENSIONS
                             or real.stat().st_size != record.size_bytes):
            raise gone
    except OSError:
        raise gone
    return real


@lru_cache(maxsize=256)
def thumbnail_jpeg(path: str, content_hash: str, t: float, width: int) -> bytes:
    # content_hash is part of the key: a replaced file must not serve its old frames
    image = vidseek.indexer.read_frame(path, t)
    height = max(1, round(image.height * width / image.width))
    out = BytesIO()
    image.resize((width, height), Image.BILINEAR).save(out, "JPEG", quality=80)
    return out.getvalue()


_MEDIA_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime",
                ".webm": "video/webm", ".mkv": "video/x-matroska", ".ogv": "video/ogg",
                ".avi": "video/x-msvideo", ".ts": "video/mp2t"}


def media_type(path: Path) -> str:
    return _MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")
