"""The ingest daemon: keeps an archive current with folders and works off its job queue.

One scanner loop (in the thread that calls :meth:`IngestDaemon.run`) polls the watched
folders, queues each video once it has stopped growing, heartbeats the running jobs and
recovers jobs orphaned by dead workers. ``workers`` threads claim jobs and index one file
each through :meth:`Archive.ingest_file`; the archive's write lock serialises their commits.
Decoding and encoding release the GIL, so threads share one encoder in memory.

Stopping (``stop`` event, set by the CLI on SIGTERM/SIGINT) cancels the videos being
indexed before their commit and hands their jobs back untried; after a kill -9 the next
start finds them ``running`` under a dead process and redoes them. Either way a video is
committed whole or not at all.

Live streams (``streams``) are long-running jobs beside the folders: one thread per stream
runs :meth:`Archive.ingest_stream` until the daemon stops (what aired is committed) or the
stream ends. An ingest that fails (the source cannot be opened, reconnecting gave up, an
unexpected error) is restarted after ``backoff_seconds``, doubled per failure up to 5
minutes and back to ``backoff_seconds`` once a restart went live. Each job's state is kept
in the catalog's ``stream_jobs`` table (:mod:`vidseek.store.stream_jobs`) for ``vidseek jobs``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from .archive import Archive, SkippedFile
from .errors import ArchiveError, ConfigError, IngestCancelled, VideoError, VidseekError
from .indexer.stream import StreamProgress, is_stream_url, redact_url
from .indexer.watch import FolderWatcher
from .store.jobs import Job, worker_id

__all__ = ["DaemonConfig", "DaemonEvent", "DaemonReport", "IngestDaemon", "StreamSpec",
           "parse_stream"]

logger = logging.getLogger(__name__)

_MAX_STREAM_BACKOFF = 300.0  # seconds between restarts of a stream that keeps failing


@dataclass(frozen=True)
class StreamSpec:
    """A live stream the daemon keeps indexed."""

    url: str
    name: str | None = None  # its name in the catalog [default: its URL without credentials]

    @property
    def source(self) -> str:
        return self.name or redact_url(self.url)


def parse_stream(text: str) -> StreamSpec:
    """``[NAME=]URL`` (``cam1=rtsp://...``); ConfigError if URL is no stream URL. A URL's own
    ``=`` (``tcp://host:9000?listen=1``) is no name: a name holds no ``:``, ``/`` or ``?``."""
    name, sep, rest = text.partition("=")
    if sep and name.strip() and not any(c in name for c in ":/?"):
        spec = StreamSpec(rest.strip(), name.strip())
    else:
        spec = StreamSpec(text.strip())
    if not is_stream_url(spec.url):
        raise ConfigError(f"{redact_url(spec.url)}: not a stream URL (rtsp://, rtmp://, srt://, "
                          "udp://, tcp://, rtp://, http(s)://...)")
    return spec


@dataclass(frozen=True)
class DaemonConfig:
    """How the daemon watches and retries."""

    workers: int = 1  # files indexed at once
    poll_seconds: float = 2.0  # between folder scans
    settle_seconds: float = 5.0  # a file must keep its size and mtime this long before indexing
    max_attempts: int = 3  # per job, counting the first
    backoff_seconds: float = 10.0  # before retry n: backoff × 2^(n-1)
    heartbeat_seconds: float = 10.0
    stale_after_seconds: float = 600.0  # a job on another host with no heartbeat is orphaned
    recursive: bool = True

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"workers must be at least 1, got {self.workers}")
        if self.poll_seconds <= 0 or self.settle_seconds < 0 or self.backoff_seconds < 0:
            raise ConfigError("poll_seconds must be positive; settle and backoff non-negative")
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be at least 1, got {self.max_attempts}")


@dataclass(frozen=True)
class DaemonEvent:
    """Reported to the daemon's ``progress`` callback."""

    kind: str  # "queued", "started", "frames", "done", "retry", "failed", "released"
    job: Job
    seconds_done: float = 0.0
    duration: float = 0.0
    message: str = ""


@dataclass
class DaemonReport:
    """What one :meth:`IngestDaemon.run` did."""

    queued: int = 0
    indexed: int = 0
    skipped: int = 0  # jobs whose file was unchanged since it was indexed
    failed: int = 0  # jobs given up on (bad files, and jobs whose worker crashed on their last attempt)
    retried: int = 0
    released: int = 0  # jobs handed back by a stop
    recovered: int = 0  # orphaned jobs of dead workers put back in the queue (not those given up)
    stream_restarts: int = 0  # stream ingests restarted after a failure
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


class IngestDaemon:
    """Watch ``folders`` (may be empty: then only queued jobs are worked off) and keep the
    live ``streams`` (URLs, ``NAME=URL`` or :class:`StreamSpec`) indexed."""

    def __init__(self, archive: Archive, folders: Iterable[str | Path] = (),
                 config: DaemonConfig | None = None,
                 progress: Callable[[DaemonEvent], None] | None = None,
                 streams: Iterable[str | StreamSpec] = ()) -> None:
        self.streams = [s if isinstance(s, StreamSpec) else parse_stream(s) for s in streams]
        names = [s.source for s in self.streams]
        for name in names:
            if names.count(name) > 1:
                raise ConfigError(f"stream {name!r} is given twice (name one of them: NAME=URL)")
        self.archive = archive
        self.config = config or DaemonConfig()
        self.watcher = FolderWatcher(folders, self.config.settle_seconds, self.config.recursive)
        self.progress = progress or (lambda event: None)
        self.report = DaemonReport()
        self._worker = worker_id()
        self._running: dict[int, Job] = {}
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._wake = threading.Event()

    # -- the scanner loop ---------------------------------------------------------
    def run(self, stop: threading.Event | None = None, *, once: bool = False) -> DaemonReport:
        """Run until ``stop`` is set, or with ``once`` until every file present has settled
        and every queued job has finished (retries included)."""
        stop = stop or threading.Event()
        if once and self.streams:
            raise ConfigError("live streams run until they end: they cannot be indexed once")
        self._cancel.clear()  # a daemon may be run again after a stop
        started = time.perf_counter()
        jobs = self.archive.jobs
        self._recover()
        self.archive.encoder  # load the model before the workers need it
        threads = [threading.Thread(target=self._work, args=(stop,), name=f"vidseek-ingest-{n}",
                                    daemon=True) for n in range(self.config.workers)]
        threads += [threading.Thread(target=self._keep_stream, args=(spec, stop),
                                     name=f"vidseek-stream-{n}", daemon=True)
                    for n, spec in enumerate(self.streams)]
        for thread in threads:
            thread.start()
        last_beat = 0.0
        try:
            while not stop.is_set():
                self._scan()
                if time.monotonic() - last_beat >= self.config.heartbeat_seconds:
                    with self._lock:
                        jobs.heartbeat(list(self._running))
                    self._recover()
                    last_beat = time.monotonic()
                if once and not self.watcher.settling and not jobs.active():
                    break
                stop.wait(self.config.poll_seconds)
        finally:
            stop.set()
            self._cancel.set()
            self._wake.set()
            for thread in threads:
                thread.join()
            self.archive.collect_garbage()
        self.report.seconds = time.perf_counter() - started
        return self.report

    def _recover(self) -> None:
        # under the lock workers claim with, so a job just claimed is already in _running
        with self._lock:
            found = self.archive.jobs.recover(self.config.stale_after_seconds,
                                              frozenset(self._running))
        for job in found:
            if job.status == "failed":  # that crash was its last attempt
                self._given_up(job)
            else:
                self.report.recovered += 1
                logger.warning("%s (job %d) was interrupted by a crash; it will be redone",
                               job.path, job.id)

    def _scan(self) -> None:
        for state in self.watcher.scan():
            job, created = self.archive.jobs.enqueue(
                str(state.path), state.size, state.mtime_ns, source="watch",
                max_attempts=self.config.max_attempts)
            if created:
                self.report.queued += 1
                logger.info("queued %s (job %d)", state.path, job.id)
                self.progress(DaemonEvent("queued", job))
                self._wake.set()

    # -- workers ------------------------------------------------------------------
    def _work(self, stop: threading.Event) -> None:
        jobs = self.archive.jobs
        while not stop.is_set():
            try:
                with self._lock:
                    job = jobs.claim(self._worker)
                    if job is not None:
                        self._running[job.id] = job
            except ArchiveError as exc:  # e.g. the catalog locked for longer than its timeout
                logger.warning("cannot claim a job (%s); trying again", exc)
                stop.wait(self.config.poll_seconds)
                continue
            if job is None:
                self._wake.wait(min(1.0, self.config.poll_seconds))
                self._wake.clear()
                continue
            try:
                self._run_job(job)
            except Exception as exc:  # a bug or an unforeseen error: the worker must live on
                logger.exception("job %d (%s) failed unexpectedly", job.id, job.path)
                self._record_failure(job, f"unexpected error: {exc!r}", 0.0, retry=True)
            finally:
                with self._lock:
                    self._running.pop(job.id, None)

    def _run_job(self, job: Job) -> None:
        jobs = self.archive.jobs
        logger.info("indexing %s (job %d, attempt %d of %d)", job.path, job.id, job.attempts,
                    job.max_attempts)
        self.progress(DaemonEvent("started", job))
        t0 = time.perf_counter()

        def on_progress(event) -> None:
            if event.stage == "frames":
                self.progress(DaemonEvent("frames", job, event.seconds_done, event.duration))

        try:
            outcome = self.archive.ingest_file(job.path, progress=on_progress, cancel=self._cancel)
        except IngestCancelled:
            jobs.release(job)
            self.report.released += 1
            logger.info("stopped %s (job %d); it will be redone", job.path, job.id)
            self.progress(DaemonEvent("released", job))
            return
        except (VidseekError, OSError, RuntimeError, MemoryError) as exc:
            # A file FFmpeg cannot read stays unreadable: retrying only helps other errors
            # (a busy archive, an I/O error on a share, memory pressure).
            retry = not isinstance(exc, VideoError) or exc.problem.startswith("cannot read the file")
            self._record_failure(job, str(exc), time.perf_counter() - t0, retry)
            return
        seconds = time.perf_counter() - t0
        if isinstance(outcome, SkippedFile):
            record = self.archive.video_at(job.path)
            jobs.finish(job, "skipped", record.id if record else 0, seconds)
            self.report.skipped += 1
        else:
            jobs.finish(job, "indexed", outcome.id, seconds)
            self.report.indexed += 1
            logger.info("indexed %s in %.1fs", job.path, seconds)
        self.progress(DaemonEvent("done", jobs.get(job.id) or job))

    def _record_failure(self, job: Job, error: str, seconds: float, retry: bool) -> None:
        after = self.archive.jobs.fail(job, error, seconds=seconds, retry=retry,
                                       backoff_seconds=self.config.backoff_seconds)
        if after.status == "failed":
            self._given_up(after)
        elif after.status == "pending":
            self.report.retried += 1
            logger.warning("will retry %s: %s", job.path, error)
            self.progress(DaemonEvent("retry", after, message=error))

    # -- live streams ---------------------------------------------------------------
    def _keep_stream(self, spec: StreamSpec, stop: threading.Event) -> None:
        """Ingest one stream until ``stop`` or its end, restarting it after failures."""
        source, url = spec.source, redact_url(spec.url)
        started = time.time()
        restarts = 0
        backoff = self.config.backoff_seconds
        self._stream_state(source, url, "connecting", error="", restarts=0, started_at=started)
        while not stop.is_set():
            state = ["connecting"]

            def on_progress(event: StreamProgress) -> None:
                now = "live" if event.state == "committed" else event.state
                if now in ("connecting", "live", "reconnecting") and now != state[0]:
                    state[0] = now
                    self._stream_state(source, url, now, error="" if now == "live" else event.error)

            try:
                report = self.archive.ingest_stream(spec.url, name=spec.name, stop=stop,
                                                    progress=on_progress)
            except Exception as exc:  # noqa: BLE001 - a stream job must outlive any failure
                if not isinstance(exc, VidseekError):
                    logger.exception("stream %s failed unexpectedly", source)
                error = str(exc) if isinstance(exc, VidseekError) else f"unexpected error: {exc!r}"
                if state[0] == "live":  # it had recovered: start the backoff over
                    backoff = self.config.backoff_seconds
                restarts += 1
                with self._lock:
                    self.report.stream_restarts += 1
                self._stream_state(source, url, "waiting", error=error, restarts=restarts)
                logger.warning("stream %s failed (%s); restarting in %gs", source, error, backoff)
                stop.wait(backoff)
                backoff = min(max(backoff, 0.1) * 2, _MAX_STREAM_BACKOFF)
                continue
            if report.ended == "end":
                logger.info("stream %s ended (%.0fs indexed); not restarted", source, report.seconds)
                self._stream_state(source, url, "ended")
                return
            break
        self._stream_state(source, url, "stopped")

    def _stream_state(self, source: str, url: str, state: str, **fields: Any) -> None:
        try:
            self.archive.stream_jobs.record(source, url, state, worker=self._worker, **fields)
        except VidseekError as exc:  # e.g. the catalog busy: the ingest itself goes on
            logger.warning("cannot record the state of stream %s (%s): %s", source, state, exc)

    def _given_up(self, job: Job) -> None:
        # a file's error names it already; a crash's does not
        message = job.error if job.path in job.error else f"{job.path}: {job.error}"
        self.report.failed += 1
        self.report.errors.append(message)
        logger.error("failed (job %d): %s", job.id, message)
        self.progress(DaemonEvent("failed", job, message=message))
