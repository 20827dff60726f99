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
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image

from .errors import ConfigError, ModelError, QueryError
from .exports import ExportItem, export_results
from .indexer.discover import file_digest
from .indexer.distributed import RayOptions
from .indexer.ingest import FailedFile, Ingester, IngestProgress, IngestReport, SkippedFile, check_settings
from .indexer.pipeline import IngestConfig
from .indexer.sparse import ReindexReport, SparseTokenSource, reindex_sparse
from .models.encoder import DEFAULT_MODEL, FrameEncoder
from .models.grounder import Grounder
from .models.loading import load_grounder, prepare_encoder
from .query.grounded import GroundingOptions, GroundingResult, ground_video, ranked_moments
from .query.moments import Moment
from .query.objects import (ObjectHit, find_object, frame_cells, image_cells, patch_grid, region_of,
                            region_token)
from .query.search import (SearchWarning, candidate_videos, find_videos, named_videos, open_query_image,
                           readable_features, search_moments)
from .store.archive_store import ArchiveInfo, ArchiveStore
from .store import doctor
from .store.catalog import VideoRecord
from .store.doctor import DoctorFinding, DoctorReport
from .store.files import VideoFeatures
from .store.sources import checked_source
from .store.jobs import JobQueue

__all__ = ["Archive", "ArchiveInfo", "DoctorReport", "DoctorFinding", "IngestProgress",
           "IngestReport", "FailedFile", "SkippedFile", "ReindexReport", "SEARCH_MODES", "default_archive_path"]

SEARCH_MODES = ("clip", "grounded")
# Videos the grounded mode examines when no video is named: the coarse retrieval's best.
_GROUNDED_CANDIDATES = 5

logger = logging.getLogger(__name__)


