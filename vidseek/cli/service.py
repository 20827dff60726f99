"""Service commands: ``watch`` (the ingest daemon), ``jobs`` and ``serve``.

Options left out fall back to ``VIDSEEK_*`` environment variables
(:class:`vidseek.service.ServiceSettings`).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path
from typing import Annotated, List, Literal, Optional

import typer
from rich.table import Table

import vidseek
import vidseek.service

from .options import (ArchiveOpt, DeviceOpt, at_least, console, err, fail, non_negative, stderr_handler,
                      usage_error)

logger = logging.getLogger("vidseek.service")

WorkersOpt = Annotated[Optional[int], typer.Option(
    "--workers", "-w", min=1, help="Files indexed at once [default: $VIDSEEK_WORKERS or 1].")]


def _settings(**overrides) -> vidseek.service.ServiceSettings:
    """Environment settings with the options the user gave on top."""
    try:
        base = vidseek.service.ServiceSettings()
        given = {k: v for k, v in overrides.items() if v is not None}
        return base.model_copy(update=given) if given else base
    except ValueError as exc:  # pydantic's ValidationError: a bad VIDSEEK_* value
        usage_error(f"invalid setting: {exc}")


def _service_logging(level: str) -> None:
    stderr_handler("%(asctime)s %(levelname)s %(name)s: %(message)s")  # long-running: times
    logging.getLogger("vidseek").setLevel(level.upper())


def watch(
    folders: Annotated[Optional[List[Path]], typer.Argument(
        help="Folders to watch (recursively).", show_default=False)] = None,
    streams: Annotated[Optional[List[str]], typer.Option(
        "--stream", help="A live stream to keep indexed, [NAME=]URL (repeatable) [default: $VIDSEEK_STREAMS].",
        show_default=False)] = None,
    archive: ArchiveOpt = None,
    workers: WorkersOpt = None,
    settle: Annotated[Optional[float], typer.Option(
        "--settle", callback=non_negative,
        help="Seconds a file must stop growing before it is indexed, >= 0 [default: $VIDSEEK_SETTLE_SECONDS or 5].")] = None,
    poll: Annotated[Optional[float], typer.Option(
        "--poll", callback=at_least(0.05),
        help="Seconds between folder scans, >= 0.05 [default: $VIDSEEK_POLL_SECONDS or 2].")] = None,
    once: Annotated[bool, typer.Option(
        "--once", help="Index what is there (waiting for files to settle), then exit.")] = False,
    model: Annotated[Optional[str], typer.Option(
        "--model", "-m", help="Encoder of a new archive [default: the archive's].")] = None,
    device: DeviceOpt = None,
) -> None:
    """Keep an archive current: index new and changed videos in FOLDERS as they appear,
    and keep live streams (--stream) indexed while they air.

    A file is indexed once its size and modification time have held still for --settle
    seconds. Jobs live in the archive's catalog (see `vidseek jobs`); failures are retried
    with exponential backoff. SIGTERM or Ctrl-C stops gracefully: videos being indexed are
    abandoned before their commit and redone on the next start, as after a kill -9.
    A job whose worker crashed (kill -9, power cut) is redone; once crashes have used up its
    attempts it fails as "worker crashed N times" (`vidseek jobs --retry` queues it again).
    Exit status 1 if --once gave up on any job (a bad file, or crashes).

    A stream (docs/streams.md) runs until the daemon stops (what aired is committed) or
    the stream ends; an ingest that fails is restarted after $VIDSEEK_BACKOFF_SECONDS
    (default 10), doubled per failure up to 5 minutes. `vidseek jobs` lists the streams.
    """
    settings = _settings(archive=archive, workers=workers, settle_seconds=settle,
                         poll_seconds=poll, model=model, device=device, streams=streams or None)
    _service_logging(settings.log_level)
    folders = folders or []
    for folder in folders:
        if not folder.is_dir():
            usage_error(f"{folder}: not a folder")
    try:
        specs = [vidseek.service.parse_stream(text) for text in settings.streams]
    except vidseek.ConfigError as exc:
        usage_error(str(exc))
    if not folders and not specs:
        usage_error("give folders to watch, or --stream URL")
    if once and specs:
        usage_error("--once indexes folders only: live streams run until they end")
    stop = threading.Event()

    def request_stop(signum, frame) -> None:
        logger.info("received %s: stopping after the current step", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        with vidseek.Archive.open(settings.archive, model=settings.model, device=settings.device) as arch:
            daemon = vidseek.service.IngestDaemon(arch, folders, settings.daemon_config(),
                                                  streams=specs)
            logger.info("watching %s into %s with %d worker(s)",
                        ", ".join([*map(str, folders), *(f"stream {s.source}" for s in specs)]),
                        settings.archive, settings.workers)
            report = daemon.run(stop, once=once)
    except vidseek.VidseekError as exc:
        raise fail(exc)
    for error in report.errors:
        err.print(f"failed   {error}", markup=False)
    console.print(f"{report.indexed} indexed, {report.skipped} unchanged, {report.failed} failed, "
                  f"{report.retried} retried, {report.recovered} recovered after a crash, "
                  f"{report.released} handed back unfinished"
                  f"{f', {report.stream_restarts} stream restarts' if specs else ''} "
                  f"in {report.seconds:.1f}s", markup=False)
    if once and report.failed:
        raise typer.Exit(code=1)


def jobs(
    ids: Annotated[Optional[List[int]], typer.Argument(
        help="With --retry: the failed jobs to queue again [default: every failed job].",
        show_default=False)] = None,
    archive: ArchiveOpt = None,
    failed: Annotated[bool, typer.Option("--failed", help="Only failed jobs (with their errors).")] = False,
    status: Annotated[Optional[Literal[vidseek.service.JOB_STATES]], typer.Option(  # type: ignore[valid-type]
        "--status", help="Only jobs in this state.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Newest N jobs.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print the jobs as a JSON list.")] = False,
    retry: Annotated[bool, typer.Option(
        "--retry", help="Queue failed jobs (IDS, or all) again with all their attempts, then list.")] = False,
    streams: Annotated[bool, typer.Option(
        "--streams", help="Only the live streams that `vidseek watch --stream` keeps indexed.")] = False,
) -> None:
    """List the archive's ingest jobs, newest first, with counts per state, then its live
    stream jobs (state, seconds indexed, lag behind live, restarts, last error).

    A job's error tells a bad file (its reason) from one whose worker crashed ("worker
    crashed N times while indexing it"). --retry queues failed jobs again; a running
    daemon (`vidseek watch`, `vidseek serve --watch`) or the next one picks them up.
    With --json, --streams prints the stream jobs as the JSON list.
    """
    if ids and not retry:
        usage_error("job ids are given with --retry only")
    if streams and (retry or failed or status):
        usage_error("--streams lists stream jobs: --retry, --failed and --status are for file jobs")
    if failed:
        if status not in (None, "failed"):
            usage_error(f"--failed and --status {status} contradict each other")
        status = "failed"
    try:
        with vidseek.Archive.open(archive, create=False) as arch:
            if retry:
                requeued = arch.jobs.retry(ids or None)
                for job in requeued:
                    err.print(f"queued again: job {job.id} ({job.path})", markup=False)
                if not requeued:
                    err.print("no failed jobs to retry", markup=False)
            found = arch.jobs.list(status=status, limit=limit) if not streams else []
            counts = arch.jobs.counts()
            live = arch.stream_jobs.list() if not (failed or status) else []
    except vidseek.VidseekError as exc:
        raise fail(exc)
    if as_json:
        rows = live if streams else found
        console.print(json.dumps([j.to_dict() for j in rows], indent=2), markup=False)
        return
    if not streams:
        console.print("  ".join(f"{k} {v}" for k, v in counts.items()), markup=False)
    if found:
        table = Table("id", "status", "file", "attempts", "seconds", "error")
        for job in found:
            table.add_row(str(job.id), job.status, job.path, f"{job.attempts}/{job.max_attempts}",
                          f"{job.seconds:.1f}", job.error or job.outcome)
        console.print(table)
    if live:
        table = Table("stream", "state", "session", "indexed", "behind live", "restarts", "error")
        for stream in live:
            table.add_row(stream.source, stream.state, str(stream.session or "-"),
                          f"{stream.indexed:.0f}s", "-" if stream.lag is None else f"{stream.lag:.1f}s",
                          str(stream.restarts), stream.error)
        console.print(table)
    elif streams:
        console.print("no live streams (vidseek watch --stream URL keeps one indexed)", markup=False)


def serve(
    archive: ArchiveOpt = None,
    host: Annotated[Optional[str], typer.Option(
        "--host", help="Address to listen on [default: $VIDSEEK_HOST or 127.0.0.1].")] = None,
    port: Annotated[Optional[int], typer.Option(
        "--port", "-p", min=0, max=65535, help="Port [default: $VIDSEEK_PORT or 8000].")] = None,
    watch_folders: Annotated[Optional[List[Path]], typer.Option(
        "--watch", help="Also run the ingest daemon on this folder (repeatable).")] = None,
    ingest: Annotated[bool, typer.Option(
        "--ingest", help="Also run ingest workers for queued jobs (implied by --watch).")] = False,
    workers: Annotated[Optional[int], typer.Option(
        "--workers", "-w", min=1,
        help="Ingest workers with --watch/--ingest [default: $VIDSEEK_WORKERS or 1].")] = None,
    int8_text: Annotated[Optional[bool], typer.Option(
        "--int8-text/--no-int8-text",
        help="Encode text queries with int8 weights (CPU: about half the time) [default: $VIDSEEK_INT8_TEXT or off].")] = None,
    int8_llm: Annotated[Optional[bool], typer.Option(
        "--int8-llm/--no-int8-llm",
        help="Answer grounded queries with an int8 LM (CPU: about half the time) [default: $VIDSEEK_INT8_LLM or off].")] = None,
    nprobe: Annotated[Optional[int], typer.Option(
        "--nprobe", min=1, help="IVF lists of the frame index a search scans [default: $VIDSEEK_NPROBE or 64].")] = None,
    device: DeviceOpt = None,
) -> None:
    """Serve the archive over HTTP: JSON API, web page at /, OpenAPI at /docs, /metrics.

    Models load once at start-up. Videos the daemon indexes (here with --watch, or in a
    separate `vidseek watch`) become searchable without a restart. Ingest requests
    (POST /api/ingest) need VIDSEEK_ADMIN_TOKEN set; they may name files under the
    watched folders or VIDSEEK_INGEST_ROOTS.
    """
    settings = _settings(archive=archive, host=host, port=port, workers=workers, device=device,
                         int8_text=int8_text, int8_llm=int8_llm, nprobe=nprobe)
    _service_logging(settings.log_level)
    try:
        import uvicorn

        from vidseek.server import create_app

        application = create_app(settings, watch=watch_folders or [], ingest=ingest)
    except (ImportError, vidseek.MissingDependencyError) as exc:
        raise fail(vidseek.MissingDependencyError(
            f"the server needs its extra: pip install 'vidseek[server]' ({exc})"))
    except vidseek.VidseekError as exc:
        raise fail(exc)
    if not watch_folders and not (settings.archive / "catalog.db").exists():
        raise fail(vidseek.ArchiveError(f"{settings.archive}: no archive here (ingest first, or --watch)"))
    uvicorn.run(application, host=settings.host, port=settings.port,
                log_level=settings.log_level.lower(), timeout_graceful_shutdown=10)
