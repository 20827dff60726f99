"""The SQLite catalog of an archive (sqlite-utils, WAL mode).

Tables: ``meta`` (the encoder manifest, the ingest settings, the grounding checkpoint and a
*generation* counter that every commit bumps), ``videos`` (one row per indexed video),
``frames`` (one row per sampled frame; its id is the FAISS id) and ``windows`` (the level-1
windows whose sparse tokens the video's sparse file holds). A video's rows are written in one
transaction, so a video is either fully catalogued or absent.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import sqlite_utils

from ..errors import ArchiveError, ArchiveLockedError

__all__ = ["VideoRecord", "Catalog", "FRAME_ID_BITS", "frame_ids"]

# A frame id packs (video id, frame index): 2**24 frames is 194 days at 1 fps.
FRAME_ID_BITS = 24


def frame_ids(video_id: int, count: int) -> np.ndarray:
    if count >= 1 << FRAME_ID_BITS:
        raise ValueError(f"a video may hold at most {(1 << FRAME_ID_BITS) - 1} sampled frames")
    return (np.int64(video_id) << FRAME_ID_BITS) + np.arange(count, dtype=np.int64)


@dataclass(frozen=True)
class VideoRecord:
    """One indexed video as the catalog knows it."""

    id: int
    path: str  # absolute path at ingest time
    name: str  # file name, what users type to pick a video
    content_hash: str
    size_bytes: int
    duration: float  # seconds decoded
    fps: float  # sampling rate used at ingest
    native_fps: float
    width: int
    height: int
    codec: str
    frames: int  # sampled frames stored
    kept_fraction: float  # share of dense tokens kept by pruning
    features_key: str
    status: str
    indexed_at: float  # unix time
    ingest_seconds: float
    sparse_key: str = ""  # sparse token file ("" until a grounding checkpoint computed them)
    sparse_fingerprint: str = ""  # adapter fingerprint of the checkpoint that did
    # the source file's identity at ingest (with size_bytes); -1 in rows older than these columns
    source_dev: int = -1
    source_ino: int = -1
    source_mtime_ns: int = -1

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "VideoRecord":
        return cls(**{f.name: row[f.name] for f in fields(cls)})


_VIDEO_COLUMNS = {
    "id": int, "path": str, "name": str, "content_hash": str, "size_bytes": int,
    "duration": float, "fps": float, "native_fps": float, "width": int, "height": int,
    "codec": str, "frames": int, "kept_fraction": float, "features_key": str, "status": str,
    "indexed_at": float, "ingest_seconds": float, "sparse_key": str, "sparse_fingerprint": str,
    "source_dev": int, "source_ino": int, "source_mtime_ns": int,
}


class _VideoChanged(Exception):
    """Rolls back an append to a video that another writer changed or removed."""


class Catalog:
    """Typed access to ``catalog.db``.

    Each thread gets its own SQLite connection (``db``): a server answers queries from a
    thread pool while a daemon's workers commit, and one connection must not interleave
    two threads' transactions.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        # (thread, connection): a thread pool retires idle threads, whose connections are
        # then closed here rather than kept open (and their file handles) for good
        self._connections: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._connections_lock = threading.Lock()
        self.db.enable_wal()
        self._create_schema()

    @property
    def db(self) -> sqlite_utils.Database:
        """This thread's connection (opened on first use)."""
        db = getattr(self._local, "db", None)
        if db is None:
            conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None,
                                   check_same_thread=False)
            db = sqlite_utils.Database(conn)
            self._local.db = db
            with self._connections_lock:
                alive = []
                for thread, other in self._connections:
                    if thread.is_alive():
                        alive.append((thread, other))
                    else:
                        other.close()
                self._connections = alive + [(threading.current_thread(), conn)]
        return db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """An immediate transaction: it takes the write lock at once (waiting for other
        writers up to the busy timeout) instead of failing later on a stale read; committed
        on success, rolled back on any error. SQLite's operational errors (busy past the
        timeout, I/O) surface as :class:`~vidseek.errors.ArchiveError` naming the catalog."""
        conn = self.db.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:  # busy past the timeout: another writer holds it
            raise ArchiveLockedError(f"{self.path}: the catalog stayed locked by another "
                                     f"writer ({exc})") from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                raise ArchiveError(f"{self.path}: catalog write failed: {exc}") from exc
            raise

    def _create_schema(self) -> None:
        # a daemon and a server may open the archive at once
        with self.transaction():
            self._create_tables()

    def _create_tables(self) -> None:
        if "meta" not in self.db.table_names():
            self.db.table("meta").create({"key": str, "value": str}, pk="key", if_not_exists=True)
        if "videos" not in self.db.table_names():
            self.db.table("videos").create(_VIDEO_COLUMNS, pk="id", not_null={"path"}, if_not_exists=True)
            self.db.table("videos").create_index(["path"], unique=True, if_not_exists=True)
            self.db.table("videos").create_index(["content_hash"], if_not_exists=True)
        else:  # archives made before sparse tokens, or source identities, existed
            have = set(self.db.table("videos").columns_dict)
            for column, default in (("sparse_key", ""), ("sparse_fingerprint", ""), ("source_dev", -1),
                                    ("source_ino", -1), ("source_mtime_ns", -1)):
                if column not in have:
                    self.db.table("videos").add_column(column, type(default), not_null_default=default)
        if "windows" not in self.db.table_names():
            self.db.table("windows").create({"video_id": int, "idx": int, "start": float, "end": float},
                                            pk=("video_id", "idx"), if_not_exists=True)
        if "frames" not in self.db.table_names():
            self.db.table("frames").create({"id": int, "video_id": int, "idx": int, "time": float},
                                           pk="id", if_not_exists=True)
            self.db.table("frames").create_index(["video_id"], if_not_exists=True)

    def close(self) -> None:
        with self._connections_lock:
            for _, conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    # -- meta -------------------------------------------------------------------
    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                        [key, json.dumps(value)])

    @property
    def generation(self) -> int:
        return int(self.get_meta("generation", 0))

    # -- videos -----------------------------------------------------------------
    def video_by_path(self, path: str) -> VideoRecord | None:
        rows = list(self.db.query("SELECT * FROM videos WHERE path = ?", [path]))
        return VideoRecord.from_row(rows[0]) if rows else None

    def video_by_id(self, video_id: int) -> VideoRecord | None:
        # the plain cursor: a query looks up a dozen videos, and sqlite-utils' query() costs more
        cursor = self.db.execute("SELECT * FROM videos WHERE id = ?", [video_id])
        row = cursor.fetchone()
        if row is None:
            return None
        return VideoRecord.from_row({d[0]: v for d, v in zip(cursor.description, row)})

    def find_videos(self, name_or_path: str) -> list[VideoRecord]:
        """Videos whose path, file name or id equals ``name_or_path``."""
        rows = self.db.query(
            "SELECT * FROM videos WHERE path = ? OR name = ? OR CAST(id AS TEXT) = ? ORDER BY id",
            [name_or_path, name_or_path, name_or_path])
        return [VideoRecord.from_row(r) for r in rows]

    def find_videos_by_stem(self, stem: str) -> list[VideoRecord]:
        """Videos whose file name without its extension is ``stem`` (how datasets name
        videos: ``3MSZA`` for ``3MSZA.mp4``)."""
        pattern = re.sub(r"([\\%_])", r"\\\1", stem) + ".%"
        rows = self.db.query("SELECT * FROM videos WHERE name LIKE ? ESCAPE '\\' ORDER BY id", [pattern])
        return [r for r in map(VideoRecord.from_row, rows) if Path(r.name).stem == stem]

    def videos(self) -> list[VideoRecord]:
        return [VideoRecord.from_row(r) for r in self.db.query("SELECT * FROM videos ORDER BY id")]

    def totals(self) -> dict[str, float]:
        row = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(duration), 0), COALESCE(SUM(frames), 0) FROM videos"
        ).fetchone()
        return {"videos": row[0], "seconds": row[1], "frames": row[2]}

    # -- commits ----------------------------------------------------------------
    @contextmanager
    def _write_transaction(self) -> Iterator[sqlite3.Connection]:
        """An immediate transaction that bumps the generation; rolled back on any error."""
        with self.transaction() as conn:
            yield conn
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('generation', ?)",
                         [json.dumps(self.generation + 1)])

    def commit_video(self, fields_: dict[str, Any], times: np.ndarray,
                     replace: VideoRecord | None = None,
                     windows: list[tuple[float, float]] | None = None,
                     extra: Callable[[sqlite3.Connection, int], None] | None = None,
                     ) -> tuple[VideoRecord, np.ndarray]:
        """Insert a video and its frames (and level-1 windows) in one transaction, replacing
        ``replace`` if given; ``extra(conn, video_id)`` writes more rows in that transaction
        (a live stream's part record).

        Returns the new record and its frame ids. Bumps the generation.
        """
        with self._write_transaction() as conn:
            if replace is not None:
                self._delete_rows(conn, replace.id)
            fields_ = {"sparse_key": "", "sparse_fingerprint": "", "source_dev": -1, "source_ino": -1,
                       "source_mtime_ns": -1, **fields_}
            columns = [c for c in _VIDEO_COLUMNS if c != "id"]
            cur = conn.execute(
                f"INSERT INTO videos ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                [fields_[c] for c in columns])
            assert cur.lastrowid is not None  # set by the INSERT just made
            video_id = int(cur.lastrowid)
            self._insert_windows(conn, video_id, windows or [])
            ids = frame_ids(video_id, len(times))
            conn.executemany(
                "INSERT INTO frames (id, video_id, idx, time) VALUES (?, ?, ?, ?)",
                [(int(i), video_id, n, float(t)) for n, (i, t) in enumerate(zip(ids, times))])
            if extra is not None:
                extra(conn, video_id)
        return self.video_by_id(video_id), ids  # type: ignore[return-value]

    def extend_video(self, video: VideoRecord, fields_: dict[str, Any], times: np.ndarray,
                     extra: Callable[[sqlite3.Connection, int], None] | None = None,
                     ) -> tuple[VideoRecord, np.ndarray] | None:
        """Append frames to a growing video (a live stream's part) in one transaction: its
        row takes ``fields_`` (the new feature file, duration, frame count...), frames
        ``video.frames`` onwards get ``times[video.frames:]``; rows already committed are
        never rewritten. Returns the record and the new frames' ids, or None if the video
        changed or vanished meanwhile. Bumps the generation."""
        sets = ", ".join(f"{c} = ?" for c in fields_)
        try:
            with self._write_transaction() as conn:
                cur = conn.execute(f"UPDATE videos SET {sets} WHERE id = ? AND features_key = ?",
                                   [*fields_.values(), video.id, video.features_key])
                if not cur.rowcount:  # rolled back: the generation must not move for nothing
                    raise _VideoChanged
                ids = frame_ids(video.id, len(times))[video.frames:]
                conn.executemany(
                    "INSERT INTO frames (id, video_id, idx, time) VALUES (?, ?, ?, ?)",
                    [(int(i), video.id, n, float(t)) for n, (i, t)
                     in enumerate(zip(ids, times[video.frames:]), video.frames)])
                if extra is not None:
                    extra(conn, video.id)
        except _VideoChanged:
            return None
        return self.video_by_id(video.id), ids  # type: ignore[return-value]

    def delete_video(self, video: VideoRecord) -> None:
        """Remove a video and its frames in one transaction. Bumps the generation."""
        with self._write_transaction() as conn:
            self._delete_rows(conn, video.id)

    @staticmethod
    def _delete_rows(conn: sqlite3.Connection, video_id: int) -> None:
        for table in ("frames", "windows"):
            conn.execute(f"DELETE FROM {table} WHERE video_id = ?", [video_id])
        conn.execute("DELETE FROM videos WHERE id = ?", [video_id])

    @staticmethod
    def _insert_windows(conn: sqlite3.Connection, video_id: int,
                        windows: list[tuple[float, float]]) -> None:
        conn.executemany("INSERT INTO windows (video_id, idx, start, end) VALUES (?, ?, ?, ?)",
                         [(video_id, n, float(s), float(e)) for n, (s, e) in enumerate(windows)])

    def set_sparse(self, video: VideoRecord, key: str, fingerprint: str,
                   windows: list[tuple[float, float]]) -> bool:
        """Point ``video`` at a new sparse token file. The frame index is unaffected, so the
        generation is not bumped. False if the video changed or vanished meanwhile."""
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE videos SET sparse_key = ?, sparse_fingerprint = ? "
                "WHERE id = ? AND features_key = ?", [key, fingerprint, video.id, video.features_key])
            if cur.rowcount:
                conn.execute("DELETE FROM windows WHERE video_id = ?", [video.id])
                self._insert_windows(conn, video.id, windows)
        return bool(cur.rowcount)

    def set_source_identity(self, video_id: int, identity: dict[str, int]) -> None:
        """Record the identity of a video's file anew (it was found unchanged by its content
        hash, under a new inode or time). Search is unaffected: the generation stays."""
        with self.transaction() as conn:  # busy or I/O errors surface as ArchiveError
            conn.execute("UPDATE videos SET source_dev = ?, source_ino = ?, source_mtime_ns = ?, "
                         "size_bytes = ? WHERE id = ?",
                         [identity["source_dev"], identity["source_ino"], identity["source_mtime_ns"],
                          identity["size_bytes"], video_id])

    def windows(self, video_id: int) -> list[tuple[float, float]]:
        rows = self.db.execute("SELECT start, end FROM windows WHERE video_id = ? ORDER BY idx",
                               [video_id])
        return [(r[0], r[1]) for r in rows]
