"""Archives grown past the index thresholds, from synthetic features (no decoding)."""

from __future__ import annotations

import faiss
import pytest

import vidseek.query.search as search_module
from vidseek.errors import ArchiveError
from vidseek.query.search import search_moments
from vidseek.store.archive_store import ArchiveStore
from vidseek.synth.features import SceneFeatures, commit_features

DIM = 128


def new_store(root, **thresholds) -> ArchiveStore:
    store = ArchiveStore(root, **thresholds)
    store.set_manifest({"encoder": {"embed_dim": DIM, "vision_width": 8}})
    return store


def test_archive_grows_through_index_kinds_without_rewriting_its_base(tmp_path):
    gen = SceneFeatures(DIM, themes=256, seed=1)
    targets = gen.queries(8)  # near recurring content: close competitors
    store = new_store(tmp_path / "a", ivf_threshold=12_000, compress_threshold=30_000)
    kinds, planted, rewrites = [], {}, 0
    for v in range(36):  # 36 videos of 1,000 frames
        emb = gen.video(1000)
        if v % 4 == 0:  # every 4th video holds an event for one of the targets
            q = (v // 4) % len(targets)
            gen.plant(emb, 500, 5, targets[q])
            planted.setdefault(q, []).append(f"/v/{v}.mp4")
        frames = store.refresh_index()
        base_before = frames._base_file
        commit_features(store, f"/v/{v}.mp4", emb)
        kinds.append(frames.kind)
        if frames._base_file != base_before:  # compaction or retraining: a new base
            rewrites += 1
            assert not frames._logs and frames.delta_ntotal == 0
        else:  # the commit wrote its own vectors only: one log of 1,000 × DIM floats
            log = tmp_path / "a" / "frames.d" / frames._logs[-1]
            assert frames._logs[-1].startswith(f"log-{store.catalog.generation:012d}")
            assert 1000 * DIM * 4 <= log.stat().st_size < 1000 * DIM * 4 + 20_000
    assert rewrites <= 5  # retrains at 12,000 and 30,000; compactions every ≥ 20,000 frames
    assert kinds[0] == "flat" and "ivf" in kinds and kinds[-1] == "ivfsq8"
    assert store.refresh_index().ntotal == 36_000

    def found(s: ArchiveStore) -> dict[int, set[str]]:
        out = {}
        for q, paths in planted.items():
            moments = search_moments(s, targets[q], top_k=len(paths))
            out[q] = {m.path for m in moments}
        return out

    got = found(store)
    assert all(got[q] == set(paths) for q, paths in planted.items())
    # another process opening the archive sees the same index
    other = ArchiveStore(tmp_path / "a", create=False, ivf_threshold=12_000, compress_threshold=30_000)
    assert other.refresh_index().ntotal == 36_000 and found(other) == got
    # fewer lists scanned: the setting reaches the base and the delta
    narrow = ArchiveStore(tmp_path / "a", create=False, ivf_threshold=12_000,
                          compress_threshold=30_000, nprobe=2)
    index = narrow.refresh_index()
    assert index.nprobe == 2 and faiss.extract_index_ivf(index._base).nprobe == 2
    assert len(search_moments(narrow, targets[0], top_k=3)) == 3
    with pytest.raises(ArchiveError, match="nprobe"):
        ArchiveStore(tmp_path / "a", create=False, nprobe=0)
    # replacing and deleting videos: their old vectors never come back
    victim = store.catalog.video_by_path(planted[0][0])
    store.delete_video(victim)
    assert other.refresh_index().ntotal == 35_000
    assert planted[0][0] not in {m.path for m in search_moments(other, targets[0], top_k=20)}


def test_long_videos_are_scored_near_their_hits_like_whole_videos(tmp_path, monkeypatch):
    gen = SceneFeatures(DIM, themes=64, seed=2)
    target = gen.queries(1)[0]
    store = new_store(tmp_path / "a")
    for v in range(4):  # 4 videos of 3,000 frames: longer than scored whole
        emb = gen.video(3000)
        gen.plant(emb, 400 + 600 * v, 6, target, strength=0.86 + 0.03 * v)
        gen.plant(emb, 2500, 3, target, strength=0.84)
        commit_features(store, f"/long/{v}.mp4", emb)
    near_hits = search_moments(store, target, top_k=6)
    monkeypatch.setattr(search_module, "_WHOLE_VIDEO_FRAMES", 10 ** 9)
    whole = search_moments(store, target, top_k=6)
    assert [(m.path, m.peak) for m in near_hits] == [(m.path, m.peak) for m in whole]
    assert [m.path for m in near_hits[:4]] == [f"/long/{v}.mp4" for v in (3, 2, 1, 0)]
    for a, b in zip(near_hits, whole):
        assert a.score == pytest.approx(b.score)
        assert abs(a.start - b.start) <= 2 and abs(a.end - b.end) <= 2
    assert abs(near_hits[0].start - 2200) <= 1 and abs(near_hits[0].end - 2206) <= 1


def test_reused_video_ids_and_stale_deletes(tmp_path):
    """SQLite reuses the id of a deleted last row: the new video's vectors must not be
    hidden by the old one's tombstone, nor the old ones come back."""
    gen = SceneFeatures(DIM, themes=64, seed=3)
    old_target, new_target = gen.queries(2, novel=True)
    store = new_store(tmp_path / "a")
    commit_features(store, "/v/a.mp4", gen.video(10_000))
    emb = gen.video(10_000)
    gen.plant(emb, 100, 5, old_target)
    b = commit_features(store, "/v/b.mp4", emb)
    frames = store.refresh_index()
    assert frames.delta_ntotal == 0 and frames.ntotal == 20_000  # compacted into the base
    store.delete_video(b)
    generation = store.catalog.generation
    store.delete_video(b)  # stale record: nothing happens
    assert store.catalog.generation == generation and frames.ntotal == 10_000
    emb = gen.video(3_000)
    gen.plant(emb, 200, 5, new_target)
    c = commit_features(store, "/v/c.mp4", emb)
    assert c.id == b.id  # the id came back
    for s in (store, ArchiveStore(tmp_path / "a", create=False)):
        index = s.refresh_index()
        assert index.ntotal == 13_000
        assert search_moments(s, new_target, top_k=1)[0].path == "/v/c.mp4"
        assert all(m.path != "/v/b.mp4" for m in search_moments(s, old_target, top_k=20))
        _, ids = index.search(old_target[None], 5)
        assert not ((ids >> 24 == c.id) & (ids % (1 << 24) >= 100) & (ids % (1 << 24) < 105)).any()


def test_orphan_segment_files_are_ignored_then_removed(tmp_path):
    store = new_store(tmp_path / "a")
    gen = SceneFeatures(DIM, themes=64, seed=4)
    commit_features(store, "/v/a.mp4", gen.video(1_000))
    orphan = tmp_path / "a" / "frames.d" / "log-000000000099-deadbeef.npz"
    orphan.write_bytes(b"left by a crash before its manifest")
    assert ArchiveStore(tmp_path / "a", create=False).refresh_index().ntotal == 1_000
    commit_features(store, "/v/b.mp4", gen.video(20_000))  # compaction
    assert not orphan.exists() and store.refresh_index().ntotal == 21_000
