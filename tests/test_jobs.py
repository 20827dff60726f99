"""The durable job queue and the folder watcher, without models."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from vidseek.service import FolderWatcher, JobQueue
from vidseek.store.catalog import Catalog
from vidseek.store.jobs import worker_id


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


def test_a_new_copy_while_indexing_is_queued_and_waits_for_the_running_job(queue):
    queue.enqueue("/v/a.mp4", 100, 1)
    queue.enqueue("/v/b.mp4", 100, 1)
    running = queue.claim("h:1:t")
    assert running.path == "/v/a.mp4"
    newer, created = queue.enqueue("/v/a.mp4", 200, 2)  # copied over while being indexed
    assert created and newer.status == "pending"
    assert queue.claim("h:2:t").path == "/v/b.mp4"  # a.mp4's new job waits...
    assert queue.claim("h:2:t") is None
    queue.finish(running, "indexed", 1, 1.0)
    assert queue.claim("h:2:t").id == newer.id  # ...until the running one is done


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
    for n in range(3, 5):
        queue.enqueue(f"/v/{n}.mp4", n, n)
    orphan = queue.claim(f"{host}:{dead}:abcd1234")  # its process has exited
    mine = queue.claim(worker_id())
    remote = queue.claim("elsewhere:12:ffff0000")  # another host, fresh heartbeat
    earlier_me = queue.claim(f"{host}:{os.getpid()}:00000000")  # same pid, an earlier run
    lost = queue.claim(worker_id())  # this process, but no worker thread runs it any more
    recovered = queue.recover(stale_after=600, keep=frozenset({mine.id}))
    assert sorted(j.id for j in recovered) == sorted([orphan.id, earlier_me.id, lost.id])
    assert queue.get(orphan.id).status == "pending" and "interrupted" in queue.get(orphan.id).error
    assert queue.get(mine.id).status == "running" and queue.get(remote.id).status == "running"
    queue.catalog.db.execute("UPDATE jobs SET heartbeat_at = 0 WHERE id = ?", [remote.id])
    assert [j.id for j in queue.recover(stale_after=600, keep=frozenset({mine.id}))] == [remote.id]
    # a recovered job's old worker can no longer finish it: the next worker owns it
    queue.finish(remote, "indexed", 1, 1.0)
    assert queue.get(remote.id).status == "pending"


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
