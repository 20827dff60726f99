"""Grounding in an archive: sparse tokens at ingest and by reindex, grounded search, CLI."""

from __future__ import annotations

import json
import shutil
import sqlite3

import numpy as np
import pytest
from typer.testing import CliRunner

import vidseek
import vidseek.annotations
import vidseek.service
import vidseek.synth
from vidseek.cli import app
from vidseek.train.grounding import GroundingTrainConfig, train_grounder_from_archive


@pytest.fixture(scope="module")
def world_videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("gworld")
    anns = {}
    for name, seconds, seed in (("a.mp4", 150, 1), ("b.mp4", 90, 2)):
        anns[name] = vidseek.synth.build_world_video(root / name, seconds, seed=seed)
    return root, anns


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_clip_dir, world_videos):
    """A briefly trained grounder for the tiny CLIP's dimensions (plumbing, not accuracy)."""
    root, anns = world_videos
    tmp = tmp_path_factory.mktemp("gckpt")
    with vidseek.Archive.open(tmp / "train-archive", model=tiny_clip_dir) as archive:
        archive.ingest([root / "a.mp4"])
        train_grounder_from_archive(tmp / "ckpt", archive, anns["a.mp4"], ["1a", "1b", "2"],
                                    llm="tiny", train=GroundingTrainConfig(
                                        steps={"1a": 2, "1b": 2, "2": 2}, batch_size=4, warmup=1))
    return tmp / "ckpt"


