"""Ingest orchestration: plan each file (probe, hash, skip if unchanged), extract its
features (here or on Ray), commit it to the store.

A video is committed whole or not at all (:meth:`ArchiveStore.commit_video` is atomic), so
a failure or a crash at any point leaves the archive as it was before that video. Errors
reading an input are the file's problem: they become a :class:`~vidseek.errors.VideoError`
naming the file, reported in :class:`IngestReport.failed`, and the run goes on.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from ..errors import ConfigError, IngestCancelled, VideoError
from ..models.encoder import FrameEncoder
from ..models.grounder import Grounder
from ..store.archive_store import ArchiveStore
from ..store.catalog import VideoRecord
from ..store.files import VideoFeatures
from ..store.sources import archive_file_name, source_identity, source_identity_of
from .decode import VideoInfo, cannot_read, probe_video
from .discover import file_digest, real_path, scan_paths
from .distributed import RayOptions, extract_on_ray
from .pipeline import IngestConfig, extract_features
from .sparse import compute_sparse_tokens

__all__ = ["Ingester", "IngestProgress", "IngestReport", "SkippedFile", "FailedFile", "INGEST_ENGINES",
           "check_settings", "recorded_precision", "archive_config"]

INGEST_ENGINES = ("local", "ray")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestProgress:
    """Reported to an ingest ``progress`` callback."""

    path: Path
    file_index: int  # 0-based position of this file in the run
    file_count: int
    stage: str  # "start", "frames", "commit", "indexed", "skipped" or "failed"
    seconds_done: float = 0.0  # video time decoded and encoded so far
    duration: float = 0.0  # declared duration of the video (0 when unknown)


@dataclass(frozen=True)
class SkippedFile:
    path: Path
    reason: str


@dataclass(frozen=True)
class FailedFile:
    path: Path
    error: str


@dataclass
class IngestReport:
    """What one ingest run did."""

    indexed: list[VideoRecord] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    failed: list[FailedFile] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def video_seconds(self) -> float:
        return sum(v.duration for v in self.indexed)


Notify = Callable[[IngestProgress], None]


@dataclass(frozen=True)
class _Plan:
    """What planning found out about a file to index: its header, content hash and
    identity (all taken before its features, which commit checks it still has)."""

    info: VideoInfo
    digest: str
    identity: dict[str, int]

# Ingest settings that change what is stored; an archive keeps the ones it was built with.
_STORED_SETTINGS = ("fps", "prune_threshold")
# Archives from before the precision setting was recorded computed their embeddings in fp32.
_DEFAULT_RECORDED_PRECISION = "fp32"


def recorded_precision(recorded: dict) -> str:
    """The image-tower precision an archive's recorded ingest settings say it was built with."""
    return str(recorded.get("precision", _DEFAULT_RECORDED_PRECISION))


def archive_config(config: IngestConfig, recorded: dict | None, device: str | None) -> IngestConfig:
    """``config`` as an archive ingests with it: precision ``auto`` becomes the one the archive
    recorded (``recorded``: its ingest settings), or for a new archive (None) the default
    for ``device`` (None: :func:`~vidseek.models.encoder.default_device`)."""
    return config.resolved(device, recorded_precision(recorded) if recorded is not None else None)


def check_settings(root: Path, recorded: dict, config: IngestConfig) -> None:
    """ConfigError if ``config`` would store videos differently from the settings the
    archive at ``root`` recorded (its sampling rate, its pruning threshold, its image-tower
    precision): one archive never mixes sampling rates or embedding precisions.
    Precision ``auto`` takes the archive's, so never conflicts.
    ``batch_size`` and the thread counts may differ; they change nothing stored."""
    conflicts = [f"{name} {recorded[name]:g} (given {getattr(config, name):g})"
                 for name in _STORED_SETTINGS
                 if name in recorded and not math.isclose(recorded[name], getattr(config, name),
                                                          rel_tol=1e-9, abs_tol=1e-12)]
    if config.precision != "auto" and recorded_precision(recorded) != config.precision:
        conflicts.append(f"precision {recorded_precision(recorded)} (given {config.precision})")
    if conflicts:
        raise ConfigError(f"{root}: this archive was built with {', '.join(conflicts)}; an archive "
                          "keeps its own ingest settings (use a new archive for other ones)")


