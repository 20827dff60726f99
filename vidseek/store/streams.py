"""The catalog's record of live streams: which videos are parts of which stream session.

A live source is indexed as *sessions* (one run of ``vidseek ingest URL``, continued after a
crash), each made of *parts*: catalog videos that grow while the stream airs. A part ends
at a reconnection (its timeline has a gap), at a resumed crash, or after the part length,
so one part's frame times map linearly onto the wall clock: the frame at session time
``t`` of a part aired at ``aired_at + (t - offset)``. Frame times of every part count from
the session's start, so results of different parts of one session share one timeline.

Table ``stream_parts`` (one row per part video, written in the same transaction as the
video's rows, so a part is never catalogued without it):

``video_id``, ``source`` (the stream's identity: its name, or its URL without credentials),
``url`` (without credentials), ``session``, ``part``, ``started_at`` (wall clock at session
time 0), ``offset`` (session time the part starts at), ``aired_at`` (wall clock at
``offset``), ``gap_before`` (seconds without frames before the part: a dropped connection),
``state`` (``live`` while its session ingests, ``ended`` after), ``recording`` (the file its
packets were remuxed into, or ""), ``updated_at`` (wall clock of its last commit),
``commit_frames`` and ``commit_seconds`` (the frames its last commit added, and the wall-clock
seconds since the run's commit before it, 0 for a run's first commit: the ingest's rate,
which a server that does not run the ingest exports).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from dataclasses import dataclass, fields
from typing import Any

from ..errors import VideoError
from .catalog import Catalog, VideoRecord

__all__ = ["StreamPart", "STREAM_PATH_PREFIX", "stream_parts", "create_table", "insert_part",
           "touch_part", "end_session", "last_part", "part_of", "is_stream_path", "recording_of",
           "LiveStream", "live_streams"]

# Paths of stream part videos: "stream:SOURCE#sSESSION.pPART" (no file is behind them)
STREAM_PATH_PREFIX = "stream:"


def is_stream_path(path: str) -> bool:
    return path.startswith(STREAM_PATH_PREFIX)


@dataclass(frozen=True)
class StreamPart:
    video_id: int
    source: str
    url: str
    session: int
    part: int
    started_at: float
    offset: float
    aired_at: float
    gap_before: float
    state: str
    recording: str
    updated_at: float
    commit_frames: int = 0  # frames the last commit added
    commit_seconds: float = 0.0  # wall-clock seconds since the run's commit before (0: its first)

    def wall_clock(self, t: float) -> float:
        """Unix time at which session time ``t`` of this part aired."""
        return self.aired_at + (t - self.offset)


_COLUMNS = "video_id INTEGER PRIMARY KEY, source TEXT NOT NULL, url TEXT NOT NULL, " \
           "session INTEGER NOT NULL, part INTEGER NOT NULL, started_at REAL NOT NULL, " \
           "offset REAL NOT NULL, aired_at REAL NOT NULL, gap_before REAL NOT NULL, " \
           "state TEXT NOT NULL, recording TEXT NOT NULL, updated_at REAL NOT NULL, " \
           "commit_frames INTEGER NOT NULL DEFAULT 0, commit_seconds REAL NOT NULL DEFAULT 0"
# added after the table was first released: archives that ingested a stream before lack them
_ADDED_COLUMNS = {"commit_frames": "INTEGER NOT NULL DEFAULT 0",
                  "commit_seconds": "REAL NOT NULL DEFAULT 0"}


def create_table(conn: sqlite3.Connection) -> None:
    conn.execute(f"CREATE TABLE IF NOT EXISTS stream_parts ({_COLUMNS})")
    conn.execute("CREATE INDEX IF NOT EXISTS stream_parts_source ON stream_parts (source, session)")
    have = {row[1] for row in conn.execute("PRAGMA table_info(stream_parts)")}
    for column, kind in _ADDED_COLUMNS.items():
        if column not in have:
            conn.execute(f"ALTER TABLE stream_parts ADD COLUMN {column} {kind}")


def _has_table(catalog: Catalog) -> bool:
    return catalog.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                              "AND name = 'stream_parts'").fetchone() is not None


def _rows(catalog: Catalog, where: str = "", args: list[Any] | None = None) -> list[StreamPart]:
    if not _has_table(catalog):  # an archive that never ingested a stream
        return []
    # only parts whose video is still catalogued (a deleted video's row is ignored)
    cursor = catalog.db.execute(
        "SELECT s.* FROM stream_parts s JOIN videos v ON v.id = s.video_id "
        f"{where} ORDER BY s.source, s.session, s.part", args or [])
    names = [d[0] for d in cursor.description]
    # a table from before a column was added: its fields keep their defaults
    return [StreamPart(**{f.name: row[names.index(f.name)] for f in fields(StreamPart)
                          if f.name in names})
            for row in cursor.fetchall()]


def stream_parts(catalog: Catalog, source: str | None = None) -> list[StreamPart]:
    """Every part (of ``source`` only, if given), by source, session and part."""
    if source is None:
        return _rows(catalog)
    return _rows(catalog, "WHERE s.source = ?", [source])


def part_of(catalog: Catalog, video_id: int) -> StreamPart | None:
    found = _rows(catalog, "WHERE s.video_id = ?", [video_id])
    return found[0] if found else None


def last_part(catalog: Catalog, source: str) -> StreamPart | None:
    found = stream_parts(catalog, source)
    return found[-1] if found else None


def insert_part(conn: sqlite3.Connection, part: StreamPart) -> None:
    """Write a part's row (call inside the transaction that commits its video)."""
    create_table(conn)
    names = [f.name for f in fields(StreamPart)]
    conn.execute(f"INSERT OR REPLACE INTO stream_parts ({', '.join(names)}) "
                 f"VALUES ({', '.join('?' * len(names))})", [getattr(part, n) for n in names])


