"""Reading indexed videos for the server: the file itself (checked), thumbnails, MIME types."""

from __future__ import annotations

from functools import lru_cache
from io import BytesIO
from pathlib import Path

from fastapi import HTTPException
from PIL import Image

import vidseek

import vidseek.indexer
__all__ = ["servable_path", "servable", "thumbnail_jpeg", "media_type"]


def servable_path(arch: vidseek.Archive, record: vidseek.VideoRecord) -> Path:
    """The video's file, if its path still holds the very file indexed there (see
    :meth:`vidseek.Archive.media_path`: nothing is opened to check); else 404 naming the
    video, never its path."""
    try:
        return arch.media_path(record)
    except vidseek.VideoError as exc:
        raise HTTPException(404, f"video {record.id} ({record.name}) cannot be served: {exc.problem}")


def servable(arch: vidseek.Archive, record: vidseek.VideoRecord) -> bool:
    try:
        arch.media_path(record)
    except vidseek.VideoError:
        return False
    return True


@lru_cache(maxsize=256)
def thumbnail_jpeg(path: str, content_hash: str, t: float, width: int) -> bytes:
    # content_hash is part of the key: a replaced file must not serve its old frames
    image = vidseek.indexer.read_frame(path, t)
    height = max(1, round(image.height * width / image.width))
    out = BytesIO()
    image.resize((width, height), Image.Resampling.BILINEAR).save(out, "JPEG", quality=80)
    return out.getvalue()


_MEDIA_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime",
                ".webm": "video/webm", ".mkv": "video/x-matroska", ".ogv": "video/ogg",
                ".avi": "video/x-msvideo", ".ts": "video/mp2t"}


def media_type(path: Path) -> str:
    return _MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")