class Ingester:
    """Indexes files into one store with one encoder and one config.

    ``encoder`` and ``grounder`` are called when first needed, so a run whose files are all
    skipped or unreadable loads no model (and a new archive adopts no encoder). Precision
    ``auto`` in ``config`` is resolved once the encoder is loaded (:meth:`_loaded_encoder`).
    """

    def __init__(self, store: ArchiveStore, config: IngestConfig,
                 encoder: Callable[[], FrameEncoder],
                 grounder: Callable[[], Grounder | None]) -> None:
        self.store = store
        self.config = config
        self._encoder = encoder
        self._grounder = grounder

    def _loaded_encoder(self) -> FrameEncoder:
        """The encoder, with ``config``'s precision resolved against the manifest as it is
        once the encoder is loaded: if another process created the archive meanwhile, ``auto``
        takes the precision it recorded."""
        encoder = self._encoder()
        manifest = self.store.manifest
        self.config = archive_config(self.config, manifest["ingest"] if manifest is not None else None,
                                     encoder.device)
        return encoder

    def ingest(self, paths: Iterable[str | os.PathLike[str]], *, recursive: bool = True,
               progress: Notify | None = None, engine: str = "local",
               ray: RayOptions | None = None) -> IngestReport:
        """Index every video under ``paths``; see :meth:`vidseek.Archive.ingest`."""
        if engine not in INGEST_ENGINES:
            raise ConfigError(f"engine must be one of {', '.join(INGEST_ENGINES)}, got {engine!r}")
        started = time.perf_counter()
        report = IngestReport()
        found = scan_paths(paths, recursive=recursive)
        notify = progress or (lambda event: None)
        # folders that could not be listed or were not entered come first, then the files
        count = len(found.failed) + len(found.skipped) + len(found.files)
        for n, exc in enumerate(found.failed):
            _failed(report, notify, exc, n, count)
        for n, (folder, reason) in enumerate(found.skipped, len(found.failed)):
            logger.warning("skipped %s: %s", folder, reason)
            _done(report, notify, folder, SkippedFile(folder, reason), n, count)
        first = count - len(found.files)
        if engine == "ray":
            self._ingest_on_ray(found.files, report, notify, ray or RayOptions(), first, count)
        else:
            for n, path in enumerate(found.files, first):
                notify(IngestProgress(path, n, count, "start"))
                try:
                    outcome = self._ingest_one(path, n, count, notify)
                except VideoError as exc:
                    _failed(report, notify, exc, n, count)
                    continue
                _done(report, notify, path, outcome, n, count)
        self.store.collect_garbage()
        report.seconds = time.perf_counter() - started
        return report

    def ingest_file(self, path: Path, *, progress: Notify | None = None,
                    cancel: threading.Event | None = None) -> VideoRecord | SkippedFile:
        """Index one file; see :meth:`vidseek.Archive.ingest_file`."""
        notify = progress or (lambda event: None)
        path = real_path(path)

        def checked(event: IngestProgress) -> None:
            if cancel is not None and cancel.is_set():
                raise IngestCancelled(f"{path}: ingest stopped on request")
            notify(event)

        return self._ingest_one(path, 0, 1, checked)

    # -- one file ---------------------------------------------------------------------
    def _ingest_one(self, path: Path, n: int, count: int, notify: Notify) -> VideoRecord | SkippedFile:
        plan = self._plan(path)
        if isinstance(plan, SkippedFile):
            return plan
        info = plan.info
        encoder = self._loaded_encoder()
        try:
            t0 = time.perf_counter()
            features, sampler = extract_features(
                path, encoder, self.config,
                on_progress=lambda done: notify(
                    IngestProgress(path, n, count, "frames", done, info.duration)))
        except OSError as exc:
            raise cannot_read(path, exc) from exc
        notify(IngestProgress(path, n, count, "commit", sampler.duration, info.duration))
        return self._commit(path, plan, features, sampler.duration, time.perf_counter() - t0)

    def _plan(self, path: Path) -> SkippedFile | _Plan:
        """Probe and hash a file: a :class:`SkippedFile` when it is indexed and unchanged."""
        own = archive_file_name(self.store.root, path)  # a stat: nothing opened yet
        if own is not None:
            raise VideoError(path, f"is the archive's own file {own}, not a video")
        try:
            info = probe_video(path)  # fails fast on empty / non-video files
            identity = source_identity(path.stat())  # what the hash and features are of
            digest = file_digest(path)
        except OSError as exc:
            raise cannot_read(path, exc) from exc
        existing = self.store.catalog.video_by_path(str(path))
        if (existing is not None and existing.content_hash == digest
                and existing.fps == self.config.fps):
            if identity != source_identity_of(existing):  # same bytes, new inode or time (a copy, a touch)
                self.store.catalog.set_source_identity(existing.id, identity)
            return SkippedFile(path, "unchanged since it was indexed")
        return _Plan(info, digest, identity)

    def _commit(self, path: Path, plan: _Plan, features: VideoFeatures,
                duration: float, seconds: float) -> VideoRecord:
        """Commit one video's features (with sparse tokens when a grounder is set)."""
        try:
            now = source_identity(path.stat())
        except OSError as exc:
            raise cannot_read(path, exc) from exc
        if now != plan.identity:  # media is served only from the very file that was indexed
            raise VideoError(path, "cannot read the file: it changed while it was being indexed "
                                   "(it is tried again)")
        info = plan.info
        fields = dict(
            path=str(path), name=path.name, content_hash=plan.digest, **plan.identity,
            duration=duration, fps=self.config.fps, native_fps=info.native_fps,
            width=info.width, height=info.height, codec=info.codec, frames=len(features.times),
            kept_fraction=features.dense.kept_fraction, status="indexed", indexed_at=time.time(),
            ingest_seconds=seconds,
        )
        sparse = windows = None
        grounder = self._grounder()
        if grounder is not None:
            sparse, windows = compute_sparse_tokens(grounder, features, self.config.fps)
        record = self.store.commit_video(fields, features, sparse, windows)
        logger.info("indexed %s: %d frames, %.1fs, %.0f%% dense tokens kept", path,
                    record.frames, record.duration, 100 * record.kept_fraction)
        return record

    # -- Ray ----------------------------------------------------------------------------
    def _ingest_on_ray(self, files: list[Path], report: IngestReport, notify: Notify,
                       options: RayOptions, first: int, count: int) -> None:
        """Plan here (probe, hash, skip), extract on Ray, commit here as results arrive."""
        planned: dict[Path, tuple[int, _Plan]] = {}
        for n, path in enumerate(files, first):
            notify(IngestProgress(path, n, count, "start"))
            try:
                outcome = self._plan(path)
            except VideoError as exc:
                _failed(report, notify, exc, n, count)
                continue
            if isinstance(outcome, SkippedFile):
                _done(report, notify, path, outcome, n, count)
            else:
                planned[path] = (n, outcome)
        if not planned:
            return
        info = self._loaded_encoder().info
        for path, result in extract_on_ray(list(planned), info.name, info.fingerprint,
                                           self.config, options):
            n, plan = planned[path]
            try:
                if isinstance(result, VideoError):
                    raise result
                notify(IngestProgress(path, n, count, "commit", result.duration, plan.info.duration))
                record = self._commit(path, plan, result.features, result.duration, result.seconds)
            except VideoError as exc:
                _failed(report, notify, exc, n, count)
                continue
            _done(report, notify, path, record, n, count)


def _failed(report: IngestReport, notify: Notify, exc: VideoError, n: int, count: int) -> None:
    logger.info("failed: %s", exc)
    report.failed.append(FailedFile(exc.path, str(exc)))
    notify(IngestProgress(exc.path, n, count, "failed"))


def _done(report: IngestReport, notify: Notify, path: Path,
          outcome: VideoRecord | SkippedFile, n: int, count: int) -> None:
    if isinstance(outcome, SkippedFile):
        report.skipped.append(outcome)
        notify(IngestProgress(path, n, count, "skipped"))
    else:
        report.indexed.append(outcome)
        notify(IngestProgress(path, n, count, "indexed", outcome.duration, outcome.duration))
