"""Store internals: the FAISS frame index, feature files, the write lock."""

from __future__ import annotations

import numpy as np
import pytest

from vidseek.errors import ArchiveLockedError
from vidseek.store.dense_tokens import DenseTokens
from vidseek.store.files import FeatureFileStore, VideoFeatures
from vidseek.store.frame_index import FrameIndex
from vidseek.store.lock import WriteLock


def clustered(n, dim, rng, centres=50):
    c = rng.normal(size=(centres, dim)).astype(np.float32)
    x = c[rng.integers(0, centres, n)] + 0.3 * rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def video_ids(video_id, count, bits=24):
    return (np.int64(video_id) << bits) + np.arange(count, dtype=np.int64)


def test_flat_index_is_exact_and_persists(tmp_path):
    rng = np.random.default_rng(0)
    vectors = clustered(500, 32, rng)
    ids = np.concatenate([video_ids(1, 100), video_ids(2, 400)])
    index = FrameIndex(tmp_path / "f.faiss", 32)
    index.add(ids, vectors)
    scores, found = index.search(vectors[:5], 1)
    np.testing.assert_array_equal(found[:, 0], ids[:5])
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    index.save(generation=4)
    again = FrameIndex(tmp_path / "f.faiss", 32)
    assert again.load() and again.generation == 4 and again.ntotal == 500
    index.remove_video(1, 100)
    assert index.ntotal == 400 and index.search(vectors[:1], 1)[1][0, 0] != ids[0]