def touch_part(conn: sqlite3.Connection, video_id: int, when: float | None = None,
               frames: int = 0, seconds: float = 0.0) -> None:
    """Record a commit of a part: its time, the frames it added, the seconds since the last."""
    create_table(conn)  # a part written before the commit columns existed (a resumed session)
    conn.execute("UPDATE stream_parts SET updated_at = ?, commit_frames = ?, commit_seconds = ? "
                 "WHERE video_id = ?", [time.time() if when is None else when, frames, seconds,
                                        video_id])


def end_session(catalog: Catalog, source: str, session: int) -> None:
    """Mark a session's parts ended (its stream ended or its ingest was stopped)."""
    if not _has_table(catalog):
        return
    with catalog.transaction() as conn:
        conn.execute("UPDATE stream_parts SET state = 'ended' WHERE source = ? AND session = ?",
                     [source, session])


def recording_of(catalog: Catalog, video: VideoRecord) -> Path:
    """The recording of a stream part, or VideoError saying why it has no media."""
    part = part_of(catalog, video.id)
    if part is None or not part.recording:
        raise VideoError(video.path, "a live stream moment without media: the stream was not "
                                     "recorded (ingest it with --record DIR to play moments back)")
    path = Path(part.recording)
    if not path.is_file():
        raise VideoError(video.path, f"its recording {path} cannot be reached")
    return path


@dataclass(frozen=True)
class LiveStream:
    """A session being ingested now (its parts are ``live``), as the catalog shows it."""

    source: str
    url: str
    session: int
    started_at: float  # wall clock at session time 0
    indexed: float  # session seconds searchable
    lag: float  # seconds between the airing of the newest searchable frame and now
    updated_at: float  # wall clock of its last commit
    frames_per_s: float | None = None  # frames indexed per wall-clock second lately (see _rate)


def live_streams(catalog: Catalog, now: float | None = None) -> list[LiveStream]:
    """Sessions whose ingest has not ended (or crashed without ending: their lag grows)."""
    now = time.time() if now is None else now
    newest: dict[str, tuple[StreamPart, VideoRecord]] = {}
    for part in _rows(catalog, "WHERE s.state = 'live'"):
        video = catalog.video_by_id(part.video_id)
        if video is not None:
            newest[part.source] = (part, video)  # rows come by session and part
    return [LiveStream(p.source, p.url, p.session, p.started_at, v.duration,
                       max(0.0, now - p.wall_clock(v.duration)), p.updated_at, _rate(p, now))
            for p, v in newest.values()]


def _rate(part: StreamPart, now: float) -> float | None:
    """Frames the last commit added over its interval, or over the time since that commit
    when it is longer: a stalled (or killed) ingest's rate falls toward 0. None after a
    run's first commit (no interval yet)."""
    if part.commit_seconds <= 0:
        return None
    return part.commit_frames / max(part.commit_seconds, now - part.updated_at)
