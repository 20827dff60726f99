"""The ingest daemon: kill -9 and resume, graceful stop, files copied in slowly, bad files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

import vidseek
import vidseek.service
from vidseek.store.catalog import frame_ids
from vidseek.synth import Segment, splice_videos


@pytest.fixture(scope="module")
def long_videos(tmp_path_factory, media) -> list[Path]:
    """Four ~40 s videos (the shared clips looped, in different orders): a second or so each
    to ingest, long enough to be killed part-way."""
    root = tmp_path_factory.mktemp("long")
    clips = sorted(media.glob("*.mp4"))
    videos = []
    for n in range(4):
        order = clips[n % 3:] + clips[:n % 3]
        path = root / f"long_{n}.mp4"
        splice_videos(path, [Segment(c) for c in order * 2], size=(320, 240), fps=25)
        videos.append(path)
    return videos


def watch_command(watch: Path, archive: Path, model: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "vidseek", "watch", str(watch), "--archive", str(archive),
            "--model", str(model), "--device", "cpu", "--settle", "0.3", "--poll", "0.1", *extra]


def env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def wait_for_running_job(archive: Path, process: subprocess.Popen, timeout: float = 120) -> str:
    """Poll the catalog (read-only) until a job is running; return its path."""
    deadline = time.monotonic() + timeout
    db = archive / "catalog.db"
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1][-2000:]
        if db.exists():
            try:
                # closing(): a connection's own `with` commits but does not close (polling
                # every 10 ms leaked hundreds of file descriptors)
                with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as conn:
                    row = conn.execute("SELECT path FROM jobs WHERE status = 'running'").fetchone()
            except sqlite3.OperationalError:  # jobs table not created yet
                row = None
            if row:
                return row[0]
        time.sleep(0.01)
    raise AssertionError("no job started running")


def assert_consistent(archive_dir: Path) -> list[vidseek.VideoRecord]:
    """Every catalogued video is whole: its feature file loads with its frame count, and the
    FAISS index holds exactly the catalog's frame ids."""
    with vidseek.Archive.open(archive_dir, create=False) as archive:
        store = archive._store
        videos = archive.videos()
        expected = set()
        for video in videos:
            times, emb = store.video_embeddings(video)
            assert len(times) == len(emb) == video.frames > 0
            expected |= set(frame_ids(video.id, video.frames).tolist())
        index = store.refresh_index()
        assert index.generation == store.catalog.generation
        assert index.ntotal == len(expected)
        catalog_ids = {r[0] for r in store.catalog.db.execute("SELECT id FROM frames")}
        assert catalog_ids == expected
        if expected:  # the index really holds those ids: a search returns only them
            scores, ids = index.search(np.ones((1, index.dim), np.float32), len(expected))
            assert set(ids[0].tolist()) == expected
    return videos


