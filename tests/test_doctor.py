"""`vidseek doctor`: each kind of damage is reported, `--repair` fixes what it can, and good
videos keep their ids, features and search results."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from vidseek import Archive
from vidseek.cli import app

runner = CliRunner()
OLD = time.time() - 2 * 3600  # older than the grace period for unreferenced files


def doctor(archive: Path, *args: str):
    return runner.invoke(app, ["doctor", "--archive", str(archive), *args], catch_exceptions=False)


def dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, tiny_clip_dir, media) -> tuple[Path, Path]:
    """An archive of three videos (copies, so tests may change or delete their sources)."""
    root = tmp_path_factory.mktemp("doctor")
    sources = root / "sources"
    sources.mkdir()
    for name in ("bigbuckbunny.mp4", "carphone_pristine.mp4", "bikes.mp4"):
        shutil.copy(media / name, sources / name)
    with Archive.open(root / "archive", model=tiny_clip_dir, device="cpu") as arch:
        report = arch.ingest([sources])
        assert len(report.indexed) == 3 and not report.failed
    return root / "archive", sources


@pytest.fixture()
def archive(pristine, tmp_path) -> Path:
    """A fresh copy of the pristine archive (its videos' sources are shared: read only)."""
    copy = tmp_path / "archive"
    shutil.copytree(pristine[0], copy)
    return copy


def snapshot(arch: Archive) -> dict:
    """Per video: id, path, frames, feature arrays, and its moments for a fixed query."""
    moments = arch.search("a rabbit in a meadow", top_k=50)
    found = {}
    for video in arch.videos():
        features = arch.video_features(video)
        found[video.name] = {
            "id": video.id, "path": video.path, "frames": video.frames,
            "times": features.times, "embeddings": features.embeddings,
            "tokens": features.dense.tokens,
            "moments": [(m.start, m.end, round(m.score, 5)) for m in moments if m.video_id == video.id],
        }
    return found


def assert_same(before: dict, after: dict, names) -> None:
    for name in names:
        b, a = before[name], after[name]
        assert (a["id"], a["path"], a["frames"]) == (b["id"], b["path"], b["frames"])
        for key in ("times", "embeddings", "tokens"):
            np.testing.assert_array_equal(a[key], b[key])
        assert a["moments"] == b["moments"] and a["moments"], name


def kinds(report) -> list[tuple[str, str]]:
    return sorted((f.kind, f.severity) for f in report.findings)


def test_healthy_archive_has_no_findings(archive):
    with Archive.open(archive) as arch:
        report = arch.check(deep=True)
    assert report.findings == [] and report.healthy and report.videos == 3
    result = doctor(archive)
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("healthy")
    result = doctor(archive, "--json", "--deep")
    data = json.loads(result.output)
    assert result.exit_code == 0 and data["healthy"] and data["findings"] == [] and data["videos"] == 3


@pytest.mark.parametrize("damage", ["delete", "garble", "truncate"])
def test_damaged_feature_file_removes_the_video_and_requeues_it(archive, damage):
    with Archive.open(archive) as arch:
        before = snapshot(arch)
        victim = arch.video_at(before["bikes.mp4"]["path"])
    path = archive / "features" / f"{victim.features_key}.npz"
    if damage == "delete":
        path.unlink()
    elif damage == "garble":
        path.write_bytes(b"\x00garbage" * 100)
    else:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with Archive.open(archive) as arch:
        report = arch.check()
    expected = "features-missing" if damage == "delete" else "features-damaged"
    assert kinds(report) == [(expected, "error")]
    finding = report.findings[0]
    assert finding.video_id == victim.id and finding.subject == f"bikes.mp4 (video {victim.id})"
    assert not report.healthy
    result = doctor(archive)
    assert result.exit_code == 1 and "bikes.mp4" in result.output and "--repair" in result.output

    result = doctor(archive, "--repair")
    assert result.exit_code == 0, result.output
    assert "queued for re-ingest" in result.output
    with Archive.open(archive) as arch:
        assert arch.video(victim.id) is None
        jobs = arch.jobs.list(path=victim.path)
        assert [(j.status, j.source) for j in jobs] == [("pending", "doctor")]
        after = snapshot(arch)
        assert sorted(after) == ["bigbuckbunny.mp4", "carphone_pristine.mp4"]
        assert_same(before, after, after)  # good videos: same ids, features, moments
        assert arch.check().findings == []
        # the queued job re-ingests it
        assert arch.ingest_file(victim.path).frames == victim.frames


@pytest.mark.parametrize("damage", ["delete-log", "garble-log", "truncate-log", "delete-manifest",
                                    "garble-manifest", "stale-generation", "delete-patch-log"])
def test_damaged_index_is_rebuilt(archive, damage):
    with Archive.open(archive) as arch:
        before = snapshot(arch)
    name = "patches" if "patch" in damage else "frames"
    manifest = archive / f"{name}.json"
    log = archive / f"{name}.d" / json.loads(manifest.read_text())["logs"][-1]
    if damage.startswith("delete-") and "log" in damage:
        log.unlink()
    elif damage == "garble-log":
        log.write_bytes(os.urandom(log.stat().st_size))
    elif damage == "truncate-log":
        log.write_bytes(log.read_bytes()[:100])
    elif damage == "delete-manifest":
        manifest.unlink()
    elif damage == "garble-manifest":
        manifest.write_text("{not json")
    else:  # a crash between the catalog commit and the index save
        meta = json.loads(manifest.read_text())
        meta["generation"] -= 1
        manifest.write_text(json.dumps(meta))
    with Archive.open(archive) as arch:
        report = arch.check()
    expected = {"delete-manifest": "index-missing", "stale-generation": "index-generation"}.get(
        damage, "index-damaged")
    assert kinds(report) == [(expected, "error")], report.findings
    assert report.findings[0].subject == f"{name} index"
    assert doctor(archive).exit_code == 1

    with Archive.open(archive) as arch:
        repaired = arch.repair()
        assert repaired.healthy and all(f.repaired for f in repaired.findings)
        assert arch.check().findings == []
        assert_same(before, snapshot(arch), before)
    assert not log.exists() or damage in ("delete-manifest", "garble-manifest", "stale-generation")


def test_orphans_and_temporary_files_are_reported_and_deleted(archive):
    with Archive.open(archive) as arch:
        before = snapshot(arch)
        key = arch.videos()[0].features_key
    features = archive / "features"
    stray = features / "0123456789abcdef0123456789abcdef.npz"
    shutil.copy(features / f"{key}.npz", stray)
    young = features / "fedcba9876543210fedcba9876543210.npz"  # maybe an ingest in progress
    shutil.copy(features / f"{key}.npz", young)
    segment = archive / "frames.d" / "log-000000000099-deadbeef.npz"
    shutil.copy(next((archive / "frames.d").glob("log-*.npz")), segment)
    tmp_dead = features / f".{key}.tmp{dead_pid()}.npz"  # its writer is gone
    tmp_dead.write_bytes(b"half")
    tmp_old = archive / f".frames.tmp{os.getpid()}.json"  # a live pid, but old
    tmp_old.write_text("{")
    for path in (stray, tmp_old):
        os.utime(path, (OLD, OLD))

    with Archive.open(archive) as arch:
        report = arch.check()
    found = {(f.kind, f.subject) for f in report.findings}
    assert found == {("orphan-file", "features/" + stray.name), ("orphan-file", "frames.d/" + segment.name),
                     ("temporary-file", "features/" + tmp_dead.name), ("temporary-file", tmp_old.name)}
    assert report.healthy and all(f.severity == "warning" for f in report.findings)
    result = doctor(archive)
    assert result.exit_code == 0 and "orphan-file" in result.output  # warnings only

    result = doctor(archive, "--repair", "--json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["repair"] and all(f["repaired"] for f in data["findings"]) and len(data["findings"]) == 4
    for path in (stray, segment, tmp_dead, tmp_old):
        assert not path.exists(), path
    assert young.exists()
    with Archive.open(archive) as arch:
        assert_same(before, snapshot(arch), before)


def test_stale_job_is_recovered_and_a_vanished_video_is_named(archive, pristine):
    sources = pristine[1]
    with Archive.open(archive) as arch:
        job, _ = arch.jobs.enqueue(str(sources / "bikes.mp4"), source="cli")
        arch.jobs.claim(worker=f"{socket.gethostname()}:{dead_pid()}:0000")
        video = arch.video_at(sources / "carphone_pristine.mp4")
        done, _ = arch.jobs.enqueue(video.path, source="cli")
        done = arch.jobs.claim(worker="elsewhere:1:abcd")
        arch.jobs.finish(done, "indexed", video.id, 1.0)
        arch.remove(str(video.id))
        gone, _ = arch.jobs.enqueue(str(sources / "never-there.mp4"), source="cli")
        report = arch.check()
        found = {(f.kind, f.subject) for f in report.findings}
        assert found == {("job-stale", f"job {job.id}"), ("job-video-missing", f"job {done.id}"),
                         ("job-source-missing", f"job {gone.id}")}
        assert report.healthy
        repaired = arch.repair()
        assert [f.kind for f in repaired.findings if f.repaired] == ["job-stale"]
        assert arch.jobs.get(job.id).status == "pending"
        assert {f.kind for f in arch.check().findings} == {"job-video-missing", "job-source-missing"}


def test_changed_and_vanished_sources_are_warnings(archive, tmp_path, media):
    own = tmp_path / "own"
    own.mkdir()
    for name in ("bigbuckbunny.mp4", "carphone_pristine.mp4"):
        shutil.copy(media / name, own / f"x-{name}")
    with Archive.open(archive) as arch:
        arch.ingest([own])
        before = snapshot(arch)
    grown, gone = own / "x-bigbuckbunny.mp4", own / "x-carphone_pristine.mp4"
    with open(grown, "ab") as fh:
        fh.write(b"\x00" * 16)
    gone.unlink()
    with Archive.open(archive) as arch:
        report = arch.check()
        found = {(f.kind, f.severity, f.subject.split()[0]) for f in report.findings}
        assert found == {("source-changed", "warning", grown.name), ("source-missing", "warning", gone.name)}
        assert report.healthy
        repaired = arch.repair(deep=True)
        assert {f.kind for f in repaired.findings} == {"source-changed", "source-missing"}
        assert not any(f.repaired for f in repaired.findings)
        assert_same(before, snapshot(arch), before)  # nothing removed: the archive still answers
    result = doctor(archive)
    assert result.exit_code == 0 and "source-missing" in result.output and gone.name in result.output


def test_touched_source_is_confirmed_unchanged_by_deep(archive, pristine):
    with Archive.open(archive) as arch:
        path = Path(arch.videos()[0].path)
    stat = path.stat()
    try:
        os.utime(path, (time.time() + 10, time.time() + 10))
        with Archive.open(archive) as arch:
            assert [f.kind for f in arch.check().findings] == ["source-changed"]
            assert arch.check(deep=True).findings == []
    finally:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_damaged_sparse_tokens(archive):
    """Sparse tokens written by the store directly (no grounder needed): a damaged file is
    dropped, a checkpoint without tokens is a warning for `vidseek reindex`."""
    from vidseek.store.archive_store import ArchiveStore
    from vidseek.store.sparse_tokens import SparseTokens

    store = ArchiveStore(archive, create=False)
    try:
        videos = store.catalog.videos()
        for video in videos[:2]:
            tokens = SparseTokens(np.zeros((1, 2, 4), np.float16), 4, "adapter-a")
            assert store.set_sparse(video, tokens, [(0.0, 4.0)])
        store.catalog.set_meta("grounder", {"path": "/ckpt", "adapter_fingerprint": "adapter-a"})
        damaged = store.catalog.video_by_id(videos[0].id)
        store.sparse.path(damaged.sparse_key).write_bytes(b"not a zip")
    finally:
        store.close()
    with Archive.open(archive) as arch:
        report = arch.check()
        found = {(f.kind, f.severity, f.subject) for f in report.findings}
        assert found == {("sparse-damaged", "error", f"{damaged.name} (video {damaged.id})"),
                         ("sparse-stale", "warning", "1 video(s)")}
        repaired = arch.repair()
        assert repaired.healthy
        after = arch.video(damaged.id)
        assert after is not None and after.sparse_key == "" and after.features_key == damaged.features_key
        assert not (archive / "sparse" / f"{damaged.sparse_key}.npz").exists()
        assert {(f.kind, f.subject) for f in arch.check().findings} == {("sparse-stale", "2 video(s)")}


def test_catalog_rows_of_no_video_are_deleted(archive):
    with Archive.open(archive) as arch:
        before = snapshot(arch)
    with sqlite3.connect(archive / "catalog.db") as conn:
        conn.execute("INSERT INTO frames (id, video_id, idx, time) VALUES (?, 999, 0, 0.0)", [999 << 24])
    with Archive.open(archive) as arch:
        report = arch.check()
        assert kinds(report) == [("catalog-rows", "error")] and not report.healthy
        assert arch.repair().healthy
        assert arch.check().findings == []
        assert_same(before, snapshot(arch), before)


def test_not_an_archive_is_an_error_line(tmp_path):
    result = doctor(tmp_path / "nothing")
    assert result.exit_code == 1 and result.output.startswith("error: ") and "Traceback" not in result.output


def test_a_feature_file_that_cannot_be_read_just_now_is_never_deleted(archive, monkeypatch):
    """An I/O error or no memory says nothing about the file: report it, repair nothing."""
    with Archive.open(archive) as arch:
        before = snapshot(arch)
        store = arch._store
        real_load = store.files.load
        victim = arch.find_video("bikes.mp4")

        def flaky(key):
            if key == victim.features_key:
                raise OSError(5, "Input/output error")
            return real_load(key)

        monkeypatch.setattr(store.files, "load", flaky)
        report = arch.repair()
        assert kinds(report) == [("features-unreadable", "error")] and not report.healthy
        assert not report.findings[0].repaired
        monkeypatch.setattr(store.files, "load", real_load)
        assert arch.check().findings == []
        assert_same(before, snapshot(arch), before)


def test_frame_rows_out_of_step_keep_the_video(archive):
    """A good feature file is never deleted because the catalog's frame rows are wrong."""
    with Archive.open(archive) as arch:
        victim = arch.find_video("bikes.mp4")
        features_file = archive / "features" / f"{victim.features_key}.npz"
    with sqlite3.connect(archive / "catalog.db") as conn:
        conn.execute("DELETE FROM frames WHERE video_id = ? AND idx = 0", [victim.id])
    with Archive.open(archive) as arch:
        report = arch.repair()
        assert ("frame-rows", "error") in kinds(report) and not report.healthy
        assert arch.video(victim.id) is not None and features_file.exists()
