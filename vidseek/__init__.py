"""vidseek: a streaming video indexing engine.

Ingest a video archive once; then find *when* something happens, by text or by image.

>>> import vidseek
>>> archive = vidseek.Archive.open("archive-dir")                          # doctest: +SKIP
>>> report = archive.ingest(["footage/"])                                  # doctest: +SKIP
>>> for moment in archive.search("a goalkeeper drops the ball", top_k=5):  # doctest: +SKIP
...     print(moment.video, moment.start, moment.end, moment.score)

The root holds what a media tool needs: :class:`Archive`, its configs and results, and the
main errors. The rest lives in public submodules: :mod:`vidseek.errors` (every error class),
:mod:`vidseek.models` (encoder, grounder), :mod:`vidseek.indexer` (decoding, discovery),
:mod:`vidseek.annotations`, :mod:`vidseek.evaluation`, :mod:`vidseek.exports`,
:mod:`vidseek.train`, :mod:`vidseek.synth` and :mod:`vidseek.service` (daemon, jobs,
settings); none of the last three is imported by ``import vidseek``.
"""

from ._version import __version__
from .archive import (
    Archive,
    ArchiveInfo,
    DoctorFinding,
    DoctorReport,
    SEARCH_MODES,
    FailedFile,
    IngestProgress,
    IngestReport,
    ReindexReport,
    SkippedFile,
    default_archive_path,
)
from .errors import (
    AnnotationError,
    ArchiveError,
    ConfigError,
    MissingDependencyError,
    ModelError,
    QueryError,
    VideoError,
    VidseekError,
)
from .exports import EXPORT_FORMATS
from .indexer.distributed import RayOptions
from .indexer.pipeline import INGEST_PRECISIONS, IngestConfig
from .query.grounded import (LEVEL1_MODES, REFINE_MODES, GroundingNode, GroundingOptions, GroundingResult,
                             ranked_moments)
from .query.moments import Moment
from .query.objects import ObjectHit, Region, TrackPoint
from .query.search import SearchWarning
from .store.catalog import VideoRecord

__all__ = [
    "__version__",
    # the archive and what it takes and returns
    "Archive", "ArchiveInfo", "IngestConfig", "INGEST_PRECISIONS", "RayOptions", "IngestProgress", "IngestReport",
    "FailedFile", "SkippedFile", "ReindexReport", "VideoRecord", "SEARCH_MODES",
    "default_archive_path", "Moment", "GroundingOptions", "GroundingResult", "GroundingNode",
    "ranked_moments", "LEVEL1_MODES", "REFINE_MODES", "ObjectHit", "TrackPoint", "Region", "EXPORT_FORMATS", "SearchWarning",
    # what `Archive.check` and `Archive.repair` (vidseek doctor) report
    "DoctorReport", "DoctorFinding",
    # errors (every subclass is in vidseek.errors)
    "VidseekError", "VideoError", "ArchiveError", "ModelError", "QueryError", "ConfigError",
    "MissingDependencyError", "AnnotationError",
]
