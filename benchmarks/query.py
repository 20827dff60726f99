"""Grounded-query latency, on one long video and archive-wide: p50/p95 per level, dense tokens read.

    python benchmarks/query.py --checkpoint CKPT [--encoder DIR] [--minutes 60] [--queries 40]
                               [--top-k 3] [--archive-videos 5] [--no-force] [--int8]

Builds (and caches in .cache/bench/) a procedural-world video of ``--minutes`` minutes,
ingests it with the encoder the checkpoint was trained for, stores the checkpoint's sparse
tokens (reindex), then times ``--queries`` grounded queries (present events of that video)
on that video, end to end (text encoding included), as ``Archive.ground(q, video=...)``.

Users mostly search without naming a video, so it then builds ``--archive-videos`` − 1 more
videos of the same length (seeds ``--seed`` + 1, + 2, ...; cached the same way), ingests all
of them into a second archive and times the same queries as whole archive-wide grounded
searches, ``Archive.search(q, mode="grounded", top_k=--top-k)``: the CLIP-best candidate
videos (up to 5) have their level-1 presence windows scored in one batched LM pass, and the
archive-wide best windows go on to the finer levels. ``--archive-videos 1`` skips this.

GroundingOptions' defaults are used (``level1="presence"``: every coarse window gets a
calibrated presence probability, the LM's yes/no for the ``presence_shortlist`` windows the
other signals rank best, all in one pass; the JSON records ``level1`` and the shortlist;
``--presence-shortlist 0`` asks the LM about every window). Targets on a
2-core CPU with the 135M LLM and ``--int8``: single-video whole query p50 < 1.5 s,
archive-wide p50 < 2 s; dense tokens read ≤ 10 % of the video. Writes
benchmarks/results/query.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

import vidseek

import vidseek.annotations
import vidseek.models
import vidseek.synth
ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "bench"


def percentiles(values: list[float]) -> tuple[float, float]:
    return float(np.percentile(values, 50)), float(np.percentile(values, 95))


def world_video(minutes: float, seed: int) -> Path:
    """The cached procedural-world video of ``minutes`` and ``seed``, with its annotations."""
    video = CACHE / f"world-{minutes:g}min-{seed}.mp4"
    notes = video.with_suffix(".jsonl")
    if not notes.exists():
        video.parent.mkdir(parents=True, exist_ok=True)  # a fresh clone has no cache yet
        vidseek.annotations.write_annotations(notes, vidseek.synth.build_world_video(video, minutes * 60, seed=seed))
    return video


def archive_wide(args: argparse.Namespace, queries: list, options: vidseek.GroundingOptions,
                 first: Path) -> dict:
    """Time ``queries`` as archive-wide grounded searches (no video named) over an archive of
    ``--archive-videos`` world videos, ``first`` among them; the figures for the JSON."""
    videos = [first] + [world_video(args.minutes, args.seed + i) for i in range(1, args.archive_videos)]
    archive_dir = CACHE / f"query-archive-wide-{args.minutes:g}min-{args.seed}x{args.archive_videos}"
    with vidseek.Archive.open(archive_dir, model=args.encoder, int8_text=args.int8,
                              int8_llm=args.int8) as archive:
        archive.ingest(videos)
        archive.set_grounder(args.checkpoint)
        archive.reindex()

        def search(text: str, timings: dict[str, float] | None = None) -> list:
            return archive.search(text, mode="grounded", top_k=args.top_k, grounding=options,
                                  timings=timings)

        search(queries[0].query)  # warm-up
        totals: list[float] = []
        stages: dict[str, list[float]] = {}
        spread, answered, own_first = [], 0, 0
        for ann in queries:
            timings: dict[str, float] = {}
            t0 = time.perf_counter()
            moments = search(ann.query, timings)
            totals.append(time.perf_counter() - t0)
            for stage, seconds in timings.items():
                stages.setdefault(stage, []).append(seconds)
            # sanity, not accuracy: are the results spread over videos, led by the query's own?
            # (a query can return nothing: the checkpoint's min presence abstains)
            if moments:
                answered += 1
                spread.append(len({m.video for m in moments}))
                own_first += moments[0].video == first.name
    label = f"archive-wide ({len(videos)} videos)"
    print(f"\n| {label} | p50 (ms) | p95 (ms) |\n|---|---|---|")
    for stage in sorted(stages):
        print(f"| {stage} | %.0f | %.0f |" % tuple(1000 * v for v in percentiles(stages[stage])))
    print("| whole query | %.0f | %.0f |" % tuple(1000 * v for v in percentiles(totals)))
    print(f"\n{answered} of {len(queries)} queries returned moments (the others abstained); videos among "
          f"their moments: mean {np.mean(spread) if spread else 0:.1f}, max {max(spread, default=0)}; "
          f"the best moment is in the query's own video for {own_first} of them")
    return {"videos": len(videos), "video_minutes": args.minutes, "top_k": args.top_k,
            "stages_p50_p95_s": {k: percentiles(v) for k, v in stages.items()},
            "whole_query_p50_p95_s": percentiles(totals),
            "queries_answered": answered,
            "videos_per_answer_mean": float(np.mean(spread)) if spread else None,
            "best_moment_in_own_video": own_first}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--encoder", type=Path, default=CACHE / "world-encoder")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--top-k", type=int, default=3,
                        help="spans kept per level (level-1 windows across the archive when archive-wide) "
                             "and moments an archive-wide search returns")
    parser.add_argument("--archive-videos", type=int, default=5,
                        help="videos in the archive-wide archive (the first one and N-1 more; 1: skip it)")
    parser.add_argument("--no-force", action="store_true", help="do not force span answers when too few calls give one")
    parser.add_argument("--int8", action="store_true", help="int8 text encoder and LM (int8_text, int8_llm)")
    parser.add_argument("--presence-shortlist", type=int, metavar="N",
                        help="windows per query the LM's yes/no is asked about (0: every one; "
                             "default: GroundingOptions' default)")
    parser.add_argument("--seed", type=int, default=1001)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "query.json")
    args = parser.parse_args()
    if args.archive_videos < 1:
        parser.error(f"--archive-videos must be at least 1, not {args.archive_videos}")
    if args.threads:
        torch.set_num_threads(args.threads)
    video = world_video(args.minutes, args.seed)
    queries = [a for a in vidseek.annotations.read_annotations(video.with_suffix(".jsonl"))
               if a.present][: args.queries]
    archive_dir = CACHE / f"query-archive-{args.minutes:g}min-{args.seed}"
    with vidseek.Archive.open(archive_dir, model=args.encoder, int8_text=args.int8,
                              int8_llm=args.int8) as archive:
        archive.ingest([video])
        grounder = archive.set_grounder(args.checkpoint)
        archive.reindex()
        record = archive.find_video(video.name)
        options = vidseek.GroundingOptions(levels=args.levels, top_k=args.top_k,
                                           force_spans=not args.no_force)
        if args.presence_shortlist is not None:
            options = replace(options, presence_shortlist=args.presence_shortlist)
        archive.ground(queries[0].query, video=str(record.id), options=options)  # warm-up
        totals: list[float] = []
        per_level: dict[int, list[float]] = {}
        fractions, encode, rest = [], [], []
        for ann in queries:
            t0 = time.perf_counter()
            archive.embed_query(ann.query)
            encode.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            [result] = archive.ground(ann.query, video=str(record.id), options=options)
            totals.append(time.perf_counter() - t0)
            fractions.append(result.dense_fraction)
            for level, seconds in result.seconds_per_level.items():
                per_level.setdefault(level, []).append(seconds)
            # level1="presence" runs its batched LM pass before the per-level clocks start
            # (Archive.ground batches it over videos), so level 1 shows only the selection
            rest.append(totals[-1] - encode[-1] - sum(result.seconds_per_level.values()))
    llm = grounder.config.llm
    # counted on a float32 copy: int8 layers keep their weights outside parameters()
    params = sum(p.numel() for p in vidseek.models.Grounder.load(args.checkpoint, device="cpu").llm.parameters())
    print(f"\n{record.name}: {record.duration / 60:.1f} min, {record.frames} frames; LLM {llm} "
          f"({params / 1e6:.1f} M parameters{', int8' if args.int8 else ''}); {len(queries)} "
          f"queries, {args.levels} levels, top_k {args.top_k}, level 1 {options.level1} (LM asked about "
          f"{f'{options.presence_shortlist} windows' if options.presence_shortlist else 'every window'}), "
          f"refine {options.refine}, "
          f"{'no forced spans' if args.no_force else 'forced spans'}, "
          f"{torch.get_num_threads()} torch threads\n")
    print("| stage | p50 (ms) | p95 (ms) |\n|---|---|---|")
    print("| text encoding | %.0f | %.0f |" % tuple(1000 * v for v in percentiles(encode)))
    for level in sorted(per_level):
        print(f"| level {level} | %.0f | %.0f |" % tuple(1000 * v for v in percentiles(per_level[level])))
    print("| rest: presence pass, loading | %.0f | %.0f |" % tuple(1000 * v for v in percentiles(rest)))
    print("| whole query | %.0f | %.0f |" % tuple(1000 * v for v in percentiles(totals)))
    print(f"\ndense tokens read: mean {100 * np.mean(fractions):.1f}%, max {100 * np.max(fractions):.1f}% "
          f"of the video's frames")
    wide = archive_wide(args, queries, options, video) if args.archive_videos > 1 else None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "video_minutes": record.duration / 60, "frames": record.frames, "llm": llm,
        "llm_parameters": params, "queries": len(queries), "levels": args.levels, "top_k": args.top_k,
        "force_spans": not args.no_force, "level1": options.level1, "refine": options.refine,
        "presence_shortlist": options.presence_shortlist,
        "int8": args.int8,
        "threads": torch.get_num_threads(),
        "text_encoding_p50_p95_s": percentiles(encode),
        "per_level_p50_p95_s": {str(k): percentiles(v) for k, v in per_level.items()},
        "rest_p50_p95_s": percentiles(rest),
        "whole_query_p50_p95_s": percentiles(totals),
        "dense_fraction_mean": float(np.mean(fractions)), "dense_fraction_max": float(np.max(fractions)),
        "archive_wide": wide,
    }, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
