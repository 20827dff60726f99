"""Store internals: the FAISS frame index, feature files, the write lock."""

from __future__ import annotations

import numpy as np
import pytest

from vidseek.errors import ArchiveLockedError
from vidseek.indexer.dense import DenseTokens
from vidseek.store.files import FeatureFileStore, VideoFeatures
from vidseek.store.frame_index import FrameIndex
from vidseek.store.lock import WriteLock


def clustered(n, dim, rng, centres=50):
    c = rng.normal(size=(centres, dim)).astype(np.float32)
    x = c[rng.integers(0, centres, n)] + 0.3 * rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_flat_index_is_exact_and_persists(tmp_path):
    rng = np.random.default_rng(0)
    vectors = clustered(500, 32, rng)
    ids = np.arange(500, dtype=np.int64) * 7 + 3
    index = FrameIndex(tmp_path / "f.faiss", 32)
    index.add(ids, vectors)
    scores, found = index.search(vectors[:5], 1)
    np.testing.assert_array_equal(found[:, 0], ids[:5])
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    index.save(generation=4)
    again = FrameIndex(tmp_path / "f.faiss", 32)
    assert again.load() and again.generation == 4 and again.ntotal == 500
    index.remove(ids[:100])
    assert index.ntotal == 400 and index.search(vectors[:1], 1)[1][0, 0] != ids[0]


def test_index_switches_to_ivf_past_threshold_with_high_recall(tmp_path):
    rng = np.random.default_rng(1)
    vectors = clustered(6000, 32, rng)
    ids = np.arange(6000, dtype=np.int64)
    index = FrameIndex(tmp_path / "f.faiss", 32, ivf_threshold=4000, nprobe=16)
    index.add(ids[:3000], vectors[:3000])
    assert index.kind == "flat"
    index.add(ids[3000:], vectors[3000:])
    assert index.kind == "ivf" and index.ntotal == 6000
    queries = clustered(100, 32, rng)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    _, got = index.search(queries, 10)
    recall = np.mean([len(set(g) & set(e)) / 10 for g, e in zip(got, exact)])
    assert recall >= 0.95
    index.save(1)
    again = FrameIndex(tmp_path / "f.faiss", 32)
    again.load()
    assert again.kind == "ivf" and again.ntotal == 6000


def test_feature_files_round_trip_and_garbage_collection(tmp_path):
    store = FeatureFileStore(tmp_path / "features")
    kept = np.ones((3, 2, 2), bool)
    features = VideoFeatures(np.array([0.0, 1.0, 2.0]), np.eye(3, 4, dtype=np.float32),
                             DenseTokens(np.ones((12, 5), np.float16), kept))
    key = store.save(features)
    loaded = store.load(key)
    np.testing.assert_array_equal(loaded.embeddings, features.embeddings)
    np.testing.assert_array_equal(loaded.dense.kept, kept)
    orphan = store.save(features)
    assert store.remove_unreferenced({key}, min_age_s=3600) == 0  # too young: maybe in flight
    assert store.remove_unreferenced({key}, min_age_s=0) == 1
    assert store.keys() == {key}
    with pytest.raises(ValueError):
        VideoFeatures(np.zeros(2), np.zeros((3, 4), np.float32), DenseTokens(np.zeros((0, 5)), kept))
    assert orphan not in store.keys()


def test_write_lock_is_reentrant_and_exclusive_between_holders(tmp_path):
    lock = WriteLock(tmp_path, timeout=0.3)
    other = WriteLock(tmp_path, timeout=0.3)  # a second handle behaves like another process
    with lock:
        with lock:
            pass
        with pytest.raises(ArchiveLockedError):
            with other:
                pass
    with other:
        pass