def test_kill9_mid_ingest_then_restart_indexes_every_video_exactly_once(
        tmp_path, tiny_clip_dir, long_videos):
    watch, archive = tmp_path / "watch", tmp_path / "archive"
    watch.mkdir()
    for video in long_videos:
        shutil.copy(video, watch / video.name)
    first = subprocess.Popen(watch_command(watch, archive, tiny_clip_dir), env=env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        killed_path = wait_for_running_job(archive, first)
        time.sleep(0.05)  # into decoding (a video takes about a second)
        first.send_signal(signal.SIGKILL)
    finally:
        first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL
    before = assert_consistent(archive)  # nothing half-visible after the kill
    assert len(before) < len(long_videos)

    second = subprocess.run(watch_command(watch, archive, tiny_clip_dir, "--once"), env=env(),
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "recovered after a crash" in second.stdout
    videos = assert_consistent(archive)
    assert sorted(v.name for v in videos) == sorted(v.name for v in long_videos)
    for video in videos:
        assert video.frames == pytest.approx(video.duration, abs=1.01)  # 1 fps, whole video
    with vidseek.Archive.open(archive, create=False) as arch:
        jobs = arch.jobs.list()
        assert sorted(j.path for j in jobs) == sorted(str(watch / v.name) for v in long_videos)
        assert {j.status for j in jobs} == {"done"}
        killed = next(j for j in jobs if j.path == killed_path)
        assert killed.attempts == 2  # interrupted once, then redone
        assert killed.video_id == arch.find_video(Path(killed_path).name).id


def test_sigterm_stops_gracefully_and_hands_the_job_back(tmp_path, tiny_clip_dir, long_videos):
    watch, archive = tmp_path / "watch", tmp_path / "archive"
    watch.mkdir()
    shutil.copy(long_videos[0], watch / "a.mp4")
    process = subprocess.Popen(watch_command(watch, archive, tiny_clip_dir), env=env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_running_job(archive, process)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    out, errors = process.communicate(timeout=60)
    assert process.returncode == 0, errors[-2000:]
    assert time.monotonic() - started < 20
    assert "received SIGTERM" in errors
    videos = assert_consistent(archive)
    with vidseek.Archive.open(archive, create=False) as arch:
        (job,) = arch.jobs.list()
    if videos:  # the commit won the race with the signal
        assert job.status == "done"
    else:
        assert job.status == "pending" and job.attempts == 0
        assert "1 handed back unfinished" in out


def test_file_copied_in_slowly_is_indexed_once_and_whole(tmp_path, tiny_clip_dir, media):
    watch = tmp_path / "watch"
    watch.mkdir()
    events: list[vidseek.service.DaemonEvent] = []
    with vidseek.Archive.open(tmp_path / "archive", model=tiny_clip_dir, device="cpu") as archive:
        daemon = vidseek.service.IngestDaemon(archive, [watch], vidseek.service.DaemonConfig(
            poll_seconds=0.1, settle_seconds=2.0), progress=events.append)
        stop = threading.Event()
        runner = threading.Thread(target=daemon.run, args=(stop,))
        runner.start()
        try:
            data = (media / "bikes.mp4").read_bytes()
            target = watch / "bikes.mp4"
            with open(target, "wb") as fh:  # 12 chunks, 0.25 s apart: 3 s of copying
                for chunk in np.array_split(np.frombuffer(data, np.uint8), 12):
                    fh.write(chunk.tobytes())
                    fh.flush()
                    time.sleep(0.25)
            copied = time.time()
            deadline = time.monotonic() + 60
            while not any(e.kind in ("done", "failed") for e in events):
                assert time.monotonic() < deadline, "the copied file was never indexed"
                time.sleep(0.05)
        finally:
            stop.set()
            runner.join(timeout=60)
        jobs = archive.jobs.list()
        assert len(jobs) == 1 and jobs[0].status == "done" and jobs[0].attempts == 1
        assert jobs[0].created_at >= copied  # not queued while the copy was still growing
        (video,) = archive.videos()
        assert video.frames == 10 and video.duration == pytest.approx(10.0, abs=0.05)
        assert [e.kind for e in events if e.kind not in ("frames",)] == ["queued", "started", "done"]
        assert daemon.report.indexed == 1 and daemon.report.failed == 0


def test_unreadable_files_fail_once_with_the_reason_and_others_still_index(
        tmp_path, tiny_clip_dir, media):
    watch = tmp_path / "watch"
    watch.mkdir()
    shutil.copy(media / "carphone_pristine.mp4", watch / "good.mp4")
    (watch / "bad.mp4").write_text("not a video\n" * 50)
    (watch / "empty.mp4").write_bytes(b"")
    with vidseek.Archive.open(tmp_path / "archive", model=tiny_clip_dir, device="cpu") as archive:
        report = vidseek.service.IngestDaemon(archive, [watch], vidseek.service.DaemonConfig(
            poll_seconds=0.05, settle_seconds=0.1, backoff_seconds=0.1)).run(once=True)
        assert (report.indexed, report.failed, report.retried) == (1, 2, 0)
        empty, failed = archive.jobs.list(status="failed")  # newest first
        assert failed.path.endswith("bad.mp4") and failed.attempts == 1
        assert "bad.mp4" in failed.error and "not a video" in failed.error
        assert empty.path.endswith("empty.mp4") and "empty" in empty.error
        assert [v.name for v in archive.videos()] == ["good.mp4"]
        # a second run finds nothing new to do: both files' states were handled
        again = vidseek.service.IngestDaemon(archive, [watch], vidseek.service.DaemonConfig(
            poll_seconds=0.05, settle_seconds=0.1)).run(once=True)
        assert (again.queued, again.indexed, again.failed) == (0, 0, 0)
    from typer.testing import CliRunner

    from vidseek.cli import app

    listed = CliRunner().invoke(app, ["jobs", "--archive", str(tmp_path / "archive")])
    assert listed.exit_code == 0 and "done 1  failed 2" in listed.output
    result = CliRunner().invoke(app, ["jobs", "--failed", "--json", "--archive", str(tmp_path / "archive")])
    assert result.exit_code == 0
    rows = json.loads(result.output)
    assert sorted(Path(r["path"]).name for r in rows) == ["bad.mp4", "empty.mp4"]


def test_a_worker_survives_an_unexpected_error_and_the_job_is_retried(
        tmp_path, tiny_clip_dir, media, monkeypatch):
    watch = tmp_path / "watch"
    watch.mkdir()
    shutil.copy(media / "carphone_pristine.mp4", watch / "clip.mp4")
    with vidseek.Archive.open(tmp_path / "archive", model=tiny_clip_dir, device="cpu") as archive:
        real = archive.ingest_file
        calls = []

        def flaky(path, **kwargs):
            calls.append(path)
            if len(calls) == 1:
                raise ValueError("a bug somewhere")
            return real(path, **kwargs)

        monkeypatch.setattr(archive, "ingest_file", flaky)
        report = vidseek.service.IngestDaemon(archive, [watch], vidseek.service.DaemonConfig(
            poll_seconds=0.05, settle_seconds=0.1, backoff_seconds=0.1)).run(once=True)
        assert (report.indexed, report.retried, report.failed) == (1, 1, 0)
        (job,) = archive.jobs.list()
        assert job.status == "done" and job.attempts == 2 and len(calls) == 2


def _dead_worker() -> str:
    """The name of a worker on this host whose process has exited (as after a kill -9)."""
    from vidseek.store.jobs import worker_id

    host, _pid, _token = worker_id().split(":")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return f"{host}:{gone.pid}:deadbeef"


def test_a_job_whose_worker_crashed_three_times_fails_visibly_and_can_be_retried(
        tmp_path, tiny_clip_dir, media):
    """Issue 17, item 6: the third kill -9 used up the job's attempts; the next daemon must
    report it as failed (exit status 1), tell it from a bad file, and --retry requeues it."""
    from typer.testing import CliRunner

    from vidseek.cli import app

    watch, archive = tmp_path / "watch", tmp_path / "archive"
    watch.mkdir()
    clip = watch / "good.mp4"
    shutil.copy(media / "carphone_pristine.mp4", clip)
    with vidseek.Archive.open(archive, model=tiny_clip_dir, device="cpu") as arch:
        arch.warm_up()  # adopt the encoder, as the first daemon did
        st = clip.stat()
        job, _ = arch.jobs.enqueue(str(clip), st.st_size, st.st_mtime_ns, source="watch")
        for crash in range(3):  # three daemons, each killed while indexing the file
            assert arch.jobs.claim(_dead_worker()).id == job.id
            if crash < 2:  # the next daemon's start-up recovery
                (recovered,) = arch.jobs.recover()
                assert recovered.status == "pending" and recovered.crashes == crash + 1
                assert "worker stopped" in recovered.error and "deadbeef" not in recovered.error
    common = ["--archive", str(archive), "--device", "cpu", "--settle", "0.1", "--poll", "0.05"]
    result = CliRunner().invoke(app, ["watch", str(watch), "--once", *common])
    assert result.exit_code == 1, result.output
    assert "0 indexed, 0 unchanged, 1 failed, 0 retried, 0 recovered after a crash" in result.output
    assert f"failed   {clip}: worker crashed 3 times while indexing it" in result.output
    listed = CliRunner().invoke(app, ["jobs", "--failed", "--json", "--archive", str(archive)])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.output)[0]["error"].startswith("worker crashed 3 times")
    with vidseek.Archive.open(archive, create=False) as arch:
        (failed,) = arch.jobs.list(status="failed")
        assert (failed.attempts, failed.crashes) == (3, 3)
        assert failed.error.startswith("worker crashed 3 times while indexing it (3 of 3 attempts used)")
        assert not arch.videos()
    # --retry takes failed job ids only; the default is every failed job
    refused = CliRunner().invoke(app, ["jobs", "--retry", "99", "--archive", str(archive)])
    assert refused.exit_code == 1 and "error: no job 99" in refused.output
    assert CliRunner().invoke(app, ["jobs", str(job.id), "--archive", str(archive)]).exit_code == 2
    retried = CliRunner().invoke(app, ["jobs", "--retry", "--archive", str(archive)])
    assert retried.exit_code == 0, retried.output
    assert f"queued again: job {job.id} ({clip})" in retried.output
    again = CliRunner().invoke(app, ["jobs", "--retry", str(job.id), "--archive", str(archive)])
    assert again.exit_code == 1 and f"job {job.id} is pending, not failed" in again.output
    result = CliRunner().invoke(app, ["watch", str(watch), "--once", *common])
    assert result.exit_code == 0, result.output
    assert "1 indexed, 0 unchanged, 0 failed" in result.output
    with vidseek.Archive.open(archive, create=False) as arch:
        (done,) = arch.jobs.list()
        assert (done.status, done.attempts, done.crashes) == ("done", 1, 0)
        assert [v.name for v in arch.videos()] == ["good.mp4"]


def test_a_bad_file_fails_with_its_reason_not_as_a_crash(tmp_path, tiny_clip_dir):
    watch = tmp_path / "watch"
    watch.mkdir()
    (watch / "bad.mp4").write_text("not a video\n" * 50)
    with vidseek.Archive.open(tmp_path / "archive", model=tiny_clip_dir, device="cpu") as archive:
        report = vidseek.service.IngestDaemon(archive, [watch], vidseek.service.DaemonConfig(
            poll_seconds=0.05, settle_seconds=0.1)).run(once=True)
        assert report.failed == 1 and "not a video" in report.errors[0]
        (job,) = archive.jobs.list(status="failed")
        assert job.crashes == 0 and "not a video" in job.error and "crashed" not in job.error
