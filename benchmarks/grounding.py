"""Grounding accuracy on held-out synthetic long videos: every query mode vidseek has.

    python benchmarks/grounding.py [--minutes 30] [--encoder DIR] [--seed 1000] [--checkpoint CKPT]
                                   [--precision fp32,int8,fp32-nodeblock] [--predictions FILE] [--ablations]
                                   [--distractors N] [--dense-probe N]

Trains the world encoder (unless --encoder is given; cached in .cache/bench/), generates a
held-out procedural-world video (its seed is never used in training), ingests it and scores
each mode with R1/R5 at IoU 0.1/0.3/0.5/0.7 and mIoU, overall and per event kind: CLIP
similarity, and with a grounding checkpoint trained for that encoder, the grounded mode with
level 1 only, 2 levels (the verified clips) and 3 levels (then the dense level), the same
refining whole windows instead of the verifier's clips (``grounded-windows-2``: level 1 then
dense; ``grounded-windows-3``: level 1, fine, dense), plus the ablation of level 1 (3 levels
with the paper's span-answering level 1 instead of the presence pass), 3 levels with the
LM's yes/no asked about every coarse window instead of the presence shortlist
(``grounded-3-lm-every-window``), and first the dense level alone on
clips of the video (``--dense-probe N`` questions, vidseek.train.probe_dense_level: span
IoU ≥ 0.5 per event kind, reversed and other events rejected). Grounded modes also report
right-window recall per level and absent-event abstention at the checkpoint's default
presence threshold (see vidseek.evaluation). ``--ablations`` adds 3 levels ranked by R
alone and in time order. ``--distractors N`` ingests N more worlds beside it and also scores
CLIP and 3 levels (with and without the shortlist) archive-wide (no video named; a moment in
another video is right where that world holds the same event, as its own annotations say,
and a query absent from the held-out video but happening in another one counts as present).
Use
``--encoder`` with the encoder the checkpoint was trained with (``make grounder`` puts it in
OUT.work/encoder).

``--predictions FILE`` writes one JSON line per (mode, annotation), absent events included:
``{"mode": "clip" | "grounded-1" | "grounded-2" | "grounded-3" | ..., "query", "video",
"kind", "truth": [start, end] or null, "moments": [[start, end, score], ...]}`` (top 5, best
first), grounded rows with ``presence`` per moment and the moments the threshold
``dropped``, archive-wide rows with ``moment_video_ids`` and the event's ``occurrences``
(``[[video_id, start, end], ...]`` across the archive), so anyone can re-score them. Writes benchmarks/results/grounding.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import vidseek

import vidseek.evaluation
import vidseek.synth
import vidseek.train
ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--encoder", type=Path)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--checkpoint", type=Path, help="grounding checkpoint (for the encoder)")
    parser.add_argument("--queries", type=int, default=0, help="score only the first N present queries")
    parser.add_argument("--precision", default="fp32",
                        help="image-encoder precisions, comma-separated: the first for every mode, "
                             "each other one re-ingests the video and scores CLIP mode (clip-<precision>); "
                             "an other one ending in -nodeblock decodes without the deblocking filter")
    parser.add_argument("--predictions", type=Path, help="write every mode's moments per query here (JSON lines)")
    parser.add_argument("--distractors", type=int, default=0,
                        help="also ingest N other worlds (seeds S+1..S+N, same length) and score CLIP "
                             "and 3 levels archive-wide, without naming the video")
    parser.add_argument("--modes", help="only these modes, comma-separated (e.g. clip-archive,grounded-3-archive)")
    parser.add_argument("--ablations", action="store_true",
                        help="also 3 levels ranked by R alone and in time order")
    parser.add_argument("--dense-probe", type=int, default=600, metavar="N",
                        help="with --checkpoint: ask the dense level N clip questions (0: none)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "grounding.json")
    args = parser.parse_args()
    encoder = args.encoder or CACHE / "world-encoder"
    if not (encoder / "config.json").exists():
        t0 = time.time()
        report = vidseek.train.train_world_encoder(encoder)
        print(f"trained world encoder in {time.time() - t0:.0f}s; held-out caption->frame top-1 "
              f"{100 * report.heldout_accuracy:.1f}% over {report.heldout_captions} captions")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / f"world-heldout-{args.seed}.mp4"
        annotations = vidseek.synth.build_world_video(video, args.minutes * 60, seed=args.seed)
        if args.queries:
            annotations = [a for a in annotations if a.present][: args.queries]
        runs = [("clip", "clip", None)]
        if args.checkpoint:
            G = vidseek.GroundingOptions
            runs += [("grounded-1", "grounded", G(levels=1)), ("grounded-2", "grounded", G(levels=2)),
                     ("grounded-3", "grounded", G(levels=3)),
                     ("grounded-windows-2", "grounded", G(levels=2, refine="windows")),
                     ("grounded-windows-3", "grounded", G(levels=3, refine="windows")),
                     ("grounded-3-level1-answer", "grounded", G(levels=3, level1="answer")),
                     # the LM's yes/no over every coarse window, not only the shortlist
                     ("grounded-3-lm-every-window", "grounded", G(levels=3, presence_shortlist=0))]
            if args.ablations:
                runs += [("grounded-3-entropy-only", "grounded", G(levels=3, ranking="entropy")),
                         ("grounded-3-time-order", "grounded", G(levels=3, ranking="time"))]
        rows: list[dict] = []
        first, *others = args.precision.split(",")
        for precision in others:  # the same video and queries, CLIP mode, another precision
            name, deblock = precision.removesuffix("-nodeblock"), not precision.endswith("-nodeblock")
            config = vidseek.IngestConfig(precision=name, deblock=deblock)
            with vidseek.Archive.open(Path(tmp) / f"archive-{precision}", model=encoder, config=config) as archive:
                archive.ingest([video])
                report = vidseek.evaluation.evaluate_archive(archive, annotations, mode="clip")
                results[f"clip-{precision}"] = report.to_dict()
                print(f"\n### clip, image encoder in {name}{'' if deblock else ', no deblocking'} "
                      f"({report.queries} queries)\n")
                print(report.table())
        config = vidseek.IngestConfig(precision=first)
        with vidseek.Archive.open(Path(tmp) / "archive", model=encoder, config=config) as archive:
            others, occurrences = [], []
            for n in range(1, args.distractors + 1):  # the same kind of video, other events
                other = Path(tmp) / f"world-distractor-{args.seed + n}.mp4"
                # the same objects and kinds of event: many of the queries happen there too, and
                # a moment there is then right (evaluate_archive's occurrences)
                occurrences += vidseek.synth.build_world_video(other, args.minutes * 60, seed=args.seed + n)
                others.append(other)
            archive.ingest([video, *others])
            if args.checkpoint:
                archive.set_grounder(args.checkpoint)
                archive.reindex()
                if args.dense_probe:
                    probe = vidseek.train.probe_dense_level(archive, archive.grounder, annotations,
                                                            examples=args.dense_probe, seed=args.seed)
                    results["dense-probe"] = probe.to_dict()
                    print(f"\n### dense level on clips of the held-out video ({probe.examples} questions)\n")
                    print(probe.table(), flush=True)
            if others:
                runs += [(f"{key}-archive", mode, options) for key, mode, options in runs
                         if key in ("clip", "grounded-3", "grounded-3-lm-every-window")]
            if args.modes:
                runs = [run for run in runs if run[0] in args.modes.split(",")]
            for key, mode, options in runs:
                report = vidseek.evaluation.evaluate_archive(archive, annotations, mode=mode, grounding=options,
                                                             predictions=rows, prediction_mode=key,
                                                             archive_wide=key.endswith("-archive"),
                                                             occurrences=occurrences)
                results[key] = report.to_dict()
                extra = ""
                if report.dense_fraction is not None:
                    extra = (f"; dense tokens read {100 * report.dense_fraction:.1f}%, no answer "
                             f"{100 * report.no_answer:.1f}%")
                print(f"\n### {report.mode} ({report.queries} queries, {report.absent_queries} "
                      f"absent-event queries; {report.seconds:.0f}s{extra})\n")
                print(report.table(), flush=True)
    if args.predictions:
        args.predictions.parent.mkdir(parents=True, exist_ok=True)
        args.predictions.write_text("".join(json.dumps(r) + "\n" for r in rows))
        print(f"\nwrote {len(rows)} prediction rows to {args.predictions}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"minutes": args.minutes, "seed": args.seed,
                                    "distractors": args.distractors,
                                    "encoder": str(encoder), "checkpoint": str(args.checkpoint or ""),
                                    "modes": results}, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
