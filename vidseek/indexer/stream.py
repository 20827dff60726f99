"""Live streams: index a camera or broadcast feed while it airs.

A reader thread opens the URL with PyAV (RTSP, RTMP, SRT, UDP, TCP, HLS over HTTP...),
demuxes its video packets (remuxed unchanged into a recording file when asked), decodes
them and samples frames at the archive's rate by presentation time, the way
:class:`~vidseek.indexer.decode.FrameSampler` samples files. The calling thread encodes the
sampled frames with the archive's encoder as they come, prunes their dense tokens with
:class:`~vidseek.indexer.dense.DensePruner`, and commits every ``commit_every`` seconds of
aired content, so a search sees the stream a few seconds behind live.

Timeline: a *session* (one run, continued after a crash) counts seconds from its first
frame. Within one connection, time follows the stream's pts; a new connection (after a
drop, or a restart after a crash) starts at the wall-clock time elapsed since the session
started, so the time without frames is a gap, never frames. Each connection, and every
``part_seconds`` of it, is a *part*: a catalog video that grows commit by commit
(:meth:`~vidseek.store.archive_store.ArchiveStore.extend_video`; committed rows and vectors
are never rewritten) and is recorded in the catalog's ``stream_parts`` table
(:mod:`vidseek.store.streams`) with the wall clock at which it aired.

Ingesting a source again after its session ended (the stream ended, or the ingest was
stopped) starts a new session: a new set of catalog videos with its own time 0, because the
time between two sessions is unknown and usually long, and one catalog video must have one
timeline. A session left unfinished by a crash (its part still ``live``, last committed
less than ``resume_within`` seconds ago) is continued instead, without duplicating a frame.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import math
import os
import queue
import re
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import numpy as np

from ..errors import ConfigError, StreamError
from ..models.encoder import FrameEncoder
from ..store.archive_store import ArchiveStore
from ..store.catalog import VideoRecord
from ..store.files import VideoFeatures
from ..store.streams import (STREAM_PATH_PREFIX, StreamPart, end_session, insert_part, last_part,
                             touch_part)
from .dense import DensePruner
from .ingest import archive_config
from .pipeline import IngestConfig
from .stream_reader import NewPart, ReaderStatus, SampledFrame, StreamEnded, StreamReader

__all__ = ["STREAM_SCHEMES", "StreamOptions", "StreamProgress", "StreamReport", "StreamIngester",
           "is_stream_url", "redact_url"]

logger = logging.getLogger(__name__)

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "srt", "udp", "tcp", "rtp", "http", "https")

# query parameters whose values are secrets (SRT passphrases, signed-URL tokens...)
_SECRET_PARAMS = re.compile(r"pass|pwd|token|key|secret|auth|sig", re.IGNORECASE)


def is_stream_url(text: str) -> bool:
    """True for a URL of a live source FFmpeg opens (``rtsp://``, ``https://...m3u8``...)."""
    return "://" in text and urlsplit(text).scheme.lower() in STREAM_SCHEMES


def redact_url(url: str) -> str:
    """``url`` without credentials: user and password become ``***``, and so do the values
    of query parameters named like secrets (``passphrase``, ``token``, ``key``...)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if _SECRET_PARAMS.search(k) else v) for k, v in pairs],
                          safe="*", quote_via=quote)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


@dataclass(frozen=True)
class StreamOptions:
    """How a live source is ingested (see :meth:`vidseek.Archive.ingest_stream`)."""

    name: str | None = None  # the stream's name in the catalog [default: its URL, redacted]
    commit_every: float = 10.0  # seconds of aired content per commit
    record: Path | None = None  # folder for recordings (packets remuxed, not re-encoded)
    reconnect: bool = True  # reconnect after a drop (and after EOF of a live protocol)
    reconnect_limit: float = 60.0  # seconds of failed reconnection attempts before giving up
    open_timeout: float = 15.0  # seconds to wait for the source to answer
    read_timeout: float = 15.0  # seconds without data after which the connection is dropped
    part_seconds: float = 600.0  # a part (catalog video, recording file) is at most this long
    resume_within: float = 900.0  # a crashed session younger than this is continued

    def __post_init__(self) -> None:
        for name in ("commit_every", "reconnect_limit", "open_timeout", "read_timeout",
                     "part_seconds", "resume_within"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{name} must be a positive number of seconds, got {value}")
        if self.part_seconds < self.commit_every:
            raise ConfigError(f"part_seconds ({self.part_seconds:g}) must be at least "
                              f"commit_every ({self.commit_every:g})")
        if self.name is not None and not self.name.strip():
            raise ConfigError("a stream's name must not be empty")


@dataclass(frozen=True)
class StreamProgress:
    """Reported to an ingest_stream ``progress`` callback (from the calling thread)."""

    source: str  # the stream's name in the catalog
    url: str  # without credentials
    state: str  # "connecting", "live", "committed", "reconnecting", "ended", "stopped", "failed"
    session: int
    aired: float = 0.0  # session seconds read from the source
    indexed: float = 0.0  # session seconds committed (searchable)
    lag: float = 0.0  # now minus the airing time of the newest searchable frame, seconds
    frames: int = 0  # sampled frames committed this run
    frames_per_s: float = 0.0  # source frames decoded per wall-clock second (since the last report)
    reconnects: int = 0
    error: str = ""  # the last connection error
    video_id: int = 0  # the part being written
    started_at: float = 0.0  # wall clock at session time 0


@dataclass
class StreamReport:
    """What one ingest_stream run did."""

    source: str
    url: str
    session: int
    resumed: bool  # an unfinished session (a crash) was continued
    ended: str = ""  # "end" (the stream ended) or "stop" (stopped on request)
    parts: list[VideoRecord] = field(default_factory=list)  # the session's part videos, as last committed
    frames: int = 0  # sampled frames committed this run
    seconds: float = 0.0  # session time indexed up to
    gaps: list[tuple[float, float]] = field(default_factory=list)  # session times without frames
    reconnects: int = 0
    started_at: float = 0.0


@dataclass
class _Part:
    """The part being written: what it has committed and what waits."""

    info: NewPart
    number: int
    pruner: DensePruner
    video: VideoRecord | None = None
    times: list[float] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)
    pending: list[SampledFrame] = field(default_factory=list)  # sampled, not encoded yet
    committed_to: float = -math.inf  # session time of the last frame committed

    @property
    def encoded_to(self) -> float:
        return self.times[-1] if self.times else -math.inf


class StreamIngester:
    """Indexes one live source into a store with the archive's encoder and settings."""

    def __init__(self, store: ArchiveStore, config: IngestConfig,
                 encoder: Callable[[], FrameEncoder]) -> None:
        self.store = store
        self.config = config
        self._encoder = encoder

    def run(self, url: str, options: StreamOptions = StreamOptions(), *,
            progress: Callable[[StreamProgress], None] | None = None,
            stop: threading.Event | None = None) -> StreamReport:
        """Ingest ``url`` until it ends or ``stop`` is set; see :meth:`vidseek.Archive.ingest_stream`."""
        redacted = redact_url(url)
        if not is_stream_url(url):
            raise StreamError(redacted, "not a stream URL (expected one of "
                              + ", ".join(f"{s}://" for s in STREAM_SCHEMES) + ")")
        source = options.name.strip() if options.name else redacted
        stop = stop or threading.Event()
        with _SourceLock(self.store.root, source, redacted):
            return _Run(self, url, redacted, source, options, progress, stop).go()


class _SourceLock:
    """One process at a time ingests a source (an advisory lock, released by a crash too).

    The lock file exists only while it is held: it is removed on every exit, and the
    ``streams/`` folder with it when no other stream holds a lock, so a failed ingest (a
    bad URL) leaves the archive as it was. A process that opened the file just before its
    holder removed it would lock an unlinked file; it sees the path no longer names what
    it locked, and starts again."""

    def __init__(self, root: Path, source: str, redacted: str) -> None:
        digest = hashlib.sha256(source.encode()).hexdigest()[:16]
        self.path = root / "streams" / f"{digest}.lock"
        self.source, self.redacted = source, redacted
        self.fd = -1

    def __enter__(self) -> "_SourceLock":
        while True:
            self.path.parent.mkdir(exist_ok=True)
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:  # another holder removed the empty folder meanwhile
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise StreamError(self.redacted, f"stream {self.source!r} is already being "
                                  "ingested into this archive by another process") from None
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                current = None
            mine = os.fstat(fd)
            if current is not None and (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino):
                self.fd = fd
                return self
            os.close(fd)  # locked a file its holder had just removed

    def __exit__(self, *exc: object) -> None:
        try:  # removed while still held, so nobody locks the file being removed
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)  # releases the lock
            self.fd = -1
        try:
            self.path.parent.rmdir()
        except OSError:  # another stream's lock is in it
            pass


