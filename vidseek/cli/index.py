"""Archive commands: ``ingest``, ``info`` and ``reindex``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, List, Optional

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

import vidseek

from .options import ArchiveOpt, DeviceOpt, clock, console, err, fail, non_negative, positive

ENGINES = ("local", "ray")


def _check_engine(value: str) -> str:
    if value not in ENGINES:
        raise fail(f"--engine must be {' or '.join(ENGINES)}, not {value!r}")
    return value


def _check_precision(value: str) -> str:
    if value not in vidseek.INGEST_PRECISIONS:
        raise fail(f"--precision must be {', '.join(vidseek.INGEST_PRECISIONS)}, not {value!r}")
    return value


def ingest(
    paths: Annotated[List[str], typer.Argument(
        help="Video files or folders (searched recursively), or one live stream URL (rtsp://, rtmp://, srt://, udp://, tcp://, http(s)://...m3u8).")],
    archive: ArchiveOpt = None,
    fps: Annotated[Optional[float], typer.Option(
        "--fps", callback=positive,
        help="Frames sampled per second, > 0; an existing archive keeps its own (another value is an error) [default: the archive's, 1.0 for a new one].")] = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", "-m",
        help="CLIP/SigLIP hub id or local directory [default: the archive's, openai/clip-vit-base-patch32 for a new one].")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Frames per encoder batch.")] = 16,
    prune_threshold: Annotated[Optional[float], typer.Option(
        "--prune-threshold", callback=non_negative,
        help="Dense-token pruning threshold, mean |pixel change| in 0-255 units, >= 0; an existing archive keeps its own [default: the archive's, 0.1 for a new one].")] = None,
    precision: Annotated[str, typer.Option(
        "--precision", metavar="<auto|fp32|bf16|int8|onnx-int8>", callback=_check_precision,
        help="How the image encoder computes: auto (the archive's own; for a new archive on a CPU bf16 if it has AVX-512 BF16 or AMX, else int8; fp32 on a GPU), fp32, bf16 (autocast; fast only on CPUs with AVX-512 BF16 or AMX), int8 (linear layers, CPU only) or onnx-int8 (ONNX Runtime with int8 weights, CPU only, the onnx extra; exported once per model); recorded in the archive, which keeps its own (another value than auto is an error).")] = "auto",
    deblock: Annotated[bool, typer.Option(
        "--deblock/--no-deblock",
        help="--no-deblock: decode H.264/HEVC files and live streams without the deblocking filter, about 1.3-1.4x faster decoding; not exact (pixels differ slightly). Worth it where decoding is the slower stage: an encoder on a GPU, or --precision onnx-int8 on a CPU (together the fastest CPU ingest measured).")] = True,
    recursive: Annotated[bool, typer.Option("--recursive/--no-recursive", help="Descend into sub-folders.")] = True,
    device: DeviceOpt = None,
    engine: Annotated[str, typer.Option(
        "--engine", metavar="<local|ray>", callback=_check_engine,
        help="local: decode and encode here; ray: on a Ray cluster (needs the ray extra).")] = "local",
    address: Annotated[Optional[str], typer.Option(
        "--address",
        help="Ray cluster to use with --engine ray (e.g. ray://head:10001 or auto) [default: a local Ray instance].")] = None,
    workers: Annotated[Optional[int], typer.Option(
        "--workers", min=1,
        help="Encoder workers with --engine ray [default: one per CPU, or per GPU, of the cluster].")] = None,
    commit_every: Annotated[float, typer.Option(
        "--commit-every", callback=positive,
        help="Stream: seconds of aired content per commit (what a search sees lags by about this much).")] = 10.0,
    name: Annotated[Optional[str], typer.Option(
        "--name", help="Stream: its name in the archive [default: its URL without credentials].")] = None,
    record_dir: Annotated[Optional[Path], typer.Option(
        "--record", help="Stream: remux its packets (no re-encoding) into MPEG-TS files in this folder, so moments can be played back.")] = None,
    reconnect: Annotated[bool, typer.Option(
        "--reconnect/--no-reconnect",
        help="Stream: reconnect with backoff after a drop (giving up after --reconnect-limit).")] = True,
    reconnect_limit: Annotated[float, typer.Option(
        "--reconnect-limit", callback=positive,
        help="Stream: seconds of failed reconnection attempts after which the ingest ends.")] = 60.0,
    timeout: Annotated[float, typer.Option(
        "--timeout", callback=positive,
        help="Stream: seconds to wait for the source to answer, or for data once connected.")] = 15.0,
) -> None:
    """Index video files and folders into an archive.

    Unchanged files already in the archive are skipped. Files that cannot be decoded or
    read (not a video, a still image, permission denied, a dangling link or a link loop,
    a FIFO or a device) and folders that cannot be listed are reported and skipped; the
    others are still indexed. Exit status 1 if any file failed. Inside a folder, a
    symbolic link to another folder is not followed (it is listed as skipped; name it to
    ingest it); links to files are followed.
    With --engine ray, decoding and encoding run on Ray workers and this process commits
    each video as its features arrive.

    A live stream URL is indexed while it airs (docs/streams.md): searchable every
    --commit-every seconds, until the stream ends (exit 0); Ctrl-C or SIGTERM commits what
    aired and exits 0. A URL that cannot be opened is an error (exit 1, archive unchanged).
    """
    stream = any(vidseek.indexer.is_stream_url(p) for p in paths)
    if stream:
        if len(paths) != 1:
            raise fail("give a live stream URL alone (one stream per command)")
        if engine != "local":
            raise fail("--engine ray applies to files; a live stream is indexed here")
        try:
            settings = vidseek.indexer.StreamOptions(
                name=name, commit_every=commit_every, record=record_dir, reconnect=reconnect,
                reconnect_limit=reconnect_limit, open_timeout=timeout, read_timeout=timeout)
        except vidseek.VidseekError as exc:
            raise fail(exc)
    try:
        arch = vidseek.Archive.open(archive, model=model, device=device)
    except vidseek.VidseekError as exc:
        raise fail(exc)
    try:
        # one place for the settings of files and streams alike: another fps, pruning or
        # precision than the archive's is refused here, before any file or stream is opened
        base = arch.config
        arch.config = vidseek.IngestConfig(
            fps=fps if fps is not None else base.fps, batch_size=batch_size,
            prune_threshold=prune_threshold if prune_threshold is not None else base.prune_threshold,
            precision=precision, deblock=deblock)
        ray = vidseek.RayOptions(address=address, workers=workers, device=device)
    except (vidseek.VidseekError, ValueError) as exc:  # ConfigError: not the archive's settings
        arch.close()
        raise fail(exc)
    if stream:
        from .stream import ingest_stream

        ingest_stream(paths[0], arch, settings)
        return
    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
               TimeRemainingColumn()]
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("scanning", total=None)

        def progress(event: vidseek.IngestProgress) -> None:
            label = f"[{event.file_index + 1}/{event.file_count}] {event.path.name}"
            if event.stage == "start":
                bar.update(task, description=label, completed=0, total=None)
            elif event.stage == "frames":
                bar.update(task, description=label, completed=event.seconds_done,
                           total=event.duration or None)

        try:
            report = arch.ingest(paths, recursive=recursive, progress=progress, engine=engine, ray=ray)
        except vidseek.VidseekError as exc:
            raise fail(exc)
        finally:
            arch.close()
    for record in report.indexed:
        console.print(f"indexed  {record.path}  ({record.duration:.1f}s, {record.frames} frames, "
                      f"{100 * record.kept_fraction:.0f}% dense tokens kept)", markup=False)
    for skipped in report.skipped:
        console.print(f"skipped  {skipped.path}  ({skipped.reason})", markup=False)
    for failed in report.failed:
        err.print(f"failed   {failed.error}", markup=False)
    realtime = report.video_seconds / report.seconds if report.seconds else 0.0
    console.print(f"{len(report.indexed)} indexed, {len(report.skipped)} skipped, {len(report.failed)} failed "
                  f"in {report.seconds:.1f}s ({report.video_seconds:.0f}s of video, {realtime:.1f}x realtime)")
    if not report.ok:
        raise typer.Exit(code=1)


def info(
    archive: ArchiveOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary and the videos as JSON.")] = False,
) -> None:
    """Summarise an archive: encoder, size, index type and the videos it holds."""
    try:
        with vidseek.Archive.open(archive, create=False) as arch:
            summary = arch.info()
            videos = arch.videos()
    except vidseek.VidseekError as exc:
        raise fail(exc)
    if as_json:
        data = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(summary).items()}
        data["video_list"] = [vars(v) for v in videos]
        console.print(json.dumps(data, indent=2, default=str), markup=False)
        return
    console.print(f"archive   {summary.path}\nencoder   {summary.encoder} (fingerprint "
                  f"{summary.encoder_fingerprint}, {summary.embed_dim}-d)\n"
                  f"videos    {summary.videos} ({summary.hours:.2f} h, {summary.frames} frames at "
                  f"{summary.fps:g} fps)\nindex     {summary.index_kind}\n"
                  f"disk      {summary.disk_bytes / 1e6:.1f} MB\n"
                  f"grounder  {summary.grounder or 'none'}"
                  + (f" (sparse tokens for {summary.sparse_videos} of {summary.videos} videos)"
                     if summary.grounder else ""), markup=False)
    if videos:
        table = Table("id", "video", "duration", "frames", "kept", "size")
        for v in videos:
            table.add_row(str(v.id), v.name, clock(v.duration), str(v.frames),
                          f"{100 * v.kept_fraction:.0f}%", f"{v.width}x{v.height}")
        console.print(table)


def reindex(
    archive: ArchiveOpt = None,
    grounder: Annotated[Optional[Path], typer.Option(
        "--grounder", help="Grounding checkpoint to adopt [default: the archive's].")] = None,
    device: DeviceOpt = None,
) -> None:
    """Compute the grounding checkpoint's sparse tokens for every indexed video.

    Works from the stored frame features: no video is decoded. Videos whose tokens already
    match the checkpoint are skipped; later ingests store them as they go.
    """
    try:
        with vidseek.Archive.open(archive, device=device, create=False) as arch:
            if grounder is not None:
                arch.set_grounder(grounder)
            with Progress(TextColumn("reindex"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                          console=err, transient=True, disable=not err.is_terminal) as bar:
                task = bar.add_task("reindex", total=None)
                report = arch.reindex(progress=lambda done, total, _v: bar.update(task, completed=done, total=total))
    except vidseek.VidseekError as exc:
        raise fail(exc)
    for name in report.damaged:
        err.print(f"warning: {name}: its features are damaged (re-ingest it, or run vidseek "
                  "doctor --repair); no sparse tokens", markup=False)
    console.print(f"{report.updated} videos reindexed, {report.skipped - len(report.damaged)} "
                  f"already current, {len(report.damaged)} damaged, {report.seconds:.1f}s", markup=False)
