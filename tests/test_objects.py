"""Object queries: regions to object tokens, the patch index, and finding objects again."""

from __future__ import annotations

import numpy as np
import pytest

import vidseek
import vidseek.indexer
from vidseek import QueryError, Region
from vidseek.query.objects import cell_box, object_token
from vidseek.synth import Segment, splice_videos
from vidseek.synth.world import ClipSpec, Event, Thing, object_boxes, render_clip
from vidseek.synth.writer import VideoWriter


# -- regions ------------------------------------------------------------------------
def test_box_coverage_on_the_pooled_grid():
    # a 7x7 patch grid (ViT-B/32 at 224) pools to 4x4 cells; the last row/column pools one patch
    region = Region(224, 224, box=(0, 0, 64, 64))  # exactly patches 0-1 x 0-1
    cover = region.coverage((4, 4), (7, 7))
    assert cover[0, 0] == pytest.approx(1.0) and cover[1:, :].sum() == 0 and cover[0, 1:].sum() == 0
    corner = Region(224, 224, box=(192, 192, 224, 224)).coverage((4, 4), (7, 7))
    assert corner[3, 3] == pytest.approx(1.0)  # the one-patch cell, fully covered
    tiny = Region(640, 360, box=(300, 170, 310, 180))  # smaller than any cell: still one cell
    mask = tiny.cell_mask((4, 4), (8, 8))
    assert mask.sum() == 1 and mask[1:3, 1:3].any()
    assert cell_box(5, (4, 4), (8, 8), 640, 360) == (160, 90, 320, 180)
    assert cell_box(15, (4, 4), (7, 7), 224, 224) == (192, 192, 224, 224)


def test_mask_regions_and_bad_regions():
    mask = np.zeros((120, 160), bool)
    mask[60:, 80:] = True  # the bottom-right quarter
    cells = Region(160, 120, mask=mask).cell_mask((2, 2), (4, 4))
    assert cells.tolist() == [[False, False], [False, True]]
    for bad in ("1,2,3", "a,b,c,d", "10,10,5,20", "0,0,161,50"):
        with pytest.raises(QueryError, match="box"):
            Region.parse_box(bad, 160, 120)
    with pytest.raises(QueryError, match="mask"):
        Region(160, 120, mask=np.zeros((120, 160), bool))
    with pytest.raises(QueryError, match="160x120"):
        Region(160, 120, mask=np.ones((10, 10), bool))
    tokens = np.zeros((2, 2, 3), np.float32)
    tokens[1, 1] = [3, 0, 4]
    assert np.allclose(object_token(tokens, cells), [0.6, 0, 0.8])


# -- the procedural world ---------------------------------------------------------
TARGET = Thing("square", "red", "large")
DISTRACTORS = [Thing("circle", "blue", "large"), Thing("triangle", "green", "large"),
               Thing("square", "yellow", "large"), Thing("diamond", "white", "large")]


@pytest.fixture(scope="module")
def object_world(tmp_path_factory):
    """Ten 6-second clips: the target object in clips 0, 3, 6 (still, moving, appearing),
    a different distractor object in each of the others."""
    path = tmp_path_factory.mktemp("objects") / "objects.mp4"
    specs: list[ClipSpec] = []
    distractors = iter(DISTRACTORS * 2)
    for n in range(10):
        background = ("flat", "textured")[n % 2]
        if n == 0:
            spec = ClipSpec(None, background, 6.0, 100 + n, idle=TARGET)
        elif n == 3:
            spec = ClipSpec(Event("moves right", TARGET, 1.0, 5.0), background, 6.0, 100 + n)
        elif n == 6:
            spec = ClipSpec(Event("appears", TARGET, 1.5, 1.5), background, 6.0, 100 + n)
        else:
            spec = ClipSpec(None, background, 6.0, 100 + n, idle=next(distractors))
        specs.append(spec)
    with VideoWriter(path, fps=10) as writer:
        for spec in specs:
            for _, frame in render_clip(spec, fps=10, size=128):
                writer.write(frame)
    return path, specs