def default_archive_path() -> Path:
    """``$VIDSEEK_ARCHIVE`` if set, else ``./vidseek-archive``."""
    return Path(os.environ.get("VIDSEEK_ARCHIVE") or "vidseek-archive")


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
        self._config = config
        self._model = model
        self._device = device
        self._int8_text = int8_text
        self._int8_llm = int8_llm
        if encoder is not None:
            prepare_encoder(encoder, int8_text=int8_text)
        self._encoder = encoder
        self._grounder: Grounder | None = None
        self._grounder_lock = threading.Lock()  # also guards creating the job queue
        self._sparse: SparseTokenSource | None = None  # tokens computed for a grounder
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
        ``config`` sets the ingest settings of a new archive; an existing one keeps its own
        (a ``config`` with another ``fps`` or ``prune_threshold`` raises
        :class:`~vidseek.errors.ConfigError`).
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
        if config is not None:
            try:
                check_settings(store.root, settings, config)
            except ConfigError:
                store.close()
                raise
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

    @property
    def config(self) -> IngestConfig:
        """The ingest settings in force. Once the archive has them recorded, assigning
        another ``fps`` or ``prune_threshold`` raises :class:`~vidseek.errors.ConfigError`
        (one archive never mixes sampling rates); ``batch_size`` may change."""
        return self._config

    @config.setter
    def config(self, config: IngestConfig) -> None:
        manifest = self._store.manifest
        if manifest is not None:
            check_settings(self._store.root, manifest["ingest"], config)
        self._config = config

    # -- encoder ----------------------------------------------------------------
    @property
    def encoder(self) -> FrameEncoder:
        """The archive's encoder, loaded on first use."""
        if self._encoder is None:
            self._load_encoder()
        return self._encoder  # type: ignore[return-value]

    def _load_encoder(self) -> None:
        encoder = FrameEncoder.load(self._model, device=self._device)
        # a new archive adopts this encoder; an existing one must have been built with it
        manifest = self._store.adopt_encoder(encoder.info.to_dict(), {
            "fps": self.config.fps, "prune_threshold": self.config.prune_threshold})
        # another process may have created the archive meanwhile, with other settings
        check_settings(self._store.root, manifest["ingest"], self.config)
        self._encoder = prepare_encoder(encoder, int8_text=self._int8_text)

    # -- ingest -----------------------------------------------------------------
    def _ingester(self) -> Ingester:
        return Ingester(self._store, self.config, lambda: self.encoder, lambda: self.grounder)

    def ingest(self, paths: Iterable[str | os.PathLike], *, recursive: bool = True,
               progress: Callable[[IngestProgress], None] | None = None,
               engine: str = "local", ray: RayOptions | None = None) -> IngestReport:
        """Index every video under ``paths`` (files or folders).

        Unusable files are reported in ``report.failed`` and skipped; the archive is never
        left holding part of a video. Unchanged files already indexed are skipped.
        ``engine="ray"`` extracts features on a Ray cluster (``ray`` says where); this
        process still commits every video.
        """
        return self._ingester().ingest(paths, recursive=recursive, progress=progress,
                                       engine=engine, ray=ray)

    def ingest_file(self, path: str | os.PathLike, *,
                    progress: Callable[[IngestProgress], None] | None = None,
                    cancel: threading.Event | None = None) -> VideoRecord | SkippedFile:
        """Index one file; the unit of work of the ingest daemon.

        Returns the new record, or a :class:`SkippedFile` if the file is unchanged since it
        was indexed. Raises :class:`~vidseek.errors.VideoError` for unusable files and
        :class:`~vidseek.errors.IngestCancelled` when ``cancel`` is set before the commit
        (the archive is then untouched).
        """
        return self._ingester().ingest_file(Path(path), progress=progress, cancel=cancel)

    # -- grounding checkpoint ---------------------------------------------------------
    @property
    def grounder(self) -> Grounder | None:
        """The archive's grounding checkpoint (loaded on first use), or None if it has none."""
        with self._grounder_lock:  # server threads must not load it twice
            if self._grounder is None:
                recorded = self._store.catalog.get_meta("grounder")
                if recorded is not None:
                    self._grounder = self._load_grounder(recorded["path"])
        return self._grounder

    def _load_grounder(self, path: str | os.PathLike) -> Grounder:
        manifest = self._store.manifest
        return load_grounder(path, device=self._device, int8_llm=self._int8_llm,
                             encoder_info=manifest["encoder"] if manifest is not None else None)

    def set_grounder(self, path: str | os.PathLike) -> Grounder:
        """Adopt a grounding checkpoint: later ingests store its sparse tokens, grounded
        searches use it. Run :meth:`reindex` to back-fill videos already indexed."""
        grounder = self._load_grounder(path)
        with self._store.lock:
            self._store.catalog.set_meta("grounder", {
                "path": str(Path(path).resolve()), "fingerprint": grounder.fingerprint,
                "adapter_fingerprint": grounder.adapter_fingerprint})
        self._grounder = grounder
        return grounder

    def reindex(self, progress: Callable[[int, int, VideoRecord], None] | None = None) -> ReindexReport:
        """Compute sparse tokens for every video that lacks this checkpoint's, from the stored
        frame features (no video is decoded)."""
        grounder = self.grounder
        if grounder is None:
            raise ModelError(f"{self._store.root}: no grounding checkpoint; set one first "
                             "(Archive.set_grounder or vidseek reindex --grounder)")
        return reindex_sparse(self._store, grounder, progress)

    def _sparse_source(self, grounder: Grounder) -> SparseTokenSource:
        if self._sparse is None or self._sparse.grounder is not grounder:
            self._sparse = SparseTokenSource(self._store, grounder)
        return self._sparse

    # -- search -----------------------------------------------------------------
    def search(self, text: str | None = None, *, image: str | os.PathLike | Image.Image | np.ndarray | None = None,
               top_k: int = 10, video: str | None = None, mode: str = "clip",
               grounding: GroundingOptions | None = None,
               timings: dict[str, float] | None = None,
               warnings: list[SearchWarning] | None = None) -> list[Moment]:
        """Find the moments that best match ``text`` or ``image`` (exactly one of them).

        ``video`` limits the search to one video (file name, path or id). ``mode="grounded"``
        (text only) runs the grounding checkpoint's recursion (see :meth:`ground`); a moment's
        ``score`` is then its ranking score (by default R × (1 − P(Not))). ``timings``, if
        given, receives seconds per stage: ``encode_query`` and ``retrieve`` (clip mode) or
        ``ground`` (grounded mode, query encoding included). ``warnings``, if given,
        receives a :class:`~vidseek.query.search.SearchWarning` per video left out because a
        file of it is damaged (the search answers from the others; ``str()`` of one is the
        message to show).
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
            results = self.ground(text, video=video, options=grounding,  # type: ignore[arg-type]
                                  warnings=warnings)
            if timings is not None:
                timings["ground"] = time.perf_counter() - t0
            return ranked_moments(results, top_k)
        videos = named_videos(self._store, video) if video is not None else None
        if self._store.manifest is None:
            return []
        t0 = time.perf_counter()
        query = self.embed_query(text=text, image=image)
        t1 = time.perf_counter()
        moments = search_moments(self._store, query, top_k=top_k, videos=videos, warnings=warnings)
        if timings is not None:
            timings["encode_query"] = t1 - t0
            timings["retrieve"] = time.perf_counter() - t1
        return moments

    def ground(self, text: str, *, video: str | None = None,
               options: GroundingOptions | None = None,
               candidates: int = _GROUNDED_CANDIDATES,
               warnings: list[SearchWarning] | None = None) -> list[GroundingResult]:
        """The grounded query with its recursion tree, per video examined.

        With ``video`` that one video is grounded; otherwise the ``candidates`` videos that
        coarse (CLIP) retrieval ranks best. Videos with damaged files are left out and
        reported in ``warnings`` (see :meth:`search`).
        """
        if not text or not text.strip():
            raise QueryError("the text query is empty")
        grounder = self.grounder
        if grounder is None:
            raise QueryError(f"{self._store.root}: the grounded mode needs a grounding checkpoint "
                             "(vidseek reindex --grounder CKPT)")
        options = options or GroundingOptions()
        if video is not None:
            videos = named_videos(self._store, video)
        elif self._store.manifest is None:
            return []
        query_vector = self.embed_query(text=text)
        if video is None:
            videos = candidate_videos(self._store, query_vector, candidates, warnings)
        sparse = self._sparse_source(grounder)
        results = []
        for record, features in readable_features(self._store, videos, warnings):
            results.append(ground_video(grounder, record, features, sparse.tokens(record, features),
                                        text, query_vector, options))
        return results

    # -- object queries ------------------------------------------------------------
    def search_object(self, box: str | Sequence[float] | None = None, *,
                      mask: str | os.PathLike | np.ndarray | None = None,
                      video: str | int | None = None, time: float | None = None,
                      image: str | os.PathLike | Image.Image | np.ndarray | None = None,
                      top_k: int = 10, within: str | int | None = None,
                      warnings: list[SearchWarning] | None = None) -> list[ObjectHit]:
        """Find where the object in a region appears (VideoRefer mask pooling).

        The region is a ``box`` (``"x0,y0,x1,y1"`` or four numbers, in pixels) or a binary
        ``mask`` (an image path or a boolean array), on the frame of indexed ``video`` at
        ``time`` seconds, or on an ``image``. ``within`` limits the search to one video: its
        hits then form that video's track of the object. Each hit lists, per sampled frame,
        the box of the best-matching dense-token cell. Videos with damaged files are left
        out and reported in ``warnings`` (see :meth:`search`).
        """
        if top_k < 1:
            raise QueryError(f"top_k must be at least 1, got {top_k}")
        token = self.object_token(box, mask=mask, video=video, time=time, image=image)
        videos = named_videos(self._store, within) if within is not None else None
        return find_object(self._store, token, patch_grid(self._store), top_k=top_k, videos=videos,
                           warnings=warnings)

    def object_token(self, box: str | Sequence[float] | None = None, *,
                     mask: str | os.PathLike | np.ndarray | None = None,
                     video: str | int | None = None, time: float | None = None,
                     image: str | os.PathLike | Image.Image | np.ndarray | None = None) -> np.ndarray:
        """The unit object token of a region (see :meth:`search_object` for the arguments)."""
        if (video is None) == (image is None):
            raise QueryError("give the region's picture as exactly one of an indexed video "
                             "(with a time) or an image")
        grid = patch_grid(self._store)
        if image is not None:
            picture = open_query_image(image)
            width, height = picture.size
            cells = image_cells(self.encoder, picture)
        else:
            record = self.find_video(video)  # type: ignore[arg-type]
            width, height = record.width, record.height
            cells = frame_cells(self._store, record, time)
        return region_token(cells, region_of(box, mask, width, height), grid)

    def embed_query(self, text: str | None = None,
                    image: str | os.PathLike | Image.Image | np.ndarray | None = None) -> np.ndarray:
        """The normalised query vector for a text or an image."""
        if text is not None:
            if not text.strip():
                raise QueryError("the text query is empty")
            return self.encoder.encode_text([text])[0]
        return self.encoder.encode_images([open_query_image(image)])[0]  # type: ignore[arg-type]

    def find_videos(self, video: str | int) -> list[VideoRecord]:
        """Indexed videos whose file name, path or id is ``video`` (several may share a name);
        an ``int`` is an id only."""
        return find_videos(self._store, video)

    def find_video(self, video: str | int) -> VideoRecord:
        """The one indexed video ``video`` names; QueryError if none or several."""
        return named_videos(self._store, video, one=True)[0]

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

    def media_path(self, video: VideoRecord) -> Path:
        """The file of ``video``, if its path still holds the very file that was indexed
        (device, inode, size and modification time as recorded at ingest; the size for videos
        indexed before those were recorded) and it is none of the archive's own files under
        another name. Raises :class:`~vidseek.errors.VideoError` otherwise. Only ``stat`` is
        used: nothing is opened."""
        return checked_source(self._store.root, video)

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

    def check(self, deep: bool = False) -> DoctorReport:
        """Check the archive end to end (``vidseek doctor``): catalog, feature and
        sparse-token files, both indexes, orphan files, jobs, source videos; ``deep`` also
        compares every source file's content hash (reads them whole). Changes nothing."""
        return doctor.check(self._store, file_digest if deep else None)

    def repair(self, deep: bool = False) -> DoctorReport:
        """:meth:`check`, then repair what can be repaired from what is left (rebuild
        indexes, delete orphans, recover stale jobs, remove damaged videos and queue them
        for re-ingest); a video whose feature file is good is never removed."""
        return doctor.repair(self._store, file_digest if deep else None)

    def remove(self, video: str) -> VideoRecord:
        """Remove one video (file name, path or id) from the archive; returns its record."""
        record = self.find_video(video)
        self._store.delete_video(record)
        return record

    def info(self) -> ArchiveInfo:
        """What the archive holds, where, and how it was built (walks the directory for
        its size)."""
        return self._store.info(self._model, self.config.fps, self.config.prune_threshold)
