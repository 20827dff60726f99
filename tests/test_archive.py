"""Ingest into an archive and search it, through the public library API."""

from __future__ import annotations

import json
import shutil
import sqlite3

import numpy as np
import pytest

import vidseek
import vidseek.annotations
import vidseek.evaluation
import vidseek.indexer
from vidseek import Archive, IngestConfig, QueryError
from vidseek.models.encoder import default_image_precision
from vidseek.errors import EncoderMismatchError
from vidseek.models.tiny import build_tiny_clip
from vidseek.synth import Segment, noise_frames, splice_videos


def snapshot(archive: Archive) -> dict:
    """Everything that makes up the archive's visible state."""
    store = archive._store
    index = store.refresh_index()
    return {
        "videos": [(v.id, v.path, v.content_hash, v.frames) for v in store.catalog.videos()],
        "frames": list(store.catalog.db.execute("SELECT id, video_id, time FROM frames ORDER BY id")),
        "generation": store.catalog.generation,
        "index": (index.ntotal, index.generation),
        "files": sorted(store.files.keys()),
    }


@pytest.fixture()
def archive(tmp_path, tiny_clip_dir):
    with Archive.open(tmp_path / "archive", model=tiny_clip_dir, device="cpu") as arch:
        yield arch


def test_folder_ingest_is_recursive_and_records_videos(archive, media, tmp_path):
    folder = tmp_path / "footage"
    (folder / "nested" / "deeper").mkdir(parents=True)
    shutil.copy(media / "bikes.mp4", folder / "bikes.mp4")
    shutil.copy(media / "carphone_pristine.mp4", folder / "nested" / "deeper" / "car.MP4")
    (folder / "nested" / "readme.txt").write_text("not a video; ignored inside folders")
    events = []
    report = archive.ingest([folder], progress=events.append)
    assert report.ok and not report.skipped
    assert sorted(v.name for v in report.indexed) == ["bikes.mp4", "car.MP4"]
    bikes = next(v for v in report.indexed if v.name == "bikes.mp4")
    assert bikes.duration == pytest.approx(10.0, abs=0.05) and bikes.frames == 10
    assert bikes.width == 640 and bikes.codec == "h264" and 0 < bikes.kept_fraction <= 1
    assert [e.stage for e in events].count("indexed") == 2
    assert any(e.stage == "frames" and e.seconds_done > 0 for e in events)
    state = snapshot(archive)
    assert state["index"] == (14, state["generation"])
    assert len(state["files"]) == 2
    info = archive.info()
    assert info.videos == 2 and info.frames == 14 and info.index_kind == "flat"


def test_unchanged_reingest_is_a_noop_and_changed_file_is_replaced(archive, media, tmp_path):
    video = tmp_path / "clip.mp4"
    shutil.copy(media / "carphone_pristine.mp4", video)
    archive.ingest([video])
    before = snapshot(archive)
    report = archive.ingest([video])
    assert not report.indexed and [s.path for s in report.skipped] == [video]
    assert snapshot(archive) == before
    shutil.copy(media / "bikes.mp4", video)  # same path, new content
    report = archive.ingest([video])
    assert len(report.indexed) == 1
    after = snapshot(archive)
    assert len(after["videos"]) == 1 and after["videos"][0][3] == 10
    assert after["index"][0] == 10 and len(after["files"]) == 1


def test_bad_files_fail_clearly_and_leave_archive_unchanged(archive, media, tmp_path):
    archive.ingest([media / "carphone_pristine.mp4"])
    before = snapshot(archive)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("hello\n" * 100)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes((media / "bikes.mp4").read_bytes()[:60_000])
    good = tmp_path / "good.mp4"
    shutil.copy(media / "bikes.mp4", good)
    report = archive.ingest([empty, text, truncated, good])
    failed = {f.path.name: f.error for f in report.failed}
    assert set(failed) == {"empty.mp4", "notes.mp4", "truncated.mp4"}
    assert "empty.mp4" in failed["empty.mp4"] and "0 bytes" in failed["empty.mp4"]
    assert "not a video" in failed["notes.mp4"]
    assert "truncated.mp4" in failed["truncated.mp4"]
    assert [v.name for v in report.indexed] == ["good.mp4"]  # the others still get indexed
    archive.remove("good.mp4")
    assert snapshot(archive)["videos"] == before["videos"]
    assert snapshot(archive)["frames"] == before["frames"]
    assert snapshot(archive)["files"] == before["files"]


