"""The vidseek demo: train an encoder locally, ingest real and generated video, search.

Run with ``make demo``. Everything lives in .cache/demo/ and is reused on a second run.
The model hub is unreachable here, so the encoder is a tiny CLIP trained for ~2.5 minutes on
the procedural world's captions (text queries) and on the shared footage (image queries).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import vidseek
import vidseek.annotations
import vidseek.evaluation
import vidseek.indexer
from vidseek.synth import Segment, noise_frames, splice_videos, static_scene_frames

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
CACHE = ROOT / ".cache" / "demo"
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


def make_spliced(folder: Path) -> dict[str, tuple[float, float]]:
    """A 2-minute video splicing the shared clips between generated segments."""
    layout = [
        ("noise", Segment(frames=noise_frames(15 * 25, (640, 360), seed=1))),
        ("bigbuckbunny", Segment(MEDIA / "bigbuckbunny.mp4", seconds=20)),
        ("static scene", Segment(frames=static_scene_frames(25 * 25, (640, 360)))),
        ("bikes", Segment(MEDIA / "bikes.mp4", seconds=20)),
        ("carphone", Segment(MEDIA / "carphone_pristine.mp4", seconds=20)),
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
    step("encoder: a tiny CLIP trained offline on the procedural world and the shared footage")
    if not (encoder / "config.json").exists():
        # more steps than the default: the footage objective shares them with the captions
        vidseek_cli("train-encoder", "--out", str(encoder), "--steps", "800",
                    "--footage", str(MEDIA / "bikes.mp4"),
                    "--footage", str(MEDIA / "bigbuckbunny.mp4"),
                    "--footage", str(MEDIA / "carphone_pristine.mp4"))
    step("videos: a generated world video (each object in one clip) with annotations, and a 2-minute splice")
    world = videos / "world_000.mp4"
    if not world.exists():
        vidseek_cli("synth", str(videos), "--minutes", "5", "--seed", "7", "--unique-objects")
    spans = make_spliced(videos)
    for name, (start, end) in spans.items():
        print(f"  spliced.mp4 {start:6.1f}-{end:6.1f}s  {name}")
    step("ingest the shared clips and the generated videos")
    vidseek_cli("ingest", str(MEDIA), str(videos), "--archive", str(archive), "--model", str(encoder))
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
        vidseek.indexer.read_frame(MEDIA / clip, t).save(query)
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
    if image_ok < 3:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
