"""Spatial pooling of an encoder's patch grid (VideoLLaMA3's 2×2 pooling).

Ingest pools every frame's patch grid into dense tokens; an object query pools the query
image's grid the same way, so both sides of a comparison live on the same cells.
"""

from __future__ import annotations

import numpy as np

__all__ = ["pool_2x2"]


def pool_2x2(grid: np.ndarray) -> np.ndarray:
    """Average ``[B, H, W, ...]`` over 2×2 cells; an odd last row/column is averaged alone."""
    b, h, w = grid.shape[:3]
    if h % 2:
        grid = np.concatenate([grid, grid[:, -1:]], axis=1)
    if w % 2:
        grid = np.concatenate([grid, grid[:, :, -1:]], axis=2)
    h2, w2 = grid.shape[1] // 2, grid.shape[2] // 2
    cells = grid.reshape(b, h2, 2, w2, 2, *grid.shape[3:])
    return cells.mean(axis=(2, 4))
