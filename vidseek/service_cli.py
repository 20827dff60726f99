"""The service commands of the CLI: ``watch`` (ingest daemon), ``jobs`` and ``serve``.

Options left out fall back to ``VIDSEEK_*`` environment variables (:class:`vidseek.service.ServiceSettings`).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

import vidseek

import vidseek.service
from .cli import ArchiveOpt, DeviceOpt, _fail, app, console, err

logger = logging.getLogger("vidseek.service")


def _settings(**overrides) -> vidseek.service.ServiceSettings:
    """Environment settings with the options the user gave on top."""
    try:
        base = vidseek.service.ServiceSettings()
        given = {k: v for k, v in overrides.items() if v is not None}
        return base.model_copy(update=given) if given else base
    except ValueError as exc:  # pydantic's ValidationError: a bad VIDSEEK_* value
        err.print(f"error: invalid setting: {exc}", markup=False)
        raise typer.Exit(code=2)


def _service_logging(level: str) -> None:
    logging.basicConfig(stream=sys.stderr, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("vidseek").setLevel(level.upper())


@app.command()
def watch(
    folders: List[Path] = typer.Argument(..., help="Folders to watch (recursively)."),
    archive: Optional[Path] = ArchiveOpt,
    workers: Optional[int] = typer.Option(None, "--workers", "-w", min=1, help="Files indexed at once [default: $VIDSEEK_WORKERS or 1]."),
    settle: Optional[float] = typer.Option(None, "--settle", min=0, help="Seconds a file must stop growing before it is indexed [default: $VIDSEEK_SETTLE_SECONDS or 5]."),
    poll: Optional[float] = typer.Option(None, "--poll", min=0.05, help="Seconds between folder scans [default: $VIDSEEK_POLL_SECONDS or 2]."),
    once: bool = typer.Option(False, "--once", help="Index what is there (waiting for files to settle), then exit."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Encoder of a new archive [default: the archive's]."),
    device: Optional[str] = DeviceOpt,
) -> None:
    """Keep an archive current: index new and changed videos in FOLDERS as they appear.

    A file is indexed once its size and modification time have held still for --settle
    seconds. Jobs live in the archive's catalog (see `vidseek jobs`); failures are retried
    with exponential backoff. SIGTERM or Ctrl-C stops gracefully: videos being indexed are
    abandoned before their commit and redone on the next start, as after a kill -9.
    Exit status 1 if --once left failed jobs.
    """
    settings = _settings(archive=archive, workers=workers, settle_seconds=settle,
                         poll_seconds=poll, model=model, device=device)
    _service_logging(settings.log_level)
    for folder in folders:
        if not folder.is_dir():
            err.print(f"error: {folder}: not a folder", markup=False)
            raise typer.Exit(code=2)
    stop = threading.Event()

    def request_stop(signum, frame) -> None:
        logger.info("received %s: stopping after the current step", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        with vidseek.Archive.open(settings.archive, model=settings.model, device=settings.device) as arch:
            daemon = vidseek.service.IngestDaemon(arch, folders, settings.daemon_config())
            logger.info("watching %s into %s with %d worker(s)", ", ".join(map(str, folders)),
                        settings.archive, settings.workers)
            report = daemon.run(stop, once=once)
    except vidseek.VidseekError as exc:
        raise _fail(exc)
    console.print(f"{report.indexed} indexed, {report.skipped} unchanged, {report.failed} failed, "
                  f"{report.retried} retried, {report.recovered} recovered after a crash, "
                  f"{report.released} handed back unfinished "
                  f"in {report.seconds:.1f}s", markup=False)
    if once and report.failed:
        raise typer.Exit(code=1)


@app.command()
def jobs(
    archive: Optional[Path] = ArchiveOpt,
    failed: bool = typer.Option(False, "--failed", help="Only failed jobs (with their errors)."),
    status: Optional[str] = typer.Option(None, "--status", help="Only jobs in this state: pending, running, done or failed."),
    limit: int = typer.Option(50, "--limit", min=1, help="Newest N jobs."),
    as_json: bool = typer.Option(False, "--json", help="Print the jobs as a JSON list."),
) -> None:
    """List the archive's ingest jobs, newest first, with counts per state."""
    if failed:
        status = "failed"
    if status is not None and status not in vidseek.service.JOB_STATES:
        err.print(f"error: --status must be one of {', '.join(vidseek.service.JOB_STATES)}")
        raise typer.Exit(code=2)
    try:
        with vidseek.Archive.open(archive, create=False) as arch:
            found = arch.jobs.list(status=status, limit=limit)
            counts = arch.jobs.counts()
    except vidseek.VidseekError as exc:
        raise _fail(exc)
    if as_json:
        console.print(json.dumps([j.to_dict() for j in found], indent=2), markup=False)
        return
    console.print("  ".join(f"{k} {v}" for k, v in counts.items()), markup=False)
    if found:
        table = Table("id", "status", "file", "attempts", "seconds", "error")
        for job in found:
            table.add_row(str(job.id), job.status, job.path, f"{job.attempts}/{job.max_attempts}",
                          f"{job.seconds:.1f}", job.error or job.outcome)
        console.print(table)


@app.command()
def serve(
    archive: Optional[Path] = ArchiveOpt,
    host: Optional[str] = typer.Option(None, "--host", help="Address to listen on [default: $VIDSEEK_HOST or 127.0.0.1]."),
    port: Optional[int] = typer.Option(None, "--port", "-p", min=0, max=65535, help="Port [default: $VIDSEEK_PORT or 8000]."),
    watch_folders: Optional[List[Path]] = typer.Option(None, "--watch", help="Also run the ingest daemon on this folder (repeatable)."),
    ingest: bool = typer.Option(False, "--ingest", help="Also run ingest workers for queued jobs (implied by --watch)."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", min=1, help="Ingest workers with --watch/--ingest [default: $VIDSEEK_WORKERS or 1]."),
    int8_text: Optional[bool] = typer.Option(None, "--int8-text/--no-int8-text", help="Encode text queries with int8 weights (CPU: about half the time) [default: $VIDSEEK_INT8_TEXT or off]."),
    int8_llm: Optional[bool] = typer.Option(None, "--int8-llm/--no-int8-llm", help="Answer grounded queries with an int8 LM (CPU: about half the time) [default: $VIDSEEK_INT8_LLM or off]."),
    nprobe: Optional[int] = typer.Option(None, "--nprobe", min=1, help="IVF lists of the frame index a search scans [default: $VIDSEEK_NPROBE or 64]."),
    device: Optional[str] = DeviceOpt,
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

        from .server import create_app

        application = create_app(settings, watch=watch_folders or [], ingest=ingest)
    except (ImportError, vidseek.MissingDependencyError) as exc:
        raise _fail(vidseek.MissingDependencyError(
            f"the server needs its extra: pip install 'vidseek[server]' ({exc})"))
    if not watch_folders and not (settings.archive / "catalog.db").exists():
        raise _fail(vidseek.ArchiveError(f"{settings.archive}: no archive here (ingest first, or --watch)"))
    uvicorn.run(application, host=settings.host, port=settings.port,
                log_level=settings.log_level.lower(), timeout_graceful_shutdown=10)