def test_reindex_then_ingest_store_sparse_tokens(tmp_path, tiny_clip_dir, world_videos, checkpoint):
    root, _ = world_videos
    with vidseek.Archive.open(tmp_path / "ar", model=tiny_clip_dir) as archive:
        archive.ingest([root / "a.mp4"])
        [before] = archive.videos()
        assert before.sparse_key == ""  # indexed before any checkpoint existed
        grounder = archive.set_grounder(checkpoint)
        report = archive.reindex()
        assert (report.updated, report.skipped) == (1, 0)
        assert archive.reindex().skipped == 1  # already current
        [after] = archive.videos()
        assert after.sparse_fingerprint == grounder.adapter_fingerprint
        assert after.features_key == before.features_key  # features untouched, nothing decoded
        archive.ingest([root / "b.mp4"])  # stored at ingest now
        b = archive.find_video("b.mp4")
        sparse = archive._store.load_sparse(b)
        assert sparse is not None and sparse.fingerprint == grounder.adapter_fingerprint
        window = grounder.config.windows.coarse
        assert sparse.tokens.shape[:2] == (-(-b.frames // window), grounder.config.adapter.coarse_tokens)
        windows = archive._store.catalog.windows(b.id)
        assert len(windows) == sparse.tokens.shape[0] and windows[0][0] == 0.0
        assert windows[-1][1] == pytest.approx(b.duration, abs=1.0)
        info = archive.info()
        assert info.grounder == str(checkpoint.resolve()) and info.sparse_videos == 2
        archive.remove("b.mp4")
        assert not archive._store.sparse.path(b.sparse_key).exists()
        assert archive._store.catalog.windows(b.id) == []


def test_grounded_search_returns_scored_moments_and_tree(tmp_path, tiny_clip_dir, world_videos, checkpoint):
    root, anns = world_videos
    query = next(a.query for a in anns["a.mp4"] if a.present)
    with vidseek.Archive.open(tmp_path / "ar", model=tiny_clip_dir) as archive:
        archive.ingest([root])
        with pytest.raises(vidseek.QueryError, match="grounding checkpoint"):
            archive.search(query, mode="grounded")
        archive.set_grounder(checkpoint)
        archive.reindex()
        results = archive.ground(query, video="a.mp4")
        assert len(results) == 1 and results[0].video.name == "a.mp4"
        assert results[0].tree and all(n.level == 1 for n in results[0].tree)
        assert all(n.kind == "coarse" for n in results[0].tree)
        moments = archive.search(query, mode="grounded", top_k=3)  # candidates from CLIP retrieval
        assert len(moments) <= 3
        assert all(m.score > 0 for m in moments)
        with pytest.raises(vidseek.QueryError, match="text query"):
            archive.search(image=np.zeros((32, 32, 3), np.uint8), mode="grounded")
        with pytest.raises(vidseek.QueryError, match="unknown search mode"):
            archive.search(query, mode="magic")


def test_cli_reindex_and_grounded_explain(tmp_path, tiny_clip_dir, world_videos, checkpoint):
    root, anns = world_videos
    archive = tmp_path / "ar"
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", str(root / "a.mp4"), "-a", str(archive), "-m", str(tiny_clip_dir)]).exit_code == 0
    res = runner.invoke(app, ["search", "a red circle", "-a", str(archive), "--mode", "grounded"])
    assert res.exit_code == 1 and "grounding checkpoint" in res.output
    res = runner.invoke(app, ["reindex", "-a", str(archive), "--grounder", str(checkpoint)])
    assert res.exit_code == 0 and "1 videos reindexed" in res.output
    query = next(a.query for a in anns["a.mp4"] if a.present)
    res = runner.invoke(app, ["search", query, "-a", str(archive), "--mode", "grounded", "--video",
                              "a.mp4", "--explain", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert set(data) == {"moments", "explain"}
    tree = data["explain"][0]["tree"]
    assert {"level", "kind", "shown", "answer", "verdict", "span", "confidence", "children"} <= set(tree[0])
    for m in data["moments"]:
        assert set(m) == {"video", "start", "end", "score", "peak", "video_id", "path", "presence"}
        assert 0.0 <= m["presence"] <= 1.0  # grounded moments carry their window's presence
    res = runner.invoke(app, ["search", query, "-a", str(archive), "--mode", "grounded", "--explain"])
    assert res.exit_code == 0 and "L1 coarse" in res.output
    res = runner.invoke(app, ["search", query, "-a", str(archive), "--mode", "nope"])
    assert res.exit_code == 2


def test_cli_grounded_top_k_and_abstention(tmp_path, tiny_clip_dir, world_videos, checkpoint):
    root, anns = world_videos
    archive = tmp_path / "ar"
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", str(root), "-a", str(archive), "-m", str(tiny_clip_dir)]).exit_code == 0
    assert runner.invoke(app, ["reindex", "-a", str(archive), "--grounder", str(checkpoint)]).exit_code == 0
    query = next(a.query for a in anns["a.mp4"] if a.present)
    grounded = ["search", query, "-a", str(archive), "--mode", "grounded", "--levels", "2"]
    # abstention off: --top-k 5 gives 5 moments (the two videos have 3 + 2 level-1 windows;
    # level 2 is the verified clips, or the windows themselves), each with its window's presence;
    # on the --explain path too
    for extra in ([], ["--explain"]):
        res = runner.invoke(app, [*grounded, "--min-presence", "0", "--top-k", "5", "--json", *extra])
        assert res.exit_code == 0, res.output
        data = json.loads(res.output)
        moments = data["moments"] if extra else data
        assert len(moments) == 5
        assert all(isinstance(m["presence"], float) and 0.0 <= m["presence"] <= 1.0 for m in moments)
        if extra:  # level 1 scored every window's presence
            assert all(n["verdict"] == "presence" and n["presence"] is not None
                       for tree in data["explain"] for n in tree["tree"])
    res = runner.invoke(app, [*grounded, "--min-presence", "0", "--top-k", "2"])
    assert res.exit_code == 0 and "presence" in res.output  # the table's presence column
    # a threshold no window reaches: nothing is returned, which is not an error
    highest = max(m["presence"] for m in moments)
    too_high = f"{min(1.0, highest + 1e-3):.6f}"
    res = runner.invoke(app, [*grounded, "--min-presence", too_high, "--json"])
    assert res.exit_code == 0 and json.loads(res.output) == [], res.output
    res = runner.invoke(app, [*grounded, "--min-presence", too_high])
    assert res.exit_code == 0 and "no results" in res.output
    res = runner.invoke(app, [*grounded, "--level1", "answer", "--top-k", "2", "--json", "--explain"])
    assert res.exit_code == 0, res.output
    calls = [n for tree in json.loads(res.output)["explain"] for n in tree["tree"]]
    assert calls and all(n["presence"] is None and n["verdict"] != "presence" for n in calls)  # LM answers
    # --refine clips: level 2 is clips (this checkpoint has no verifier: each kept window is its own)
    res = runner.invoke(app, [*grounded, "--refine", "clips", "--min-presence", "0", "--json", "--explain"])
    assert res.exit_code == 0, res.output
    kept = [n for tree in json.loads(res.output)["explain"] for n in tree["tree"] if n["kept"]]
    assert kept and all(c["kind"] == "clip" and c["span"] == n["shown"] for n in kept for c in n["children"])
    # --presence-shortlist 1: the LM's yes/no over one window of the two videos' five
    res = runner.invoke(app, [*grounded, "--presence-shortlist", "1", "--min-presence", "0", "--json", "--explain"])
    assert res.exit_code == 0, res.output
    windows = [n for tree in json.loads(res.output)["explain"] for n in tree["tree"]]
    assert len(windows) == 5 and sum("not asked" not in n["answer"] for n in windows) == 1
    # options that do not apply are refused before anything is opened
    for bad, code in ((["--mode", "clip", "--min-presence", "0.5"], 2), (["--mode", "clip", "--level1", "answer"], 2),
                      (["--mode", "clip", "--presence-shortlist", "4"], 2),
                      (["--mode", "grounded", "--level1", "answer", "--presence-shortlist", "4"], 2),
                      (["--mode", "clip", "--refine", "clips"], 2),
                      (["--mode", "grounded", "--level1", "answer", "--refine", "clips"], 2),
                      (["--mode", "grounded", "--level1", "answer", "--min-presence", "0.5"], 2),
                      (["--mode", "grounded", "--min-presence", "1.5"], 1),
                      (["--mode", "grounded", "--min-presence", "nan"], 1)):
        res = runner.invoke(app, ["search", query, "-a", str(archive), *bad])
        assert res.exit_code == code and "error: " in res.output and "Traceback" not in res.output, (bad, res.output)


def test_cli_calibrate_stores_presence_calibration(tmp_path, tiny_clip_dir, world_videos, checkpoint):
    root, anns = world_videos
    archive = tmp_path / "ar"
    ckpt = tmp_path / "ckpt"
    shutil.copytree(checkpoint, ckpt)  # other tests use the module's checkpoint uncalibrated
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", str(root), "-a", str(archive), "-m", str(tiny_clip_dir)]).exit_code == 0
    rows = anns["a.mp4"] + anns["b.mp4"]  # absent events included
    annotations = tmp_path / "cal.jsonl"
    vidseek.annotations.write_annotations(annotations, rows)
    calibrate = ["calibrate", "--annotations", str(annotations), "-a", str(archive)]
    # refused before the archive adopts anything: a directory that is not a checkpoint, a
    # video the archive lacks
    stray = tmp_path / "stray.jsonl"
    vidseek.annotations.write_annotations(stray, [vidseek.annotations.Annotation("c.mp4", "x", 1.0, 2.0), *rows])
    for bad, says in (([*calibrate, "--grounder", str(tmp_path)], "not a grounding checkpoint"),
                      (["calibrate", "--annotations", str(stray), "-a", str(archive), "--grounder", str(ckpt)],
                       "c.mp4")):
        res = runner.invoke(app, bad)
        assert res.exit_code == 1 and "error: " in res.output and says in res.output, res.output
        assert "Traceback" not in res.output
    with vidseek.Archive.open(archive, create=False) as arch:
        assert arch.grounder is None
    res = runner.invoke(app, [*calibrate, "--grounder", str(ckpt)])
    assert res.exit_code == 0, res.output
    assert f"fitted on 2 videos, {len(rows)} queries" in res.output and "default min presence" in res.output
    assert "right-window recall" in res.output and "calibrated" in res.output and "R@5" in res.output
    res = runner.invoke(app, [*calibrate, "--grounder", str(ckpt), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert len(data["calibration"]["weights"]) == 4 and 0.0 <= data["calibration"]["threshold"] <= 1.0
    assert data["queries"] == len(rows) and data["videos"] == 2
    assert set(data["window_recall_by_signal"]) == {"lm_logit", "peak", "peak_z", "mean_z", "calibrated"}
    assert all(set(r) == {"1", "3", "5"} and 0.0 <= r["1"] <= r["3"] <= r["5"] <= 1.0
               for r in data["window_recall_by_signal"].values())
    stored = json.loads((ckpt / "manifest.json").read_text())["presence_calibration"]
    assert stored["calibrated"] is True and stored["weights"] == data["calibration"]["weights"]
    assert "presence_calibration" not in json.loads((checkpoint / "manifest.json").read_text())
    with vidseek.Archive.open(archive, create=False) as arch:  # the archive adopted the checkpoint
        assert arch.info().grounder == str(ckpt.resolve())


def test_grounder_for_another_encoder_is_refused(tmp_path, tiny_clip_dir, world_videos, tiny_grounder):
    root, _ = world_videos
    ckpt = tmp_path / "small"
    tiny_grounder.save(ckpt)  # 16-d embeddings; the tiny CLIP gives 64
    with vidseek.Archive.open(tmp_path / "ar", model=tiny_clip_dir) as archive:
        archive.ingest([root / "b.mp4"])
        with pytest.raises(vidseek.ModelError, match="16-d embeddings"):
            archive.set_grounder(ckpt)


def test_archives_from_before_sparse_tokens_are_migrated(tmp_path):
    db = tmp_path / "catalog.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE videos (id INTEGER PRIMARY KEY, path TEXT NOT NULL, name TEXT, "
                 "content_hash TEXT, size_bytes INTEGER, duration FLOAT, fps FLOAT, native_fps FLOAT, "
                 "width INTEGER, height INTEGER, codec TEXT, frames INTEGER, kept_fraction FLOAT, "
                 "features_key TEXT, status TEXT, indexed_at FLOAT, ingest_seconds FLOAT)")
    conn.execute("INSERT INTO videos VALUES (1, '/v.mp4', 'v.mp4', 'h', 1, 2.0, 1.0, 25.0, 8, 8, "
                 "'h264', 2, 1.0, 'k', 'indexed', 0.0, 0.0)")
    conn.commit()
    conn.close()
    from vidseek.store.catalog import Catalog

    catalog = Catalog(db)
    [video] = catalog.videos()
    assert (video.name, video.sparse_key, video.sparse_fingerprint) == ("v.mp4", "", "")
    assert catalog.windows(1) == []


def test_server_answers_grounded_searches(tmp_path, tiny_clip_dir, world_videos, checkpoint):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from vidseek.server import create_app

    root, anns = world_videos
    with vidseek.Archive.open(tmp_path / "ar", model=tiny_clip_dir) as archive:
        archive.ingest([root])  # a.mp4 and b.mp4: 3 + 2 level-1 windows
        archive.set_grounder(checkpoint)
        duration = archive.find_video("a.mp4").duration  # the generator ends on a full clip: ~154 s
    query = next(a.query for a in anns["a.mp4"] if a.present)
    with TestClient(create_app(vidseek.service.ServiceSettings(archive=tmp_path / "ar", device="cpu"))) as client:
        assert client.get("/api/status").json()["modes"] == ["clip", "grounded"]
        response = client.get("/api/search", params={"q": query, "mode": "grounded", "levels": 2,
                                                     "top_k": 2, "video": "a.mp4", "explain": True})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["mode"] == "grounded" and {"ground", "level1"} <= set(body["timings_ms"])
        (tree,) = body["explain"]  # the recursion ran over the one video named
        assert tree["video"] == "a.mp4" and tree["tree"] and all(n["level"] == 1 for n in tree["tree"])
        assert len(body["moments"]) <= 2  # a barely trained checkpoint may find nothing
        assert all(0 <= m["start"] < m["end"] <= duration and m["video"] == "a.mp4" for m in body["moments"])
        assert 'vidseek_stage_seconds_count{stage="ground"} 1.0' in client.get("/metrics").text
        # abstention off: top_k moments (one per level-1 window of the two videos at least),
        # each with its window's presence
        grounded = {"q": query, "mode": "grounded", "levels": 2}
        body = client.get("/api/search", params={**grounded, "top_k": 5, "min_presence": 0}).json()
        assert len(body["moments"]) == 5
        assert all(isinstance(m["presence"], float) and 0 <= m["presence"] <= 1 for m in body["moments"])
        too_high = min(1.0, max(m["presence"] for m in body["moments"]) + 1e-3)
        body = client.get("/api/search", params={**grounded, "min_presence": too_high}).json()
        assert body["moments"] == []  # judged absent: an empty answer, not an error
        trees = client.get("/api/search", params={**grounded, "top_k": 2, "explain": True}).json()["explain"]
        assert all(isinstance(n["presence"], float) for t in trees for n in t["tree"])  # one per window
        trees = client.get("/api/search", params={**grounded, "level1": "answer", "top_k": 2,
                                                  "explain": True}).json()["explain"]
        calls = [n for t in trees for n in t["tree"]]
        assert calls and all(n["presence"] is None and n["verdict"] != "presence" for n in calls)
        for params, says in (({"level1": "answer", "min_presence": 0.5}, "min_presence"),
                             ({"min_presence": 1.5}, "min_presence"), ({"level1": "both"}, "level1"),
                             ({"mode": "clip", "min_presence": 0.5}, "min_presence: only for mode=grounded")):
            response = client.get("/api/search", params={**grounded, **params})
            assert response.status_code == 422 and says in response.json()["error"], response.text