@pytest.mark.parametrize("in_memory_bytes", [0, None], ids=["mapped", "in-memory"])
def test_saves_write_logs_and_compaction_writes_a_new_base(tmp_path, in_memory_bytes):
    """A save writes only its own vectors; compaction folds them (minus removed videos)
    into a new base, memory-mapped or read into memory by its size; a reader in another
    process sees each state exactly."""
    rng = np.random.default_rng(3)
    vectors = clustered(30_000, 32, rng)
    index = FrameIndex(tmp_path / "f.faiss", 32, in_memory_bytes=in_memory_bytes)
    for v in range(30):  # 30 videos of 1,000 frames, one save each
        index.add(video_ids(v, 1000), vectors[v * 1000:(v + 1) * 1000])
        index.save(v + 1)
        logs = sorted(p.name for p in (tmp_path / "f.d").glob("log-*"))
        if index.maintain():
            assert v + 1 == 20  # 20,000 vectors in the delta: compacted once
            assert not list((tmp_path / "f.d").glob("log-*"))
        else:
            assert len(logs) == (v + 1 if v < 20 else v - 19)
    assert index.ntotal == 30_000 and index._base_ntotal == 20_000 and index.delta_ntotal == 10_000
    reader = FrameIndex(tmp_path / "f.faiss", 32, in_memory_bytes=in_memory_bytes)
    assert reader.load() and reader.ntotal == 30_000 and reader.generation == 30
    assert index.base_is_mapped == reader.base_is_mapped == (in_memory_bytes == 0)
    # removals: a video in the base is tombstoned, one in the delta dropped
    index.remove_video(3, 1000)
    index.remove_video(25, 1000)
    index.save(31)
    assert reader.load() and reader.ntotal == 28_000
    for idx in (index, reader):
        _, got = idx.search(vectors[3_000:3_010], 5)
        assert not np.isin(got >> 24, [3, 25]).any()
        _, got = idx.search(vectors[4_000:4_010], 1)
        np.testing.assert_array_equal(got[:, 0], video_ids(4, 10))
    exact = FrameIndex(tmp_path / "x.faiss", 32)
    keep = ~np.isin(np.arange(30_000) // 1000, [3, 25])
    exact.add(np.arange(30_000)[keep], vectors[keep])
    queries = clustered(50, 32, rng)
    for idx in (index, reader):  # still exact: same scores as one flat index
        np.testing.assert_allclose(idx.search(queries, 10)[0], exact.search(queries, 10)[0], atol=1e-5)
    # a compaction by the writer: the reader swaps to the new base (read off its lock)
    old_base = reader._base_file
    index._compact(31)
    assert index._base_file != old_base and index.delta_ntotal == 0 and not index._tombstones
    assert reader.load() and reader._base_file == index._base_file and reader.ntotal == 28_000
    np.testing.assert_allclose(reader.search(queries, 10)[0], exact.search(queries, 10)[0], atol=1e-5)


def test_index_retrains_as_ivf_past_threshold_with_high_recall(tmp_path):
    rng = np.random.default_rng(1)
    vectors = clustered(6000, 32, rng)
    ids = np.concatenate([video_ids(v, 1000) for v in range(6)])
    held = {"n": 0}
    source = type("Source", (), {
        "count": lambda self: held["n"],
        "batches": lambda self: iter([(ids[:held["n"]], vectors[:held["n"]])])})()
    index = FrameIndex(tmp_path / "f.faiss", 32, ivf_threshold=4000, nprobe=16, source=source,
                       in_memory_bytes=0)  # the base memory-mapped; the reader below reads it in
    for v in range(6):
        index.add(ids[v * 1000:(v + 1) * 1000], vectors[v * 1000:(v + 1) * 1000])
        held["n"] += 1000
        index.save(v + 1)
        done = index.maintain()
        assert done == ("retrained" if v == 3 else None)
        assert index.kind == ("flat" if v < 3 else "ivf")
    assert index.ntotal == 6000 and index.delta_ntotal == 2000  # added to the trained lists
    queries = clustered(100, 32, rng)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    _, got = index.search(queries, 10)
    recall = np.mean([len(set(g) & set(ids[e])) / 10 for g, e in zip(got, exact)])
    assert recall >= 0.95
    again = FrameIndex(tmp_path / "f.faiss", 32, nprobe=16)
    assert again.load() and again.kind == "ivf" and again.ntotal == 6000
    assert index.base_is_mapped and not again.base_is_mapped
    # the logs of an IVF delta carry each vector's list: a replay skips the assignment
    with np.load(tmp_path / "f.d" / index._logs[-1]) as log:
        lists = log["lists"]
        _, assigned = index._delta.quantizer.search(np.ascontiguousarray(log["vectors"], np.float32), 1)
    np.testing.assert_array_equal(lists, assigned.reshape(-1))
    np.testing.assert_array_equal(again.search(queries, 10)[1], got)


def test_older_index_format_is_reported_for_rebuild(tmp_path):
    (tmp_path / "f.json").write_text('{"generation": 3, "kind": "flat", "ntotal": 0, "dim": 32}')
    index = FrameIndex(tmp_path / "f.faiss", 32)
    assert not index.load() and index.generation == -1


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


def test_frame_reader_reads_chosen_rows_of_plain_and_compressed_files(tmp_path):
    from vidseek.store.files import FrameReader, npz_row_layout

    rng = np.random.default_rng(5)
    times, emb = np.arange(50) / 2.0, rng.normal(size=(50, 8)).astype(np.float32)
    store = FeatureFileStore(tmp_path / "features")
    key = store.save(VideoFeatures(times, emb, DenseTokens(np.ones((4, 3), np.float16),
                                                           np.ones((50, 2, 2), bool) & (np.arange(50) == 0)[:, None, None])))
    compressed = tmp_path / "c.npz"
    np.savez_compressed(compressed, times=times, embeddings=emb)
    assert npz_row_layout(compressed, "embeddings") is None
    for reader in (store.frames(key), FrameReader(compressed, None, None)):
        assert len(reader) == 50
        np.testing.assert_array_equal(reader.times(), times)
        np.testing.assert_array_equal(reader.embeddings(slice(10, 20)), emb[10:20])
        np.testing.assert_array_equal(reader.embeddings(np.array([0, 7, 49])), emb[[0, 7, 49]])
        rows = np.array([9, 3, 4, 5, 9, 48, 49, 0])  # unsorted, repeated, runs read at once
        np.testing.assert_array_equal(reader.embeddings(rows), emb[rows])
        assert reader.embeddings(np.array([], int)).shape == (0, 8)
        np.testing.assert_array_equal(reader.times(slice(40, 45)), times[40:45])
