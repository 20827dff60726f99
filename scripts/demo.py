"""The vidseek demo: train an encoder locally, ingest real and generated video, search.

Run with ``make demo``. Everything lives in .cache/demo/ and is reused on a second run.
The model hub is unreachable here, so the encoder is a tiny CLIP trained for ~4 minutes on
the procedural world's captions (text queries) and on the shared footage (image queries).
Without ``../shared/media`` (a clone of this repository alone) the demo generates stand-in
clips under the same names and says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import vidseek
import vidseek.annotations
import vidseek.evaluation
import vidseek.indexer
from vidseek.synth import Segment, VideoWriter, noise_frames, splice_videos, static_scene_frames

ROOT = Path(__file__).resolve().parents[1]
SHARED_MEDIA = ROOT.parent / "shared" / "media"
CACHE = ROOT / ".cache" / "demo"
CLIPS = ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4")
VIDSEEK = [sys.executable, "-m", "vidseek"]


def step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def vidseek_cli(*args: str, show: bool = True) -> str:
    print("$ vidseek " + " ".join(args), flush=True)
    proc = subprocess.run([*VIDSEEK, *args], capture_output=True, text=True)
    if show:
        print(proc.stdout, end="")
    if proc.returncode != 0:
        print(proc.stderr, end="", file=sys.stderr)
        raise SystemExit(f"vidseek {args[0]} failed with status {proc.returncode}")
    return proc.stdout


def standin_clip(path: Path, seed: int, seconds: float = 24.0, size: tuple[int, int] = (640, 360)) -> None:
    """A clip that looks like nothing else in the demo: a textured scene of its own palette
    panning slowly, with a few shapes moving across it."""
    rng = np.random.default_rng(seed)
    width, height = size
    tile = (12, 32, 64)[seed % 3]  # each clip its own texture scale and colour cast
    tiles = rng.integers(0, 256, (height // tile + 2, width // tile + 8, 3)).astype(np.float32)
    tiles = 0.3 * tiles + 0.7 * rng.integers(0, 256, 3)
    scene = np.repeat(np.repeat(tiles, tile, 0), tile, 1).astype(np.uint8)
    shapes = [(rng.uniform(0, width), rng.uniform(0, height), rng.uniform(-6, 6), rng.uniform(-3, 3),
               int(rng.integers(20, 60)), rng.integers(0, 256, 3)) for _ in range(4)]
    with VideoWriter(path, 25) as writer:
        for i in range(int(seconds * 25)):
            shift = (i // 5) % (scene.shape[1] - width)
            frame = np.ascontiguousarray(scene[:height, shift:shift + width])
            for x, y, dx, dy, r, colour in shapes:
                cx, cy = int(x + dx * i) % width, int(y + dy * i) % height
                frame[max(0, cy - r):cy + r, max(0, cx - r):cx + r] = colour
            writer.write(frame)


def footage_folder() -> Path:
    """../shared/media when it is there; else stand-in clips made here, under the same names."""
    if all((SHARED_MEDIA / name).exists() for name in CLIPS):
        return SHARED_MEDIA
    folder = CACHE / "standin-media"
    print(f"  {SHARED_MEDIA} not found (this repository was cloned alone): generating "
          f"stand-in clips in {folder} instead of the real footage", flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    for seed, name in enumerate(CLIPS):
        if not (folder / name).exists():
            standin_clip(folder / name, seed=100 + seed)
    return folder


def make_spliced(folder: Path, media: Path) -> dict[str, tuple[float, float]]:
    """A 2-minute video splicing the shared clips between generated segments."""
    layout = [
        ("noise", Segment(frames=noise_frames(15 * 25, (640, 360), seed=1))),
        ("bigbuckbunny", Segment(media / "bigbuckbunny.mp4", seconds=20)),
        ("static scene", Segment(frames=static_scene_frames(25 * 25, (640, 360)))),
        ("bikes", Segment(media / "bikes.mp4", seconds=20)),
        ("carphone", Segment(media / "carphone_pristine.mp4", seconds=20)),
        ("noise 2", Segment(frames=noise_frames(20 * 25, (640, 360), seed=2))),
    ]
    target, spans_file = folder / "spliced.mp4", folder / "spliced.json"
    if not target.exists() or not spans_file.exists():
        spans = splice_videos(target, [seg for _, seg in layout], size=(640, 360), fps=25)
        spans_file.write_text(json.dumps(dict(zip([n for n, _ in layout], spans))))
    return {k: tuple(v) for k, v in json.loads(spans_file.read_text()).items()}


def main() -> None:
    archive, videos, encoder = CACHE / "archive", CACHE / "videos", CACHE / "encoder"
    videos.mkdir(parents=True, exist_ok=True)
    media = footage_folder()
    step("encoder: a tiny CLIP trained offline on the procedural world and the shared footage")
    if not (encoder / "config.json").exists():
        # more steps than the default: the footage objective shares them with the captions
        vidseek_cli("train-encoder", "--out", str(encoder), "--steps", "800",
                    "--footage", str(media / "bikes.mp4"),
                    "--footage", str(media / "bigbuckbunny.mp4"),
                    "--footage", str(media / "carphone_pristine.mp4"))
    step("videos: a generated world video (each object in one clip) with annotations, and a 2-minute splice")
    world = videos / "world_000.mp4"
    if not world.exists():
        vidseek_cli("synth", str(videos), "--minutes", "5", "--seed", "7", "--unique-objects")
    spans = make_spliced(videos, media)
    for name, (start, end) in spans.items():
        print(f"  spliced.mp4 {start:6.1f}-{end:6.1f}s  {name}")
    step("ingest the shared clips and the generated videos")
    vidseek_cli("ingest", str(media), str(videos), "--archive", str(archive), "--model", str(encoder))
    vidseek_cli("info", "--archive", str(archive))

    step("search by text in the world video (ground truth from its annotation file)")
    print("  (each object shows in one clip of this video: per-frame similarity can only tell\n"
          "   clips apart by what they show, not by what happens in them)")
    annotations = [a for a in vidseek.annotations.read_annotations(videos / "world_000.jsonl") if a.present]
    examples = annotations[:5]
    text_ok = 0
    for ann in examples:
        out = vidseek_cli("search", ann.query, "--archive", str(archive), "--video", world.name,
                          "-k", "3", "--json", show=False)
        moments = json.loads(out)
        best = max(vidseek.evaluation.temporal_iou((m["start"], m["end"]), (ann.start, ann.end)) for m in moments)
        text_ok += best >= 0.3
        top = moments[0]
        print(f"  {ann.query!r}: truth {ann.start:.1f}-{ann.end:.1f}s, top moment "
              f"{top['start']:.1f}-{top['end']:.1f}s (score {top['score']:.2f}); best IoU in top 3: {best:.2f}")
    vidseek_cli("search", examples[0].query, "--archive", str(archive), "-k", "3")

    step("CLIP-mode grounding metrics over every event of the world video")
    vidseek_cli("eval", "--annotations", str(videos / "world_000.jsonl"), "--archive", str(archive))

    step("search by image: a frame of each shared clip, found again inside spliced.mp4")
    queries = CACHE / "queries"
    queries.mkdir(exist_ok=True)
    image_ok = 0
    for clip, name, t in [("bikes.mp4", "bikes", 6.0), ("bigbuckbunny.mp4", "bigbuckbunny", 2.0),
                          ("carphone_pristine.mp4", "carphone", 1.0)]:
        query = queries / f"{name}.png"
        vidseek.indexer.read_frame(media / clip, t).save(query)
        out = vidseek_cli("search", "--image", str(query), "--archive", str(archive),
                          "--video", "spliced.mp4", "-k", "1", "--json", show=False)
        top = json.loads(out)[0]
        start, end = spans[name]
        ok = start - 1 <= top["peak"] <= end + 1
        image_ok += ok
        print(f"  {clip} @ {t:.0f}s: spliced in at {start:.0f}-{end:.0f}s; top moment "
              f"{top['start']:.0f}-{top['end']:.0f}s -> {'correct' if ok else 'WRONG'}")
    vidseek_cli("search", "--image", str(queries / "bikes.png"), "--archive", str(archive), "-k", "4")

    print(f"\ntext queries with a moment of IoU >= 0.3 in the top 3: {text_ok}/{len(examples)}; "
          f"image queries placed correctly: {image_ok}/3")
    print_next_steps(archive, examples[0].query, queries / "bikes.png", spans["bikes"])
    if image_ok < 3:
        raise SystemExit(1)


def print_next_steps(archive: Path, query: str, image: Path, bikes: tuple[float, float]) -> None:
    def short(path: Path) -> str:
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)

    cli = short(Path(sys.executable).with_name("vidseek"))
    at = short(archive)
    print(f"""
=== try it yourself (the archive stays in {at})
  {cli} search "{query}" --archive {at} -k 5
  {cli} search --image {short(image)} --archive {at} --json
  {cli} object --video spliced.mp4 --time {bikes[0] + 5:.0f} --box 200,100,440,260 --archive {at}
  {cli} search "{query}" --archive {at} -k 5 --export {short(archive.parent / 'results.otio')}
  {cli} info --archive {at}
  {cli} serve --archive {at} --port 8000     then open http://127.0.0.1:8000/ in a browser
Every command and option: docs/cli.md. Your own footage: {cli} ingest ~/footage --archive my-archive
(with a real CLIP checkpoint: --model openai/clip-vit-base-patch32 where the model hub is reachable).""")


if __name__ == "__main__":
    main()
