"""Grounded-query latency on a long video: p50/p95 per level and the share of dense tokens read.

    python benchmarks/query.py --checkpoint CKPT [--encoder DIR] [--minutes 60] [--queries 40]
                               [--top-k 3] [--no-force] [--int8]

Builds (and caches in .cache/bench/) a procedural-world video of ``--minutes`` minutes,
ingests it with the encoder the checkpoint was trained for, stores the checkpoint's sparse
tokens (reindex), then times ``--queries`` grounded queries on that video, end to end
(text encoding included). Targets on a 2-core CPU with the 135M LLM: whole query p50 < 1.5 s,
dense tokens read ≤ 10 % of the video. Writes benchmarks/results/query.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--encoder", type=Path, default=CACHE / "world-encoder")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--top-k", type=int, default=3, help="candidates kept per level")
    parser.add_argument("--no-force", action="store_true", help="do not force span answers when too few calls give one")
    parser.add_argument("--int8", action="store_true", help="int8 text encoder and LM (int8_text, int8_llm)")
    parser.add_argument("--seed", type=int, default=1001)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "query.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    video = CACHE / f"world-{args.minutes:g}min-{args.seed}.mp4"
    notes = video.with_suffix(".jsonl")
    if not notes.exists():
        vidseek.annotations.write_annotations(notes, vidseek.synth.build_world_video(video, args.minutes * 60, seed=args.seed))
    queries = [a for a in vidseek.annotations.read_annotations(notes) if a.present][: args.queries]
    archive_dir = CACHE / f"query-archive-{args.minutes:g}min-{args.seed}"
    with vidseek.Archive.open(archive_dir, model=args.encoder, int8_text=args.int8,
                              int8_llm=args.int8) as archive:
        archive.ingest([video])
        grounder = archive.set_grounder(args.checkpoint)
        archive.reindex()
        record = archive.find_video(video.name)
        options = vidseek.GroundingOptions(levels=args.levels, top_k=args.top_k,
                                           force_spans=not args.no_force)
        archive.ground(queries[0].query, video=str(record.id), options=options)  # warm-up
        totals, per_level, fractions, encode = [], {}, [], []
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
    llm = grounder.config.llm
    # counted on a float32 copy: int8 layers keep their weights outside parameters()
    params = sum(p.numel() for p in vidseek.models.Grounder.load(args.checkpoint, device="cpu").llm.parameters())
    print(f"\n{record.name}: {record.duration / 60:.1f} min, {record.frames} frames; LLM {llm} "
          f"({params / 1e6:.1f} M parameters{', int8' if args.int8 else ''}); {len(queries)} "
          f"queries, {args.levels} levels, top_k {args.top_k}, "
          f"{'no forced spans' if args.no_force else 'forced spans'}, "
          f"{torch.get_num_threads()} torch threads\n")
    print("| stage | p50 (ms) | p95 (ms) |\n|---|---|---|")
    print("| text encoding | %.0f | %.0f |" % tuple(1000 * v for v in percentiles(encode)))
    for level in sorted(per_level):
        print(f"| level {level} | %.0f | %.0f |" % tuple(1000 * v for v in percentiles(per_level[level])))
    print("| whole query | %.0f | %.0f |" % tuple(1000 * v for v in percentiles(totals)))
    print(f"\ndense tokens read: mean {100 * np.mean(fractions):.1f}%, max {100 * np.max(fractions):.1f}% "
          f"of the video's frames")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "video_minutes": record.duration / 60, "frames": record.frames, "llm": llm,
        "llm_parameters": params, "queries": len(queries), "levels": args.levels, "top_k": args.top_k,
        "force_spans": not args.no_force, "int8": args.int8,
        "threads": torch.get_num_threads(),
        "text_encoding_p50_p95_s": percentiles(encode),
        "per_level_p50_p95_s": {str(k): percentiles(v) for k, v in per_level.items()},
        "whole_query_p50_p95_s": percentiles(totals),
        "dense_fraction_mean": float(np.mean(fractions)), "dense_fraction_max": float(np.max(fractions)),
    }, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
