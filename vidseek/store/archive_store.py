"""An archive directory: catalog + feature files + FAISS frame index, kept consistent.

Layout::

    ARCHIVE/
      catalog.db          SQLite (WAL): manifest, videos, frames
      features/KEY.npz    per-video frame times, embeddings, dense tokens
      sparse/KEY.npz      per-video level-1 sparse tokens of the grounding checkpoint
      frames.json         manifest of the frame index: catalog generation, segments
      frames.d/           its segment files: base (memory-mapped), logs, trained lists
      patches.json        the same for the index of dense patch tokens (object queries)
      patches.d/
      .write.lock         inter-process write lock

Commit order for a video: feature file (atomic rename) → catalog transaction (the video
becomes visible) → index update and save (atomic rename). A crash before the catalog
transaction leaves only an unreferenced feature file, removed later; a crash after it is
repaired on the next open, which sees the index's generation behind the catalog's and
rebuilds the index from the feature files. Index saves write only the video's own vectors
(a log segment); compaction and retraining run after the save, when due.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np

from .._version import __version__
from ..errors import ArchiveError, EncoderMismatchError
from .catalog import FRAME_ID_BITS, Catalog, VideoRecord, frame_ids
from .files import DamagedFileError, FeatureFileStore, FrameReader, VideoFeatures
from .frame_index import FrameIndex
from .patch_index import TOKEN_ID_BITS, PatchIndex, normalised_tokens, patch_ids
from .lock import WriteLock
from .sparse_tokens import SparseTokenFiles, SparseTokens

__all__ = ["ArchiveStore", "ArchiveInfo", "FrameHit"]

logger = logging.getLogger(__name__)

_Index = TypeVar("_Index", bound=FrameIndex)  # a FrameIndex or a PatchIndex


@dataclass(frozen=True)
class FrameHit:
    """One frame found by the index: its video, its index in the video, its score."""

    video_id: int
    row: int
    score: float


class _StoredVectors:
    """Every vector of one index, read from the feature files of the catalog's videos
    (a :class:`~vidseek.store.frame_index.VectorSource`)."""

    def __init__(self, store: "ArchiveStore", vectors_of: Callable, count_of: Callable) -> None:
        self.store, self.vectors_of, self.count_of = store, vectors_of, count_of
        self._readable: list[VideoRecord] = []

    def count(self) -> int:
        """Sizes first, so a large index can train on a sample; a video whose size cannot
        be read (its feature file damaged or gone) is left out."""
        self._readable, total = [], 0
        for video in self.store.catalog.videos():
            try:
                total += self.count_of(video)
                self._readable.append(video)
            except (OSError, ValueError, KeyError) as exc:  # lost to a power cut or damaged
                self._left_out(video, exc)
        return total

    def batches(self):
        # (a rebuild reads these twice when it trains: a video found unreadable the first
        # time is dropped, so it is reported once)
        for video in list(self._readable):
            try:
                vectors = self.vectors_of(video)
            except (OSError, ValueError, KeyError) as exc:
                self._readable.remove(video)
                self._left_out(video, exc)
                continue
            yield vectors

    def _left_out(self, video: VideoRecord, exc: Exception) -> None:
        what = "damaged" if isinstance(exc, DamagedFileError) else "unreadable"
        logger.warning("%s: features of %s are %s (%s); left out of the index until it is "
                       "re-ingested (or vidseek doctor --repair)", self.store.root, video.path,
                       what, exc)


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


class ArchiveStore:
    """Storage of one archive directory. Knows nothing about models or decoding."""

    def __init__(self, root: str | os.PathLike[str], create: bool = True, ivf_threshold: int = 200_000,
                 patch_threshold: int = 100_000, compress_threshold: int = 1_000_000,
                 nprobe: int = 64) -> None:
        if nprobe < 1:
            raise ArchiveError(f"nprobe must be at least 1, got {nprobe}")
        self.root = Path(root)
        if not self.root.exists():
            if not create:
                raise ArchiveError(f"{self.root}: no archive here")
            self.root.mkdir(parents=True)
        elif not self.root.is_dir():
            raise ArchiveError(f"{self.root}: exists and is not a directory")
        elif not create and not (self.root / "catalog.db").exists():
            raise ArchiveError(f"{self.root}: not a vidseek archive (no catalog.db)")
        self.catalog = Catalog(self.root / "catalog.db")
        self.files = FeatureFileStore(self.root / "features")
        self.sparse = SparseTokenFiles(self.root / "sparse")
        if patch_threshold < PatchIndex.MIN_COMPRESS_THRESHOLD:
            raise ArchiveError(f"patch_threshold must be at least {PatchIndex.MIN_COMPRESS_THRESHOLD} "
                               f"(IVF-PQ needs that many training vectors), got {patch_threshold}")
        self._ivf_threshold = ivf_threshold
        self._compress_threshold = compress_threshold
        self._patch_threshold = patch_threshold
        self._nprobe = nprobe
        self._frames: FrameIndex | None = None
        self._patches: PatchIndex | None = None
        self._index_lock = threading.Lock()
        self.lock = WriteLock(self.root)

    def close(self) -> None:
        self.catalog.close()

    # -- manifest -----------------------------------------------------------------
    @property
    def manifest(self) -> dict[str, Any] | None:
        """The encoder and ingest settings the archive was created with (None while new)."""
        return self.catalog.get_meta("manifest")

    def set_manifest(self, manifest: dict[str, Any]) -> None:
        with self.lock:
            if self.catalog.get_meta("manifest") is None:
                self.catalog.set_meta("manifest", manifest)

    def grounder_path(self) -> str | None:
        """The grounding checkpoint the archive names, or None."""
        recorded = self.catalog.get_meta("grounder")
        return recorded["path"] if recorded is not None else None

    def record_grounder(self, path: Path, fingerprint: str, adapter_fingerprint: str) -> None:
        """Name the archive's grounding checkpoint (the sparse tokens it stores are that
        adapter's)."""
        with self.lock:
            self.catalog.set_meta("grounder", {"path": str(path), "fingerprint": fingerprint,
                                               "adapter_fingerprint": adapter_fingerprint})

    def adopt_encoder(self, encoder: dict[str, Any], ingest: dict[str, Any]) -> dict[str, Any]:
        """Record the encoder (its ``EncoderInfo`` dict) and ingest settings of a new archive;
        then return the manifest. EncoderMismatchError if the archive was built with another
        encoder (by fingerprint): one archive never mixes embeddings of two encoders."""
        if self.manifest is None:
            self.set_manifest({"encoder": encoder, "ingest": ingest, "vidseek_version": __version__,
                               "created": time.time()})  # a no-op if another process set one
        manifest = self.manifest
        assert manifest is not None
        built_with = manifest["encoder"]
        if built_with["fingerprint"] not in (encoder["fingerprint"], encoder.get("path_fingerprint")):
            raise EncoderMismatchError(
                f"{self.root}: archive was built with encoder {built_with['name']!r} "
                f"(fingerprint {built_with['fingerprint']}), not {encoder['name']!r} "
                f"(fingerprint {encoder['fingerprint']}); use a new archive for another encoder")
        return manifest

    def info(self, encoder: str, fps: float, prune_threshold: float) -> ArchiveInfo:
        """A summary; ``encoder`` names the encoder a new archive will adopt, ``fps`` and
        ``prune_threshold`` are the ingest settings in force."""
        manifest = self.manifest or {}
        built_with = manifest.get("encoder", {})
        totals = self.catalog.totals()
        grounder = self.catalog.get_meta("grounder") or {}
        sparse_videos = sum(v.sparse_fingerprint == grounder.get("adapter_fingerprint")
                            for v in self.catalog.videos()) if grounder else 0
        disk = 0
        for path in self.root.rglob("*"):
            try:
                disk += path.stat().st_size if path.is_file() else 0
            except OSError:  # removed meanwhile (a temporary file, a compacted segment)
                pass
        return ArchiveInfo(
            path=self.root.absolute(), encoder=built_with.get("name", encoder),
            encoder_fingerprint=built_with.get("fingerprint", ""),
            embed_dim=built_with.get("embed_dim", 0), videos=int(totals["videos"]),
            hours=totals["seconds"] / 3600, frames=int(totals["frames"]),
            index_kind=self.refresh_index().kind if manifest else "none", disk_bytes=disk,
            fps=fps, prune_threshold=prune_threshold, grounder=grounder.get("path", ""),
            sparse_videos=sparse_videos)

    # -- indexes ----------------------------------------------------------------
    def _encoder_manifest(self) -> dict[str, Any]:
        manifest = self.manifest
        if manifest is None:
            raise ArchiveError(f"{self.root}: archive has no encoder manifest yet")
        return manifest["encoder"]

    # Each index is opened on first use: a CLIP search never loads (nor replays the delta of)
    # the patch index, which object queries and commits need.
    def _frame_index(self) -> FrameIndex:
        encoder = self._encoder_manifest()
        with self._index_lock:  # two threads must not each build their own
            if self._frames is None:
                frames = FrameIndex(
                    self.root / "frames.faiss", encoder["embed_dim"],
                    ivf_threshold=self._ivf_threshold, compress_threshold=self._compress_threshold,
                    nprobe=self._nprobe,
                    source=_StoredVectors(self, self._frame_vectors, lambda video: video.frames))
                frames.load()
                self._frames = frames
        return self._frames

    def _patch_index(self) -> PatchIndex:
        encoder = self._encoder_manifest()
        with self._index_lock:
            if self._patches is None:
                patches = PatchIndex(
                    self.root / "patches.faiss", encoder["vision_width"],
                    compress_threshold=self._patch_threshold,
                    source=_StoredVectors(self, self._patch_vectors, self._patch_count))
                patches.load()
                self._patches = patches
        return self._patches

    def refresh_index(self) -> FrameIndex:
        """Return the frame index, reloading it if another process committed since.

        If the saved index is behind the catalog (a writer crashed between its catalog commit
        and its index save, or the archive predates the index's format), it is rebuilt from
        the feature files under the write lock.
        """
        return self._refresh(self._frame_index())

    def refresh_patch_index(self) -> PatchIndex:
        """The dense patch-token index (object queries), current as :meth:`refresh_index`."""
        return self._refresh(self._patch_index())

    def _refresh(self, index: _Index) -> _Index:
        if index.generation == self.catalog.generation:
            return index
        # Another process may have committed and saved. load() reads a new base off the
        # index lock (searches go on meanwhile) and swaps under it: a writer of this process
        # that is mid-update holds that lock until its save.
        index.load()
        if index.generation != self.catalog.generation:
            with self.lock:
                index.load()
                generation = self.catalog.generation
                if index.generation != generation:
                    self._rebuild_index(index, generation)
        return index

    def _frame_vectors(self, video: VideoRecord) -> tuple[np.ndarray, np.ndarray]:
        _, emb = self.files.load_embeddings(video.features_key)
        return frame_ids(video.id, len(emb)), emb

    def _patch_vectors(self, video: VideoRecord) -> tuple[np.ndarray, np.ndarray]:
        tokens = self.files.load_tokens(video.features_key)
        return patch_ids(video.id, len(tokens)), normalised_tokens(tokens)

    def _patch_count(self, video: VideoRecord) -> int:
        _, kept = self.files.load_token_layout(video.features_key)
        return int(kept.sum())

    def _rebuild_index(self, index: FrameIndex, generation: int) -> None:
        if index.ntotal == 0 and not self.catalog.videos():  # new archive
            index.save(generation)
            return
        logger.warning("%s: %s at generation %d, catalog at %d: rebuilding", self.root,
                       index.path.name, index.generation, generation)
        index.rebuild(generation)

    def _maintain(self, index: FrameIndex) -> None:
        """Compact or retrain an index after a write, if due (the caller holds the write lock).

        A failure (a full disk, say) is logged, not raised: the write it follows is committed
        and saved, and the next write tries again."""
        try:
            done = index.maintain()
        except (OSError, RuntimeError, ValueError) as exc:
            logger.error("%s: maintenance of %s failed (%s); retried after the next write",
                         self.root, index.path.name, exc)
            return
        if done:
            logger.info("%s: %s %s (%d vectors, %s)", self.root, index.path.name, done,
                        index.ntotal, index.kind)

    # -- writes -----------------------------------------------------------------
    def commit_video(self, fields: dict[str, Any], features: VideoFeatures,
                     sparse: SparseTokens | None = None,
                     windows: list[tuple[float, float]] | None = None,
                     extra: Callable[[sqlite3.Connection, int], None] | None = None) -> VideoRecord:
        """Make a video visible atomically, replacing any video already at the same path.

        ``sparse`` (with its level-1 ``windows`` in seconds) is committed with it when given;
        ``extra(conn, video_id)`` writes more catalog rows in its transaction.
        """
        key = self.files.save(features)
        sparse_key = self.sparse.save(sparse) if sparse is not None else ""
        visible = False
        try:
            with self.lock:
                # looked up under the lock: another process may have changed it meanwhile
                replace = self.catalog.video_by_path(fields["path"])
                frames, patches = self.refresh_index(), self.refresh_patch_index()
                # Each index under its own lock, one after the other: a reader of this process
                # that finds an index behind meanwhile waits for the write lock, then reloads.
                with frames.lock:
                    record, ids = self.catalog.commit_video(
                        {**fields, "features_key": key, "sparse_key": sparse_key,
                         "sparse_fingerprint": sparse.fingerprint if sparse is not None else ""},
                        features.times, replace=replace, windows=windows, extra=extra)
                    visible = True
                    if replace is not None:
                        frames.remove_video(replace.id, replace.frames)
                    frames.add(ids, features.embeddings)
                    frames.save(self.catalog.generation)
                with patches.lock:
                    if replace is not None:
                        patches.remove_video(replace.id, self._patch_count_or_zero(replace))
                    tokens = features.dense.tokens
                    patches.add(patch_ids(record.id, len(tokens)), normalised_tokens(tokens))
                    patches.save(self.catalog.generation)
                self._maintain(frames)
                self._maintain(patches)
        finally:
            if not visible:
                self.files.path(key).unlink(missing_ok=True)
                if sparse_key:
                    self.sparse.path(sparse_key).unlink(missing_ok=True)
        if replace is not None:
            self._unlink_files(replace)  # keys are unique
        return record

    def extend_video(self, video: VideoRecord, fields: dict[str, Any], features: VideoFeatures,
                     extra: Callable[[sqlite3.Connection, int], None] | None = None,
                     ) -> VideoRecord | None:
        """Grow a video (a live stream's part) to ``features``, which start with the frames
        ``video`` holds: a new feature file, then in one catalog transaction its row and the
        new frames' rows, then the new vectors added to the indexes. What was committed is
        never rewritten in the catalog or the indexes; the old feature file is removed once
        the new one is visible. None if ``video`` was changed or removed meanwhile."""
        key = self.files.save(features)
        record: VideoRecord | None = None
        try:
            with self.lock:
                frames, patches = self.refresh_index(), self.refresh_patch_index()
                old_tokens = self._patch_count(video)  # before the catalog points elsewhere
                with frames.lock:
                    done = self.catalog.extend_video(video, {**fields, "features_key": key},
                                                     features.times, extra=extra)
                    if done is None:
                        return None
                    record, ids = done
                    frames.add(ids, features.embeddings[video.frames:])
                    frames.save(self.catalog.generation)
                with patches.lock:
                    tokens = features.dense.tokens
                    patches.add(patch_ids(record.id, len(tokens))[old_tokens:],
                                normalised_tokens(tokens[old_tokens:]))
                    patches.save(self.catalog.generation)
                self._maintain(frames)
                self._maintain(patches)
        finally:
            if record is None:
                self.files.path(key).unlink(missing_ok=True)
        self.files.path(video.features_key).unlink(missing_ok=True)
        return record

    def _patch_count_or_zero(self, video: VideoRecord) -> int:
        """Tokens of a video about to be removed (only the index's count depends on it)."""
        try:
            return self._patch_count(video)
        except (OSError, ValueError, KeyError):
            return 0

    def _unlink_files(self, video: VideoRecord) -> None:
        self.files.path(video.features_key).unlink(missing_ok=True)
        if video.sparse_key:
            self.sparse.path(video.sparse_key).unlink(missing_ok=True)

    def set_sparse(self, video: VideoRecord, sparse: SparseTokens,
                   windows: list[tuple[float, float]]) -> bool:
        """Store new sparse tokens for an indexed video (reindex). False if the video was
        replaced or removed meanwhile (the new file is then discarded)."""
        key = self.sparse.save(sparse)
        with self.lock:
            done = self.catalog.set_sparse(video, key, sparse.fingerprint, windows)
        if not done:
            self.sparse.path(key).unlink(missing_ok=True)
        elif video.sparse_key:
            self.sparse.path(video.sparse_key).unlink(missing_ok=True)
        return done

    def load_sparse(self, video: VideoRecord) -> SparseTokens | None:
        if not video.sparse_key:
            return None
        try:
            return self.sparse.load(video.sparse_key)
        except (OSError, ValueError) as exc:  # DamagedFileError included: computed again
            logger.warning("%s: sparse tokens of %s unreadable (%s); computing them from its "
                           "features (vidseek reindex stores them again)", self.root, video.path, exc)
            return None

    def delete_video(self, video: VideoRecord) -> None:
        with self.lock:
            current = self.catalog.video_by_id(video.id)  # another process may have acted
            if current is None or current.features_key != video.features_key:
                return
            frames, patches = self.refresh_index(), self.refresh_patch_index()
            with frames.lock:
                self.catalog.delete_video(video)
                frames.remove_video(video.id, video.frames)
                frames.save(self.catalog.generation)
            with patches.lock:
                patches.remove_video(video.id, self._patch_count_or_zero(video))
                patches.save(self.catalog.generation)
            self._maintain(frames)
            self._maintain(patches)
        self._unlink_files(video)

    def collect_garbage(self, min_age_s: float = 3600.0) -> int:
        """Delete feature and sparse files no video references (left by crashed ingests)."""
        videos = self.catalog.videos()
        return (self.files.remove_unreferenced({v.features_key for v in videos}, min_age_s=min_age_s)
                + self.sparse.remove_unreferenced({v.sparse_key for v in videos}, min_age_s=min_age_s))

    # -- reads ------------------------------------------------------------------
    def search_frames(self, query: np.ndarray, k: int) -> list[FrameHit]:
        """Top-``k`` frames across the archive for one normalised query vector, best first
        (a video deleted since may still be named: look it up before use)."""
        index = self.refresh_index()
        scores, ids = index.search(query.reshape(1, -1), k)
        found = ids[0] >= 0
        ids, scores = ids[0][found], scores[0][found]
        return list(map(FrameHit, (ids >> FRAME_ID_BITS).tolist(),
                        (ids & ((1 << FRAME_ID_BITS) - 1)).tolist(), scores.tolist()))

    def search_patches(self, token: np.ndarray, k: int,
                       damaged: list[tuple[VideoRecord, DamagedFileError]] | None = None,
                       ) -> list[tuple[int, float]]:
        """``(video id, frame time)`` of the top-``k`` stored dense tokens for a unit vector.
        A video whose feature file is damaged is left out, and added to ``damaged``."""
        index = self.refresh_patch_index()
        _, ids = index.search(np.asarray(token, np.float32).reshape(1, -1), k)
        by_video: dict[int, list[int]] = {}
        for i in ids[0]:
            if i >= 0:
                by_video.setdefault(int(i) >> TOKEN_ID_BITS, []).append(int(i) & ((1 << TOKEN_ID_BITS) - 1))
        found = []
        for video_id, token_indices in by_video.items():
            video = self.catalog.video_by_id(video_id)
            if video is None:
                continue
            try:
                times, kept = self.files.load_token_layout(video.features_key)
            except DamagedFileError as exc:
                if damaged is not None:
                    damaged.append((video, exc))
                continue
            except (OSError, ValueError):  # replaced meanwhile
                continue
            cells = int(np.prod(kept.shape[1:]))
            frame_of_token = np.flatnonzero(kept.reshape(-1)) // cells
            valid = [t for t in token_indices if t < len(frame_of_token)]
            found += [(video_id, float(times[frame_of_token[t]])) for t in valid]
        return found

    def video_embeddings(self, video: VideoRecord) -> tuple[np.ndarray, np.ndarray]:
        return self.files.load_embeddings(video.features_key)

    def video_frames(self, video: VideoRecord) -> FrameReader:
        """Reads chosen frames of a video (times, embeddings) without loading them all."""
        return self.files.frames(video.features_key)

    def video_features(self, video: VideoRecord) -> VideoFeatures:
        return self.files.load(video.features_key)
