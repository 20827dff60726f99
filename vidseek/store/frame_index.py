"""The FAISS index of frame embeddings (inner product = cosine on normalised vectors).

Index kind by size: an exact ``IndexFlatIP`` (wrapped in ``IndexIDMap2``) while the archive
holds fewer than ``ivf_threshold`` vectors (default 200,000 ≈ 55 hours at 1 fps); past it, the
index is rebuilt once as ``IndexIVFFlat`` with ``nlist = 4·√n`` lists trained on the vectors
present, searched with ``nprobe`` lists. Ids are frame ids from the catalog.

The index is saved with write-then-rename, next to a small JSON sidecar holding the catalog
generation it reflects; a mismatch on open means a crash between the catalog commit and the
index save, and the index is rebuilt from the feature files.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import threading
from pathlib import Path
from typing import Callable, Iterator

import faiss
import numpy as np

__all__ = ["FrameIndex", "fsync_directory"]

logger = logging.getLogger(__name__)


def _locked(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return wrapper


def fsync_directory(path: Path) -> None:
    """Make renames inside ``path`` durable (a rename is only on disk once its folder is)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FrameIndex:
    """FAISS index of frame vectors with persistence and automatic index-type choice.

    Thread-safe: FAISS must not search an index while another thread adds to it, so every
    operation holds :attr:`lock` (searches take milliseconds). A writer holds it across its
    whole update (catalog commit, add, save) so that no reader of this process reloads the
    older saved file in between.
    """

    def __init__(self, path: Path, dim: int, ivf_threshold: int = 200_000, nprobe: int = 32) -> None:
        self.path = Path(path)
        self.sidecar = self.path.with_suffix(".json")
        self.dim = dim
        self.ivf_threshold = ivf_threshold
        self.nprobe = nprobe
        self.generation = -1
        self._index = self._new_flat()
        self._lock = threading.RLock()

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    # -- construction -----------------------------------------------------------
    def _new_flat(self) -> faiss.Index:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    @property
    def kind(self) -> str:
        return "ivf" if isinstance(self._index, faiss.IndexIVF) else "flat"

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    @_locked
    def load(self) -> bool:
        """Read the saved index; False when there is none or it is unreadable.

        An unreadable index is treated as missing: its generation stays behind the catalog's,
        so the archive rebuilds it from the feature files.
        """
        if not self.path.exists() or not self.sidecar.exists():
            return False
        try:
            meta = json.loads(self.sidecar.read_text())
            index = faiss.read_index(str(self.path))
            generation = int(meta["generation"])
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            logger.error("%s: unreadable frame index (%s); it will be rebuilt", self.path, exc)
            self.generation = -1
            return False
        self._index, self.generation = index, generation
        if isinstance(self._index, faiss.IndexIVF):
            self._index.nprobe = self.nprobe
        return True

    @_locked
    def save(self, generation: int) -> None:
        """Write the index and its sidecar atomically (temp file, fsync, rename)."""
        tmp = self.path.with_suffix(".faiss.tmp")
        faiss.write_index(self._index, str(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        side_tmp = self.sidecar.with_suffix(".json.tmp")
        with open(side_tmp, "w") as fh:
            fh.write(json.dumps({"generation": generation, "kind": self.kind,
                                 "ntotal": self.ntotal, "dim": self.dim}))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(side_tmp, self.sidecar)
        fsync_directory(self.path.parent)
        self.generation = generation

    @_locked
    def rebuild(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the contents with exactly these vectors."""
        self.rebuild_from(lambda: iter([(ids, vectors)]), len(ids))

    @_locked
    def rebuild_from(self, batches: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]],
                     total: int) -> None:
        """Replace the contents with the ``(ids, vectors)`` batches that ``batches()`` yields,
        ``total`` vectors in all, without holding them all in memory: one pass when the
        index stays exact; past the threshold, a pass drawing a training sample, then a pass
        adding the vectors to the trained index."""
        if total < self.ivf_threshold:
            self._index = self._new_flat()
            for ids, vectors in batches():
                self._add_raw(ids, vectors)
            return
        quota = self._training_size(total)
        rng = np.random.default_rng(0)
        sample = []
        for _, vectors in batches():
            take = min(len(vectors), int(np.ceil(quota * len(vectors) / total)))
            sample.append(np.asarray(vectors, np.float32)[rng.choice(len(vectors), take, replace=False)])
        sample = np.concatenate(sample) if sample else np.zeros((0, self.dim), np.float32)
        if len(sample) < self._min_training(total):  # files unreadable meanwhile: stay exact
            logger.warning("%s: only %d training vectors; keeping the index exact", self.path.name,
                           len(sample))
            self._index = self._new_flat()
        else:
            self._index = self._new_trained(sample, total)
        for ids, vectors in batches():
            self._add_raw(ids, vectors)

    def _add_raw(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32),
                                     np.ascontiguousarray(ids, dtype=np.int64))

    # -- updates ----------------------------------------------------------------
    @_locked
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if self.kind == "flat" and self.ntotal + len(ids) >= self.ivf_threshold:
            old_ids, old_vectors = self._flat_contents()
            self.rebuild(np.concatenate([old_ids, ids]), np.concatenate([old_vectors, vectors]))
        else:
            self._index.add_with_ids(vectors, ids)

    @_locked
    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self._index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64))

    @_locked
    def remove_range(self, lo: int, hi: int) -> None:
        """Remove every id in ``[lo, hi)``."""
        self._index.remove_ids(faiss.IDSelectorRange(lo, hi))

    def _flat_contents(self) -> tuple[np.ndarray, np.ndarray]:
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        vectors = self._index.index.reconstruct_n(0, self._index.ntotal)
        return ids, vectors

    def _lists(self, total: int) -> int:
        return max(16, int(4 * math.sqrt(total)))

    # Training vectors: ~64 per list (FAISS asks for at least 39), capped so a rebuild of a
    # large archive holds a sample in memory, not the archive.
    _MAX_TRAINING = 300_000

    def _training_size(self, total: int) -> int:
        return min(total, max(64 * self._lists(total), 10_000), self._MAX_TRAINING)

    def _min_training(self, total: int) -> int:
        return self._lists(total)  # k-means needs a point per list (FAISS warns below 39)

    def _new_trained(self, sample: np.ndarray, total: int) -> faiss.Index:
        """An empty compressed index trained on ``sample`` (for ``total`` vectors)."""
        nlist = self._lists(total)
        logger.info("switching %s to IVF-Flat (%d vectors, %d lists)", self.path.name, total, nlist)
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(sample)
        index.nprobe = self.nprobe
        return index

    # -- search -----------------------------------------------------------------
    @_locked
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ``(scores, ids)`` per query row; missing slots have id -1."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if self.ntotal == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        return self._index.search(queries, max(1, min(k, self.ntotal)))
