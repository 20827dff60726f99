"""vidseek: a streaming video indexing engine.

Ingest a video archive once; then find *when* something happens, by text or by image.

>>> import vidseek
>>> archive = vidseek.Archive.open("archive-dir")                          # doctest: +SKIP
>>> report = archive.ingest(["footage/"])                                  # doctest: +SKIP
>>> for moment in archive.search("a goalkeeper drops the ball", top_k=5):  # doctest: +SKIP
...     print(moment.video, moment.start, moment.end, moment.score)
"""

__version__ = "0.1.0"

from .archive import (
    Archive,
    ArchiveInfo,
    FailedFile,
    IngestProgress,
    IngestReport,
    SkippedFile,
    default_archive_path,
)
from .errors import (
    ArchiveError,
    ArchiveLockedError,
    CorruptVideoError,
    EmptyFileError,
    EncoderMismatchError,
    MissingDependencyError,
    ModelError,
    NotAVideoError,
    QueryError,
    TruncatedVideoError,
    VideoError,
    VidseekError,
)
from .indexer.decode import FrameSampler, VideoInfo, probe_video, read_frame
from .indexer.dense import DenseTokens
from .indexer.pipeline import IngestConfig
from .models.encoder import DEFAULT_MODEL, EncoderInfo, FrameEncoder
from .query.moments import Moment
from .store.catalog import VideoRecord

__all__ = [
    "__version__",
    "Archive", "ArchiveInfo", "IngestConfig", "IngestProgress", "IngestReport", "FailedFile",
    "SkippedFile", "default_archive_path",
    "Moment", "VideoRecord", "DenseTokens",
    "FrameEncoder", "EncoderInfo", "DEFAULT_MODEL",
    "FrameSampler", "VideoInfo", "probe_video", "read_frame",
    "VidseekError", "VideoError", "EmptyFileError", "NotAVideoError", "CorruptVideoError",
    "TruncatedVideoError", "ArchiveError", "EncoderMismatchError", "ArchiveLockedError",
    "ModelError", "MissingDependencyError", "QueryError",
]