class _Run:
    """One ingest_stream call: consumes the reader's messages, encodes, commits."""

    def __init__(self, owner: StreamIngester, url: str, redacted: str, source: str,
                 options: StreamOptions, progress: Callable[[StreamProgress], None] | None,
                 stop: threading.Event) -> None:
        self.store, self.config, self.options = owner.store, owner.config, options
        self.encoder_factory = owner._encoder
        self.url, self.redacted, self.source = url, redacted, source
        self.notify = progress or (lambda event: None)
        self.stop = stop
        catalog = self.store.catalog
        last = last_part(catalog, source)
        self.resumed = bool(last is not None and last.state == "live"
                            and time.time() - last.updated_at < options.resume_within)
        if last is not None and last.state == "live" and not self.resumed:
            end_session(catalog, source, last.session)  # crashed long ago: closed as it is
        floor = 0.0
        if self.resumed:
            assert last is not None
            self.session, self.started_at = last.session, last.started_at
            self.part_number = last.part + 1
            previous = catalog.video_by_id(last.video_id)
            floor = previous.duration if previous is not None else 0.0
            logger.info("%s: continuing session %d (interrupted %.0fs ago)", redacted,
                        self.session, time.time() - last.updated_at)
        else:
            self.session = (last.session + 1) if last is not None else 1
            self.started_at = 0.0
            self.part_number = 0
        self.report = StreamReport(source, redacted, self.session, self.resumed,
                                   seconds=floor, started_at=self.started_at)
        self.part: _Part | None = None
        self.encoder: FrameEncoder | None = None
        self.reconnects = 0
        self.error = ""
        self._rate_mark = (time.monotonic(), 0)
        self._last_commit: float | None = None  # wall clock of this run's last commit
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", source.split("://")[-1]).strip("_")[:60] or "stream"
        self.reader = StreamReader(url, redacted, self.config, options, queue.Queue(),
                                   self.started_at if self.resumed else None, floor,
                                   f"{safe}-s{self.session}")

    # -- the loop ------------------------------------------------------------------
    def go(self) -> StreamReport:
        self._event("connecting")
        # the encoder is loaded after the URL answered: a bad URL adopts no encoder
        self.reader.start()
        messages = self.reader.out
        try:
            while True:
                if self.stop.is_set():
                    self._drain()
                    self._finish("stop")
                    return self.report
                try:
                    message = messages.get(timeout=0.25)
                except queue.Empty:
                    self._encode_pending()
                    continue
                if isinstance(message, BaseException):
                    if self.part is not None:
                        self._commit()
                        end_session(self.store.catalog, self.source, self.session)
                    if isinstance(message, StreamError):
                        self._event("failed", error=message.problem)
                    raise message
                if isinstance(message, NewPart):
                    self._start_part(message)
                elif isinstance(message, SampledFrame):
                    assert self.part is not None
                    self.part.pending.append(message)
                    if messages.empty():
                        self._encode_pending()
                    if message.time - self.part.committed_to >= self.options.commit_every:
                        self._commit()
                elif isinstance(message, ReaderStatus):
                    self.error = message.error
                    if message.state == "dropped":
                        self.reconnects += 1
                        self._commit()
                    self._event("reconnecting", error=message.error)
                elif isinstance(message, StreamEnded):
                    self._finish("end")
                    return self.report
        finally:
            self.reader.stop()
            self.reader.join(timeout=self.options.read_timeout + 1.0)

    def _drain(self) -> None:
        """Take the frames already read (a stop commits everything that aired so far)."""
        self.reader.stop()
        while True:
            try:
                message = self.reader.out.get_nowait()
            except queue.Empty:
                return
            if isinstance(message, NewPart):
                self._start_part(message)
            elif isinstance(message, SampledFrame) and self.part is not None:
                self.part.pending.append(message)

    def _finish(self, how: str) -> None:
        self._commit()
        end_session(self.store.catalog, self.source, self.session)
        self.report.ended = how
        self.report.reconnects = self.reconnects
        self._event("ended" if how == "end" else "stopped")
        logger.info("%s: session %d %s at %.1fs (%d frames this run)", self.redacted, self.session,
                    "ended" if how == "end" else "stopped", self.report.seconds, self.report.frames)

    def _start_part(self, info: NewPart) -> None:
        if self.part is not None:
            self._commit()
        if not self.started_at:
            self.started_at = info.aired_at - info.offset
            self.report.started_at = self.started_at
        if self.encoder is None:
            self.encoder = self.encoder_factory()
            # the archive's precision (auto: resolved now the encoder has adopted the archive)
            manifest = self.store.manifest
            self.config = archive_config(self.config, manifest["ingest"] if manifest is not None else None,
                                         self.encoder.device)
            self.encoder.set_image_precision(self.config.precision)
            self.reader.size = self.encoder.info.image_size
            self.reader.sized.set()
        if info.gap_before > 0:
            self.report.gaps.append((info.offset - info.gap_before, info.offset))
        self.part = _Part(info, self.part_number,
                          DensePruner(self.encoder.info.grid, threshold=self.config.prune_threshold))
        self.part_number += 1
        self._event("live")

    # -- encode and commit -----------------------------------------------------------
    def _encode_pending(self) -> None:
        part = self.part
        if part is None or not part.pending or self.encoder is None:
            return
        frames = [f for f in part.pending if f.pixels.shape[0] == self.encoder.info.image_size]
        part.pending = []
        for start in range(0, len(frames), self.config.batch_size):
            batch = frames[start:start + self.config.batch_size]
            pixels = np.stack([f.pixels for f in batch])
            out = self.encoder.encode_frames(pixels)
            part.pruner.add(pixels, out.patches)
            part.times.extend(f.time for f in batch)
            part.embeddings.append(np.asarray(out.embeddings, np.float32))

    def _commit(self) -> None:
        """Make what the current part has encoded searchable (a no-op when nothing is new)."""
        part = self.part
        if part is None:
            return
        self._encode_pending()
        if not part.times or part.encoded_to <= part.committed_to:
            return
        t0 = time.perf_counter()
        dense = part.pruner.result()
        features = VideoFeatures(times=np.asarray(part.times, np.float64),
                                 embeddings=np.concatenate(part.embeddings), dense=dense)
        end = part.times[-1] + 1.0 / self.config.fps
        now = time.time()
        new = len(part.times) - (part.video.frames if part.video is not None else 0)
        # the rate a server exports: frames this commit added over the time since the last
        # one; 0 (unknown) for a run's first commit, a frame or a backlog after a slow start
        since = max(now - self._last_commit, 1e-3) if self._last_commit is not None else 0.0
        fields: dict[str, Any] = dict(duration=end, frames=len(part.times),
                                      kept_fraction=dense.kept_fraction, indexed_at=now)
        info = part.info
        if part.video is None:
            record = StreamPart(0, self.source, self.redacted, self.session, part.number,
                                self.started_at, info.offset, info.aired_at, info.gap_before,
                                "live", info.recording, now, new, since)
            fields.update(
                path=f"{STREAM_PATH_PREFIX}{self.source}#s{self.session}.p{part.number}",
                name=self.source, content_hash="", size_bytes=0, fps=self.config.fps,
                native_fps=info.native_fps, width=info.width, height=info.height, codec=info.codec,
                status="stream", ingest_seconds=0.0)
            video = self.store.commit_video(
                fields, features,
                extra=lambda conn, video_id: insert_part(conn, replace(record, video_id=video_id)))
        else:
            extended = self.store.extend_video(
                part.video, fields, features,
                extra=lambda conn, video_id: touch_part(conn, video_id, now, new, since))
            if extended is None:
                raise StreamError(self.redacted, f"its catalog video {part.video.id} was removed "
                                  "or replaced by another process while the stream was ingested")
            video = extended
        self._last_commit = now
        part.video = video
        part.committed_to = part.times[-1]
        self.report.frames += new
        self.report.seconds = end
        self.report.parts = [p for p in self.report.parts if p.id != video.id] + [video]
        logger.debug("%s: committed %d frames up to %.1fs in %.2fs", self.redacted, new, end,
                     time.perf_counter() - t0)
        self._event("committed")

    def _event(self, state: str, error: str = "") -> None:
        part = self.part
        indexed = self.report.seconds
        lag = 0.0
        if part is not None and part.video is not None:
            lag = max(0.0, time.time() - (part.info.aired_at + (part.committed_to - part.info.offset)))
        mark, decoded = self._rate_mark
        now = time.monotonic()
        rate = (self.reader.frames_decoded - decoded) / (now - mark) if now > mark else 0.0
        self._rate_mark = (now, self.reader.frames_decoded)
        self.notify(StreamProgress(
            source=self.source, url=self.redacted, state=state, session=self.session,
            aired=self.reader.aired, indexed=indexed, lag=lag, frames=self.report.frames,
            frames_per_s=rate, reconnects=self.reconnects, error=error or self.error,
            video_id=part.video.id if part is not None and part.video is not None else 0,
            started_at=self.started_at))