def test_videos_sharing_a_file_name(archive, media, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(media / "carphone_pristine.mp4", tmp_path / folder / "clip.mp4")
    archive.ingest([tmp_path / "a", tmp_path / "b"])
    assert len(archive.find_videos("clip.mp4")) == 2
    assert {m.path for m in archive.search("x", video="clip.mp4", top_k=10)} == {
        str(tmp_path / "a" / "clip.mp4"), str(tmp_path / "b" / "clip.mp4")}
    with pytest.raises(QueryError, match="names 2 videos"):
        archive.remove("clip.mp4")
    with pytest.raises(QueryError, match="names 2 videos"):
        vidseek.evaluation.evaluate_archive(archive, [vidseek.annotations.Annotation("clip.mp4", "x", 0.0, 1.0)])
    removed = archive.remove(str(tmp_path / "a" / "clip.mp4"))
    assert removed.path == str(tmp_path / "a" / "clip.mp4")
    assert [v.path for v in archive.find_videos("clip.mp4")] == [str(tmp_path / "b" / "clip.mp4")]


@pytest.mark.parametrize("damage", ["truncated", "garbled"])
@pytest.mark.parametrize("target", ["frames.json", "frames.d/log-*.npz"])
def test_unreadable_index_is_rebuilt(tmp_path, tiny_clip_dir, media, target, damage):
    """A small archive's frame index is a manifest and logs (no base before compaction):
    either one damaged, the index is rebuilt from the feature files into a new base.
    (tests/test_damaged_files.py damages bases, patch indexes, feature and sparse files.)"""
    with Archive.open(tmp_path / "a", model=tiny_clip_dir) as arch:
        arch.ingest([media / "carphone_pristine.mp4"])
    assert not list((tmp_path / "a" / "frames.d").glob("base-*"))
    [path] = (tmp_path / "a").glob(target)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"garbage" * 100)
    with Archive.open(tmp_path / "a") as arch:
        state = snapshot(arch)
        assert state["index"] == (4, state["generation"])
        assert len(list((tmp_path / "a" / "frames.d").glob("base-*.faiss"))) == 1  # rebuilt
        assert arch.search("anything", top_k=1)


def test_encoder_mismatch_is_a_clear_error(tmp_path, tiny_clip_dir, media):
    with Archive.open(tmp_path / "a", model=tiny_clip_dir, device="cpu") as arch:
        arch.ingest([media / "carphone_pristine.mp4"])
    other = build_tiny_clip(tmp_path / "other-model", seed=1)
    with pytest.raises(EncoderMismatchError, match="fingerprint"):
        Archive.open(tmp_path / "a", model=other, device="cpu")
    with Archive.open(tmp_path / "a", model=tiny_clip_dir, device="cpu") as arch:  # same one: fine
        assert arch.info().videos == 1
    moved = shutil.copytree(tiny_clip_dir, tmp_path / "moved-model")  # the same weights elsewhere
    with Archive.open(tmp_path / "a", model=moved, device="cpu") as arch:
        assert arch.info().videos == 1 and arch.search("anything", top_k=1)


def test_archives_recorded_with_the_path_dependent_fingerprint_still_open(tmp_path, tiny_clip_dir, media):
    """Archives made when the fingerprint also hashed the model's path keep working."""
    with Archive.open(tmp_path / "a", model=tiny_clip_dir, device="cpu") as arch:
        arch.ingest([media / "carphone_pristine.mp4"])
        info = arch.encoder.info
    assert info.path_fingerprint and info.path_fingerprint != info.fingerprint
    catalog = sqlite3.connect(tmp_path / "a" / "catalog.db")  # the archive is closed
    [(text,)] = catalog.execute("SELECT value FROM meta WHERE key = 'manifest'")
    manifest = json.loads(text)
    manifest["encoder"]["fingerprint"] = info.path_fingerprint
    del manifest["encoder"]["path_fingerprint"]  # as written then
    with catalog:
        catalog.execute("UPDATE meta SET value = ? WHERE key = 'manifest'", (json.dumps(manifest),))
    catalog.close()
    with Archive.open(tmp_path / "a", model=tiny_clip_dir, device="cpu") as arch:
        assert arch.info().videos == 1


