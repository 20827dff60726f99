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

from dataclasses import dataclass

import numpy as np

__all__ = ["DenseTokens", "DensePruner", "pool_2x2"]


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


def _group_change(prev: np.ndarray, cur: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Mean |cur - prev| (0–255 units) over the pixels of each 2×2 patch group ``[B, h2, w2]``."""
    diff = np.abs(cur.astype(np.int16) - prev.astype(np.int16)).mean(axis=-1, dtype=np.float32)
    b, height, width = diff.shape
    gh, gw = grid
    per_patch = diff.reshape(b, gh, height // gh, gw, width // gw).mean(axis=(2, 4))
    return pool_2x2(per_patch)


@dataclass
class DenseTokens:
    """The pruned dense tokens of one video."""

    tokens: np.ndarray  # float16 [K, C]: kept tokens in frame-major, row-major order
    kept: np.ndarray  # bool [T, h2, w2]: which positions were kept

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
        flat_kept = self.kept.reshape(t, h2 * w2)
        # Index of the kept token that each (frame, position) shows: the last kept one.
        token_index = np.full((t, h2 * w2), -1, dtype=np.int64)
        token_index[flat_kept] = np.arange(int(flat_kept.sum()))
        np.maximum.accumulate(token_index, axis=0, out=token_index)
        out = self.tokens[token_index[start:stop]]
        return out.reshape(stop - start, h2, w2, self.tokens.shape[-1])


class DensePruner:
    """Streams one video's frames through pooling and pruning, batch by batch."""

    def __init__(self, grid: tuple[int, int], threshold: float = 0.1) -> None:
        if threshold < 0:
            raise ValueError(f"prune threshold must be >= 0, got {threshold}")
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
