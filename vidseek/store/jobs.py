"""The durable ingest job queue, a ``jobs`` table in the archive's catalog.

A job asks for one file to be indexed. Its life::

    pending ──claim──▶ running ──▶ done
       ▲                  │
       └──retry (backoff)─┤──▶ failed   (attempts used up, or the file is not a video)
       ▲                                   │
       └──────────── retry() ──────────────┘   (vidseek jobs --retry)

Claiming is one ``BEGIN IMMEDIATE`` transaction, so two workers (threads or processes) never
take the same job. A worker that dies (kill -9, power cut) leaves its job ``running``;
:meth:`JobQueue.recover` hands such jobs back to ``pending`` when their worker process is
gone or their heartbeat is stale. The video itself is committed atomically by the archive, so
an interrupted job is simply redone. Each such crash is counted on the job (``crashes``): a job
whose attempts were used up by crashes of its worker fails with the error "worker crashed N
times while indexing it", which tells it from a file that is bad.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass, fields
from typing import Any

from ..errors import QueryError
from .catalog import Catalog

__all__ = ["Job", "JobQueue", "JOB_STATES"]

JOB_STATES = ("pending", "running", "done", "failed")

_COLUMNS = {
    "id": int, "path": str, "size": int, "mtime_ns": int, "source": str, "status": str,
    "attempts": int, "max_attempts": int, "error": str, "outcome": str, "video_id": int,
    "created_at": float, "started_at": float, "finished_at": float, "next_attempt_at": float,
    "heartbeat_at": float, "worker": str, "seconds": float, "crashes": int,
}
CRASHED = "worker crashed"  # how the error of a job given up after crashes begins


@dataclass(frozen=True)
class Job:
    """One request to index one file."""

    id: int
    path: str  # absolute
    size: int  # file size when the job was queued (-1 when unknown)
    mtime_ns: int  # modification time when queued (-1 when unknown)
    source: str  # who asked: "watch", "api" or "cli"
    status: str  # one of JOB_STATES
    attempts: int  # runs started so far
    max_attempts: int
    error: str  # the last failure ("" if none)
    outcome: str  # "indexed" or "skipped" (unchanged) once done
    video_id: int  # the catalog's video once done (0 otherwise)
    created_at: float
    started_at: float  # of the latest attempt (0 if never run)
    finished_at: float  # 0 until done or failed
    next_attempt_at: float  # a pending job is not claimed before this
    heartbeat_at: float
    worker: str  # "host:pid:token" of the worker running it
    seconds: float  # wall time of the latest attempt
    crashes: int  # attempts interrupted by the death of their worker (kill -9, power cut)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Job":
        return cls(**{f.name: row[f.name] for f in fields(cls)})

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_PROCESS_TOKEN = uuid.uuid4().hex[:8]


def worker_id() -> str:
    """This process's worker name: ``host:pid:token``. The random token tells this process
    from an earlier one that had the same pid (a restarted container is often pid 1 again)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_PROCESS_TOKEN}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class JobQueue:
    """The ``jobs`` table of one catalog."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        db = catalog.db
        if "jobs" not in db.table_names():
            # BEGIN IMMEDIATE waits for other writers; a bare CREATE could fail at once with
            # "database is locked" when another connection wrote since it read the schema
            with self.catalog.transaction():
                db.table("jobs").create(_COLUMNS, pk="id", not_null={"path", "status"},
                                        defaults={"crashes": 0}, if_not_exists=True)
                db.table("jobs").create_index(["status", "next_attempt_at"], if_not_exists=True)
                db.table("jobs").create_index(["path"], if_not_exists=True)
        if "crashes" not in db.table("jobs").columns_dict:  # a queue made before it was counted
            with self.catalog.transaction() as conn:
                columns = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
                if "crashes" not in columns:
                    conn.execute("ALTER TABLE jobs ADD COLUMN crashes INTEGER NOT NULL DEFAULT 0")

    def _rows(self, sql: str, params: list[Any]) -> list[Job]:
        return [Job.from_row(r) for r in self.catalog.db.query(sql, params)]

    # -- queueing ---------------------------------------------------------------
    def enqueue(self, path: str, size: int = -1, mtime_ns: int = -1, *, source: str = "cli",
                max_attempts: int = 3) -> tuple[Job, bool]:
        """Queue ``path`` unless it already has a job for this state of the file.

        Returns ``(job, created)``. A pending or running job for the path is reused (a pending
        one takes the new size and time); a finished job with the same size and time means the
        file was already handled and nothing is queued.
        """
        now = time.time()
        with self.catalog.transaction() as conn:
            row = conn.execute(
                "SELECT id, status, size, mtime_ns FROM jobs WHERE path = ? ORDER BY id DESC LIMIT 1",
                [path]).fetchone()
            job_id, created = None, True
            if row is not None:
                last_id, status, old_size, old_mtime = row
                same_file = (old_size, old_mtime) == (size, mtime_ns) and size >= 0
                if status == "pending":
                    conn.execute("UPDATE jobs SET size = ?, mtime_ns = ? WHERE id = ?",
                                 [size, mtime_ns, last_id])
                    job_id, created = last_id, False
                elif same_file or (status == "running" and size < 0):
                    job_id, created = last_id, False
                # else: a new state of the file (even while it is being indexed): a new job,
                # which claim() holds back until the running one has finished
            if created:
                cur = conn.execute(
                    "INSERT INTO jobs (path, size, mtime_ns, source, status, attempts, max_attempts,"
                    " error, outcome, video_id, created_at, started_at, finished_at,"
                    " next_attempt_at, heartbeat_at, worker, seconds)"
                    " VALUES (?, ?, ?, ?, 'pending', 0, ?, '', '', 0, ?, 0, 0, ?, 0, '', 0)",
                    [path, size, mtime_ns, source, max_attempts, now, now])
                job_id = cur.lastrowid
        return self.get(int(job_id)), created  # type: ignore[arg-type, return-value]

    def claim(self, worker: str | None = None) -> Job | None:
        """Take the oldest pending job that is due, marking it running; None if none is."""
        now = time.time()
        with self.catalog.transaction() as conn:
            row = conn.execute(
                "SELECT id FROM jobs WHERE status = 'pending' AND next_attempt_at <= ? "
                "AND path NOT IN (SELECT path FROM jobs WHERE status = 'running') "
                "ORDER BY next_attempt_at, id LIMIT 1", [now]).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = ?,"
                " heartbeat_at = ?, worker = ? WHERE id = ?",
                [now, now, worker or worker_id(), row[0]])
        return self.get(row[0])

    # -- outcomes ---------------------------------------------------------------
    # Outcomes apply only to a job still running under the same worker: a job recovered
    # meanwhile (its worker presumed dead) belongs to whoever runs it next.
    _MINE = "id = ? AND status = 'running' AND worker = ?"

    def finish(self, job: Job, outcome: str, video_id: int, seconds: float) -> None:
        with self.catalog.transaction() as conn:  # errors surface as ArchiveError
            conn.execute(
                "UPDATE jobs SET status = 'done', outcome = ?, video_id = ?, seconds = ?,"
                f" finished_at = ?, error = '' WHERE {self._MINE}",
                [outcome, video_id, seconds, time.time(), job.id, job.worker])

    def fail(self, job: Job, error: str, *, seconds: float = 0.0, retry: bool = True,
             backoff_seconds: float = 10.0, crashed: bool = False) -> Job:
        """Record a failed attempt: back to pending after an exponential backoff while
        attempts remain and ``retry``, else ``failed``. ``crashed``: the attempt died with
        its worker (counted in ``crashes``; when it was the last, the error says so)."""
        now = time.time()
        current = self.get(job.id) or job
        crashes = current.crashes + crashed
        if retry and current.attempts < current.max_attempts:
            delay = backoff_seconds * 2 ** max(0, current.attempts - 1)
            with self.catalog.transaction() as conn:  # errors surface as ArchiveError
                conn.execute(
                    "UPDATE jobs SET status = 'pending', error = ?, seconds = ?, next_attempt_at = ?,"
                    f" worker = '', crashes = ? WHERE {self._MINE}",
                    [error, seconds, now + delay, crashes, job.id, job.worker])
        else:
            if crashed:
                error = (f"{CRASHED} {crashes} time{'s' if crashes != 1 else ''} while indexing it "
                         f"({current.attempts} of {current.max_attempts} attempts used); the file "
                         f"itself may be fine: `vidseek jobs --retry {job.id}` queues it again")
            with self.catalog.transaction() as conn:  # errors surface as ArchiveError
                conn.execute(
                    "UPDATE jobs SET status = 'failed', error = ?, seconds = ?, finished_at = ?, "
                    f"crashes = ? WHERE {self._MINE}", [error, seconds, now, crashes, job.id, job.worker])
        return self.get(job.id)  # type: ignore[return-value]

    def retry(self, job_ids: list[int] | None = None) -> list[Job]:
        """Queue failed jobs again with all their attempts (every failed job when
        ``job_ids`` is None); returns them. QueryError, and nothing changed, if an id is
        unknown or its job has not failed."""
        now = time.time()
        with self.catalog.transaction() as conn:
            if job_ids is None:
                ids = [row[0] for row in conn.execute("SELECT id FROM jobs WHERE status = 'failed'")]
            else:
                ids = list(dict.fromkeys(job_ids))
                for job_id in ids:
                    row = conn.execute("SELECT status FROM jobs WHERE id = ?", [job_id]).fetchone()
                    if row is None:
                        raise QueryError(f"no job {job_id}")
                    if row[0] != "failed":
                        raise QueryError(f"job {job_id} is {row[0]}, not failed: only failed jobs are retried")
            for job_id in ids:
                conn.execute(
                    "UPDATE jobs SET status = 'pending', attempts = 0, crashes = 0, worker = '',"
                    " next_attempt_at = ?, finished_at = 0 WHERE id = ? AND status = 'failed'",
                    [now, job_id])
        return [job for job in map(self.get, ids) if job is not None]

    def release(self, job: Job) -> None:
        """Hand a job back untried (a graceful stop interrupted it): the attempt is not counted."""
        with self.catalog.transaction() as conn:  # errors surface as ArchiveError
            conn.execute(
                "UPDATE jobs SET status = 'pending', attempts = MAX(0, attempts - 1), worker = '',"
                f" next_attempt_at = 0 WHERE {self._MINE}", [job.id, job.worker])

    def heartbeat(self, job_ids: list[int]) -> None:
        if job_ids:
            marks = ",".join("?" * len(job_ids))
            with self.catalog.transaction() as conn:  # errors surface as ArchiveError
                conn.execute(f"UPDATE jobs SET heartbeat_at = ? WHERE id IN ({marks})",
                                        [time.time(), *job_ids])

    def recover(self, stale_after: float = 600.0, keep: frozenset[int] = frozenset()) -> list[Job]:
        """Return ``running`` jobs whose worker died to ``pending`` (or ``failed`` when that
        was their last attempt; see :meth:`fail` with ``crashed``).

        A worker is dead when its heartbeat is older than ``stale_after`` seconds, or, on this
        host, as soon as its process is gone or is this process under another token (an
        earlier run with the same pid). Jobs of this process are recovered unless their ids
        are in ``keep`` (the ones its workers are running).
        """
        host = socket.gethostname()
        me = worker_id()
        now = time.time()
        recovered = []
        for job in self.list(status="running"):
            worker_host, pid, _token = (job.worker.split(":") + ["", "", ""])[:3]
            dead = now - job.heartbeat_at > stale_after
            if job.worker == me:
                dead = job.id not in keep
            elif worker_host == host and pid.isdigit():
                dead = dead or int(pid) == os.getpid() or not _process_alive(int(pid))
            if dead:
                recovered.append(self.fail(job, "interrupted: its worker stopped while indexing "
                                           "it (killed or crashed)", backoff_seconds=0.0,
                                           crashed=True))
        return recovered

    # -- reads ------------------------------------------------------------------
    def get(self, job_id: int) -> Job | None:
        found = self._rows("SELECT * FROM jobs WHERE id = ?", [job_id])
        return found[0] if found else None

    def list(self, status: str | None = None, limit: int | None = None,
             path: str | None = None) -> list[Job]:
        """Jobs, newest first, optionally of one status and/or one path."""
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            if status not in JOB_STATES:
                raise ValueError(f"unknown job status {status!r} (one of {', '.join(JOB_STATES)})")
            where.append("status = ?")
            params.append(status)
        if path is not None:
            where.append("path = ?")
            params.append(path)
        sql = "SELECT * FROM jobs" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return self._rows(sql, params)

    def counts(self) -> dict[str, int]:
        found = dict(self.catalog.db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())
        return {state: int(found.get(state, 0)) for state in JOB_STATES}

    def active(self) -> int:
        """Jobs not yet finished (pending or running)."""
        counts = self.counts()
        return counts["pending"] + counts["running"]
