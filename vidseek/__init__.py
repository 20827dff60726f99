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
    SEARCH_MODES,
    FailedFile,
    IngestProgress,
    IngestReport,
    ReindexReport,
    SkippedFile,
    default_archive_path,
)
from .annotations import Annotation, AnnotationError, read_annotations, write_annotations
from .errors import (
    ArchiveError,
    ArchiveLockedError,
    CorruptVideoError,
    EmptyFileError,
    EncoderMismatchError,
    IngestCancelled,
    MissingDependencyError,
    ModelError,
    NotAVideoError,
    QueryError,
    TruncatedVideoError,
    VideoError,
    VidseekError,
)
from .exports import EXPORT_FORMATS, ExportItem, export_results
from .daemon import DaemonConfig, DaemonEvent, DaemonReport, IngestDaemon
from .evaluation import EvalReport, evaluate_archive, score_predictions, temporal_iou
from .indexer.decode import FrameSampler, VideoInfo, probe_video, read_frame
from .store.dense_tokens import DenseTokens
from .indexer.discover import VIDEO_EXTENSIONS, discover_videos
from .indexer.watch import FileState, FolderWatcher
from .indexer.pipeline import IngestConfig
from .models.encoder import DEFAULT_MODEL, EncoderInfo, FrameEncoder
from .models.grounder import STAGES as GROUNDING_STAGES
from .models.grounder import Grounder, GrounderConfig, WindowConfig
from .query.grounded import GroundingNode, GroundingOptions, GroundingResult, ranked_moments
from .indexer.distributed import RayOptions
from .query.moments import Moment
from .query.objects import ObjectHit, Region, TrackPoint
from .settings import ServiceSettings
from .store.catalog import VideoRecord
from .store.jobs import JOB_STATES, Job, JobQueue
from .synth.longvideo import WorldVideoConfig, build_world_video
from .train.grounding import (
    GroundingTrainConfig,
    StageReport,
    TrainProgress,
    train_grounder_from_archive,
)
from .train.world_encoder import WorldEncoderReport, train_world_encoder

__all__ = [
    "RayOptions",
    "__version__",
    "Archive", "ArchiveInfo", "IngestConfig", "IngestProgress", "IngestReport", "FailedFile",
    "SkippedFile", "ReindexReport", "SEARCH_MODES", "default_archive_path",
    "EXPORT_FORMATS", "ExportItem", "export_results",
    "Moment", "ObjectHit", "TrackPoint", "Region", "VideoRecord", "DenseTokens", "discover_videos", "VIDEO_EXTENSIONS",
    "IngestDaemon", "DaemonConfig", "DaemonEvent", "DaemonReport", "Job", "JobQueue",
    "JOB_STATES", "FolderWatcher", "FileState", "ServiceSettings",
    "FrameEncoder", "EncoderInfo", "DEFAULT_MODEL",
    "FrameSampler", "VideoInfo", "probe_video", "read_frame",
    "Annotation", "read_annotations", "write_annotations",
    "EvalReport", "evaluate_archive", "score_predictions", "temporal_iou",
    "WorldVideoConfig", "build_world_video", "WorldEncoderReport", "train_world_encoder",
    "Grounder", "GrounderConfig", "WindowConfig", "GROUNDING_STAGES", "GroundingOptions",
    "GroundingResult", "GroundingNode", "ranked_moments", "GroundingTrainConfig",
    "TrainProgress", "StageReport", "train_grounder_from_archive",
    "VidseekError", "VideoError", "EmptyFileError", "NotAVideoError", "CorruptVideoError",
    "TruncatedVideoError", "ArchiveError", "EncoderMismatchError", "ArchiveLockedError",
    "IngestCancelled", "ModelError", "MissingDependencyError", "QueryError", "AnnotationError",
]
