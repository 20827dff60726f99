"""The public entry point: an :class:`Archive` ingests videos and answers searches.

It wires the three layers together — ``indexer`` (decode, encode, prune) writes into
``store`` (catalog, feature files, FAISS), which ``query`` reads — and owns the encoder.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image

from . import __version__
from .errors import ConfigError, EncoderMismatchError, IngestCancelled, ModelError, QueryError, VideoError
from .indexer.decode import VideoInfo, probe_video
from .indexer.discover import discover_videos, file_digest
from .indexer.distributed import RayOptions, extract_on_ray
from .indexer.pipeline import IngestConfig, extract_features
from .models.encoder import DEFAULT_MODEL, EncoderInfo, FrameEncoder
from .indexer.sparse import compute_sparse_tokens
from .models.grounder import Grounder
from .query.grounded import GroundingOptions, GroundingResult, ground_video, ranked_moments
from .query.moments import Moment
from .exports import ExportItem, export_results
from .models.pooling import pool_2x2
from .query.objects import ObjectHit, Region, find_object, object_token
from .query.search import search_moments
from .store.archive_store import ArchiveStore
from .store.catalog import VideoRecord
from .store.files import VideoFeatures
from .store.jobs import JobQueue

__all__ = ["Archive", "ArchiveInfo", "IngestProgress", "IngestReport", "FailedFile",
           "SkippedFile", "ReindexReport", "SEARCH_MODES", "default_archive_path"]

SEARCH_MODES = ("clip", "grounded")
# Videos the grounded mode examines when no video is named: the coarse retrieval's best.
_GROUNDED_CANDIDATES = 5

logger = logging.getLogger(__name__)


def default_archive_path() -> Path:
    """``$VIDSEEK_ARCHIVE`` if set, else ``./vidseek-archive``."""
    return Path(os.environ.get("VIDSEEK_ARCHIVE") or "vidseek-archive")


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
    """What one :meth:`Archive.ingest` call did."""

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


@dataclass
class ReindexReport:
    updated: int = 0
    skipped: int = 0  # already current, or replaced meanwhile
    seconds: float = 0.0


@dataclass(frozen=True)
class ArchiveInfo:
    path: Path
    encoder: str
    encoder_fingerprint: str
    embed_dim: int
    videos: int
    hours: float
    frames: int
    index_kind: str
    disk_bytes: int
    fps: float
    prune_threshold: float
    grounder: str = ""  # grounding checkpoint path ("" if none)
    sparse_videos: int = 0  # videos whose sparse tokens match that checkpoint


class Archive:
    """An archive directory opened for ingest and search.

    >>> archive = Archive.open("my-archive", model="openai/clip-vit-base-patch32")
    >>> archive.ingest(["footage/"])                                      # doctest: +SKIP
    >>> archive.search("a dog catches a frisbee", top_k=5)                # doctest: +SKIP
    """

    def __init__(self, store: ArchiveStore, model: str, config: IngestConfig,
                 device: str | None, encoder: FrameEncoder | None = None,
                 int8_text: bool = False, int8_llm: bool = False) -> None:
        self._store = store
        self.config = config
        self._model = model
        self._device = device
        self._int8_text = int8_text
        self._int8_llm = int8_llm
        if encoder is not None:
            self._quantised_encoder(encoder)
        self._encoder = encoder
        self._grounder: Grounder | None = None
        self._grounder_lock = threading.Lock()  # also guards creating the job queue
        self._computed_sparse: dict[tuple[int, str], np.ndarray] = {}
        self._jobs: JobQueue | None = None

    @classmethod
    def open(cls, path: str | os.PathLike | None = None, model: str | os.PathLike | None = None, *,
             device: str | None = None, config: IngestConfig | None = None,
             create: bool = True, ivf_threshold: int = 200_000,
             patch_threshold: int = 100_000, int8_text: bool = False,
             int8_llm: bool = False, nprobe: int = 64) -> "Archive":
        """Open (or create) an archive.

        ``model`` is a CLIP/SigLIP hub id or local directory. A new archive adopts it (default
        :data:`~vidseek.models.encoder.DEFAULT_MODEL`); an existing one uses its own and raises
        :class:`~vidseek.errors.EncoderMismatchError` if ``model`` is a different encoder.
        ``config`` sets the ingest defaults of a new archive; an existing one keeps its own.
        ``int8_text`` encodes text queries with int8 weights (CPU; see
        :meth:`~vidseek.models.encoder.FrameEncoder.quantize_text`): about half the time of
        a CLIP-mode query's text encoding, at a cosine of 0.998 to the float32 embedding.
        ``int8_llm`` answers grounded queries with an int8 LM (CPU; see
        :meth:`~vidseek.models.grounder.Grounder.quantize_llm`): about half the time. Both
        apply on CPU only; on a GPU they are skipped with a warning.
        ``nprobe`` is how many IVF lists of the frame index a search scans once the archive
        is large enough for IVF (docs/scale.md): fewer is faster, at some recall.
        """
        store = ArchiveStore(path if path is not None else default_archive_path(),
                             create=create, ivf_threshold=ivf_threshold,
                             patch_threshold=patch_threshold, nprobe=nprobe)
        manifest = store.manifest
        if manifest is None:
            config = config or IngestConfig()
            archive = cls(store, str(model or DEFAULT_MODEL), config, device, int8_text=int8_text,
                          int8_llm=int8_llm)
            return archive
        settings = manifest["ingest"]
        config = config or IngestConfig(fps=settings["fps"], prune_threshold=settings["prune_threshold"])
        archive = cls(store, manifest["encoder"]["name"], config, device, int8_text=int8_text,
                      int8_llm=int8_llm)
        if model is not None:
            archive._model = str(model)
            archive._load_encoder()  # verifies the fingerprint against the manifest
        return archive

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> "Archive":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- encoder ----------------------------------------------------------------
    @property
    def encoder(self) -> FrameEncoder:
        """The archive's encoder, loaded on first use."""
        if self._encoder is None:
            self._load_encoder()
        return self._encoder  # type: ignore[return-value]

    def _load_encoder(self) -> None:
        encoder = FrameEncoder.load(self._model, device=self._device)
        if self._store.manifest is None:
            self._store.set_manifest({  # a no-op if another process set one meanwhile
                "encoder": encoder.info.to_dict(),
                "ingest": {"fps": self.config.fps, "prune_threshold": self.config.prune_threshold},
                "vidseek_version": __version__,
                "created": time.time(),
            })
        manifest = self._store.manifest
        if manifest is not None:
            built_with = EncoderInfo.from_dict(manifest["encoder"])
            if built_with.fingerprint != encoder.info.fingerprint:
                raise EncoderMismatchError(
                    f"{self._store.root}: archive was built with encoder {built_with.name!r} "
                    f"(fingerprint {built_with.fingerprint}), not {encoder.info.name!r} "
                    f"(fingerprint {encoder.info.fingerprint}); use a new archive for another encoder")
        self._encoder = self._quantised_encoder(encoder)

    # -- ingest -----------------------------------------------------------------
    def ingest(self, paths: Iterable[str | os.PathLike], *, recursive: bool = True,
               progress: Callable[[IngestProgress], None] | None = None,
               engine: str = "local", ray: RayOptions | None = None) -> IngestReport:
        """Index every video under ``paths`` (files or folders).

        Unusable files are reported in ``report.failed`` and skipped; the archive is never
        left holding part of a video. Unchanged files already indexed are skipped.
        ``engine="ray"`` extracts features on a Ray cluster (``ray`` says where); this
        process still commits every video.
        """
        if engine not in ("local", "ray"):
            raise ConfigError(f"engine must be 'local' or 'ray', got {engine!r}")
        started = time.perf_counter()
        report = IngestReport()
        files = discover_videos(paths, recursive=recursive)
        notify = progress or (lambda event: None)
        if engine == "ray":
            self._ingest_on_ray(files, report, notify, ray or RayOptions())
        else:
            for n, path in enumerate(files):
                notify(IngestProgress(path, n, len(files), "start"))
                try:
                    outcome = self._ingest_file(path, n, len(files), notify)
                except VideoError as exc:
                    self._failed(report, notify, exc, n, len(files))
                    continue
                self._done(report, notify, path, outcome, n, len(files))
        self._store.collect_garbage()
        report.seconds = time.perf_counter() - started
        return report

    @staticmethod
    def _failed(report: IngestReport, notify: Callable, exc: VideoError, n: int, count: int) -> None:
        logger.info("failed: %s", exc)
        report.failed.append(FailedFile(exc.path, str(exc)))
        notify(IngestProgress(exc.path, n, count, "failed"))

    @staticmethod
    def _done(report: IngestReport, notify: Callable, path: Path,
              outcome: VideoRecord | SkippedFile, n: int, count: int) -> None:
        if isinstance(outcome, SkippedFile):
            report.skipped.append(outcome)
            notify(IngestProgress(path, n, count, "skipped"))
        else:
            report.indexed.append(outcome)
            notify(IngestProgress(path, n, count, "indexed", outcome.duration, outcome.duration))

    def _ingest_on_ray(self, files: list[Path], report: IngestReport, notify: Callable,
                       options: RayOptions) -> None:
        """Plan here (probe, hash, skip), extract on Ray, commit here as results arrive."""
        planned: dict[Path, tuple[int, VideoInfo, str]] = {}
        for n, path in enumerate(files):
            notify(IngestProgress(path, n, len(files), "start"))
            try:
                outcome = self._plan_file(path)
            except VideoError as exc:
                self._failed(report, notify, exc, n, len(files))
                continue
            if isinstance(outcome, SkippedFile):
                self._done(report, notify, path, outcome, n, len(files))
            else:
                planned[path] = (n, *outcome)
        info = self.encoder.info
        for path, result in extract_on_ray(list(planned), info.name, info.fingerprint,
                                           self.config, options):
            n, video_info, digest = planned[path]
            try:
                if isinstance(result, VideoError):
                    raise result
                notify(IngestProgress(path, n, len(files), "commit", result.duration, video_info.duration))
                record = self._commit_file(path, video_info, digest, result.features,
                                           result.duration, result.seconds)
            except VideoError as exc:
                self._failed(report, notify, exc, n, len(files))
                continue
            self._done(report, notify, path, record, n, len(files))

    def ingest_file(self, path: str | os.PathLike, *,
                    progress: Callable[[IngestProgress], None] | None = None,
                    cancel: threading.Event | None = None) -> VideoRecord | SkippedFile:
        """Index one file; the unit of work of the ingest daemon.

        Returns the new record, or a :class:`SkippedFile` if the file is unchanged since it
        was indexed. Raises :class:`~vidseek.errors.VideoError` for unusable files and
        :class:`~vidseek.errors.IngestCancelled` when ``cancel`` is set before the commit
        (the archive is then untouched).
        """
        path = Path(path).expanduser().resolve()
        notify = progress or (lambda event: None)

        def checked(event: IngestProgress) -> None:
            if cancel is not None and cancel.is_set():
                raise IngestCancelled(f"{path}: ingest stopped on request")
            notify(event)

        return self._ingest_file(path, 0, 1, checked)

    def _ingest_file(self, path: Path, n: int, count: int,
                     notify: Callable[[IngestProgress], None]) -> VideoRecord | SkippedFile:
        planned = self._plan_file(path)
        if isinstance(planned, SkippedFile):
            return planned
        info, digest = planned
        try:  # errors reading the input are the file's problem, not the archive's
            t0 = time.perf_counter()
            features, sampler = extract_features(
                path, self.encoder, self.config,
                on_progress=lambda done: notify(
                    IngestProgress(path, n, count, "frames", done, info.duration)))
        except OSError as exc:
            raise VideoError(path, f"cannot read the file: {exc.strerror or exc}") from exc
        notify(IngestProgress(path, n, count, "commit", sampler.duration, info.duration))
        return self._commit_file(path, info, digest, features, sampler.duration,
                                 time.perf_counter() - t0)

    def _plan_file(self, path: Path) -> SkippedFile | tuple[VideoInfo, str]:
        """Probe and hash a file: a :class:`SkippedFile` when it is indexed and unchanged."""
        try:
            info = probe_video(path)  # fails fast on empty / non-video files
            digest = file_digest(path)
        except OSError as exc:
            raise VideoError(path, f"cannot read the file: {exc.strerror or exc}") from exc
        existing = self._store.catalog.video_by_path(str(path))
        if (existing is not None and existing.content_hash == digest
                and existing.fps == self.config.fps):
            return SkippedFile(path, "unchanged since it was indexed")
        return info, digest

    def _commit_file(self, path: Path, info: VideoInfo, digest: str, features: VideoFeatures,
                     duration: float, seconds: float) -> VideoRecord:
        """Commit one video's features (with sparse tokens when a grounder is set)."""
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise VideoError(path, f"cannot read the file: {exc.strerror or exc}") from exc
        fields = dict(
            path=str(path), name=path.name, content_hash=digest, size_bytes=size,
            duration=duration, fps=self.config.fps, native_fps=info.native_fps,
            width=info.width, height=info.height, codec=info.codec, frames=len(features.times),
            kept_fraction=features.dense.kept_fraction, status="indexed", indexed_at=time.time(),
            ingest_seconds=seconds,
        )
        sparse = windows = None
        grounder = self.grounder
        if grounder is not None:
            sparse, windows = compute_sparse_tokens(grounder, features, self.config.fps)
        record = self._store.commit_video(fields, features, sparse, windows)
        logger.info("indexed %s: %d frames, %.1fs, %.0f%% dense tokens kept", path,
                    record.frames, record.duration, 100 * record.kept_fraction)
        return record

    # -- grounding checkpoint ---------------------------------------------------------
    @property
    def grounder(self) -> Grounder | None:
        """The archive's grounding checkpoint (loaded on first use), or None if it has none."""
        with self._grounder_lock:  # server threads must not load it twice
            if self._grounder is None:
                recorded = self._store.catalog.get_meta("grounder")
                if recorded is not None:
                    self._grounder = self._quantised_grounder(self._check_grounder(
                        Grounder.load(recorded["path"], device=self._device)))
        return self._grounder

    # int8 inference is a CPU option: on a GPU the models already run in half precision, so
    # the settings are skipped there (a service configured once may run on either).
    def _quantised_encoder(self, encoder: FrameEncoder) -> FrameEncoder:
        if self._int8_text and not encoder.text_int8:
            if encoder.device == "cpu":
                encoder.quantize_text()
            else:
                logger.warning("int8_text ignored: the encoder runs on %s, not cpu", encoder.device)
        return encoder

    def _quantised_grounder(self, grounder: Grounder) -> Grounder:
        if self._int8_llm and not grounder.llm_int8:
            if grounder.device.type == "cpu":
                grounder.quantize_llm()
            else:
                logger.warning("int8_llm ignored: the grounder runs on %s, not cpu", grounder.device)
        return grounder

    def _check_grounder(self, grounder: Grounder) -> Grounder:
        manifest = self._store.manifest
        if manifest is not None:
            from .train.grounding import adapter_config_for

            want = adapter_config_for(manifest["encoder"])
            have = grounder.config.adapter
            if (have.embed_dim, have.cells, have.cell_width) != (want.embed_dim, want.cells, want.cell_width):
                raise ModelError(
                    f"grounding checkpoint expects {have.embed_dim}-d embeddings and {have.cells} "
                    f"cells of {have.cell_width} channels; this archive's encoder gives "
                    f"{want.embed_dim}, {want.cells} and {want.cell_width}")
        return grounder

    def set_grounder(self, path: str | os.PathLike) -> Grounder:
        """Adopt a grounding checkpoint: later ingests store its sparse tokens, grounded
        searches use it. Run :meth:`reindex` to back-fill videos already indexed."""
        grounder = self._quantised_grounder(self._check_grounder(Grounder.load(path, device=self._device)))
        with self._store.lock:
            self._store.catalog.set_meta("grounder", {
                "path": str(Path(path).resolve()), "fingerprint": grounder.fingerprint,
                "adapter_fingerprint": grounder.adapter_fingerprint})
        self._grounder = grounder
        self._computed_sparse.clear()
        return grounder

    def reindex(self, progress: Callable[[int, int, VideoRecord], None] | None = None) -> ReindexReport:
        """Compute sparse tokens for every video that lacks this checkpoint's, from the stored
        frame features (no video is decoded)."""
        grounder = self.grounder
        if grounder is None:
            raise ModelError(f"{self._store.root}: no grounding checkpoint; set one first "
                             "(Archive.set_grounder or vidseek reindex --grounder)")
        started = time.perf_counter()
        report = ReindexReport()
        videos = self.videos()
        for n, video in enumerate(videos):
            if video.sparse_fingerprint == grounder.adapter_fingerprint:
                report.skipped += 1
            else:
                sparse, windows = compute_sparse_tokens(grounder, self._store.video_features(video), video.fps)
                if self._store.set_sparse(video, sparse, windows):
                    report.updated += 1
                else:
                    report.skipped += 1  # replaced or removed meanwhile; ingest handles it
            if progress is not None:
                progress(n + 1, len(videos), video)
        report.seconds = time.perf_counter() - started
        return report

    def _sparse_tokens(self, record: VideoRecord, features) -> np.ndarray | None:
        """The video's level-1 tokens for the current checkpoint; computed (once per open
        archive) if the archive lacks them. None for videos the dense level covers whole."""
        grounder = self.grounder
        if record.frames <= grounder.config.windows.dense:  # type: ignore[union-attr]
            return None
        sparse = self._store.load_sparse(record)
        if sparse is not None and sparse.fingerprint == grounder.adapter_fingerprint:  # type: ignore[union-attr]
            return sparse.tokens
        key = (record.id, record.features_key)
        if key not in self._computed_sparse:
            logger.warning("%s: no sparse tokens for this grounding checkpoint; computing them "
                           "(run vidseek reindex to store them)", record.path)
            self._computed_sparse[key] = compute_sparse_tokens(grounder, features, record.fps)[0].tokens  # type: ignore[arg-type]
        return self._computed_sparse[key]

    # -- search -----------------------------------------------------------------
    def search(self, text: str | None = None, *, image: str | os.PathLike | Image.Image | np.ndarray | None = None,
               top_k: int = 10, video: str | None = None, mode: str = "clip",
               grounding: GroundingOptions | None = None,
               timings: dict[str, float] | None = None) -> list[Moment]:
        """Find the moments that best match ``text`` or ``image`` (exactly one of them).

        ``video`` limits the search to one video (file name, path or id). ``mode="grounded"``
        (text only) runs the grounding checkpoint's recursion (see :meth:`ground`); a moment's
        ``score`` is then its ranking score (by default R × (1 − P(Not))). ``timings``, if
        given, receives seconds per stage: ``encode_query`` and ``retrieve`` (clip mode) or
        ``ground`` (grounded mode, query encoding included).
        """
        if mode not in SEARCH_MODES:
            raise QueryError(f"unknown search mode {mode!r} (one of {', '.join(SEARCH_MODES)})")
        if (text is None) == (image is None):
            raise QueryError("give exactly one of a text query or an image")
        if top_k < 1:
            raise QueryError(f"top_k must be at least 1, got {top_k}")
        if mode == "grounded":
            if image is not None:
                raise QueryError("the grounded mode takes a text query, not an image")
            t0 = time.perf_counter()
            results = self.ground(text, video=video, options=grounding)  # type: ignore[arg-type]
            if timings is not None:
                timings["ground"] = time.perf_counter() - t0
            return ranked_moments(results, top_k)
        videos = self._resolve_videos(video) if video is not None else None
        if self._store.manifest is None:
            return []
        t0 = time.perf_counter()
        query = self.embed_query(text=text, image=image)
        t1 = time.perf_counter()
        moments = search_moments(self._store, query, top_k=top_k, videos=videos)
        if timings is not None:
            timings["encode_query"] = t1 - t0
            timings["retrieve"] = time.perf_counter() - t1
        return moments

    def ground(self, text: str, *, video: str | None = None,
               options: GroundingOptions | None = None,
               candidates: int = _GROUNDED_CANDIDATES) -> list[GroundingResult]:
        """The grounded query with its recursion tree, per video examined.

        With ``video`` that one video is grounded; otherwise the ``candidates`` videos that
        coarse (CLIP) retrieval ranks best.
        """
        if not text or not text.strip():
            raise QueryError("the text query is empty")
        grounder = self.grounder
        if grounder is None:
            raise QueryError(f"{self._store.root}: the grounded mode needs a grounding checkpoint "
                             "(vidseek reindex --grounder CKPT)")
        options = options or GroundingOptions()
        if video is not None:
            videos = self._resolve_videos(video)
        elif self._store.manifest is None:
            return []
        query_vector = self.embed_query(text=text)
        if video is None:
            seen: list[int] = []
            for m in search_moments(self._store, query_vector, top_k=4 * candidates):
                if m.video_id not in seen:
                    seen.append(m.video_id)
            videos = [v for v in (self._store.catalog.video_by_id(i) for i in seen[:candidates]) if v]
        results = []
        for record in videos:
            features = self._store.video_features(record)
            results.append(ground_video(grounder, record, features, self._sparse_tokens(record, features),
                                        text, query_vector, options))
        return results

    # -- object queries ------------------------------------------------------------
    def search_object(self, box: str | Sequence[float] | None = None, *,
                      mask: str | os.PathLike | np.ndarray | None = None,
                      video: str | int | None = None, time: float | None = None,
                      image: str | os.PathLike | Image.Image | np.ndarray | None = None,
                      top_k: int = 10, within: str | int | None = None) -> list[ObjectHit]:
        """Find where the object in a region appears (VideoRefer mask pooling).

        The region is a ``box`` (``"x0,y0,x1,y1"`` or four numbers, in pixels) or a binary
        ``mask`` (an image path or a boolean array), on the frame of indexed ``video`` at
        ``time`` seconds, or on an ``image``. ``within`` limits the search to one video: its
        hits then form that video's track of the object. Each hit lists, per sampled frame,
        the box of the best-matching dense-token cell.
        """
        if top_k < 1:
            raise QueryError(f"top_k must be at least 1, got {top_k}")
        token = self.object_token(box, mask=mask, video=video, time=time, image=image)
        videos = self._resolve_videos(within) if within is not None else None
        return find_object(self._store, token, self._encoder_grid(), top_k=top_k, videos=videos)

    def _encoder_grid(self) -> tuple[int, int]:
        manifest = self._store.manifest
        if manifest is None:
            raise QueryError(f"{self._store.root}: the archive is empty")
        return EncoderInfo.from_dict(manifest["encoder"]).grid

    def object_token(self, box: str | Sequence[float] | None = None, *,
                     mask: str | os.PathLike | np.ndarray | None = None,
                     video: str | int | None = None, time: float | None = None,
                     image: str | os.PathLike | Image.Image | np.ndarray | None = None) -> np.ndarray:
        """The unit object token of a region (see :meth:`search_object` for the arguments)."""
        if (video is None) == (image is None):
            raise QueryError("give the region's picture as exactly one of an indexed video "
                             "(with a time) or an image")
        grid = self._encoder_grid()
        if image is not None:
            picture = self._open_image(image)
            width, height = picture.size
            patches = self.encoder.encode_frames(self.encoder.prepare_images([picture])).patches
            cells = pool_2x2(patches)[0]
        else:
            record = self.find_video(video)  # type: ignore[arg-type]
            if time is None or not 0 <= time <= record.duration + 1e-6:
                raise QueryError(f"give a time between 0 and {record.duration:.2f}s of {record.name} "
                                 f"for the region's frame (got {time})")
            width, height = record.width, record.height
            try:
                features = self._store.video_features(record)
            except (OSError, ValueError) as exc:  # replaced or removed meanwhile
                raise QueryError(f"{record.name}: its features are unavailable ({exc}); try again") from exc
            # the sampled frame nearest the time asked for (dense tokens exist per sampled frame)
            frame = int(np.argmin(np.abs(features.times - time)))
            cells = features.dense.grid(frame, frame + 1)[0]
        region = self._region(box, mask, width, height)
        return object_token(cells, region.cell_mask(cells.shape[:2], grid))

    @staticmethod
    def _region(box, mask, width: int, height: int) -> Region:
        if (box is None) == (mask is None):
            raise QueryError("give the region as exactly one of a box or a mask")
        if isinstance(box, str):
            return Region.parse_box(box, width, height)
        if box is not None:
            if len(box) != 4:
                raise QueryError(f"a box is four numbers x0,y0,x1,y1 in pixels, got {list(box)}")
            return Region(width, height, box=tuple(float(v) for v in box))  # type: ignore[arg-type]
        if isinstance(mask, np.ndarray):
            return Region(width, height, mask=mask.astype(bool))
        return Region.from_mask_image(mask, width, height)  # type: ignore[arg-type]

    @staticmethod
    def _open_image(image: str | os.PathLike | Image.Image | np.ndarray) -> Image.Image:
        if isinstance(image, np.ndarray):
            return Image.fromarray(image).convert("RGB")
        if isinstance(image, Image.Image):
            return image.convert("RGB")
        try:
            with Image.open(image) as opened:
                return opened.convert("RGB")
        except (OSError, ValueError) as exc:
            raise QueryError(f"{image}: cannot read the query image: {exc}") from exc

    def embed_query(self, text: str | None = None,
                    image: str | os.PathLike | Image.Image | np.ndarray | None = None) -> np.ndarray:
        """The normalised query vector for a text or an image."""
        if text is not None:
            if not text.strip():
                raise QueryError("the text query is empty")
            return self.encoder.encode_text([text])[0]
        return self.encoder.encode_images([self._open_image(image)])[0]  # type: ignore[arg-type]

    def find_videos(self, video: str | int) -> list[VideoRecord]:
        """Indexed videos whose file name, path or id is ``video`` (several may share a name);
        an ``int`` is an id only."""
        if isinstance(video, int):
            record = self._store.catalog.video_by_id(video)
            return [record] if record is not None else []
        found = self._store.catalog.find_videos(video)
        if not found:
            found = self._store.catalog.find_videos(str(Path(video).expanduser().resolve()))
        return found

    def find_video(self, video: str | int) -> VideoRecord:
        """The one indexed video ``video`` names; QueryError if none or several."""
        found = self._resolve_videos(video)
        if len(found) > 1:
            paths = ", ".join(v.path for v in found)
            raise QueryError(f"{video!r} names {len(found)} videos ({paths}); give a path or id")
        return found[0]

    def _resolve_videos(self, video: str | int) -> list[VideoRecord]:
        found = self.find_videos(video)
        if not found:
            raise QueryError(f"no indexed video named {video!r}")
        return found

    # -- exports ------------------------------------------------------------------
    def export(self, results: Sequence[Moment | ObjectHit], path: str | os.PathLike,
               title: str = "vidseek results") -> Path:
        """Write search results for media tools; the suffix picks the format: ``.otio``
        (OpenTimelineIO timeline), ``.edl`` (CMX 3600) or ``.jpg`` (contact sheet)."""
        items = []
        for result in results:
            record = self._store.catalog.video_by_id(result.video_id)
            if record is not None:  # removed since the search: nothing to point at
                items.append(ExportItem(record, result.start, result.end, float(result.score), result.peak))
        return export_results(items, path, title)

    # -- job queue ----------------------------------------------------------------
    @property
    def jobs(self) -> JobQueue:
        """The archive's durable ingest job queue (see :class:`~vidseek.IngestDaemon`)."""
        with self._grounder_lock:  # one JobQueue (and one schema check) per archive
            if self._jobs is None:
                self._jobs = JobQueue(self._store.catalog)
        return self._jobs

    # -- catalog ----------------------------------------------------------------
    @property
    def path(self) -> Path:
        """The archive directory."""
        return self._store.root

    @property
    def generation(self) -> int:
        """The catalog's commit counter: it changes whenever a video is added or removed,
        by this process or another (cheap to poll)."""
        return self._store.catalog.generation

    @property
    def is_empty(self) -> bool:
        """True until the archive has adopted an encoder (on its first ingest)."""
        return self._store.manifest is None

    @property
    def manifest(self) -> dict | None:
        """What the archive was built with (``encoder``: name, fingerprint, dimensions;
        ``ingest``: sampling rate, pruning threshold), or None before its first ingest."""
        manifest = self._store.manifest
        return copy.deepcopy(manifest) if manifest is not None else None

    @property
    def encoder_name(self) -> str:
        """The encoder the archive was built with (hub id or local path); for a new archive,
        the one it will adopt."""
        manifest = self._store.manifest
        return manifest["encoder"]["name"] if manifest is not None else self._model

    def videos(self) -> list[VideoRecord]:
        return self._store.catalog.videos()

    def video(self, video_id: int) -> VideoRecord | None:
        """The indexed video with this id, or None."""
        return self._store.catalog.video_by_id(video_id)

    def video_at(self, path: str | os.PathLike) -> VideoRecord | None:
        """The indexed video whose source file is exactly ``path`` (resolved), or None."""
        return self._store.catalog.video_by_path(str(Path(path).expanduser().resolve()))

    def video_features(self, video: VideoRecord) -> VideoFeatures:
        """A video's stored frame times, embeddings and dense tokens."""
        return self._store.video_features(video)

    def totals(self) -> dict[str, float]:
        """``videos``, ``seconds`` and ``frames`` indexed (a catalog read; no disk walk)."""
        return dict(self._store.catalog.totals())

    def warm_up(self) -> None:
        """Load what the first search would: the encoder, the grounder if any, the frame
        index (a server calls this at start-up)."""
        self.encoder
        if self._store.manifest is not None:
            self.grounder
            self._store.refresh_index()

    def collect_garbage(self) -> None:
        """Delete files no committed video references (left by crashes or replacements)."""
        self._store.collect_garbage()

    def remove(self, video: str) -> VideoRecord:
        """Remove one video (file name, path or id) from the archive; returns its record."""
        record = self.find_video(video)
        self._store.delete_video(record)
        return record

    def info(self) -> ArchiveInfo:
        manifest = self._store.manifest or {}
        encoder = manifest.get("encoder", {})
        totals = self._store.catalog.totals()
        disk = sum(p.stat().st_size for p in self._store.root.rglob("*") if p.is_file())
        index_kind = self._store.refresh_index().kind if manifest else "none"
        grounder = self._store.catalog.get_meta("grounder") or {}
        sparse_videos = sum(v.sparse_fingerprint == grounder.get("adapter_fingerprint")
                            for v in self.videos()) if grounder else 0
        return ArchiveInfo(
            path=self._store.root.absolute(), encoder=encoder.get("name", self._model),
            encoder_fingerprint=encoder.get("fingerprint", ""), embed_dim=encoder.get("embed_dim", 0),
            videos=int(totals["videos"]), hours=totals["seconds"] / 3600, frames=int(totals["frames"]),
            index_kind=index_kind, disk_bytes=disk, fps=self.config.fps,
            prune_threshold=self.config.prune_threshold, grounder=grounder.get("path", ""),
            sparse_videos=sparse_videos)
