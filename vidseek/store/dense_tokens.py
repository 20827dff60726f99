"""The stored form of one video's dense tokens (2×2-pooled, differentially pruned patch
tokens; made by :mod:`vidseek.indexer.dense`, read by object queries and the grounder).

Kept tokens are float16 with a boolean mask of kept positions; the full grid is rebuilt by
carrying each position's last kept token forward.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["DenseTokens"]


@dataclass
class DenseTokens:
    """The pruned dense tokens of one video."""

    tokens: np.ndarray  # float16 [K, C]: kept tokens in frame-major, row-major order
    kept: np.ndarray  # bool [T, h2, w2]: which positions were kept
    # [T, h2 * w2] index of the kept token each position shows; built on the first read
    # (level 1 reads many short slices of one video per query)
    _index: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def kept_fraction(self) -> float:
        return float(self.kept.mean()) if self.kept.size else 0.0

    @property
    def num_frames(self) -> int:
        return int(self.kept.shape[0])

    def grid(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Full token grids ``[T, h2, w2, C]`` for frames ``start:stop``, carry-forward filled."""
        stop = self.num_frames if stop is None else stop
        t, h2, w2 = self.kept.shape
        if self._index is None:
            flat_kept = self.kept.reshape(t, h2 * w2)
            # Index of the kept token that each (frame, position) shows: the last kept one.
            token_index = np.full((t, h2 * w2), -1, dtype=np.int64)
            token_index[flat_kept] = np.arange(int(flat_kept.sum()))
            np.maximum.accumulate(token_index, axis=0, out=token_index)
            self._index = token_index
        out = self.tokens[self._index[start:stop]]
        return out.reshape(stop - start, h2, w2, self.tokens.shape[-1])
