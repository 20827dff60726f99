"""The durable job queue and the folder watcher, without models."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from vidseek import FolderWatcher, JobQueue
from vidseek.store.catalog import Catalog


@pytest.fixture()
def queue(tmp_path):
    catalog = Catalog(tmp_path / "catalog.db")
    yield JobQueue(catalog)
    catalog.close()


def test_enqueue_dedupes_by_path_and_file_state(queue):
    job, created = queue.enqueue("/v/a.mp4", 100, 1, source="watch")
    assert created and job.status == "pending" and job.attempts == 0
    again, created = queue.enqueue("/v/a.mp4", 120, 2)  # still pending: updated in place
    assert not created and again.id == job.id and (again.size, again.mtime_ns) == (120, 2)
    claimed = queue.claim("host:1")
    queue.finish(claimed, "indexed", 7, 0.5)
    same, created = queue.enqueue("/v/a.mp4", 120, 2)  # the state already indexed
    assert not created and same.id == job.id and same.status == "done" and same.video_id == 7
    changed, created = queue.enqueue("/v/a.mp4", 130, 3)  # a new copy over the file
    assert created and changed.id != job.id
    assert queue.counts() == {"pending": 1, "running": 0, "done": 1, "failed": 0}


def test_claim_is_exclusive_across_threads(queue):
    for n in range(40):
        queue.enqueue(f"/v/{n}.mp4", n, n)
    taken: list[int] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        while (job := queue.claim(name)) is not None:
            with lock:
                taken.append(job.id)

    threads = [threading.Thread(target=worker, args=(f"h:{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(taken) == list(range(1, 41))  # every job once, none twice


def test_failures_back_off_then_fail_for_good(queue):
    job, _ = queue.enqueue("/v/a.mp4", 1, 1, max_attempts=2)
    first = queue.claim()
    after = queue.fail(first, "disk went away", backoff_seconds=60)
    assert after.status == "pending" and after.error == "disk went away"
    assert after.next_attempt_at > first.started_at + 59
    assert queue.claim() is None  # not due yet
    queue.catalog.db.execute("UPDATE jobs SET next_attempt_at = 0")
    second = queue.claim()
    assert second.attempts == 2
    final = queue.fail(second, "disk went away again", backoff_seconds=60)
    assert final.status == "failed" and final.finished_at > 0
    hopeless, _ = queue.enqueue("/v/b.mp4", 1, 1)
    assert queue.fail(queue.claim(), "not a video", retry=False).status == "failed"
    assert [j.path for j in queue.list(status="failed")] == ["/v/b.mp4", "/v/a.mp4"]
    with pytest.raises(ValueError, match="unknown job status"):
        queue.list(status="stuck")


def test_release_does_not_count_the_attempt(queue):
    queue.enqueue("/v/a.mp4", 1, 1)
    job = queue.claim()
    queue.release(job)
    again = queue.get(job.id)
    assert again.status == "pending" and again.attempts == 0


def test_recover_requeues_jobs_of_dead_workers_only(queue):
    import socket

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    host = socket.gethostname()
    for n in range(3):
        queue.enqueue(f"/v/{n}.mp4", n, n)
    orphan = queue.claim(f"{host}:{dead}")  # its process has exited
    mine = queue.claim(f"{host}:{os.getpid()}")
    remote = queue.claim("elsewhere:12")  # another host, fresh heartbeat
    recovered = queue.recover(stale_after=600)
    assert [j.id for j in recovered] == [orphan.id]
    assert queue.get(orphan.id).status == "pending" and "interrupted" in queue.get(orphan.id).error
    assert queue.get(mine.id).status == "running" and queue.get(remote.id).status == "running"
    queue.catalog.db.execute("UPDATE jobs SET heartbeat_at = 0 WHERE id = ?", [remote.id])
    assert [j.id for j in queue.recover(stale_after=600)] == [remote.id]


def test_watcher_reports_a_file_once_it_settles(tmp_path):
    folder = tmp_path / "in"
    (folder / ".hidden").mkdir(parents=True)
    watcher = FolderWatcher([folder], settle_seconds=5.0)
    video = folder / "a.mp4"
    video.write_bytes(b"x" * 10)
    (folder / "notes.txt").write_text("ignored")
    (folder / ".hidden" / "b.mp4").write_bytes(b"x")
    assert watcher.scan(now=0.0) == []  # first sight
    assert watcher.scan(now=3.0) == []  # unchanged, but not for long enough
    video.write_bytes(b"x" * 20)  # still growing: the clock restarts
    assert watcher.scan(now=6.0) == []
    assert watcher.scan(now=10.0) == []
    settled = watcher.scan(now=11.5)
    assert [(s.path, s.size) for s in settled] == [(video.resolve(), 20)]
    assert watcher.scan(now=30.0) == []  # reported once
    os.utime(video, ns=(0, 12345))  # touched again: a new state, reported after settling
    assert watcher.scan(now=31.0) == [] and watcher.settling == 1
    assert [s.mtime_ns for s in watcher.scan(now=37.0)] == [12345]
