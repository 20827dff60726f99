"""Damaged archive files degrade searches instead of failing them (issue 17, items 2 and 9).

Every case damages one file of a copy of one small archive — truncated (cut in half) or
garbled (overwritten with bytes that are no zip, no JSON and no FAISS index) — then searches.
The archive holds three videos, and each index a base plus a log, so that every kind of file
the store reads exists: the frame and patch indexes' manifests, bases and logs, the feature
files and the sparse-token files.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

import vidseek
from vidseek import Archive, QueryError
from vidseek.store.sparse_tokens import SparseTokens

VIDEOS = ("carphone_pristine.mp4", "bigbuckbunny.mp4", "bikes.mp4")
DAMAGED_VIDEO = "bikes.mp4"
WARNING = f"{DAMAGED_VIDEO}: its features are damaged (re-ingest it, or run vidseek doctor --repair)"


@pytest.fixture(scope="module")
def template(tmp_path_factory, tiny_clip_dir, media) -> dict:
    """The intact archive and what its indexes hold."""
    root = tmp_path_factory.mktemp("damaged") / "archive"
    with Archive.open(root, model=tiny_clip_dir, device="cpu") as arch:
        arch.ingest([media / VIDEOS[0], media / VIDEOS[1]])
        store = arch._store
        # A small archive holds logs only (compaction waits for 20,000 vectors): rebuild both
        # indexes so that each has a base, then ingest once more for a log beside it.
        with store.lock:
            for index in (store.refresh_index(), store.refresh_patch_index()):
                index.rebuild(store.catalog.generation)
        arch.ingest([media / VIDEOS[2]])
        for video in arch.videos():
            tokens = np.ones((1, 4, 8), np.float16)
            assert store.set_sparse(video, SparseTokens(tokens, 8, "test"), [(0.0, video.duration)])
        frames, patches = store.refresh_index(), store.refresh_patch_index()
        counts = {"frames": frames.ntotal, "patches": patches.ntotal}
        damaged = arch.find_video(DAMAGED_VIDEO)
        counts["damaged_frames"] = damaged.frames
        counts["damaged_patches"] = store._patch_count(damaged)
        keys = {"features": damaged.features_key, "sparse": damaged.sparse_key}
    for name in ("frames", "patches"):  # the layout every case below relies on
        assert len(list((root / f"{name}.d").glob("base-*.faiss"))) == 1
        assert len(list((root / f"{name}.d").glob("log-*.npz"))) == 1
    return {"root": root, "counts": counts, "keys": keys}


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garble(path: Path) -> None:
    path.write_bytes(b"\xff\xfe garbage " * max(1, path.stat().st_size // 12))


DAMAGE = {"truncated": truncate, "garbled": garble}


def copy_of(template: dict, tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    shutil.copytree(template["root"], root)
    return root


def target_file(root: Path, template: dict, target: str) -> Path:
    kind, _, part = target.partition("-")
    if kind in ("features", "sparse"):
        return root / kind / f"{template['keys'][kind]}.npz"
    if part == "manifest":
        return root / f"{kind}.json"
    [found] = (root / f"{kind}.d").glob("base-*.faiss" if part == "base" else "log-*.npz")
    return found


def region_search(arch: Archive, warnings: list) -> list[vidseek.ObjectHit]:
    """An object query drawn on an intact video's frame, over the whole archive."""
    return arch.search_object("0,0,60,60", video=VIDEOS[0], time=1.0, top_k=10, warnings=warnings)


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("target", ["frames-base", "frames-log", "frames-manifest",
                                    "patches-base", "patches-log", "patches-manifest"])
def test_damaged_index_file_is_rebuilt_from_the_feature_files(template, tmp_path, target, damage):
    root = copy_of(template, tmp_path)
    DAMAGE[damage](target_file(root, template, target))
    with Archive.open(root) as arch:
        warnings: list = []
        moments = arch.search("anything", top_k=10, warnings=warnings)
        assert {m.video for m in moments} == set(VIDEOS) and warnings == []
        assert region_search(arch, warnings) and warnings == []
        store, generation = arch._store, arch.generation
        frames, patches = store.refresh_index(), store.refresh_patch_index()
        assert (frames.ntotal, frames.generation) == (template["counts"]["frames"], generation)
        assert (patches.ntotal, patches.generation) == (template["counts"]["patches"], generation)
    with Archive.open(root) as arch:  # the rebuilt index was saved, and reads back
        assert {m.video for m in arch.search("anything", top_k=10)} == set(VIDEOS)


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_feature_file_leaves_its_video_out_with_a_warning(template, tmp_path, damage, caplog):
    root = copy_of(template, tmp_path)
    DAMAGE[damage](target_file(root, template, "features"))
    intact = set(VIDEOS) - {DAMAGED_VIDEO}
    with Archive.open(root) as arch, caplog.at_level(logging.WARNING):
        warnings: list = []
        moments = arch.search("anything", top_k=10, warnings=warnings)
        assert {m.video for m in moments} == intact
        assert [str(w) for w in warnings] == [WARNING]
        assert (warnings[0].video, warnings[0].kind) == (DAMAGED_VIDEO, "features")
        assert any(DAMAGED_VIDEO in r.getMessage() and "damaged" in r.getMessage()
                   for r in caplog.records)
        warnings = []
        assert arch.search("anything", video=DAMAGED_VIDEO, warnings=warnings) == []
        assert [str(w) for w in warnings] == [WARNING]
        # object queries: a region drawn elsewhere skips the video; one drawn on it cannot be
        warnings = []
        hits = region_search(arch, warnings)
        assert hits and {h.video for h in hits} <= intact
        assert [str(w) for w in warnings] == [WARNING]
        with pytest.raises(QueryError, match="damaged"):
            arch.search_object("0,0,60,60", video=DAMAGED_VIDEO, time=1.0)
        # without a warnings list the search still answers
        assert {m.video for m in arch.search("anything", top_k=10)} == intact


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("index", ["frames", "patches"])
def test_rebuild_leaves_out_a_video_whose_feature_file_is_damaged(template, tmp_path, damage, index,
                                                                 caplog):
    root = copy_of(template, tmp_path)
    DAMAGE[damage](target_file(root, template, "features"))
    truncate(target_file(root, template, f"{index}-log"))  # forces the rebuild
    intact = set(VIDEOS) - {DAMAGED_VIDEO}
    counts = template["counts"]
    with Archive.open(root) as arch, caplog.at_level(logging.WARNING):
        warnings: list = []
        assert {m.video for m in arch.search("anything", top_k=10, warnings=warnings)} == intact
        hits = region_search(arch, warnings)
        assert hits and {h.video for h in hits} <= intact
        store = arch._store
        if index == "frames":
            assert store.refresh_index().ntotal == counts["frames"] - counts["damaged_frames"]
        else:
            assert store.refresh_patch_index().ntotal == counts["patches"] - counts["damaged_patches"]
        assert any(DAMAGED_VIDEO in r.getMessage() and "left out of the index" in r.getMessage()
                   for r in caplog.records)
        warnings = []
        assert arch.search("anything", video=DAMAGED_VIDEO, warnings=warnings) == []
        assert [str(w) for w in warnings] == [WARNING]


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_sparse_file_counts_as_missing(template, tmp_path, damage):
    root = copy_of(template, tmp_path)
    DAMAGE[damage](target_file(root, template, "sparse"))
    with Archive.open(root) as arch:
        damaged = arch.find_video(DAMAGED_VIDEO)
        assert arch._store.load_sparse(damaged) is None  # grounded queries compute them again
        assert arch._store.load_sparse(arch.find_video(VIDEOS[0])) is not None
        assert {m.video for m in arch.search("anything", top_k=10)} == set(VIDEOS)