def truth_box(specs, t):
    n = int(t // 6.0)
    found = [box for thing, box in object_boxes(specs[n], t - 6.0 * n, 128) if thing == TARGET]
    return (n, found[0]) if found else (n, None)


def overlaps(a, b) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def test_an_object_selected_in_one_clip_is_found_in_the_others(tmp_path, world_encoder, object_world):
    path, specs = object_world
    with vidseek.Archive.open(tmp_path / "a", model=world_encoder.path, device="cpu",
                              config=vidseek.IngestConfig(fps=2.0)) as archive:
        archive.ingest([path])
        _, box = truth_box(specs, 3.0)
        hits = archive.search_object(box, video="objects.mp4", time=3.0, top_k=5)
        target_clips = {0, 3, 6}
        clips_of_hits = [int(h.peak // 6.0) for h in hits]
        precision = sum(c in target_clips for c in clips_of_hits) / len(hits)
        recall = len(target_clips & set(clips_of_hits)) / len(target_clips)
        print(f"object query on the world video: hits in clips {clips_of_hits}, "
              f"precision@5 {precision:.2f}, recall@5 {recall:.2f}")
        precision_at_3 = sum(c in target_clips for c in clips_of_hits[:3]) / 3
        assert clips_of_hits[0] in target_clips
        assert recall == 1.0 and precision_at_3 >= 2 / 3
        # the matching cell follows the object: the moving square's track overlaps its box
        moving = [h for h in hits if int(h.peak // 6.0) == 3]
        if moving:
            points = [p for p in moving[0].track if truth_box(specs, p.time)[1] is not None]
            on_target = sum(overlaps(p.box, truth_box(specs, p.time)[1]) for p in points)
            assert on_target >= 0.8 * len(points)
        # distractor clips rank lower: per clip, the best frame's similarity
        from vidseek.query.objects import score_video_cells

        record = archive.find_video("objects.mp4")
        features = archive._store.video_features(record)
        token = archive.object_token(box, video="objects.mp4", time=3.0)
        best, _ = score_video_cells(features.dense, token)
        per_clip = [float(best[(features.times >= 6 * n) & (features.times < 6 * n + 6)].max())
                    for n in range(10)]
        worst_target = min(per_clip[n] for n in target_clips)
        beaten = [n for n in range(10) if n not in target_clips and per_clip[n] >= worst_target]
        print("per-clip best similarity:", [round(v, 3) for v in per_clip])
        assert len(beaten) <= 1, beaten
        # a track within the one video covers the three appearances
        track = archive.search_object(box, video="objects.mp4", time=3.0, within="objects.mp4", top_k=10)
        assert target_clips <= {int(h.peak // 6.0) for h in track}


# -- real footage ---------------------------------------------------------------------
def test_a_box_on_bikes_is_found_again_in_a_video_that_splices_it_in(
        tmp_path, trained_encoder_dir, media, generated):
    splice = tmp_path / "splice.mp4"
    spans = splice_videos(splice, [Segment(generated["static"]), Segment(media / "bigbuckbunny.mp4"),
                                   Segment(media / "bikes.mp4"), Segment(generated["noise"])],
                          size=(640, 360), fps=25)
    bikes_start = spans[2][0]
    with vidseek.Archive.open(tmp_path / "a", model=trained_encoder_dir, device="cpu") as archive:
        archive.ingest([media / "bikes.mp4", media / "carphone_pristine.mp4",
                        media / "bigbuckbunny.mp4", splice])
        bikes = archive.find_video("bikes.mp4")
        box = (bikes.width * 0.3, bikes.height * 0.25, bikes.width * 0.7, bikes.height * 0.9)
        hits = archive.search_object(box, video="bikes.mp4", time=4.0, top_k=6)
        assert {h.video for h in hits[:2]} == {"bikes.mp4", "splice.mp4"}
        in_splice = next(h for h in hits if h.video == "splice.mp4")
        assert in_splice.start - 1.0 <= bikes_start + 4.0 <= in_splice.end + 1.0
        assert bikes_start - 1.0 <= in_splice.peak <= bikes_start + 11.0
        for point in in_splice.track:  # boxes are cells of the splice's 640x360 frames
            x0, y0, x1, y1 = point.box
            assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 360
        # the same region on a picture of that frame (not from the archive) finds it too
        frame = vidseek.indexer.read_frame(media / "bikes.mp4", 4.0)
        by_image = archive.search_object(box, image=frame, top_k=3)
        assert by_image[0].video in ("bikes.mp4", "splice.mp4")
        with pytest.raises(QueryError, match="time"):
            archive.search_object(box, video="bikes.mp4", time=99.0)
        with pytest.raises(QueryError, match="exactly one"):
            archive.search_object(box, top_k=3)


# -- the patch index --------------------------------------------------------------------
def test_patch_index_compresses_past_its_threshold_and_survives_save_load(tmp_path):
    from vidseek.store.patch_index import PatchIndex, patch_ids

    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="compress_threshold"):
        PatchIndex(tmp_path / "x.faiss", 32, compress_threshold=100)
    from vidseek.store.frame_index import ArraySource

    vectors = rng.normal(size=(12_000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    all_ids = np.concatenate([patch_ids(1, 6_000), patch_ids(2, 6_000)])
    index = PatchIndex(tmp_path / "p.faiss", 32, compress_threshold=10_000,
                       source=ArraySource(all_ids, vectors))
    index.add(patch_ids(1, 6_000), vectors[:6_000])
    index.save(6)
    assert index.maintain() is None and index.kind == "flat"
    index.add(patch_ids(2, 6_000), vectors[6_000:])
    index.save(7)
    assert index.maintain() == "retrained"  # crossed the threshold: trained once
    assert index.kind == "ivfpq" and index.ntotal == 12_000
    loaded = PatchIndex(tmp_path / "p.faiss", 32, compress_threshold=10_000)
    assert loaded.load() and loaded.kind == "ivfpq" and loaded.generation == 7
    _, ids = loaded.search(vectors[6_100:6_101], 10)
    assert int(patch_ids(2, 6_000)[100]) in ids[0].tolist()  # found its own (compressed) copy
    # tokens added later go into the trained lists; compaction merges them into the base
    more = rng.normal(size=(20_000, 32)).astype(np.float32)
    more /= np.linalg.norm(more, axis=1, keepdims=True)
    loaded.add(patch_ids(3, 20_000), more)
    loaded.save(8)
    assert loaded.delta_ntotal == 20_000 and loaded.maintain() == "compacted"
    assert loaded.kind == "ivfpq" and loaded.delta_ntotal == 0 and loaded.ntotal == 32_000
    _, ids = loaded.search(more[5:6], 10)
    assert int(patch_ids(3, 20_000)[5]) in ids[0].tolist()
    loaded.remove_video(3, 20_000)
    loaded.remove_video(2, 6_000)  # every token of video 2
    assert loaded.ntotal == 6_000
    _, ids = loaded.search(vectors[6_100:6_101], 50)
    assert all(i >> 32 == 1 for i in ids[0].tolist() if i >= 0)


def test_patch_vectors_follow_commits_deletes_and_crashes(tmp_path, tiny_clip_dir, media):
    import json

    with vidseek.Archive.open(tmp_path / "a", model=tiny_clip_dir, device="cpu") as archive:
        archive.ingest([media / "bikes.mp4", media / "carphone_pristine.mp4"])
        store = archive._store
        stored = {v.name: len(store.files.load_tokens(v.features_key)) for v in archive.videos()}
        patches = store.refresh_patch_index()
        assert patches.ntotal == sum(stored.values())
        # token ids map back to the right frames
        bikes = archive.find_video("bikes.mp4")
        times, kept = store.files.load_token_layout(bikes.features_key)
        first_of_frame_3 = int(kept[:3].sum())
        token = store.files.load_tokens(bikes.features_key)[first_of_frame_3].astype(np.float32)
        found = store.search_patches(token / np.linalg.norm(token), 1)
        assert found == [(bikes.id, float(times[3]))]
        archive.remove("carphone_pristine.mp4")
        assert store.refresh_patch_index().ntotal == stored["bikes.mp4"]
    # a crash between the frame index save and the patch index save: rebuilt on open
    sidecar = tmp_path / "a" / "patches.json"
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, "generation": meta["generation"] - 1}))
    with vidseek.Archive.open(tmp_path / "a", create=False) as archive:
        rebuilt = archive._store.refresh_patch_index()
        assert rebuilt.ntotal == stored["bikes.mp4"]
        assert rebuilt.generation == archive._store.catalog.generation