def test_archive_reopens_with_its_own_settings_and_encoder(tmp_path, tiny_clip_dir, media):
    with Archive.open(tmp_path / "a", model=tiny_clip_dir, config=IngestConfig(fps=2.0)) as arch:
        arch.ingest([media / "carphone_pristine.mp4"])
    with Archive.open(tmp_path / "a") as arch:  # no model given: the manifest's
        assert arch.config.fps == 2.0
        assert arch.encoder.info.name == str(tiny_clip_dir.resolve())
        assert arch.videos()[0].frames == 8
        assert arch.search("anything", top_k=1)


def test_index_behind_catalog_is_rebuilt_on_open(tmp_path, tiny_clip_dir, media, monkeypatch):
    """A crash after the catalog commit but before the index save is repaired."""
    with Archive.open(tmp_path / "a", model=tiny_clip_dir) as arch:
        arch.ingest([media / "carphone_pristine.mp4"])
        monkeypatch.setattr(vidseek.store.frame_index.FrameIndex, "save",
                            lambda self, generation: (_ for _ in ()).throw(OSError("disk full")))
        with pytest.raises(OSError):
            arch.ingest([media / "bikes.mp4"])
        monkeypatch.undo()
    with Archive.open(tmp_path / "a") as arch:
        state = snapshot(arch)
        assert len(state["videos"]) == 2 and state["index"] == (14, state["generation"])
        hits = arch.search(image=vidseek.indexer.read_frame(media / "bikes.mp4", 3.0), top_k=1)
        assert hits[0].video == "bikes.mp4"


def test_search_validation(archive, media):
    archive.ingest([media / "carphone_pristine.mp4"])
    with pytest.raises(QueryError):
        archive.search()
    with pytest.raises(QueryError, match="empty"):
        archive.search("   ")
    with pytest.raises(QueryError, match="no indexed video"):
        archive.search("x", video="missing.mp4")
    with pytest.raises(QueryError, match="cannot read"):
        archive.search(image=media / "README.md")
    moments = archive.search("a man in a car", top_k=3, video="carphone_pristine.mp4")
    assert 1 <= len(moments) <= 3
    for m in moments:
        assert m.video == "carphone_pristine.mp4" and 0 <= m.start <= m.peak < m.end <= 4.01


def test_image_query_finds_spliced_clip_within_one_second(tmp_path, trained_encoder_dir, media):
    long_video = tmp_path / "long.mp4"
    spans = splice_videos(long_video, [
        Segment(media / "bigbuckbunny.mp4", seconds=12),  # looped
        Segment(frames=noise_frames(8 * 25, (320, 180), seed=3)),
        Segment(media / "carphone_pristine.mp4", seconds=9),
        Segment(media / "bikes.mp4"),  # the clip we look for
        Segment(media / "bigbuckbunny.mp4", start=1.0, seconds=4),
        Segment(media / "carphone_pristine.mp4", seconds=8),
    ], size=(320, 180), fps=25)
    start, end = spans[3]
    with Archive.open(tmp_path / "a", model=trained_encoder_dir) as arch:
        arch.ingest([long_video])
        # query frames come from the original file, not from the spliced re-encode
        for t in (2.0, 5.0, 8.0):
            top = arch.search(image=vidseek.indexer.read_frame(media / "bikes.mp4", t), top_k=3)[0]
            assert top.video == "long.mp4"
            assert abs(top.peak - (start + t)) <= 1.0
            # the moment lies inside the spliced clip (content changes within it, so the
            # match need not cover all of it)
            assert start - 1.0 <= top.start <= top.peak < top.end <= end + 1.0


