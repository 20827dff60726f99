"""The FAISS index of dense patch tokens, for object queries.

Every stored (kept) dense token is one vector, L2-normalised: a token stands for its cell
from its frame until the cell's next kept token, so pruning shrinks this index as it shrinks
storage. Ids pack ``video_id << 32 | token index`` within the video's stored tokens.

Exact (``IndexFlatIP``) while the index holds fewer than ``compress_threshold`` vectors
(default 100,000: about 1.7 hours at 1 fps of a ViT-B/32 archive, 16 cells per frame, at
3 KB a vector); past it, rebuilt once as ``IndexIVFPQ`` — 4·√n lists, product quantisation
to ``m`` bytes per vector (the largest divisor of the width up to 64) — searched with
``nprobe`` lists. Object queries re-score candidate videos exactly from the stored tokens, so
compression costs recall of candidates, not precision of scores.
"""

from __future__ import annotations

import logging
import math

import faiss
import numpy as np

from .frame_index import FrameIndex

__all__ = ["PatchIndex", "patch_ids", "TOKEN_ID_BITS", "pq_bytes"]

logger = logging.getLogger(__name__)

TOKEN_ID_BITS = 32


def patch_ids(video_id: int, count: int) -> np.ndarray:
    if count >= 1 << TOKEN_ID_BITS:
        raise ValueError(f"a video may hold at most {(1 << TOKEN_ID_BITS) - 1} dense tokens")
    return (np.int64(video_id) << TOKEN_ID_BITS) + np.arange(count, dtype=np.int64)


def pq_bytes(dim: int) -> int:
    """Bytes per vector of the compressed index: the largest divisor of ``dim`` up to 64."""
    return max(m for m in range(1, min(64, dim) + 1) if dim % m == 0)


class PatchIndex(FrameIndex):
    """Like :class:`FrameIndex`, but compressing to IVF-PQ past ``compress_threshold``."""

    # Product quantisation trains 256 centroids per sub-space and wants ~39 points each.
    MIN_COMPRESS_THRESHOLD = 256 * 39

    def __init__(self, path, dim: int, compress_threshold: int = 100_000, nprobe: int = 32) -> None:
        if compress_threshold < self.MIN_COMPRESS_THRESHOLD:
            raise ValueError(f"compress_threshold must be at least {self.MIN_COMPRESS_THRESHOLD} "
                             f"(IVF-PQ needs that many training vectors), got {compress_threshold}")
        super().__init__(path, dim, ivf_threshold=compress_threshold, nprobe=nprobe)

    @property
    def kind(self) -> str:
        return "ivfpq" if isinstance(self._index, faiss.IndexIVFPQ) else super().kind

    def _lists(self, total: int) -> int:
        return max(16, min(int(4 * math.sqrt(total)), total // 39))

    def _min_training(self, total: int) -> int:
        return max(self._lists(total), 256)  # and 256 per product-quantiser codebook

    def _new_trained(self, sample: np.ndarray, total: int) -> faiss.Index:
        nlist = self._lists(total)
        m = pq_bytes(self.dim)
        logger.info("compressing %s to IVF-PQ (%d vectors, %d lists, %d bytes each)",
                    self.path.name, total, nlist, m)
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFPQ(quantizer, self.dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
        index.train(sample)
        index.nprobe = self.nprobe
        return index


def normalised_tokens(tokens: np.ndarray) -> np.ndarray:
    """Stored float16 tokens as unit float32 vectors (zero vectors stay zero)."""
    vectors = np.asarray(tokens, np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-6)
