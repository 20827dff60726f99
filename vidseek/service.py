"""The long-running side of vidseek: the ingest daemon, its durable job queue, folder
watching and the ``VIDSEEK_*`` settings the daemon and the server read.

``import vidseek.service`` (``import vidseek`` does not load it).
"""

from .daemon import DaemonConfig, DaemonEvent, DaemonReport, IngestDaemon, StreamSpec, parse_stream
from .indexer.watch import FileState, FolderWatcher
from .settings import ServiceSettings
from .store.jobs import JOB_STATES, Job, JobQueue
from .store.stream_jobs import STREAM_JOB_STATES, StreamJob, StreamJobs

__all__ = ["IngestDaemon", "DaemonConfig", "DaemonEvent", "DaemonReport", "Job", "JobQueue",
           "JOB_STATES", "FolderWatcher", "FileState", "ServiceSettings", "StreamSpec",
           "parse_stream", "StreamJob", "StreamJobs", "STREAM_JOB_STATES"]