def test_grounded_search_skips_a_video_whose_features_are_damaged(template, tmp_path, tiny_llm_dir):
    from vidseek.models.adapter import AdapterConfig
    from vidseek.models.grounder import Grounder, GrounderConfig

    root = copy_of(template, tmp_path)
    with Archive.open(root) as arch:  # an untrained grounder fitting the tiny CLIP
        info = arch.encoder.info
        cells = (info.image_size // info.patch_size // 2) ** 2
        grounder = Grounder.create(GrounderConfig(llm=str(tiny_llm_dir), tuning="full", adapter=AdapterConfig(
            embed_dim=info.embed_dim, cells=cells, cell_width=info.vision_width, hidden=32, heads=2,
            fine_tokens=2, coarse_tokens=4)))
        grounder.save(tmp_path / "grounder")
        arch.set_grounder(tmp_path / "grounder")
    garble(target_file(root, template, "features"))
    with Archive.open(root) as arch:
        warnings: list = []
        assert arch.ground("a red circle", video=DAMAGED_VIDEO, warnings=warnings) == []
        assert [str(w) for w in warnings] == [WARNING]
        warnings = []  # the candidates: every video but the damaged one is grounded
        results = arch.ground("a red circle", warnings=warnings)
        assert {r.video.name for r in results} == set(VIDEOS) - {DAMAGED_VIDEO}
        assert [str(w) for w in warnings] == [WARNING]
        warnings = []  # (an untrained grounder may find nothing: only the warning is checked)
        arch.search("a red circle", mode="grounded", top_k=10, warnings=warnings)
        assert [str(w) for w in warnings] == [WARNING]
        # reindex gives every other video its sparse tokens and names the damaged one
        report = arch.reindex()
        assert report.damaged == [DAMAGED_VIDEO] and report.updated == len(VIDEOS) - 1
        current = {v.name for v in arch.videos()
                   if v.sparse_fingerprint == arch.grounder.adapter_fingerprint}
        assert current == set(VIDEOS) - {DAMAGED_VIDEO}


def test_cli_search_prints_a_warning_and_succeeds(template, tmp_path):
    from typer.testing import CliRunner

    from vidseek.cli import app

    root = copy_of(template, tmp_path)
    truncate(target_file(root, template, "features"))
    result = CliRunner().invoke(app, ["search", "anything", "--archive", str(root), "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"warning: {WARNING}" in result.stderr
    assert "Traceback" not in result.output
    import json

    assert {row["video"] for row in json.loads(result.stdout)} == set(VIDEOS) - {DAMAGED_VIDEO}


def test_server_answers_with_warnings_and_counts_them(template, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    import vidseek.service
    from vidseek.server import create_app

    root = copy_of(template, tmp_path)
    garble(target_file(root, template, "features"))
    with Archive.open(root) as arch:
        source = arch.find_video(VIDEOS[0]).id
    settings = vidseek.service.ServiceSettings(archive=root, device="cpu")
    with TestClient(create_app(settings)) as client:
        answer = client.get("/api/search", params={"q": "anything", "top_k": 10})
        assert answer.status_code == 200, answer.text
        assert answer.json()["warnings"] == [WARNING]
        assert {m["video"] for m in answer.json()["moments"]} == set(VIDEOS) - {DAMAGED_VIDEO}
        answer = client.get("/api/search/object", params={"video_id": source, "t": 1.0,
                                                           "box": "0,0,60,60", "top_k": 10})
        assert answer.status_code == 200, answer.text
        assert answer.json()["warnings"] == [WARNING]
        metrics = client.get("/metrics").text
        assert 'vidseek_damaged_files_total{kind="features"} 2.0' in metrics
