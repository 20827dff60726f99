"""The grounding checkpoint's recipe, end to end: `make grounder [TRAIN_SEEDS=a-b] [OUT=dir]`.

    python scripts/grounder_recipe.py [--train-seeds 100-107] [--minutes 20]
        [--calibration-seeds 900-901] [--steps 1a=6000,1b=300,2=2000,verifier=6000]
        [--threads 2] [--workers 2] [--llm tiny] [--out DIR]

1. builds the training worlds (one procedural-world video per seed, ``--minutes`` long) and
   the calibration worlds (other seeds: never trained on, never evaluated on), and trains the
   world encoder (``vidseek.train.train_world_encoder``) beside them, ``--workers`` processes;
2. ingests the training worlds into an archive and trains the grounder's stages 1a, 1b, 2
   and verifier (``--llm tiny``: a tiny Llama from scratch, full tuning; ``--llm smollm2``:
   the packaged SmolLM2-135M-Instruct with LoRA, e.g. to time queries with a real-sized LM),
   each with its own step count (0: the stage is not trained, e.g. ``2=0``; the default
   mode does not use stage 2's fine level, but the whole-window and span-answer modes do:
   docs/evaluation.md, checkpoint W);
3. fits the level-1 presence calibration on the calibration worlds
   (``vidseek.train.fit_presence_calibration``) and stores it in the checkpoint.

Every stage is resumable: run the same command again after an interruption and finished
stages are skipped. Prints each stage's time and writes ``OUT.recipe.json``. The evaluation
seeds (1000 and up) are disjoint from every seed used here.

Threads are set deliberately: two worker processes, one per core (the encoder's runs one
torch thread; the world videos' encoder, libx264, picks its own); training runs ``--threads`` torch threads in one process (2 on a quiet 2-core machine; use 1
when other jobs share it: two busy processes of two threads each were measured 8x slower
per step).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / ".cache" / "grounder"
# stage 1b's loss barely moves after 1a (0.266 -> 0.265 over 800 steps for checkpoint M), so
# it gets few steps; 1a (the dense level, most of the examples) and 2 get the time
DEFAULT_STEPS = "1a=6000,1b=300,2=2000,verifier=6000"


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
    parser.add_argument("--threads", type=int, default=2, help="torch threads for training")
    parser.add_argument("--workers", type=int, default=2,
                        help="processes that build the worlds and the encoder side by side")
    parser.add_argument("--llm", default="tiny", choices=["tiny", "smollm2"],
                        help="tiny (from scratch, full tuning) or smollm2 (packaged weights, LoRA)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    import vidseek
    import vidseek.train
    from vidseek.annotations import read_annotations

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
                  threads=args.threads, llm=args.llm)

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

    encoder = work / "encoder"
    jobs = [(work / "train" / f"world-{seed}.mp4", args.minutes * 60, seed) for seed in train_seeds]
    jobs += [(work / "calibration" / f"world-{seed}.mp4", args.calibration_minutes * 60, seed)
             for seed in cal_seeds]

    def prepare():
        # the encoder trains on its own generated clips, not on the worlds, so it and the
        # world videos are built side by side, one process per core
        pending = [job for job in jobs if not job[0].with_suffix(".jsonl").exists()]
        train_encoder = not (encoder / "config.json").exists()
        if not pending and not train_encoder:
            return "skipped"
        with ProcessPoolExecutor(max_workers=args.workers, mp_context=get_context("spawn")) as pool:
            encoder_job = pool.submit(_train_encoder, encoder) if train_encoder else None
            for done in [pool.submit(_build_world, *job) for job in pending]:
                print(f"[recipe] world {done.result()} built", flush=True)
            if encoder_job is not None:
                accuracy, seconds = encoder_job.result()
                record["encoder_heldout_accuracy"] = round(accuracy, 4)
                record["encoder_seconds"] = round(seconds, 1)
                print(f"[recipe] encoder trained in {seconds:.0f} s, held-out caption->frame "
                      f"top-1 {100 * accuracy:.1f}%", flush=True)
        return "done"

    timed("worlds and encoder", prepare)
    train_rows = [row for video, _, _ in jobs if video.parent.name == "train"
                  for row in read_annotations(video.with_suffix(".jsonl"))]
    cal_rows = [row for video, _, _ in jobs if video.parent.name == "calibration"
                for row in read_annotations(video.with_suffix(".jsonl"))]
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
                    out, archive, train_rows, [stage], llm=args.llm, train=config)
                if not reports:
                    return "skipped"
                r = reports[0]
                record.setdefault("loss", {})[stage] = [round(r.first_loss, 4), round(r.last_loss, 4)]
                print(f"[recipe] stage {stage}: {r.steps} steps, loss {r.first_loss:.3f} -> {r.last_loss:.3f}")
                return r
            if steps.get(stage, 1) == 0:
                print(f"[recipe] stage {stage}: 0 steps, not trained", flush=True)
                record["stages"].pop(f"stage {stage}", None)
            elif stage in _done_stages(out):
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


def _build_world(video: Path, seconds: float, seed: int) -> str:
    """One training or calibration world (runs in a worker process)."""
    import vidseek.synth
    from vidseek.annotations import write_annotations

    video.parent.mkdir(parents=True, exist_ok=True)
    rows = vidseek.synth.build_world_video(video, seconds, seed=seed)
    # the notes are written last (atomically): their presence means the world is complete
    write_annotations(video.with_suffix(".jsonl"), rows)
    return video.name


def _train_encoder(encoder: Path) -> tuple[float, float]:
    """The world encoder (runs in a worker process, one torch thread)."""
    import torch

    torch.set_num_threads(1)
    import vidseek.train

    t0 = time.perf_counter()
    report = vidseek.train.train_world_encoder(encoder)
    return report.heldout_accuracy, time.perf_counter() - t0


def _done_stages(out: Path) -> list[str]:
    manifest = out / "manifest.json"
    if not manifest.exists():
        return []
    training = json.loads(manifest.read_text()).get("training", {})
    return [] if training.get("stage") else list(training.get("done", []))


if __name__ == "__main__":
    sys.exit(main())