# -- odd inputs and settings (issue 17, items 4, 10 and 12) ---------------------------
def test_odd_inputs_fail_one_by_one_and_the_rest_is_indexed(archive, media, tmp_path, monkeypatch):
    import os
    from pathlib import Path

    from PIL import Image

    folder = tmp_path / "footage"
    (folder / "locked").mkdir(parents=True)
    shutil.copy(media / "bikes.mp4", folder / "bikes.mp4")
    shutil.copy(media / "carphone_pristine.mp4", folder / "locked" / "car.mp4")
    (folder / "self.mp4").symlink_to(folder / "self.mp4")
    (folder / "gone.mp4").symlink_to(tmp_path / "nowhere.mp4")
    os.mkfifo(folder / "pipe.mp4")
    (folder / "null.mp4").symlink_to("/dev/null")
    Image.new("RGB", (32, 24), "red").save(folder / "still.mp4", format="PNG")
    loop = tmp_path / "loop.mp4"  # named explicitly: a link to itself
    loop.symlink_to(loop)
    real_scandir = os.scandir

    def scandir(path):  # as root every folder is readable: refuse this one as for a user
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    report = archive.ingest([folder, loop])
    failed = {f.path.name: f.error for f in report.failed}
    assert failed == {
        "locked": f"{folder / 'locked'}: cannot read the folder: permission denied",
        "self.mp4": f"{folder / 'self.mp4'}: symbolic link loop: the link leads back to itself",
        "loop.mp4": f"{loop}: symbolic link loop: the link leads back to itself",
        "gone.mp4": f"{folder / 'gone.mp4'}: dangling symbolic link: its target "
                    f"{tmp_path / 'nowhere.mp4'} does not exist",
        "pipe.mp4": f"{folder / 'pipe.mp4'}: is a FIFO (named pipe), not a video file",
        "null.mp4": f"{folder / 'null.mp4'}: is a character device, not a video file",
        "still.mp4": f"{folder / 'still.mp4'}: is a still image (PNG), not a video",
    }
    assert [v.name for v in report.indexed] == ["bikes.mp4"]


def test_a_linked_subfolder_is_skipped_and_said_so(archive, media, tmp_path, caplog):
    folder, elsewhere = tmp_path / "footage", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    shutil.copy(media / "bikes.mp4", folder / "bikes.mp4")
    shutil.copy(media / "carphone_pristine.mp4", elsewhere / "car.mp4")
    (folder / "linked").symlink_to(elsewhere)
    (folder / "up").symlink_to(folder)  # a loop, were links followed
    (folder / "car-link.mp4").symlink_to(elsewhere / "car.mp4")  # links to files are followed
    with caplog.at_level("WARNING", logger="vidseek"):
        report = archive.ingest([folder])
    assert report.ok
    assert sorted(v.name for v in report.indexed) == ["bikes.mp4", "car-link.mp4"]
    assert {s.path: s.reason for s in report.skipped} == {
        folder / "linked": vidseek.indexer.discover.LINKED_FOLDER,
        folder / "up": vidseek.indexer.discover.LINKED_FOLDER}
    assert "not followed" in vidseek.indexer.discover.LINKED_FOLDER
    assert f"skipped {folder / 'linked'}: symbolic link to a folder" in caplog.text
    report = archive.ingest([folder / "linked"])  # named explicitly: followed
    assert [v.path for v in report.indexed] == [str(elsewhere / "car.mp4")]


def test_an_existing_archive_refuses_other_ingest_settings(tmp_path, tiny_clip_dir, media):
    import re

    from vidseek.errors import ConfigError

    with Archive.open(tmp_path / "a", model=tiny_clip_dir, device="cpu",
                      config=IngestConfig(fps=1.0)) as arch:
        arch.ingest([media / "carphone_pristine.mp4"])
        before = snapshot(arch)
    message = (f"{tmp_path / 'a'}: this archive was built with fps 1 (given 2); an archive keeps "
               "its own ingest settings")
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}"):
        Archive.open(tmp_path / "a", config=IngestConfig(fps=2.0))
    with pytest.raises(ConfigError, match="prune_threshold 0.1 \\(given 0.5\\)"):
        Archive.open(tmp_path / "a", config=IngestConfig(prune_threshold=0.5))
    with Archive.open(tmp_path / "a", config=IngestConfig(fps=1.0, batch_size=4)) as arch:
        assert arch.config.batch_size == 4  # batch size changes nothing stored
        with pytest.raises(ConfigError, match="fps 1 \\(given 2\\)"):
            arch.config = IngestConfig(fps=2.0)
        arch.config = IngestConfig(fps=1.0, batch_size=2)
        # precision auto reads back as the archive's own (what auto gives on this CPU)
        assert arch.config == IngestConfig(fps=1.0, batch_size=2, precision=default_image_precision("cpu"))
        arch.ingest([media / "bikes.mp4"])
        assert {v.fps for v in arch.videos()} == {1.0}
        assert arch.manifest["ingest"]["fps"] == 1.0
        arch.remove("bikes.mp4")
        assert snapshot(arch)["videos"] == before["videos"]
