"""Ingest throughput: a naive loop, decode-only, encode-only, each lever, full ingest, in one run.

    python benchmarks/ingest.py [--minutes 5] [--model vit-b32|tiny|DIR] [--fps 1]
        [--only naive,decode,encode,full]

Builds (once, cached in .cache/bench/) a 1280x720 25 fps H.264 video by looping the shared
clips, then measures each row in its own subprocess (so peak RSS is per row), one after the
other in the same run (this machine is shared: compare ratios within a run; the load average
before and after is recorded):

- naive: sequential PyAV decode at --fps (``container.decode``, ``to_image``) -> HF
  ``CLIPImageProcessor`` -> ``get_image_features`` (``.pooler_output``), batches of 32;
- decode-only: sampled frames/s of ``FrameSampler`` as before issue 15 (every frame decoded,
  FFmpeg's thread count), then each decode lever on its own (skip non-reference frames; one
  FFmpeg thread), a full-size RGB + PIL resize variant (what swscale straight to 224 replaced),
  and both levers; and sparse sampling (0.1 and 0.05 fps) with and without skipping, where
  whole GOPs without a sampled frame go undecoded (shown as x realtime);
- encode-only: frames/s of the image tower on already-decoded frames, per precision;
- dense work: pooling, pruning and fp16 conversion of the dense tokens (timed inside a full
  ingest) plus the commit (feature files, index, catalog), as a share of ingest time;
- full ingest: ``Archive.ingest`` before issue 15's levers, with each lever alone (skip
  non-reference frames; int8 image tower; one core each for decoding and encoding), with
  the defaults, and with every lever.

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


# The full-ingest rows: IngestConfig fields. "before" is the pipeline as it was before issue 15.
# "Library threads": both pools at their library's choice (0), as before issue 15.
LIBRARY_THREADS = {"decode_threads": 0, "torch_threads": 0}
BEFORE = {"skip_nonref": False, "precision": "fp32", **LIBRARY_THREADS}
ONE_CORE_EACH = {"decode_threads": 1, "torch_threads": 1}
FULL_ROWS = {
    "full, before (all frames decoded, fp32)": BEFORE,
    "full, + skip non-reference frames": {**BEFORE, "skip_nonref": True},
    "full, + int8 image tower": {**BEFORE, "precision": "int8"},
    "full, + one core each (1 FFmpeg, 1 torch thread)": {**BEFORE, **ONE_CORE_EACH},
    "full, skip + int8, library threads (the defaults before the split)": {"precision": "int8", **LIBRARY_THREADS},
    "full, defaults (skip; auto: bf16 with AMX or AVX-512 BF16, else int8; threads split)": {},
    "full, every lever (skip, int8, one core each)": {"precision": "int8", **ONE_CORE_EACH},
    # bf16 autocast is fast only on CPUs with AVX-512 BF16 / AMX (lscpu)
    "full, skip, bf16 image tower": {"precision": "bf16", **LIBRARY_THREADS},
    "full, skip, bf16, one core each": {"precision": "bf16", **ONE_CORE_EACH},
    "full, defaults + no deblocking (not exact)": {"deblock": False},
    # ONNX Runtime, int8 weights (the onnx extra); threads split as for int8/bf16
    "full, skip, onnx-int8, threads split": {"precision": "onnx-int8"},
    "full, skip, onnx-int8, no deblocking (not exact)": {"precision": "onnx-int8", "deblock": False},
}
DECODE_ROWS = {
    "decode, before (all frames, FFmpeg threads)": {"skip_nonref": False, "threads": 0},
    "decode, full-size RGB + PIL resize": {"pil": True},
    "decode, + skip non-reference frames (the default)": {"skip_nonref": True, "threads": 0},
    "decode, + 1 FFmpeg thread": {"skip_nonref": False, "threads": 1},
    "decode, skip + 1 FFmpeg thread": {"skip_nonref": True, "threads": 1},
    "decode, skip + 1 FFmpeg thread, no deblocking (not exact)": {"skip_nonref": True, "threads": 1, "deblock": False},
    # sparse sampling (sample_fps overrides --fps): a GOP with no sampled frame is not decoded
    "decode at 0.1 fps, before (all frames)": {"sample_fps": 0.1, "skip_nonref": False, "threads": 0},
    "decode at 0.1 fps, + skip (non-reference frames, whole GOPs)": {"sample_fps": 0.1, "skip_nonref": True, "threads": 0},
    "decode at 0.05 fps, before (all frames)": {"sample_fps": 0.05, "skip_nonref": False, "threads": 0},
    "decode at 0.05 fps, + skip (non-reference frames, whole GOPs)": {"sample_fps": 0.05, "skip_nonref": True, "threads": 0},
}
ENCODE_ROWS = {f"encode, {p}": {"precision": p} for p in ("fp32", "bf16", "int8", "onnx-int8")}


def _side(model: Path) -> int:
    import json as _json

    return int(_json.loads((model / "config.json").read_text())["vision_config"]["image_size"])


def stage_naive(video: Path, model: Path, fps: float, options: dict) -> dict:
    """What a user writes first: decode every frame, keep one per 1/fps, HF processor, CLIP."""
    import av
    import torch
    from transformers import CLIPImageProcessor, CLIPModel

    side = _side(model)
    clip = CLIPModel.from_pretrained(model).eval()
    processor = CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    t0 = time.perf_counter()
    frames, images, next_time = 0, [], 0.0

    def flush() -> None:
        with torch.inference_mode():
            inputs = processor(images=images, return_tensors="pt")
            clip.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output
        images.clear()

    with av.open(str(video)) as container:
        for frame in container.decode(video=0):
            if frame.time + 1e-6 < next_time:
                continue
            images.append(frame.to_image())
            frames += 1
            next_time += 1.0 / fps
            if len(images) == 32:
                flush()
    if images:
        flush()
    seconds = time.perf_counter() - t0
    return {"frames": frames, "seconds": seconds, "fps": frames / seconds, "peak_rss_mb": peak_rss_mb()}


def stage_decode(video: Path, model: Path, fps: float, options: dict) -> dict:
    from vidseek.indexer import FrameSampler

    side = _side(model)
    options = dict(options)
    fps = options.pop("sample_fps", fps)
    gops_skipped = None
    t0 = time.perf_counter()
    if options.get("pil"):  # every frame decoded, the sampled ones converted full size, then resized
        import av
        from PIL import Image

        frames, next_time = 0, 0.0
        with av.open(str(video)) as container:
            for frame in container.decode(video=0):
                if frame.time + 1e-6 < next_time:
                    continue
                frame.to_image().resize((side, side), Image.BILINEAR)
                frames, next_time = frames + 1, next_time + 1.0 / fps
        decoded, duration = None, None
    else:
        sampler = FrameSampler(video, fps=fps, size=(side, side), batch_size=16, **options)
        frames = sum(len(b) for b in sampler)
        decoded, duration = sampler.frames_decoded, sampler.duration
        gops_skipped = sampler.gops_skipped
    seconds = time.perf_counter() - t0
    return {"frames": frames, "seconds": seconds, "fps": frames / seconds, "frames_decoded": decoded,
            "gops_skipped": gops_skipped, "sample_fps": fps, "video_seconds": duration,
            "realtime": duration / seconds if duration else None, "peak_rss_mb": peak_rss_mb()}


def stage_encode(video: Path, model: Path, fps: float, options: dict, limit: int = 160) -> dict:
    import numpy as np

    from vidseek.indexer import FrameSampler
    from vidseek.models import FrameEncoder

    encoder = FrameEncoder.load(model, device="cpu")
    side = encoder.info.image_size
    batches = []
    for batch in FrameSampler(video, fps=fps, size=(side, side), batch_size=16):
        batches.append(batch.pixels)
        if sum(len(b) for b in batches) >= limit:
            break
    reference = encoder.encode_frames(batches[0]).embeddings
    encoder.set_image_precision(options["precision"])
    got = encoder.encode_frames(batches[0]).embeddings  # also the warm-up
    cosine = float(np.min((got * reference).sum(1)))
    t0 = time.perf_counter()
    for pixels in batches:
        encoder.encode_frames(pixels)
    seconds = time.perf_counter() - t0
    frames = int(sum(len(b) for b in batches))
    return {"frames": frames, "seconds": seconds, "fps": frames / seconds, "min_cosine_to_fp32": cosine,
            "peak_rss_mb": peak_rss_mb()}


def stage_full(video: Path, model: Path, fps: float, options: dict) -> dict:
    from vidseek import Archive, IngestConfig
    from vidseek.indexer import dense

    dense_seconds = [0.0]
    for name in ("add", "result"):  # time the dense-token work where it happens
        original = getattr(dense.DensePruner, name)

        def timed(self, *args, _original=original):
            t = time.perf_counter()
            try:
                return _original(self, *args)
            finally:
                dense_seconds[0] += time.perf_counter() - t
        setattr(dense.DensePruner, name, timed)
    marks: dict[str, float] = {}

    def progress(event) -> None:
        marks[event.stage] = time.perf_counter()

    config = IngestConfig(fps=fps, **options)
    with tempfile.TemporaryDirectory() as tmp:
        with Archive.open(Path(tmp) / "archive", model=model, device="cpu", config=config) as archive:
            archive.encoder  # load outside the timed region, as a daemon would
            if config.precision == "onnx-int8":  # likewise its ONNX tower (exported or cached);
                archive.encoder.set_image_precision("onnx-int8")  # the ingest's session opens timed
            t0 = time.perf_counter()
            report = archive.ingest([video], progress=progress)
            seconds = time.perf_counter() - t0
            if not report.ok:
                raise SystemExit(f"ingest failed: {report.failed}")
            record = report.indexed[0]
    commit = marks.get("indexed", 0.0) - marks.get("commit", 0.0)
    return {"frames": record.frames, "seconds": seconds, "fps": record.frames / seconds,
            "realtime": record.duration / seconds, "kept_fraction": record.kept_fraction,
            "dense_seconds": dense_seconds[0], "commit_seconds": commit,
            "dense_share": (dense_seconds[0] + commit) / seconds, "config": options,
            "peak_rss_mb": peak_rss_mb()}


STAGES = {"naive": stage_naive, "decode": stage_decode, "encode": stage_encode, "full": stage_full}


def run_stage(name: str, video: Path, model: Path, fps: float, options: dict | None = None) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--stage", name, "--video", str(video),
                           "--model", str(model), "--fps", str(fps), "--options", json.dumps(options or {})],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"stage {name} {options} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--model", default="vit-b32")
    parser.add_argument("--fps", type=float, default=1.0)
    parser.add_argument("--stage", choices=sorted(STAGES))
    parser.add_argument("--options", default="{}")
    parser.add_argument("--video", type=Path)
    parser.add_argument("--only", default="naive,decode,encode,full",
                        help="comma-separated kinds of row to run (naive, decode, encode, full)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ingest.json")
    args = parser.parse_args()
    if args.stage:  # child process: one measurement, JSON on the last line
        print(json.dumps(STAGES[args.stage](args.video, Path(args.model), args.fps, json.loads(args.options))))
        return
    # built in a child process: Linux keeps a process's peak RSS across exec, so a parent
    # that had built the 600 MB model would lend its peak to every row's subprocess
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        video = pool.submit(build_video, args.minutes).result()
        model = pool.submit(build_model, args.model).result()
    load_before = os.getloadavg()
    rows: dict[str, dict] = {}
    plan = ([("naive", "naive: PyAV -> CLIPImageProcessor -> CLIP, batch 32", {})]
            + [("decode", name, opts) for name, opts in DECODE_ROWS.items()]
            + [("encode", name, opts) for name, opts in ENCODE_ROWS.items()]
            + [("full", name, opts) for name, opts in FULL_ROWS.items()])
    kinds = set(args.only.split(","))
    if not kinds <= {"naive", "decode", "encode", "full"}:
        raise SystemExit(f"error: --only takes naive, decode, encode, full, not {args.only!r}")
    plan = [row for row in plan if row[0] in kinds]
    for stage, name, opts in plan:
        rows[name] = {"stage": stage, **run_stage(stage, video, model, args.fps, opts)}
        print(f"{name}: {rows[name]['fps']:.1f} frames/s", flush=True)
    load_after = os.getloadavg()
    seconds = next((r["video_seconds"] for r in rows.values() if r.get("video_seconds")), float("nan"))
    naive = rows.get("naive: PyAV -> CLIPImageProcessor -> CLIP, batch 32")
    summary = {
        "video": video.name, "model": args.model, "sample_fps": args.fps, "video_seconds": seconds,
        "cpu_count": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M"),
        "load_average_before": load_before, "load_average_after": load_after, "rows": rows,
    }
    print(f"\n{video.name}: {seconds / 60:.1f} min at {args.fps:g} fps, model {args.model}; "
          f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after\n")
    print(f"| {'row':<54} | {'frames/s':>8} | {'x realtime':>10} | {'x naive':>7} | {'peak RSS':>9} | note")
    print(f"|{'-' * 56}|{'-' * 10}|{'-' * 12}|{'-' * 9}|{'-' * 11}|------")
    for name, row in rows.items():
        realtime = seconds / row["seconds"] if row["stage"] == "naive" else None
        note = ""
        if row["stage"] == "full":
            realtime = row["realtime"]
            note = (f"dense work {100 * row['dense_seconds'] / row['seconds']:.1f}% + commit "
                    f"{100 * row['commit_seconds'] / row['seconds']:.1f}% of ingest")
        elif row["stage"] == "encode":
            note = f"min cosine to fp32 {row['min_cosine_to_fp32']:.5f}"
        elif row["stage"] == "decode" and row.get("frames_decoded"):
            note = f"{row['frames_decoded']} frames decoded"
            if row.get("gops_skipped"):
                note += f", {row['gops_skipped']} GOPs not decoded"
            if row.get("sample_fps") != args.fps:  # sparse rows: decode speed as x realtime
                realtime = row["realtime"]
        ratio = f"{naive['seconds'] / row['seconds']:.2f}" if naive and row["stage"] in ("naive", "full") else ""
        shown = f"{realtime:.1f}" if realtime else ""
        print(f"| {name:<54} | {row['fps']:>8.1f} | {shown:>10} | {ratio:>7} | {row['peak_rss_mb']:>6.0f} MB | {note}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
