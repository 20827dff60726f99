"""Grounding accuracy on held-out synthetic long videos: every query mode vidseek has.

    python benchmarks/grounding.py [--minutes 30] [--encoder DIR] [--seed 1000]

Trains the world encoder (unless --encoder is given; cached in .cache/bench/), generates a
held-out procedural-world video (its seed is never used in training), ingests it and scores
each mode with R1/R5 at IoU 0.1/0.3/0.5/0.7 and mIoU, overall and per event kind.
Writes benchmarks/results/grounding.json.
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

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--encoder", type=Path)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "grounding.json")
    args = parser.parse_args()
    encoder = args.encoder or CACHE / "world-encoder"
    if not (encoder / "config.json").exists():
        t0 = time.time()
        report = vidseek.train_world_encoder(encoder)
        print(f"trained world encoder in {time.time() - t0:.0f}s; held-out caption->frame top-1 "
              f"{100 * report.heldout_accuracy:.1f}% over {report.heldout_captions} captions")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / f"world-heldout-{args.seed}.mp4"
        annotations = vidseek.build_world_video(video, args.minutes * 60, seed=args.seed)
        with vidseek.Archive.open(Path(tmp) / "archive", model=encoder) as archive:
            archive.ingest([video])
            report = vidseek.evaluate_archive(archive, annotations, mode="clip")
            results["clip"] = report.to_dict()
            print(f"\n### CLIP similarity ({report.queries} queries, {report.absent_queries} "
                  f"absent-event queries not scored)\n")
            print(report.table())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"minutes": args.minutes, "seed": args.seed,
                                    "encoder": str(encoder), "modes": results}, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
