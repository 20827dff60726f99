"""Ingest never opens the archive's own files, and records the identity of the very file it
indexed (a file replaced while it was being indexed is refused and tried again)."""

from __future__ import annotations

import os
import shutil
import sqlite3

import pytest

from vidseek import Archive, QueryError


def test_a_link_to_the_catalog_in_a_watched_folder_is_refused_unopened(tmp_path, tiny_clip_dir, media,
                                                                        monkeypatch):
    root = tmp_path / "archive"
    footage = tmp_path / "footage"
    footage.mkdir()
    shutil.copy(media / "carphone_pristine.mp4", footage / "a.mp4")
    with Archive.open(root, model=tiny_clip_dir, device="cpu") as arch:
        assert len(arch.ingest([footage]).indexed) == 1
        os.link(root / "catalog.db", footage / "hard.mp4")
        os.symlink(root / "catalog.db", footage / "soft.mp4")
        opened = []
        real_open = open

        def watching_open(file, *args, **kwargs):  # nothing may open the catalog by another name
            if str(file).endswith(("hard.mp4", "soft.mp4")):
                opened.append(file)
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr("builtins.open", watching_open)
        report = arch.ingest([footage / "hard.mp4", footage / "soft.mp4"])
        monkeypatch.undo()
        assert opened == []
        # (the symbolic link is followed to its target, and named by it)
        assert sorted(f.path.name for f in report.failed) == ["catalog.db", "hard.mp4"]
        assert all("the archive's own file catalog.db" in f.error for f in report.failed)
        assert [v.name for v in arch.videos()] == ["a.mp4"]
    with sqlite3.connect(root / "catalog.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_file_replaced_while_it_is_indexed_is_refused(tmp_path, tiny_clip_dir, media):
    video = tmp_path / "growing.mp4"
    shutil.copy(media / "bikes.mp4", video)

    def touch_midway(event) -> None:
        if event.stage == "frames":  # the features are being made from the old file
            os.utime(video, ns=(0, video.stat().st_mtime_ns + 10**9))

    with Archive.open(tmp_path / "archive", model=tiny_clip_dir, device="cpu") as arch:
        report = arch.ingest([video], progress=touch_midway)
        assert [f.path for f in report.failed] == [video] and not report.indexed
        assert "changed while it was being indexed" in report.failed[0].error
        assert arch.videos() == []
        report = arch.ingest([video])  # the daemon's retry, once it holds still
        assert len(report.indexed) == 1
        assert arch.media_path(report.indexed[0]) == video


def test_a_video_name_with_a_nul_byte_is_a_query_error(tmp_path, tiny_clip_dir, media):
    with Archive.open(tmp_path / "archive", model=tiny_clip_dir, device="cpu") as arch:
        arch.ingest([media / "carphone_pristine.mp4"])
        with pytest.raises(QueryError, match="no indexed video named"):
            arch.search("a car", video="carphone\0.mp4")
