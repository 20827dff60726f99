"""The public entry point: an :class:`Archive` ingests videos and answers searches.

It wires the three layers together — ``indexer`` (decode, encode, prune) writes into
``store`` (catalog, feature files, FAISS), which ``query`` reads — and owns the encoder.
"""

from __future__ import annotations

import copy
from dataclasses import replace
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
from .indexer.ingest import (FailedFile, Ingester, IngestProgress, IngestReport, SkippedFile, archive_config,
                             check_settings, recorded_precision)
from .indexer.pipeline import IngestConfig
from .indexer.sparse import ReindexReport, SparseTokenSource, reindex_sparse
from .indexer.stream import StreamIngester, StreamOptions, StreamProgress, StreamReport
from .models.encoder import DEFAULT_MODEL, FrameEncoder
from .models.grounder import Grounder
from .models.loading import GrounderSlot, prepare_encoder
from .query.grounded import GroundingOptions, GroundingResult, ground_videos, ranked_moments
from .query.moments import Moment
from .query.objects import (ObjectHit, find_object, frame_cells, image_cells, patch_grid, region_of,
                            region_token)
from .query.search import (SearchWarning, check_request, find_videos, named_videos, open_query_image,
                           search_moments)
from .store.archive_store import ArchiveInfo, ArchiveStore
from .store import doctor
from .store.catalog import VideoRecord
from .store.doctor import DoctorFinding, DoctorReport
from .store.stream_jobs import StreamJobs
from .store.files import VideoFeatures
from .store.sources import checked_source
from .store.streams import (LiveStream, StreamPart, is_stream_path, live_streams, part_of, recording_of,
                             stream_parts)
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
        self._grounders = GrounderSlot(store.grounder_path, lambda: (store.manifest or {}).get("encoder"),
                                       device, int8_llm)
        self._jobs_lock = threading.Lock()
        self._query_precision_failed = False  # see _image_query_encoder
        self._sparse: SparseTokenSource | None = None  # tokens computed for a grounder
        self._jobs: JobQueue | None = None

    @classmethod
    def open(cls, path: str | os.PathLike | None = None, model: str | os.PathLike | None = None, *,
             device: str | None = None, config: IngestConfig | None = None,
             create: bool = True, ivf_threshold: int = 200_000,
             patch_threshold: int = 100_000, int8_text: bool = False,
             int8_llm: bool = False, nprobe: int = 64) -> "Archive":
        """Open (or create) an archive (docs/library.md).

        ``model``: a CLIP/SigLIP hub id or directory, adopted by a new archive; another
        encoder than an existing archive's raises EncoderMismatchError. ``config``: a new
        archive's ingest settings; an existing one keeps its own (other ``fps``,
        ``prune_threshold`` or image ``precision``: ConfigError; precision ``auto``, the
        default, takes the archive's, or for a new archive on a CPU bf16 where it has AMX/AVX-512 BF16, else int8, and fp32 on a GPU).
        ``int8_text`` / ``int8_llm``: int8 text encoder / LM for queries on CPU, about half
        the time each (skipped with a warning on a GPU).
        ``nprobe``: IVF lists a search scans once the index is IVF (docs/scale.md).
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
        config = config or IngestConfig(fps=settings["fps"], prune_threshold=settings["prune_threshold"],
                                        precision=recorded_precision(settings))
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
        """The ingest settings; another ``fps``, ``prune_threshold`` or ``precision`` than the
        archive's raises ConfigError (one archive never mixes them); ``batch_size`` and the
        thread counts may change. Its precision is never ``auto``: that is resolved to the
        archive's recorded one, or (new archive) the device's default."""
        manifest = self._store.manifest
        device = self._encoder.device if self._encoder is not None else self._device
        return archive_config(self._config, manifest["ingest"] if manifest is not None else None, device)

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
        config = self.config  # precision resolved: "auto" is never recorded
        manifest = self._store.adopt_encoder(encoder.info.to_dict(), {
            "fps": config.fps, "prune_threshold": config.prune_threshold,
            "precision": config.precision})
        # another process may have created the archive meanwhile, with other settings
        check_settings(self._store.root, manifest["ingest"], self.config)
        self._encoder = prepare_encoder(encoder, int8_text=self._int8_text)

    # -- ingest -----------------------------------------------------------------
    def _ingester(self) -> Ingester:
        # the config as given: the ingester resolves "auto" once the encoder has adopted the archive
        return Ingester(self._store, self._config, lambda: self.encoder, lambda: self.grounder)

    def ingest(self, paths: Iterable[str | os.PathLike], *, recursive: bool = True,
               progress: Callable[[IngestProgress], None] | None = None,
               engine: str = "local", ray: RayOptions | None = None) -> IngestReport:
        """Index every video under ``paths`` (files or folders); unusable files are reported
        and skipped, unchanged ones skipped, and no video is ever half-committed.
        ``engine="ray"`` extracts on a Ray cluster (``ray`` says where); this process commits.
        """
        return self._ingester().ingest(paths, recursive=recursive, progress=progress,
                                       engine=engine, ray=ray)

    def ingest_file(self, path: str | os.PathLike, *,
                    progress: Callable[[IngestProgress], None] | None = None,
                    cancel: threading.Event | None = None) -> VideoRecord | SkippedFile:
        """Index one file (the daemon's unit of work): the new record, or a SkippedFile if
        unchanged. VideoError for an unusable file; IngestCancelled when ``cancel`` is set
        before the commit (nothing written)."""
        return self._ingester().ingest_file(Path(path), progress=progress, cancel=cancel)

    # -- live streams -----------------------------------------------------------------
    def ingest_stream(self, url: str, *, name: str | None = None, commit_every: float | None = None,
                      record: str | os.PathLike | None = None, reconnect: bool | None = None,
                      options: StreamOptions | None = None,
                      progress: Callable[[StreamProgress], None] | None = None,
                      stop: threading.Event | None = None) -> StreamReport:
        """Index a live source (RTSP, RTMP, SRT, UDP, TCP, HLS...) while it airs, committing
        every ``commit_every`` seconds of aired content, until it ends or ``stop`` is set
        (docs/streams.md). ``record``: a folder for recordings (packets remuxed, not
        re-encoded). The keyword settings override those of ``options``. StreamError when
        the URL cannot be opened (nothing is written) or reconnecting failed for good."""
        settings: dict = {"name": name, "commit_every": commit_every, "reconnect": reconnect,
                          "record": Path(record) if record is not None else None}
        options = replace(options or StreamOptions(),
                          **{k: v for k, v in settings.items() if v is not None})
        return StreamIngester(self._store, self._config, lambda: self.encoder).run(
            url, options, progress=progress, stop=stop)

    def stream_parts(self, source: str | None = None) -> list[StreamPart]:
        """The catalog's live-stream parts (of one stream name only, if given)."""
        return stream_parts(self._store.catalog, source)

    def live_streams(self) -> list[LiveStream]:
        """Streams being ingested now, with how far behind live their index is."""
        return live_streams(self._store.catalog)

    def aired_at(self, video_id: int, t: float) -> float | None:
        """When time ``t`` of a live stream's part video aired (unix time); None for a file."""
        video = self._store.catalog.video_by_id(video_id)
        part = self.stream_part(video) if video is not None else None
        return part.wall_clock(t) if part is not None else None

    def stream_part(self, video: VideoRecord) -> StreamPart | None:
        """The stream part ``video`` is (its session, wall-clock airing time), or None for a file."""
        return part_of(self._store.catalog, video.id) if is_stream_path(video.path) else None

    # -- grounding checkpoint ---------------------------------------------------------
    @property
    def grounder(self) -> Grounder | None:
        """The archive's grounding checkpoint (loaded on first use), or None if it has none."""
        return self._grounders.get()

    def set_grounder(self, path: str | os.PathLike) -> Grounder:
        """Adopt a grounding checkpoint: later ingests store its sparse tokens, grounded
        searches use it. Run :meth:`reindex` to back-fill videos already indexed."""
        grounder = self._grounders.load(path)
        self._store.record_grounder(Path(path).resolve(), grounder.fingerprint,
                                    grounder.adapter_fingerprint)
        self._grounders.adopt(grounder)
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

        ``video``: one video only (name, path or id). ``mode="grounded"`` (text only): the
        grounding checkpoint's recursion (:meth:`ground`), scored R × (1 − P(Not)).
        ``timings`` receives seconds per stage (``encode_query``, ``retrieve``; ``ground``).
        ``warnings`` receives a :class:`SearchWarning` per video left out because a file of
        it is damaged (the others still answer; ``str()`` of one is the message to show).
        """
        check_request(mode, SEARCH_MODES, text, image, top_k)
        if mode == "grounded":
            t0 = time.perf_counter()
            options = (grounding or GroundingOptions()).with_results(top_k)
            results = self.ground(text, video=video, options=options,  # type: ignore[arg-type]
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
        videos = named_videos(self._store, video) if video is not None else None
        if self._store.manifest is None:
            return []
        return ground_videos(self._store, grounder, self._sparse_source(grounder).tokens, text,
                             self.embed_query(text=text), videos, options or GroundingOptions(),
                             candidates, warnings)

    # -- object queries ------------------------------------------------------------
    def search_object(self, box: str | Sequence[float] | None = None, *,
                      mask: str | os.PathLike | np.ndarray | None = None,
                      video: str | int | None = None, time: float | None = None,
                      image: str | os.PathLike | Image.Image | np.ndarray | None = None,
                      top_k: int = 10, within: str | int | None = None,
                      warnings: list[SearchWarning] | None = None) -> list[ObjectHit]:
        """Find where the object in a region appears (VideoRefer mask pooling).

        The region is a ``box`` (``"x0,y0,x1,y1"`` or four numbers, pixels) or a ``mask``
        (image path or boolean array) on the frame of ``video`` at ``time`` s, or on an
        ``image``. ``within``: one video only (its hits are the object's track there). Each
        hit boxes the best-matching cell per frame. ``warnings``: as for :meth:`search`.
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
            cells = image_cells(self._image_query_encoder(), picture)
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
        picture = open_query_image(image)  # type: ignore[arg-type]
        return self._image_query_encoder().encode_images([picture])[0]

    def _image_query_encoder(self) -> FrameEncoder:
        """The encoder, set to compute images as the archive's frames were (its recorded
        precision), so that a query image is embedded like the frames it is compared with.
        Where that precision cannot run here (onnx-int8 without the onnx extra, int8 on a
        GPU), the encoder's current precision is used: within cosine 0.99 of it, and a query
        should not fail for it."""
        encoder = self.encoder
        precision = self.config.precision
        if encoder.image_precision != precision and not self._query_precision_failed:
            try:
                encoder.set_image_precision(precision)
            except (ModelError, OSError) as exc:  # OSError: e.g. a read-only cache folder
                self._query_precision_failed = True  # tried and warned once, not per query
                logger.warning("query images are embedded in %s, not the archive's %s: %s",
                               encoder.image_precision, precision, exc)
        return encoder

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
        for r in results:
            record = self._store.catalog.video_by_id(r.video_id)
            if record is not None:  # removed since the search: nothing to point at
                items.append(ExportItem(record, r.start, r.end, float(r.score), r.peak))
        return export_results(items, path, title)

    # -- job queue ----------------------------------------------------------------
    @property
    def jobs(self) -> JobQueue:
        """The archive's durable ingest job queue (see :class:`~vidseek.IngestDaemon`)."""
        with self._jobs_lock:  # one JobQueue (and one schema check) per archive
            if self._jobs is None:
                self._jobs = JobQueue(self._store.catalog)
        return self._jobs

    @property
    def stream_jobs(self) -> StreamJobs:
        """The live streams an ingest daemon keeps indexed (``vidseek watch --stream``)."""
        return StreamJobs(self._store.catalog)

    # -- catalog ----------------------------------------------------------------
    @property
    def path(self) -> Path:
        """The archive directory."""
        return self._store.root

    @property
    def generation(self) -> int:
        """The catalog's commit counter: changes on every add or remove, by any process."""
        return self._store.catalog.generation

    @property
    def is_empty(self) -> bool:
        """True until the archive has adopted an encoder (on its first ingest)."""
        return self._store.manifest is None

    @property
    def manifest(self) -> dict | None:
        """What the archive was built with (``encoder``, ``ingest`` settings); None if new."""
        manifest = self._store.manifest
        return copy.deepcopy(manifest) if manifest is not None else None

    @property
    def encoder_name(self) -> str:
        """The encoder the archive was built with, or (new archive) will adopt."""
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
        """The file of ``video`` if its path still holds the very file indexed (device, inode,
        size, mtime) and none of the archive's own files; else VideoError. Opens nothing.
        A live stream's part: its recording, whose time 0 is the part's ``offset``."""
        if is_stream_path(video.path):
            return recording_of(self._store.catalog, video)
        return checked_source(self._store.root, video)

    def video_features(self, video: VideoRecord) -> VideoFeatures:
        """A video's stored frame times, embeddings and dense tokens."""
        return self._store.video_features(video)

    def totals(self) -> dict[str, float]:
        """``videos``, ``seconds`` and ``frames`` indexed (a catalog read; no disk walk)."""
        return dict(self._store.catalog.totals())

    def warm_up(self) -> None:
        """Load the encoder, grounder and frame index now, not on the first search."""
        self.encoder
        if self._store.manifest is not None:
            self.grounder
            self._store.refresh_index()

    def collect_garbage(self) -> None:
        """Delete files no committed video references (left by crashes or replacements)."""
        self._store.collect_garbage()

    def check(self, deep: bool = False) -> DoctorReport:
        """Check the archive end to end (``vidseek doctor``; docs/architecture.md); ``deep``
        also hashes every source file. Changes nothing."""
        return doctor.check(self._store, file_digest if deep else None)

    def repair(self, deep: bool = False) -> DoctorReport:
        """:meth:`check`, then repair what can be (indexes, orphans, stale jobs, damaged
        videos queued for re-ingest); a video whose feature file is good is never removed."""
        return doctor.repair(self._store, file_digest if deep else None)

    def remove(self, video: str) -> VideoRecord:
        """Remove one video (file name, path or id) from the archive; returns its record."""
        record = self.find_video(video)
        self._store.delete_video(record)
        return record

    def info(self) -> ArchiveInfo:
        """What the archive holds and how it was built (walks the directory for its size)."""
        return self._store.info(self._model, self.config.fps, self.config.prune_threshold)
