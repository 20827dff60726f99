"""The FAISS index of dense patch tokens, for object queries.

Every stored (kept) dense token is one vector, L2-normalised: a token stands for its cell
from its frame until the cell's next kept token, so pruning shrinks this index as it shrinks
storage. Ids pack ``video_id << 32 | token index`` within the video's stored tokens.

Segmented and persisted like :class:`~vidseek.store.frame_index.FrameIndex`. Exact
(``IndexFlatIP``) while the index holds fewer than ``compress_threshold`` vectors (default
100,000: about 1.7 hours at 1 fps of a ViT-B/32 archive, 16 cells per frame, at 3 KB a
vector); past it, ``IndexIVFPQ`` — up to 8,192 lists, product quantisation to ``m`` bytes
per vector (the largest divisor of the width up to 64) — searched with ``nprobe`` lists. Log
files hold float16 vectors (the dense tokens are stored as float16 anyway). Object queries
re-score candidate videos exactly from the stored tokens, so compression costs recall of
candidates, not precision of scores.
"""

from __future__ import annotations

import numpy as np

from .frame_index import FrameIndex, VectorSource, pq_bytes

__all__ = ["PatchIndex", "patch_ids", "TOKEN_ID_BITS", "pq_bytes", "normalised_tokens"]

TOKEN_ID_BITS = 32


def patch_ids(video_id: int, count: int) -> np.ndarray:
    if count >= 1 << TOKEN_ID_BITS:
        raise ValueError(f"a video may hold at most {(1 << TOKEN_ID_BITS) - 1} dense tokens")
    return (np.int64(video_id) << TOKEN_ID_BITS) + np.arange(count, dtype=np.int64)


class PatchIndex(FrameIndex):
    """Like :class:`FrameIndex`, but going from exact straight to IVF-PQ."""

    LOG_DTYPE = np.float16
    COMPRESSED_KIND = "ivfpq"
    MAX_DELTA = 1_000_000  # ~17 hours of footage between rewrites of a multi-GB base
    # Product quantisation trains 256 centroids per sub-space and wants ~39 points each.
    MIN_COMPRESS_THRESHOLD = 256 * 39

    def __init__(self, path, dim: int, compress_threshold: int = 100_000, nprobe: int = 32,
                 source: VectorSource | None = None) -> None:
        if compress_threshold < self.MIN_COMPRESS_THRESHOLD:
            raise ValueError(f"compress_threshold must be at least {self.MIN_COMPRESS_THRESHOLD} "
                             f"(IVF-PQ needs that many training vectors), got {compress_threshold}")
        super().__init__(path, dim, ivf_threshold=compress_threshold,
                         compress_threshold=compress_threshold, nprobe=nprobe, max_lists=8192,
                         id_bits=TOKEN_ID_BITS, source=source)


def normalised_tokens(tokens: np.ndarray) -> np.ndarray:
    """Stored float16 tokens as unit float32 vectors (zero vectors stay zero)."""
    vectors = np.asarray(tokens, np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-6)
