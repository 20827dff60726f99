"""Long synthetic videos: world clips and distractor segments, written as real H.264 files,
with an annotation file of every event (and of absent events, for "Not Present")."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..annotations import Annotation
from .world import ClipSpec, Event, Thing, all_things, random_clip, render_clip
from .writer import VideoWriter

__all__ = ["WorldVideoConfig", "build_world_video"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorldVideoConfig:
    fps: float = 10.0  # frame rate of the written video
    size: int = 128  # frame side in pixels
    clip_seconds: float = 6.0
    distractor_share: float = 0.25  # share of segments without an event
    absent_share: float = 0.2  # absent-event queries per present one
    # Show every object in one segment only, so a caption's object identifies its clip (at
    # most 64 objects: about 5 minutes of video).
    unique_objects: bool = False


def _distractor(rng: np.random.Generator, avoid: frozenset[Thing]) -> ClipSpec:
    spec = random_clip(rng, seconds=float(np.round(rng.uniform(2.0, 5.0), 1)), avoid=avoid)
    things = [t for t in all_things() if t not in avoid]
    idle = things[rng.integers(len(things))] if rng.random() < 0.5 else None
    return ClipSpec(None, spec.background, spec.seconds, spec.seed, idle, spec.bg_colour)


def _things_shown(spec: ClipSpec) -> set[Thing]:
    things = [spec.idle, *(() if spec.event is None else (spec.event.thing, spec.event.other))]
    shown = {t for t in things if t is not None}
    if spec.event is not None and spec.event.kind == "turns":
        old = spec.event.thing
        shown.add(Thing(old.shape, spec.event.new_colour, old.size))  # type: ignore[arg-type]
    return shown


def _objects_shown(spec: ClipSpec) -> set[str]:
    return {t.phrase() for t in _things_shown(spec)}


def build_world_video(path: str | Path, seconds: float, seed: int = 0,
                      config: WorldVideoConfig = WorldVideoConfig()) -> list[Annotation]:
    """Write a video of about ``seconds`` seconds to ``path``; return its annotations.

    With ``config.unique_objects`` the video ends early once every object has been shown.

    Every event caption occurs at most once in a video, so each query has one right answer.
    Each annotation's ``extra`` holds ``kind``, ``objects`` (the phrases of every object the
    clip shows) and ``object_occurrences`` (in how many segments of the video the event's
    object is visible: above 1, per-frame similarity alone cannot tell the clips apart).
    """
    path = Path(path)
    rng = np.random.default_rng(seed)
    annotations: list[Annotation] = []
    used: set[str] = set()
    shown_in_segments: list[set[str]] = []
    shown_things: list[set[Thing]] = []
    main_objects: list[str] = []  # the event's own object, per annotation
    clock = 0.0
    with VideoWriter(path, fps=config.fps) as writer:
        while clock < seconds:
            avoid = frozenset(t for shown in shown_things for t in shown) if config.unique_objects \
                else frozenset()
            try:
                if rng.random() < config.distractor_share:
                    spec = _distractor(rng, avoid)
                else:
                    for _ in range(100):
                        spec = random_clip(rng, seconds=config.clip_seconds, avoid=avoid)
                        if spec.event.caption not in used:  # type: ignore[union-attr]
                            break
            except ValueError:  # unique_objects: every object has been shown once
                logger.info("%s: all objects used after %.0fs; the video ends here", path, clock)
                break
            if spec.event is not None:
                event: Event = spec.event  # type: ignore[assignment]
                used.add(event.caption)
                main_objects.append(event.thing.phrase())
                annotations.append(Annotation(
                    path.name, event.caption, round(clock + event.start, 3),
                    round(clock + event.end, 3),
                    {"kind": event.kind, "objects": sorted(_objects_shown(spec))}))
            shown_in_segments.append(_objects_shown(spec))
            shown_things.append(_things_shown(spec))
            for _, frame in render_clip(spec, fps=config.fps, size=config.size):
                writer.write(frame)
            clock += round(spec.seconds * config.fps) / config.fps
    for ann, main in zip(annotations, main_objects):
        ann.extra["object_occurrences"] = sum(main in shown for shown in shown_in_segments)
    absent = []
    while len(absent) < round(config.absent_share * len(annotations)):
        event = random_clip(rng).event
        if event.caption not in used:  # type: ignore[union-attr]
            used.add(event.caption)  # type: ignore[union-attr]
            absent.append(Annotation(path.name, event.caption, None, None, {"kind": event.kind}))  # type: ignore[union-attr]
    return annotations + absent
