"""The grounding checkpoint's recipe, end to end: `make grounder [TRAIN_SEEDS=a-b] [OUT=dir]`.

    python scripts/grounder_recipe.py [--train-seeds 100-107] [--minutes 20]
        [--calibration-seeds 900-901] [--steps 1a=3000,1b=800,2=1500,verifier=1500] [--threads 1] [--out DIR]

1. builds the training worlds (one procedural-world video per seed, ``--minutes`` long) and
   the calibration worlds (other seeds: never trained on, never evaluated on);
2. trains the world encoder (``vidseek.train.train_world_encoder``);
3. ingests the training worlds into an archive and trains the grounder's stages 1a, 1b and 2
   (tiny Llama from scratch, full tuning), each with its own step count;
4. fits the level-1 presence calibration on the calibration worlds
   (``vidseek.train.fit_presence_calibration``) and stores it in the checkpoint.

Every stage is resumable: run the same command again after an interruption and finished
stages are skipped. Prints each stage's time and writes ``OUT.recipe.json``. The evaluation
seeds (1000 and up) are disjoint from every seed used here.

Threads are set deliberately: the LM is tiny, so one torch thread per process wastes little
and never fights another process for the two cores (measured 8x slower per step when two
busy processes each ran two threads).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / ".cache" / "grounder"
DEFAULT_STEPS = "1a=3000,1b=800,2=1500,verifier=1500"


def seed_range(text: str) -> list[int]:
    """``100-107`` or ``100`` or ``100,103`` → seeds."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        seeds += range(int(lo), int(hi or lo) + 1)
    if not seeds:
        raise SystemExit(f"error: no seeds in {text!r}")
    return seeds


def stage_steps(text: str) -> dict[str, int]:
    steps = {}
    for part in text.split(","):
        stage, _, count = part.partition("=")
        steps[stage.strip()] = int(count)
    return steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-seeds", default="100-107")
    parser.add_argument("--minutes", type=float, default=20.0, help="length of each training world")
    parser.add_argument("--calibration-seeds", default="900-901")
    parser.add_argument("--calibration-minutes", type=float, default=20.0)
    parser.add_argument("--steps", default=DEFAULT_STEPS)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    import vidseek
    import vidseek.synth
    import vidseek.train
    from vidseek.annotations import read_annotations, write_annotations

    train_seeds, cal_seeds = seed_range(args.train_seeds), seed_range(args.calibration_seeds)
    if set(train_seeds) & set(cal_seeds) or max(train_seeds + cal_seeds) >= 1000:
        raise SystemExit("error: training and calibration seeds must be disjoint and below 1000 "
                         "(the evaluation uses 1000 and up)")
    out: Path = args.out
    work = out.with_name(out.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    record_path = out.with_name(out.name + ".recipe.json")
    record = json.loads(record_path.read_text()) if record_path.exists() else {"stages": {}}
    record.update(train_seeds=args.train_seeds, calibration_seeds=args.calibration_seeds,
                  minutes=args.minutes, steps=stage_steps(args.steps), batch_size=args.batch_size,
                  threads=args.threads)

    def timed(name: str, fn):
        t0 = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - t0
        # an interrupted stage that resumes adds to its time; calibration always reruns from
        # scratch (cheap, and it must follow the weights), so its time is replaced
        before = 0.0 if name == "calibration" else record["stages"].get(name, 0.0)
        record["stages"][name] = round(seconds + before, 1) if result != "skipped" else before
        print(f"[recipe] {name}: {'skipped (done before)' if result == 'skipped' else f'{seconds:.0f} s'}",
              flush=True)
        record_path.write_text(json.dumps(record, indent=2))
        return result

    def worlds(seeds: list[int], minutes: float, folder: str) -> list:
        rows = []
        for seed in seeds:
            video = work / folder / f"world-{seed}.mp4"
            notes = video.with_suffix(".jsonl")
            if not notes.exists():
                video.parent.mkdir(parents=True, exist_ok=True)
                write_annotations(notes, vidseek.synth.build_world_video(video, minutes * 60, seed=seed))
            rows += read_annotations(notes)
        return rows

    train_rows = timed("worlds", lambda: worlds(train_seeds, args.minutes, "train"))
    cal_rows = timed("calibration worlds", lambda: worlds(cal_seeds, args.calibration_minutes, "calibration"))
    encoder = work / "encoder"

    def encoder_stage():
        if (encoder / "config.json").exists():
            return "skipped"
        report = vidseek.train.train_world_encoder(encoder)
        record["encoder_heldout_accuracy"] = round(report.heldout_accuracy, 4)
        print(f"[recipe] encoder held-out caption->frame top-1 {100 * report.heldout_accuracy:.1f}%")
        return report

    timed("encoder", encoder_stage)
    # fp32 features, pinned: the documented checkpoint was built from them, and an archive
    # keeps the precision it was created with (the default, auto, would pick int8 on a CPU)
    ingest_config = vidseek.IngestConfig(precision="fp32")
    with vidseek.Archive.open(work / "archive", model=encoder, config=ingest_config) as archive:
        timed("ingest", lambda: archive.ingest(sorted((work / "train").glob("*.mp4"))
                                               + sorted((work / "calibration").glob("*.mp4"))))
        steps = stage_steps(args.steps)
        config = vidseek.train.GroundingTrainConfig(steps=steps, batch_size=args.batch_size)
        for stage in vidseek.train.GROUNDING_STAGES:
            def run_stage(stage=stage):
                reports = vidseek.train.train_grounder_from_archive(
                    out, archive, train_rows, [stage], llm="tiny", train=config)
                if not reports:
                    return "skipped"
                r = reports[0]
                record.setdefault("loss", {})[stage] = [round(r.first_loss, 4), round(r.last_loss, 4)]
                print(f"[recipe] stage {stage}: {r.steps} steps, loss {r.first_loss:.3f} -> {r.last_loss:.3f}")
                return r
            if stage in _done_stages(out):
                timed(f"stage {stage}", lambda: "skipped")
            else:
                timed(f"stage {stage}", run_stage)

        def calibrate():
            archive.set_grounder(out)
            fit = vidseek.train.fit_presence_calibration(out, archive, cal_rows)
            record["calibration"] = fit.to_dict()
            print(f"[recipe] presence calibration: {fit.describe()}")
            return fit

        timed("calibration", calibrate)
    total = sum(record["stages"].values())
    record["total_seconds"] = round(total, 1)
    record_path.write_text(json.dumps(record, indent=2))
    print(f"[recipe] checkpoint {out}; stages: "
          + ", ".join(f"{k} {v:.0f} s" for k, v in record["stages"].items()) + f"; total {total / 60:.1f} min")
    return 0


def _done_stages(out: Path) -> list[str]:
    manifest = out / "manifest.json"
    if not manifest.exists():
        return []
    training = json.loads(manifest.read_text()).get("training", {})
    return [] if training.get("stage") else list(training.get("done", []))


if __name__ == "__main__":
    sys.exit(main())
