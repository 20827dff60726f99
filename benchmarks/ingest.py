"""Ingest throughput: decode-only vs encode-only vs the full pipeline, in one run.

    python benchmarks/ingest.py [--minutes 10] [--model vit-b32|tiny|DIR] [--fps 1]

Builds (once, cached in .cache/bench/) a ≥10-minute 1280x720 H.264 video by looping the
shared clips, then measures each stage in its own subprocess (so peak RSS is per stage):

- decode-only: sampled frames/s of PyAV decoding + resizing at --fps;
- encode-only: frames/s of the encoder on already-decoded frames;
- full ingest: frames/s and × realtime of ``Archive.ingest`` (decode and encode overlapped,
  pruning, store writes), and the ratio full ÷ min(decode, encode) — target ≥ 0.8.

``vit-b32`` is a randomly initialised CLIP with the exact architecture of
openai/clip-vit-base-patch32 (its weights cannot be downloaded here): the compute is real,
the embeddings are not. Prints a table and writes benchmarks/results/ingest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
CACHE = ROOT / ".cache" / "bench"


def build_video(minutes: float) -> Path:
    from vidseek.synth import Segment, splice_videos

    path = CACHE / f"long-720p-{minutes:g}min.mp4"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        clips = sorted(MEDIA.glob("*.mp4"))
        seconds = minutes * 60
        segments, total = [], 0.0
        while total < seconds:
            segments += [Segment(clip) for clip in clips]
            total += 19.3  # one pass over the three clips
        tmp = path.with_suffix(".tmp.mp4")
        print(f"building {path.name} ({minutes:g} min, 1280x720 H.264)...", flush=True)
        splice_videos(tmp, segments, size=(1280, 720), fps=25)
        tmp.rename(path)
    return path


def build_model(kind: str) -> Path:
    if kind not in ("vit-b32", "tiny"):
        return Path(kind)
    out = CACHE / f"model-{kind}"
    if (out / "config.json").exists():
        return out
    from vidseek.models.tiny import build_tiny_clip

    if kind == "tiny":
        return build_tiny_clip(out)
    # openai/clip-vit-base-patch32's architecture, random weights
    return build_tiny_clip(out, image_size=224, patch_size=32, width=768, layers=12,
                           embed_dim=512, max_text_tokens=77)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stage_decode(video: Path, model: Path, fps: float) -> dict:
    from vidseek.indexer import FrameSampler
    from vidseek.models import FrameEncoder

    side = FrameEncoder.load(model, device="cpu").info.image_size
    t0 = time.perf_counter()
    sampler = FrameSampler(video, fps=fps, size=(side, side), batch_size=16)
    frames = sum(len(b) for b in sampler)
    seconds = time.perf_counter() - t0
    return {"frames": frames, "seconds": seconds, "fps": frames / seconds,
            "video_seconds": sampler.duration, "peak_rss_mb": peak_rss_mb()}


def stage_encode(video: Path, model: Path, fps: float, limit: int = 320) -> dict:
    import numpy as np

    from vidseek.indexer import FrameSampler
    from vidseek.models import FrameEncoder

    encoder = FrameEncoder.load(model)
    side = encoder.info.image_size
    batches = []
    for batch in FrameSampler(video, fps=fps, size=(side, side), batch_size=16):
        batches.append(batch.pixels)
        if sum(len(b) for b in batches) >= limit:
            break
    encoder.encode_frames(batches[0])  # warm-up
    t0 = time.perf_counter()
    for pixels in batches:
        encoder.encode_frames(pixels)
    seconds = time.perf_counter() - t0
    frames = int(sum(len(b) for b in batches))
    return {"frames": frames, "seconds": seconds, "fps": frames / seconds, "peak_rss_mb": peak_rss_mb()}


def stage_full(video: Path, model: Path, fps: float) -> dict:
    from vidseek import Archive, IngestConfig

    with tempfile.TemporaryDirectory() as tmp:
        with Archive.open(Path(tmp) / "archive", model=model, config=IngestConfig(fps=fps)) as archive:
            archive.encoder  # load outside the timed region, as a daemon would
            t0 = time.perf_counter()
            report = archive.ingest([video])
            seconds = time.perf_counter() - t0
            if not report.ok:
                raise SystemExit(f"ingest failed: {report.failed}")
            record = report.indexed[0]
    return {"frames": record.frames, "seconds": seconds, "fps": record.frames / seconds,
            "realtime": record.duration / seconds, "kept_fraction": record.kept_fraction,
            "peak_rss_mb": peak_rss_mb()}


STAGES = {"decode": stage_decode, "encode": stage_encode, "full": stage_full}


def run_stage(name: str, video: Path, model: Path, fps: float) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--stage", name, "--video", str(video),
                           "--model", str(model), "--fps", str(fps)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"stage {name} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--model", default="vit-b32")
    parser.add_argument("--fps", type=float, default=1.0)
    parser.add_argument("--stage", choices=sorted(STAGES))
    parser.add_argument("--video", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ingest.json")
    args = parser.parse_args()
    if args.stage:  # child process: one measurement, JSON on the last line
        print(json.dumps(STAGES[args.stage](args.video, Path(args.model), args.fps)))
        return
    video = build_video(args.minutes)
    model = build_model(args.model)
    results = {name: run_stage(name, video, model, args.fps) for name in ("decode", "encode", "full")}
    decode_fps, encode_fps = results["decode"]["fps"], results["encode"]["fps"]
    slower = min(decode_fps, encode_fps)
    # When both stages compete for the same CPU cores they cannot overlap for free: the best
    # possible rate is the one at which the two stages' CPU time per frame adds up.
    shared_cpu_bound = 1.0 / (1.0 / decode_fps + 1.0 / encode_fps)
    summary = {
        "video": video.name, "model": args.model, "sample_fps": args.fps,
        "video_seconds": results["decode"]["video_seconds"], "cpu_count": os.cpu_count(),
        "stages": results, "full_over_slower_stage": results["full"]["fps"] / slower,
        "shared_cpu_bound_fps": shared_cpu_bound,
        "full_over_shared_cpu_bound": results["full"]["fps"] / shared_cpu_bound,
    }
    rows = [
        ("decode-only", f"{results['decode']['fps']:.1f} frames/s", f"{results['decode']['peak_rss_mb']:.0f} MB"),
        ("encode-only", f"{results['encode']['fps']:.1f} frames/s", f"{results['encode']['peak_rss_mb']:.0f} MB"),
        ("full ingest", f"{results['full']['fps']:.1f} frames/s ({results['full']['realtime']:.1f}x realtime)",
         f"{results['full']['peak_rss_mb']:.0f} MB"),
        ("full / min(decode, encode)", f"{summary['full_over_slower_stage']:.2f} (target >= 0.8)", ""),
        ("shared-CPU bound 1/(1/d+1/e)", f"{shared_cpu_bound:.1f} frames/s; full reaches "
         f"{summary['full_over_shared_cpu_bound']:.2f} of it", ""),
        ("dense tokens kept", f"{100 * results['full']['kept_fraction']:.1f}%", ""),
    ]
    print(f"\n{video.name}: {summary['video_seconds'] / 60:.1f} min at {args.fps:g} fps, model {args.model}\n")
    print(f"| {'stage':<28} | {'throughput':<40} | {'peak RSS':>9} |")
    print(f"|{'-' * 30}|{'-' * 42}|{'-' * 11}|")
    for name, value, rss in rows:
        print(f"| {name:<28} | {value:<40} | {rss:>9} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
