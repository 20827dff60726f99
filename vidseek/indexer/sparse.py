"""Sparse tokens at ingest: a video's level-1 windows compressed by the grounding adapter.

Computed from the stored frame features (embeddings + dense tokens), so an archive indexed
before a grounding checkpoint existed is back-filled without decoding video again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..models.adapter import COARSE
from ..models.grounder import Grounder
from ..store.archive_store import ArchiveStore
from ..store.catalog import VideoRecord
from ..store.files import DamagedFileError, VideoFeatures
from ..store.sparse_tokens import SparseTokens

__all__ = ["compute_sparse_tokens", "ReindexReport", "reindex_sparse", "SparseTokenSource"]

logger = logging.getLogger(__name__)

_CHUNK_WINDOWS = 64  # windows per adapter pass: bounds memory on long videos


@torch.no_grad()
def compute_sparse_tokens(grounder: Grounder, features: VideoFeatures,
                          fps: float) -> tuple[SparseTokens, list[tuple[float, float]]]:
    """``(tokens [windows, n, hidden] float16, window spans in seconds)``."""
    window = grounder.config.windows.coarse
    frames = len(features.times)
    grounder.eval()
    chunks = []
    step = window * _CHUNK_WINDOWS
    for a in range(0, frames, step):
        b = min(frames, a + step)
        dense = grounder.video_dense_tokens(features.embeddings, features.dense, a, b)
        chunks.append(grounder.sparse_tokens(dense, window, COARSE).cpu().numpy())
    tokens = (np.concatenate(chunks) if chunks else
              np.zeros((0, grounder.config.adapter.coarse_tokens, grounder.config.adapter.hidden)))
    spans = [(float(features.times[a]), float(features.times[min(a + window, frames) - 1] + 1.0 / fps))
             for a in range(0, frames, window)]
    return SparseTokens(tokens.astype(np.float16), window, grounder.adapter_fingerprint), spans


@dataclass
class ReindexReport:
    updated: int = 0
    skipped: int = 0  # already current, replaced meanwhile, or damaged
    seconds: float = 0.0
    damaged: list[str] = field(default_factory=list)  # videos whose features could not be read


def reindex_sparse(store: ArchiveStore, grounder: Grounder,
                   progress: Callable[[int, int, VideoRecord], None] | None = None) -> ReindexReport:
    """Store ``grounder``'s sparse tokens for every video that lacks them, from the stored
    frame features (no video is decoded)."""
    started = time.perf_counter()
    report = ReindexReport()
    videos = store.catalog.videos()
    for n, video in enumerate(videos):
        if video.sparse_fingerprint == grounder.adapter_fingerprint:
            report.skipped += 1
        else:
            try:
                features = store.video_features(video)
            except DamagedFileError as exc:  # the others still get their tokens
                logger.warning("%s: features damaged, no sparse tokens (%s); re-ingest it or "
                               "run vidseek doctor --repair", video.name, exc)
                report.damaged.append(video.name)
                report.skipped += 1
            else:
                sparse, windows = compute_sparse_tokens(grounder, features, video.fps)
                if store.set_sparse(video, sparse, windows):
                    report.updated += 1
                else:
                    report.skipped += 1  # replaced or removed meanwhile; ingest handles it
        if progress is not None:
            progress(n + 1, len(videos), video)
    report.seconds = time.perf_counter() - started
    return report


class SparseTokenSource:
    """A video's level-1 tokens for one grounder: the stored ones when they match its
    adapter, else computed from the frame features once per source (and a warning)."""

    def __init__(self, store: ArchiveStore, grounder: Grounder) -> None:
        self.store = store
        self.grounder = grounder
        self._computed: dict[tuple[int, str], np.ndarray] = {}

    def tokens(self, record: VideoRecord, features: VideoFeatures) -> np.ndarray | None:
        """None for videos the dense level covers whole."""
        if record.frames <= self.grounder.config.windows.dense:
            return None
        sparse = self.store.load_sparse(record)
        if sparse is not None and sparse.fingerprint == self.grounder.adapter_fingerprint:
            return sparse.tokens
        key = (record.id, record.features_key)
        if key not in self._computed:
            logger.warning("%s: no sparse tokens for this grounding checkpoint; computing them "
                           "(run vidseek reindex to store them)", record.path)
            self._computed[key] = compute_sparse_tokens(self.grounder, features, record.fps)[0].tokens
        return self._computed[key]
