"""Dense tokens: 2×2 pooling, differential pruning and carry-forward rebuild."""

from __future__ import annotations

import numpy as np
import pytest

from vidseek import IngestConfig
from vidseek.models import FrameEncoder
from vidseek.indexer.dense import DensePruner
from vidseek.models.pooling import pool_2x2
from vidseek.indexer.pipeline import extract_features


def test_pool_2x2_even_and_odd_grids():
    grid = np.arange(2 * 3 * 3 * 1, dtype=np.float32).reshape(2, 3, 3, 1)
    pooled = pool_2x2(grid)
    assert pooled.shape == (2, 2, 2, 1)
    assert pooled[0, 0, 0, 0] == np.mean([0, 1, 3, 4])
    assert pooled[0, 0, 1, 0] == np.mean([2, 5])  # odd column averaged alone
    assert pooled[0, 1, 1, 0] == 8
    assert pool_2x2(np.ones((1, 4, 4, 2))).shape == (1, 2, 2, 2)


def test_pruner_rules_on_synthetic_pixels():
    rng = np.random.default_rng(0)
    frames = np.zeros((6, 64, 64, 3), np.uint8)
    frames[3, :16, :16] = 200  # one 2x2 patch group (patch 8 px) changes at frame 3
    patches = rng.normal(size=(6, 8, 8, 4)).astype(np.float32)
    pruner = DensePruner((8, 8), threshold=0.1)
    pruner.add(frames[:4], patches[:4])
    pruner.add(frames[4:], patches[4:])  # batch boundary: frame 4 compares with frame 3
    dense = pruner.result()
    counts = dense.kept.sum(axis=(1, 2))
    assert counts[0] == 16  # the first frame keeps everything
    assert counts[3] == 1 and dense.kept[3, 0, 0]  # only the changed group
    assert counts[4] == 1 and dense.kept[4, 0, 0]  # and it changes back
    assert counts[1] == counts[2] == counts[5] == 1  # static frames keep one token
    assert len(dense.tokens) == counts.sum() and dense.tokens.dtype == np.float16


@pytest.fixture(scope="module")
def encoder(tiny_clip_dir):
    return FrameEncoder.load(tiny_clip_dir, device="cpu")


def test_static_background_keeps_far_fewer_tokens_than_noise(encoder, generated):
    config = IngestConfig(fps=5.0)
    static, _ = extract_features(generated["static"], encoder, config)
    noise, _ = extract_features(generated["noise"], encoder, config)
    assert noise.dense.kept_fraction > 0.95
    assert static.dense.kept_fraction < 0.5
    assert static.dense.kept_fraction < noise.dense.kept_fraction / 2


def test_rebuilt_grid_equals_kept_tokens_where_kept(encoder, generated):
    features, _ = extract_features(generated["static"], encoder, IngestConfig(fps=5.0))
    dense = features.dense
    grid = dense.grid()
    t, h2, w2 = dense.kept.shape
    assert grid.shape == (t, h2, w2, encoder.info.vision_width)
    np.testing.assert_array_equal(grid[dense.kept], dense.tokens)
    # a dropped position shows the last kept token at that position
    frame, row, col = map(int, np.argwhere(~dense.kept)[0])
    last = max(f for f in range(frame) if dense.kept[f, row, col])
    np.testing.assert_array_equal(grid[frame, row, col], grid[last, row, col])
    # a slice rebuilds the same as the whole
    np.testing.assert_array_equal(dense.grid(3, 7), grid[3:7])
