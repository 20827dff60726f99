"""The exception hierarchy of vidseek.

Every error vidseek raises on purpose is a :class:`VidseekError`, so callers can
catch one class. Errors about one input file carry its path.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "VidseekError",
    "VideoError",
    "EmptyFileError",
    "NotAVideoError",
    "CorruptVideoError",
    "TruncatedVideoError",
    "ArchiveError",
    "EncoderMismatchError",
    "ArchiveLockedError",
    "ModelError",
    "MissingDependencyError",
    "QueryError",
    "ConfigError",
    "AnnotationError",
    "IngestCancelled",
    "StreamError",
]


class VidseekError(Exception):
    """Base class of every error vidseek raises on purpose."""


class VideoError(VidseekError):
    """An input video could not be used. ``path`` names the file."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class EmptyFileError(VideoError):
    """The file has zero bytes."""


class NotAVideoError(VideoError):
    """The file is not a container FFmpeg can read, or has no video stream."""


class CorruptVideoError(VideoError):
    """Decoding failed part-way; ``frames_decoded`` frames were read before it."""

    def __init__(self, path: str | Path, problem: str, frames_decoded: int = 0) -> None:
        self.frames_decoded = frames_decoded
        super().__init__(path, problem)


class TruncatedVideoError(CorruptVideoError):
    """The stream ends well before the duration the container declares."""


class ArchiveError(VidseekError):
    """The archive directory is missing, unreadable, or inconsistent with a request."""


class EncoderMismatchError(ArchiveError):
    """The archive was built with another encoder than the one asked for."""


class ArchiveLockedError(ArchiveError):
    """Another process holds the archive's write lock for too long."""


class ModelError(VidseekError):
    """A model or checkpoint could not be loaded or is not a supported kind."""


class MissingDependencyError(VidseekError, ImportError):
    """An optional dependency is not installed; the message names the extra."""


class QueryError(VidseekError):
    """A search request is invalid (empty text, unreadable image, unknown video)."""


class IngestCancelled(VidseekError):
    """An ingest was stopped on request before its video was committed (nothing was written)."""


class ConfigError(VidseekError, ValueError):
    """A setting or option has a value it cannot take (also a ``ValueError``)."""


class AnnotationError(VidseekError):
    """An annotation file is malformed; the message names the file and the line."""


class StreamError(VidseekError):
    """A live source could not be opened or read, or stopped for good. ``url`` names it
    without credentials (``rtsp://***@camera/live``)."""

    def __init__(self, url: str, problem: str) -> None:
        self.url = url
        self.problem = problem
        super().__init__(f"{url}: {problem}")
