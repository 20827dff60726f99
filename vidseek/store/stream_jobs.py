"""Live streams kept indexed by the ingest daemon (``vidseek watch --stream``): table
``stream_jobs`` in the archive's catalog, one row per stream name.

The daemon writes a row when a stream job changes state, so that ``vidseek jobs`` (another
process) can list it; how much is indexed and how far behind live come from the stream's
parts (:mod:`vidseek.store.streams`), read when listed. States: ``connecting``, ``live``,
``reconnecting`` (the ingest reconnects by itself), ``waiting`` (the ingest failed; the
daemon restarts it after a backoff), ``ended`` (the stream ended: not restarted),
``stopped`` (the daemon stopped). A daemon killed with -9 leaves its last state, while the
lag of a live session keeps growing.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .catalog import Catalog
from .streams import last_part, live_streams

__all__ = ["StreamJob", "StreamJobs", "STREAM_JOB_STATES"]

STREAM_JOB_STATES = ("connecting", "live", "reconnecting", "waiting", "ended", "stopped")

_COLUMNS = "source TEXT PRIMARY KEY, url TEXT NOT NULL, state TEXT NOT NULL, " \
           "error TEXT NOT NULL, restarts INTEGER NOT NULL, worker TEXT NOT NULL, " \
           "started_at REAL NOT NULL, updated_at REAL NOT NULL"


@dataclass(frozen=True)
class StreamJob:
    """A live stream the daemon keeps indexed, as last recorded (plus ``session``,
    ``indexed`` and ``lag`` read from its parts when listed)."""

    source: str  # the stream's name in the catalog
    url: str  # without credentials
    state: str  # one of STREAM_JOB_STATES
    error: str  # the last error ("" if none since the job went live)
    restarts: int  # ingests restarted after a failure, since the daemon started the job
    worker: str  # "host:pid:token" of the daemon
    started_at: float  # wall clock the daemon started the job
    updated_at: float  # wall clock of its last change of state
    session: int = 0  # the stream's latest session (0: nothing indexed yet)
    indexed: float = 0.0  # seconds of that session searchable
    lag: float | None = None  # seconds behind live while the session is being ingested

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_STORED = [f.name for f in fields(StreamJob)][:8]


class StreamJobs:
    """The ``stream_jobs`` table of one catalog."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def _exists(self) -> bool:
        return self.catalog.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                                       "AND name = 'stream_jobs'").fetchone() is not None

    def record(self, source: str, url: str, state: str, *, error: str | None = None,
               restarts: int | None = None, worker: str = "", started_at: float | None = None) -> None:
        """Write the job's state (creating its row); None keeps a field as it was."""
        now = time.time()
        with self.catalog.transaction() as conn:
            conn.execute(f"CREATE TABLE IF NOT EXISTS stream_jobs ({_COLUMNS})")
            row = conn.execute("SELECT error, restarts, started_at FROM stream_jobs WHERE source = ?",
                               [source]).fetchone()
            old_error, old_restarts, old_started = row if row is not None else ("", 0, now)
            values = [source, url, state, old_error if error is None else error,
                      old_restarts if restarts is None else restarts, worker,
                      old_started if started_at is None else started_at, now]
            conn.execute(f"INSERT OR REPLACE INTO stream_jobs ({', '.join(_STORED)}) "
                         f"VALUES ({', '.join('?' * len(values))})", values)

    def list(self) -> list[StreamJob]:
        """Every stream job, by name, with what its latest session has indexed."""
        if not self._exists():
            return []
        cursor = self.catalog.db.execute(f"SELECT {', '.join(_STORED)} FROM stream_jobs ORDER BY source")
        jobs = [StreamJob(*row) for row in cursor.fetchall()]
        live = {s.source: s for s in live_streams(self.catalog)}
        out = []
        for job in jobs:
            part = last_part(self.catalog, job.source)
            if part is None:
                out.append(job)
                continue
            video = self.catalog.video_by_id(part.video_id)
            stream = live.get(job.source)
            out.append(replace(job, session=part.session,
                               indexed=video.duration if video is not None else 0.0,
                               lag=stream.lag if stream is not None else None))
        return out
