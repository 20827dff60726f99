"""The vidseek demo: build an encoder locally, ingest real and generated video, search.

Run with ``make demo``. Everything lives in .cache/demo/ and is reused on a second run.
The model hub is unreachable here, so the encoder is a tiny CLIP trained for ~20 s on the
footage itself (contrastive, image-only): image queries are meaningful, text queries are not
until an encoder that learned language is used (see README).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import vidseek
from vidseek.models.tiny import build_tiny_clip
from vidseek.synth import Segment, noise_frames, splice_videos, static_scene_frames
from vidseek.train.encoder import EncoderTrainingConfig, FrameDataset, train_image_encoder

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
CACHE = ROOT / ".cache" / "demo"
VIDSEEK = [sys.executable, "-m", "vidseek.cli"]


def step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def make_videos(folder: Path) -> dict[str, tuple[float, float]]:
    """A 2-minute video splicing the shared clips between generated segments."""
    folder.mkdir(parents=True, exist_ok=True)
    layout = [
        ("noise", Segment(frames=noise_frames(15 * 25, (640, 360), seed=1))),
        ("bigbuckbunny", Segment(MEDIA / "bigbuckbunny.mp4", seconds=20)),
        ("static scene", Segment(frames=static_scene_frames(25 * 25, (640, 360)))),
        ("bikes", Segment(MEDIA / "bikes.mp4", seconds=20)),
        ("carphone", Segment(MEDIA / "carphone_pristine.mp4", seconds=20)),
        ("noise 2", Segment(frames=noise_frames(20 * 25, (640, 360), seed=2))),
    ]
    target = folder / "spliced.mp4"
    spans_file = folder / "spliced.json"
    if not target.exists() or not spans_file.exists():
        spans = splice_videos(target, [seg for _, seg in layout], size=(640, 360), fps=25)
        spans_file.write_text(json.dumps(dict(zip([n for n, _ in layout], spans))))
    return {k: tuple(v) for k, v in json.loads(spans_file.read_text()).items()}


def make_encoder(folder: Path) -> Path:
    if (folder / "config.json").exists():
        return folder
    base = build_tiny_clip(CACHE / "untrained-encoder")
    encoder = vidseek.FrameEncoder.load(base, device="cpu")
    data = FrameDataset.from_videos(sorted(MEDIA.glob("*.mp4")), encoder.info.image_size, fps=4.0)
    t0 = time.time()
    report = train_image_encoder(encoder, data, folder, EncoderTrainingConfig(steps=250))
    print(f"trained on {report.frames} frames in {time.time() - t0:.0f}s "
          f"(loss {report.losses[0]:.2f} -> {report.losses[-1]:.2f})")
    return folder


def vidseek_cli(*args: str) -> str:
    print("$ vidseek " + " ".join(args), flush=True)
    proc = subprocess.run([*VIDSEEK, *args], capture_output=True, text=True)
    print(proc.stdout, end="")
    if proc.returncode not in (0,):
        print(proc.stderr, end="", file=sys.stderr)
        raise SystemExit(f"vidseek {args[0]} failed with status {proc.returncode}")
    return proc.stdout


def main() -> None:
    archive = CACHE / "archive"
    step("encoder: a tiny CLIP trained on local footage (no model hub needed)")
    encoder = make_encoder(CACHE / "encoder")
    step("videos: the shared clips plus a generated 2-minute splice")
    spans = make_videos(CACHE / "videos")
    for name, (start, end) in spans.items():
        print(f"  spliced.mp4 {start:6.1f}-{end:6.1f}s  {name}")
    step("ingest")
    vidseek_cli("ingest", str(MEDIA), str(CACHE / "videos"), "--archive", str(archive),
                "--model", str(encoder))
    vidseek_cli("info", "--archive", str(archive))
    step("search by image: a frame of each shared clip, found again inside spliced.mp4")
    frames = CACHE / "queries"
    frames.mkdir(exist_ok=True)
    hits = 0
    for clip, name, t in [("bikes.mp4", "bikes", 6.0), ("bigbuckbunny.mp4", "bigbuckbunny", 2.0),
                          ("carphone_pristine.mp4", "carphone", 1.0)]:
        query = frames / f"{name}.png"
        vidseek.read_frame(MEDIA / clip, t).save(query)
        out = vidseek_cli("search", "--image", str(query), "--archive", str(archive),
                          "--video", "spliced.mp4", "--top-k", "3", "--json")
        top = json.loads(out)[0]
        start, end = spans[name]
        ok = start - 1 <= top["peak"] <= end + 1
        hits += ok
        print(f"  -> {name} is spliced in at {start:.0f}-{end:.0f}s; top moment "
              f"{top['start']:.0f}-{top['end']:.0f}s: {'correct' if ok else 'WRONG'}")
    step("search the whole archive by image (table output)")
    vidseek_cli("search", "--image", str(frames / "bikes.png"), "--archive", str(archive), "-k", "5")
    step("search by text (plumbing only: this encoder never learned language)")
    vidseek_cli("search", "cyclists on a road", "--archive", str(archive), "-k", "3")
    print(f"\nimage queries placed correctly: {hits}/3")
    if hits < 3:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
