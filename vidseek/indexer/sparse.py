"""Sparse tokens at ingest: a video's level-1 windows compressed by the grounding adapter.

Computed from the stored frame features (embeddings + dense tokens), so an archive indexed
before a grounding checkpoint existed is back-filled without decoding video again.
"""

from __future__ import annotations

import numpy as np
import torch

from ..models.adapter import COARSE
from ..models.grounder import Grounder
from ..store.files import VideoFeatures
from ..store.sparse_tokens import SparseTokens

__all__ = ["compute_sparse_tokens"]

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
        dense = grounder.dense_tokens(features.embeddings[a:b], features.dense.grid(a, b))
        chunks.append(grounder.sparse_tokens(dense, window, COARSE).cpu().numpy())
    tokens = (np.concatenate(chunks) if chunks else
              np.zeros((0, grounder.config.adapter.coarse_tokens, grounder.config.adapter.hidden)))
    spans = [(float(features.times[a]), float(features.times[min(a + window, frames) - 1] + 1.0 / fps))
             for a in range(0, frames, window)]
    return SparseTokens(tokens.astype(np.float16), window, grounder.adapter_fingerprint), spans
