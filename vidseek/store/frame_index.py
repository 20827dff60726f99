"""The FAISS index of frame embeddings (inner product = cosine on normalised vectors).

**Kind by size.** Exact (``IndexFlatIP``) while the archive holds fewer than
``ivf_threshold`` vectors (default 200,000 ≈ 55 hours at 1 fps); then ``IndexIVFFlat``;
from ``compress_threshold`` (default 1,000,000 ≈ 280 hours) ``IndexIVFScalarQuantizer``
with 8-bit codes (a quarter of the bytes). IVF kinds use ``4·√n`` lists (at most
``max_lists``), trained on a sample, searched with ``nprobe`` lists. Ids pack the video id
in their high bits (``id >> id_bits``).

**Segments.** The index is a read-only *base* — read into memory when its file is at most
``in_memory_bytes`` (default: an eighth of the machine's memory), memory-mapped beyond that —
plus a *delta* in memory that takes every addition since the base was written (codes in
the trained lists once the index is IVF), plus *tombstones*: videos
removed from the base, filtered out of its results. A save writes one small *log* file
(this save's additions and removals) and the manifest — never the base — so a commit costs
the size of its video, not of the archive. When the delta grows past a fraction of the base
(or the tombstones do), :meth:`maintain` *compacts*: the base minus tombstones plus the delta
becomes a new base file, written under a fresh name. When the size calls for another kind, or
has grown 4× since the lists were trained, it *retrains* from the :class:`VectorSource`
(the archive's feature files), streaming.

Files, for ``path = ARCHIVE/frames.faiss``: ``frames.json`` (manifest: catalog generation,
base, trained-empty index, logs, tombstones) and ``frames.d/`` (segment files). Every file is
written under a temporary name, fsynced and renamed; the manifest is renamed last, so a
crash leaves either the old or the new state. A manifest behind the catalog's generation
means a crash between the catalog commit and the save: the archive rebuilds the index.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import threading
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import faiss
import numpy as np

from ..atomic import atomic_write, atomic_write_text
from .files import reading

__all__ = ["FrameIndex", "VectorSource", "ArraySource", "default_in_memory_bytes"]

logger = logging.getLogger(__name__)

_FORMAT = 2
_KIND_ORDER = ("flat", "ivf", "ivfsq8", "ivfpq")


def _locked(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return wrapper


def _write_atomically(path: Path, write: Callable[[str], None]) -> None:
    """:func:`~vidseek.atomic.atomic_write` for writers that take a ``str`` path (FAISS)."""
    atomic_write(path, lambda tmp: write(str(tmp)))


class VectorSource(Protocol):
    """Every vector the index should hold, for a rebuild: a count, then ``(ids, vectors)``
    batches (read twice when training: once for a sample, once to add)."""

    def count(self) -> int: ...

    def batches(self) -> Iterator[tuple[np.ndarray, np.ndarray]]: ...


class ArraySource:
    """A :class:`VectorSource` over arrays in memory (tests, benchmarks)."""

    def __init__(self, ids: np.ndarray, vectors: np.ndarray, batch: int = 100_000) -> None:
        self.ids, self.vectors, self.batch = ids, vectors, batch

    def count(self) -> int:
        return len(self.ids)

    def batches(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for lo in range(0, len(self.ids), self.batch):
            yield self.ids[lo:lo + self.batch], self.vectors[lo:lo + self.batch]


class FrameIndex:
    """A segmented FAISS index with persistence and automatic choice of index kind.

    Thread-safe: every operation holds :attr:`lock` (searches take milliseconds). A writer
    holds it from its catalog commit to its :meth:`save`, so that no reader of this process
    reloads an older manifest in between; :meth:`maintain` builds off the lock and swaps in.
    """

    LOG_DTYPE: type = np.float32  # vectors as stored in log files (and the delta)
    COMPRESSED_KIND = "ivfsq8"
    # Vectors in the delta before compaction: bounds what a process opening the archive
    # replays from the logs.
    MAX_DELTA = 25_000

    def __init__(self, path: Path, dim: int, *, ivf_threshold: int = 200_000,
                 compress_threshold: int = 1_000_000, nprobe: int = 64, max_lists: int = 4096,
                 id_bits: int = 24, in_memory_bytes: int | None = None,
                 source: VectorSource | None = None) -> None:
        self.path = Path(path)
        self.sidecar = self.path.with_suffix(".json")
        self.segments = self.path.with_suffix(".d")
        self.dim = dim
        self.ivf_threshold = ivf_threshold
        self.compress_threshold = max(compress_threshold, ivf_threshold)
        self.nprobe = nprobe
        self.max_lists = max_lists
        self.id_bits = id_bits
        self.in_memory_bytes = default_in_memory_bytes() if in_memory_bytes is None else in_memory_bytes
        self.source = source
        self.generation = -1
        self._lock = threading.RLock()
        self._reset_state()

    def _reset_state(self) -> None:
        self._base: faiss.Index | None = None
        self._base_file: str | None = None
        self._base_mapped = False
        self._base_ntotal = 0
        self._trained_file: str | None = None
        self._trained_for = 0
        self._delta = self._new_flat()
        self._tombstones: dict[int, int] = {}  # video id → its vectors in the base
        # FAISS filter of the tombstoned ids, built when first needed
        self._selector: tuple[faiss.IDSelectorBatch, faiss.IDSelectorNot] | None = None
        self._logs: list[str] = []
        self._pending_ids: list[np.ndarray] = []
        self._pending_vectors: list[np.ndarray] = []
        self._pending_lists: list[np.ndarray | None] = []  # IVF list of each, for the log
        self._pending_removed: set[int] = set()

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    # -- what it holds -----------------------------------------------------------
    @property
    def kind(self) -> str:
        return self._kind_of(self._base) if self._base is not None else self._kind_of(self._delta)

    @property
    def ntotal(self) -> int:
        return self._base_ntotal - sum(self._tombstones.values()) + int(self._delta.ntotal)

    @property
    def approximate_scores(self) -> bool:
        """True when search scores come from compressed codes (not exact cosines)."""
        return self.kind in ("ivfsq8", "ivfpq")

    @property
    def base_is_mapped(self) -> bool:
        """True when the base is memory-mapped rather than read into memory."""
        return self._base_mapped

    @property
    def delta_ntotal(self) -> int:
        return int(self._delta.ntotal)

    def _kind_of(self, index: faiss.Index) -> str:
        if isinstance(index, faiss.IndexIVFPQ):
            return "ivfpq"
        if isinstance(index, faiss.IndexIVFScalarQuantizer):
            return "ivfsq8"
        if isinstance(index, faiss.IndexIVF):
            return "ivf"
        return "flat"

    def wanted_kind(self, total: int) -> str:
        if total < self.ivf_threshold:
            return "flat"
        return "ivf" if total < self.compress_threshold else self.COMPRESSED_KIND

    def _threshold_of(self, kind: str) -> int:
        return {"flat": 0, "ivf": self.ivf_threshold}.get(kind, self.compress_threshold)

    @property
    def needs_retraining(self) -> bool:
        """True when the size calls for another kind (with hysteresis on the way down), or
        the IVF lists were trained for a quarter of today's vectors or fewer (unless the
        next kind is less than 2× away: that switch retrains anyway)."""
        n, kind = self.ntotal, self.kind
        wanted = self.wanted_kind(n)
        if _KIND_ORDER.index(wanted) > _KIND_ORDER.index(kind):
            return True
        if _KIND_ORDER.index(wanted) < _KIND_ORDER.index(kind) and n < self._threshold_of(kind) // 2:
            return True
        grown = kind != "flat" and n >= 4 * max(self._trained_for, 1)
        return grown and self.wanted_kind(2 * n) == kind  # else: retrain once, at the switch

    @property
    def needs_compaction(self) -> bool:
        """True when the delta or the tombstones outgrow an eighth of the base (at least
        20,000 vectors, at most :attr:`MAX_DELTA`), or the logs number 256."""
        limit = min(max(20_000, self._base_ntotal // 8), self.MAX_DELTA)
        return (self.delta_ntotal >= limit or sum(self._tombstones.values()) >= limit
                or len(self._logs) >= 256)

    # -- construction -----------------------------------------------------------
    def _new_flat(self) -> faiss.Index:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    def _lists(self, total: int) -> int:
        return max(16, min(int(4 * math.sqrt(total)), self.max_lists, total // 39))

    # Training vectors: ~64 per list (FAISS asks for at least 39), capped so a rebuild of a
    # large archive holds a sample in memory, not the archive.
    _MAX_TRAINING = 300_000

    def _training_size(self, total: int) -> int:
        return min(total, max(64 * self._lists(total), 10_000), self._MAX_TRAINING)

    def _min_training(self, kind: str, total: int) -> int:
        return self._lists(total) if kind != "ivfpq" else max(self._lists(total), 256)

    def _new_trained(self, kind: str, sample: np.ndarray, total: int) -> faiss.Index:
        """An empty IVF index of ``kind`` trained on ``sample`` (for ``total`` vectors)."""
        nlist = self._lists(total)
        quantizer = faiss.IndexFlatIP(self.dim)
        # an IndexIVF; Any because faiss's stubs type clustering_index as Index, not Optional
        index: Any
        if kind == "ivfpq":
            index = faiss.IndexIVFPQ(quantizer, self.dim, nlist, pq_bytes(self.dim), 8,
                                     faiss.METRIC_INNER_PRODUCT)
        elif kind == "ivfsq8":
            index = faiss.IndexIVFScalarQuantizer(quantizer, self.dim, nlist,
                                                  faiss.ScalarQuantizer.QT_8bit,
                                                  faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = 10  # k-means converges well enough for search; 25 costs 2.5× the time
        on_gpu = None
        if faiss.get_num_gpus() > 0:  # the faiss GPU build (`gpu` extra) on a GPU machine
            on_gpu = faiss.index_cpu_to_all_gpus(faiss.IndexFlatIP(self.dim))  # held until trained
            index.clustering_index = on_gpu
        logger.info("training %s as %s (%d vectors, %d lists, sample %d)", self.path.name, kind,
                    total, nlist, len(sample))
        index.train(np.ascontiguousarray(sample, np.float32))
        if on_gpu is not None:
            index.clustering_index = None
        self._set_nprobe(index)
        return index

    # -- persistence ------------------------------------------------------------
    def load(self) -> bool:
        """Read the saved index; False when there is none, it is unreadable or it predates
        the segmented format (then the archive rebuilds it from the feature files).

        A new base (another process compacted or retrained) is read before taking the lock,
        so that searches of this process go on against the old one meanwhile; the manifest is
        read again under the lock (a writer of this process may have saved since)."""
        for _ in range(3):  # a compaction in another process may delete files we were told of
            try:
                preloaded = self._preload_base()
                with self._lock:
                    meta = self._read_manifest()
                    if meta is None:
                        return False
                    self._load_manifest(meta, preloaded)
                    return True
            except FileNotFoundError:
                continue
            # (damaged logs raise DamagedFileError, a ValueError; a garbled manifest that is
            # valid JSON raises KeyError or TypeError; FAISS raises RuntimeError)
            except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
                logger.error("%s: unreadable index (%s); it will be rebuilt", self.path, exc)
                break
        with self._lock:
            self._reset_state()
            self.generation = -1
        return False

    def _read_manifest(self) -> dict | None:
        """The manifest, or None when there is none or it is of an older format."""
        if not self.sidecar.exists():
            return None
        meta = json.loads(self.sidecar.read_text())
        if not isinstance(meta, dict):
            raise ValueError(f"{self.sidecar}: not a manifest (JSON {type(meta).__name__})")
        if meta.get("format") != _FORMAT or meta.get("dim") != self.dim:
            logger.warning("%s: index of an older format; it will be rebuilt", self.path)
            self.generation = -1
            return None
        return meta

    def _preload_base(self) -> tuple[str, faiss.Index, bool] | None:
        """The manifest's base when it is not the one held: ``(name, index, mapped)``."""
        try:
            meta = json.loads(self.sidecar.read_text())
            name, kind = meta["base"], meta["base_kind"]
        except (OSError, ValueError, KeyError, TypeError):
            return None  # load() reads the manifest again and reports what is wrong
        if not name or name == self._base_file:
            return None
        return (name, *self._map(name, kind))

    def _load_manifest(self, meta: dict, preloaded: tuple[str, faiss.Index, bool] | None = None) -> None:
        if (meta["base"] == self._base_file and meta["trained"] == self._trained_file
                and meta["logs"][:len(self._logs)] == self._logs and self.generation >= 0
                and not (self._pending_ids or self._pending_removed)):
            # Same base, more logs: another process committed. Replay only what is new.
            self._replay(meta["logs"][len(self._logs):])
            self._tombstones = {int(k): int(v) for k, v in meta["tombstones"].items()}
            self._selector = None
            self.generation = int(meta["generation"])
            return
        self._reset_state()
        if meta["base"]:
            if preloaded is not None and preloaded[0] == meta["base"]:
                _, self._base, self._base_mapped = preloaded
            else:
                self._base, self._base_mapped = self._map(meta["base"], meta["base_kind"])
            self._base_file = meta["base"]
        self._base_ntotal = int(meta["base_ntotal"])
        self._trained_file = meta["trained"]
        self._trained_for = int(meta["trained_for"])
        self._delta = self._empty_delta(self._trained_file)
        self._tombstones = {int(k): int(v) for k, v in meta["tombstones"].items()}
        self._replay(meta["logs"])
        self.generation = int(meta["generation"])

    def _replay(self, logs: list[str]) -> None:
        """Apply log files to the delta, in order: each one's removals, then its additions."""
        for name in logs:
            with reading(self.segments / name), np.load(self.segments / name) as log:
                for video_id in log["removed"].tolist():
                    self._delta.remove_ids(self._video_range(video_id))
                lists = log["lists"] if "lists" in log.files else None
                self._add_to_delta(log["ids"], log["vectors"], lists)
            self._logs.append(name)

    def _map(self, name: str, kind: str) -> tuple[faiss.Index, bool]:
        """A base file, read into memory when it is at most :attr:`in_memory_bytes` (a
        search scans memory-mapped IVF lists at half the speed: 11 vs 5 ms at 1,000 h),
        else memory-mapped. Either way it is never modified in place (FAISS aborts the
        process on a write to a mapped IVF index): compaction writes a new file."""
        if self._fits_in_memory(name):
            flag = 0
        else:
            flag = faiss.IO_FLAG_MMAP_IFC if kind == "flat" else faiss.IO_FLAG_MMAP
        index = faiss.read_index(str(self.segments / name), flag)
        self._set_nprobe(index)
        return index, flag != 0

    def _fits_in_memory(self, name: str) -> bool:
        return (self.segments / name).stat().st_size <= self.in_memory_bytes

    def _empty_delta(self, trained_file: str | None) -> faiss.Index:
        """Exact while the index is; then codes in the trained lists, so a search scans
        ``nprobe`` of the delta's lists, not all of it (an exact scan of 28,800 vectors cost
        6 ms a query at 1,000 h)."""
        if trained_file is None:
            return self._new_flat()
        index = faiss.read_index(str(self.segments / trained_file))
        self._set_nprobe(index)
        return index

    @_locked
    def set_nprobe(self, nprobe: int) -> None:
        """Lists searched per query in IVF kinds: recall against speed."""
        self.nprobe = int(nprobe)
        for index in (self._base, self._delta):
            if index is not None:
                self._set_nprobe(index)

    def _set_nprobe(self, index: faiss.Index) -> None:
        if isinstance(index, faiss.IndexIVF):
            index.nprobe = self.nprobe
            index.parallel_mode = 1  # one query at a time: spread its lists over the threads

    def _write_manifest(self, generation: int) -> None:
        meta = {"format": _FORMAT, "generation": generation, "kind": self.kind, "dim": self.dim,
                "ntotal": self.ntotal, "base": self._base_file, "base_ntotal": self._base_ntotal,
                "base_kind": self._kind_of(self._base) if self._base is not None else None,
                "trained": self._trained_file, "trained_for": self._trained_for,
                "tombstones": {str(k): v for k, v in self._tombstones.items()}, "logs": self._logs}
        atomic_write_text(self.sidecar, json.dumps(meta))
        self.generation = generation

    @_locked
    def save(self, generation: int) -> None:
        """Persist the changes since the last save as one log file, then the manifest."""
        if self._pending_ids or self._pending_removed:
            self.segments.mkdir(exist_ok=True)
            name = f"log-{generation:012d}-{uuid.uuid4().hex[:8]}.npz"
            ids = (np.concatenate(self._pending_ids) if self._pending_ids
                   else np.zeros(0, np.int64))
            vectors = (np.concatenate(self._pending_vectors) if self._pending_vectors
                       else np.zeros((0, self.dim), self.LOG_DTYPE))
            removed = np.array(sorted(self._pending_removed), np.int64)
            extra: dict[str, np.ndarray] = {}
            lists = [x for x in self._pending_lists if x is not None]
            if self._pending_ids and len(lists) == len(self._pending_lists):
                extra["lists"] = np.concatenate(lists)  # replays skip assignment
            _write_atomically(self.segments / name, lambda tmp: _save_npz(
                tmp, ids=ids, vectors=vectors, removed=removed, **extra))
            self._logs.append(name)
            self._pending_ids, self._pending_vectors, self._pending_removed = [], [], set()
            self._pending_lists = []
        self._write_manifest(generation)

    # -- updates ----------------------------------------------------------------
    def _video_range(self, video_id: int) -> faiss.IDSelectorRange:
        return faiss.IDSelectorRange(int(video_id) << self.id_bits, (int(video_id) + 1) << self.id_bits)

    def _add_to_delta(self, ids: np.ndarray, vectors: np.ndarray,
                      lists: np.ndarray | None = None) -> np.ndarray | None:
        """Add to the delta; for an IVF delta, returns each vector's list (``lists``, from a
        log, skips assigning them: the list assignment is most of the cost of a replay)."""
        if not len(ids):
            return None
        x = np.ascontiguousarray(vectors, np.float32)
        ids = np.ascontiguousarray(ids, np.int64)
        if not isinstance(self._delta, faiss.IndexIVF):
            self._delta.add_with_ids(x, ids)
            return None
        if lists is None or len(lists) != len(ids) or (len(lists) and (
                lists.min() < 0 or lists.max() >= self._delta.nlist)):
            _, found = self._delta.quantizer.search(x, 1)
            lists = found.reshape(-1)
        lists = np.ascontiguousarray(lists, np.int64)
        self._delta.add_core(len(x), faiss.swig_ptr(x), faiss.swig_ptr(ids), faiss.swig_ptr(lists))
        return lists

    @_locked
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors (searchable at once; on disk at the next :meth:`save`)."""
        if len(ids) == 0:
            return
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        stored: np.ndarray = np.ascontiguousarray(vectors, dtype=self.LOG_DTYPE)
        lists = self._add_to_delta(ids, stored)  # the same rounding as a replay of the log
        self._pending_ids.append(ids)
        self._pending_vectors.append(stored)
        self._pending_lists.append(lists)

    @_locked
    def remove_video(self, video_id: int, count: int) -> None:
        """Remove every vector of one video (``count`` of them: the base's are filtered out
        of searches by id until the next compaction)."""
        video_id = int(video_id)
        removed = int(self._delta.remove_ids(self._video_range(video_id)))
        if self._pending_ids:  # additions not yet saved drop out of the log too
            keep = [(i >> self.id_bits) != video_id for i in self._pending_ids]
            self._pending_ids = [i[k] for i, k in zip(self._pending_ids, keep)]
            self._pending_vectors = [v[k] for v, k in zip(self._pending_vectors, keep)]
            self._pending_lists = [x if x is None else x[k] for x, k in zip(self._pending_lists, keep)]
        if removed == 0 and self._base is not None and video_id not in self._tombstones:
            self._tombstones[video_id] = count
            self._selector = None
        self._pending_removed.add(video_id)

    # -- maintenance ------------------------------------------------------------
    def maintain(self) -> str | None:
        """Compact or retrain if due; returns what was done ("compacted", "retrained")."""
        with self._lock:
            retrain = self.needs_retraining and self.source is not None
            compact = self.needs_compaction
            if not (retrain or compact) or self._pending_ids or self._pending_removed:
                return None
            generation = self.generation
        if retrain:
            self.rebuild(generation)
            return "retrained"
        self._compact(generation)
        return "compacted"

    def _compact(self, generation: int) -> None:
        """New base = base − tombstones + delta. Built off the lock: only writers change the
        index, and the caller is the one writer (it holds the archive's write lock)."""
        with self._lock:
            base_file, delta = self._base_file, faiss.clone_index(self._delta)
            tombstones = dict(self._tombstones)
        if base_file is not None:
            merged = faiss.read_index(str(self.segments / base_file))  # a writable copy
            for video_id in tombstones:
                merged.remove_ids(self._video_range(video_id))
            if self._kind_of(delta) == self._kind_of(merged):
                merged.merge_from(delta, 0)
            elif delta.ntotal:  # exact delta into IVF lists
                assert isinstance(delta, faiss.IndexIDMap2)  # the exact kind: see _new_flat
                ids = faiss.vector_to_array(delta.id_map).astype(np.int64)
                merged.add_with_ids(delta.index.reconstruct_n(0, delta.ntotal), ids)
        else:
            merged = delta
        self._install(merged, self._trained_file, self._trained_for, generation)

    def rebuild(self, generation: int) -> None:
        """Replace the contents with every vector of :attr:`source`, choosing the kind by
        its count, without holding them all in memory."""
        if self.source is None:
            raise RuntimeError(f"{self.path}: no vector source to rebuild from")
        total = self.source.count()
        kind = self.wanted_kind(total)
        trained_file = None
        if kind == "flat":
            index = self._new_flat()
        else:
            sample = self._sample(total)
            if len(sample) < self._min_training(kind, total):  # files unreadable meanwhile
                logger.warning("%s: only %d training vectors; keeping the index exact",
                               self.path.name, len(sample))
                index, kind = self._new_flat(), "flat"
            else:
                index = self._new_trained(kind, sample, total)
                trained_file = f"trained-{uuid.uuid4().hex[:8]}.faiss"
                self.segments.mkdir(exist_ok=True)
                _write_atomically(self.segments / trained_file,
                                  functools.partial(faiss.write_index, index))
        for ids, vectors in self.source.batches():
            if len(ids):
                index.add_with_ids(np.ascontiguousarray(np.asarray(vectors, self.LOG_DTYPE), np.float32),
                                   np.ascontiguousarray(ids, np.int64))
        self._install(index, trained_file, total if kind != "flat" else 0, generation)

    def _sample(self, total: int) -> np.ndarray:
        assert self.source is not None  # rebuild() checked
        quota = self._training_size(total)
        rng = np.random.default_rng(0)
        sample = []
        for _, vectors in self.source.batches():
            take = min(len(vectors), int(np.ceil(quota * len(vectors) / total)))
            if take:
                sample.append(np.asarray(vectors, np.float32)[rng.choice(len(vectors), take, replace=False)])
        return np.concatenate(sample) if sample else np.zeros((0, self.dim), np.float32)

    def _install(self, base: faiss.Index, trained_file: str | None, trained_for: int,
                 generation: int) -> None:
        """Write ``base`` as the new base file and switch to it with an empty delta."""
        self.segments.mkdir(exist_ok=True)
        name = f"base-{generation:012d}-{uuid.uuid4().hex[:8]}.faiss"
        _write_atomically(self.segments / name, functools.partial(faiss.write_index, base))
        if self._fits_in_memory(name):
            loaded, mapped = base, False  # what was just written: no second copy in memory
            self._set_nprobe(loaded)
        else:
            loaded, mapped = self._map(name, self._kind_of(base))  # ready before the swap
        delta = self._empty_delta(trained_file)
        with self._lock:
            self._reset_state()
            self._base_file, self._trained_file, self._trained_for = name, trained_file, trained_for
            self._base, self._base_mapped, self._delta = loaded, mapped, delta
            self._base_ntotal = int(loaded.ntotal)
            self._write_manifest(generation)
            self._remove_unlisted_files()
        logger.info("%s: base of %d vectors (%s) written", self.path.name, self._base_ntotal, self.kind)

    def _remove_unlisted_files(self) -> None:
        """Delete segment files the manifest no longer names (other processes that mapped
        or read them keep their copies: unlinked files live on while open)."""
        listed = {self._base_file, self._trained_file, *self._logs}
        for path in self.segments.glob("*"):
            if path.name not in listed:
                path.unlink(missing_ok=True)
        self.path.unlink(missing_ok=True)  # the pre-segment single file, if any

    # -- search -----------------------------------------------------------------
    @_locked
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ``(scores, ids)`` per query row; missing slots have id -1."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        k = max(1, min(k, self.ntotal))
        if self.ntotal == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        parts = []
        if self._base is not None and self._base_ntotal:
            parts.append(self._search_base(queries, k))
        if self._delta.ntotal:
            parts.append(self._delta.search(queries, min(k, int(self._delta.ntotal))))
        scores = np.concatenate([p[0] for p in parts], axis=1)
        ids = np.concatenate([p[1] for p in parts], axis=1)
        scores = np.where(ids >= 0, scores, -np.inf)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return (np.take_along_axis(scores, order, 1).astype(np.float32),
                np.take_along_axis(ids, order, 1))

    def _search_base(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Base results, tombstoned videos' vectors skipped by FAISS itself."""
        base = self._base
        assert base is not None  # search() checked
        k = min(k, self._base_ntotal)
        if not self._tombstones:
            return base.search(queries, k)
        if self._selector is None:
            dead = np.concatenate([(np.int64(v) << self.id_bits) + np.arange(n, dtype=np.int64)
                                   for v, n in self._tombstones.items()])
            batch = faiss.IDSelectorBatch(dead)
            self._selector = (batch, faiss.IDSelectorNot(batch))  # keep both alive
        params: faiss.SearchParameters
        if isinstance(base, faiss.IndexIVF):
            params = ivf_params = faiss.SearchParametersIVF()
            ivf_params.nprobe = self.nprobe
        else:
            params = faiss.SearchParameters()
        params.sel = self._selector[1]
        return base.search(queries, k, params=params)


def default_in_memory_bytes() -> int:
    """An eighth of the memory this process may use (the machine's, or its container's
    cgroup limit when lower): the largest base read into memory."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows): map every base
        return 0
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()  # cgroup v2
        if limit.isdigit():
            memory = min(memory, int(limit))
    except OSError:
        pass
    return memory // 8


def pq_bytes(dim: int) -> int:
    """Bytes per vector of product quantisation: the largest divisor of ``dim`` up to 64."""
    return max(m for m in range(1, min(64, dim) + 1) if dim % m == 0)


def _save_npz(path: str, **arrays: np.ndarray) -> None:
    # typed Any: mypy would match the values against savez's ``allow_pickle: bool`` too
    members: dict[str, Any] = arrays
    with open(path, "wb") as fh:
        np.savez(fh, **members)
