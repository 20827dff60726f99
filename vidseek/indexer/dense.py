"""Dense tokens: 2×2-pooled patch tokens with differential frame pruning (VideoLLaMA3).

For every frame the encoder's patch grid is average-pooled over 2×2 patch groups. A group
whose pixels barely changed since the previous sampled frame carries no new information,
so its token is dropped: the change is the mean absolute pixel difference over the group,
in 0–255 units, and the default threshold is 0.1 as in the paper. The first frame of a
video keeps every token and every frame keeps at least its most-changed token. Kept tokens
are stored as float16 with a boolean mask of kept positions; the full grid is rebuilt by
carrying each position's last kept token forward.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError
from ..models.pooling import pool_2x2
from ..store.dense_tokens import DenseTokens

__all__ = ["DensePruner"]


def _group_change(prev: np.ndarray, cur: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Mean |cur - prev| (0–255 units) over the pixels of each 2×2 patch group ``[B, h2, w2]``."""
    diff = np.abs(cur.astype(np.int16) - prev.astype(np.int16)).mean(axis=-1, dtype=np.float32)
    b, height, width = diff.shape
    gh, gw = grid
    per_patch = diff.reshape(b, gh, height // gh, gw, width // gw).mean(axis=(2, 4))
    return pool_2x2(per_patch)


class DensePruner:
    """Streams one video's frames through pooling and pruning, batch by batch."""

    def __init__(self, grid: tuple[int, int], threshold: float = 0.1) -> None:
        if not math.isfinite(threshold) or threshold < 0:
            raise ConfigError(f"prune threshold must be a number >= 0, got {threshold}")
        self.grid = grid
        self.threshold = threshold
        self._prev_pixels: np.ndarray | None = None
        self._tokens: list[np.ndarray] = []
        self._kept: list[np.ndarray] = []

    def add(self, pixels: np.ndarray, patches: np.ndarray) -> None:
        """Take a batch: uint8 frames ``[B, S, S, 3]`` and their patch grids ``[B, gh, gw, C]``."""
        pooled = pool_2x2(patches)
        previous = pixels[:-1] if self._prev_pixels is None else np.concatenate(
            [self._prev_pixels[None], pixels[:-1]])
        change = _group_change(previous, pixels[len(pixels) - len(previous):], self.grid)
        if self._prev_pixels is None:  # first frame of the video keeps everything
            change = np.concatenate([np.full((1,) + change.shape[1:], np.inf, np.float32), change])
        kept = change >= self.threshold
        flat = change.reshape(len(change), -1)
        best = flat.argmax(axis=1)
        kept.reshape(len(kept), -1)[np.arange(len(kept)), best] = True  # >= 1 token per frame
        self._kept.append(kept)
        self._tokens.append(pooled[kept].astype(np.float16))
        self._prev_pixels = pixels[-1]

    def result(self) -> DenseTokens:
        h2, w2 = (self.grid[0] + 1) // 2, (self.grid[1] + 1) // 2
        if not self._kept:
            return DenseTokens(np.zeros((0, 0), np.float16), np.zeros((0, h2, w2), bool))
        return DenseTokens(np.concatenate(self._tokens), np.concatenate(self._kept))
