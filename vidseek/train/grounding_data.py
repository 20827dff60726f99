"""Training examples for the grounder, drawn from an archive's stored features.

Nothing is decoded: frame embeddings and dense-token grids come from the archive the
annotated videos were ingested into. An :class:`Example` names a frame range of a video, the
level it is shown at and the query/answer; the adapter turns it into tokens at each step
(it is being trained, so tokens cannot be cached).

Negatives matter as much as positives (see ../shared/METHOD.md): a model trained on
positives only learns "where something changes" and ignores the query. Every sampler mixes
positives, *hard* negatives (the reversed event: "moves right" for "moves left", the colours
of "turns" swapped, "disappears" for "appears") and *easy* negatives (another event of the
archive that is not in the shown range).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..annotations import Annotation
from ..errors import QueryError
from ..models.answers import ABSENT_ANSWER, grounding_prompt, presence_prompt, span_answer
from ..models.grounder import WindowConfig

__all__ = ["TrainingVideo", "Example", "ExampleSampler", "load_training_videos",
           "reversed_caption", "event_frames"]

# "bounces" has no reversed form: a bouncing object does move up (and down), so asking
# "moves up" of it and teaching "Not Present." taught the LM to refuse real upward motion
# (docs/evaluation.md, the dense-level probe: "moves up" 17.9 % right before, 85.7 % after).
_OPPOSITE = {"appears": "disappears", "disappears": "appears", "moves left": "moves right",
             "moves right": "moves left", "moves up": "moves down", "moves down": "moves up"}


def _also_true(captions: set[str]) -> set[str]:
    """Captions not annotated in a range that holds ``captions`` but true of it all the
    same, so never negatives there: a bouncing object moves up and down."""
    implied = set()
    for caption in captions:
        if caption.endswith(" bounces"):
            stem = caption[: -len("bounces")]
            implied |= {stem + "moves up", stem + "moves down"}
    return implied


def reversed_caption(caption: str) -> str | None:
    """The event with its order reversed, or None if the caption has no reversible form."""
    turns = re.fullmatch(r"(an?|the) (\w+) (\w+) (\w+) turns (\w+)", caption.strip())
    if turns:
        article, size, old, shape, new = turns.groups()
        return f"{article} {size} {new} {shape} turns {old}"
    for kind, opposite in _OPPOSITE.items():
        if caption.endswith(" " + kind):
            return caption[: -len(kind)] + opposite
    return None


def event_frames(times: np.ndarray, start: float, end: float) -> tuple[int, int]:
    """Inclusive frame indices covering ``[start, end]`` seconds (frame k covers
    ``[times[k], times[k+1])``)."""
    i = int(np.searchsorted(times, start, side="right")) - 1
    j = int(np.searchsorted(times, end, side="left")) - 1
    i = min(max(i, 0), len(times) - 1)
    return i, min(max(j, i), len(times) - 1)


@dataclass
class TrainingVideo:
    name: str
    times: np.ndarray  # [T] seconds
    embeddings: np.ndarray  # float32 [T, D]
    grid: np.ndarray  # float32 [T, cells, C]
    events: list[tuple[str, int, int]]  # (caption, first frame, last frame)

    @property
    def frames(self) -> int:
        return len(self.times)

    def captions_overlapping(self, start: int, stop: int) -> set[str]:
        return {c for c, i, j in self.events if i < stop and j >= start}


def load_training_videos(archive, annotations: Sequence[Annotation]) -> list[TrainingVideo]:
    """Features of every annotated video, with event spans converted to frame indices."""
    by_video: dict[str, list[Annotation]] = {}
    for ann in annotations:
        by_video.setdefault(ann.video, []).append(ann)
    videos = []
    for name, anns in by_video.items():
        try:
            record = archive.find_video(name)
        except QueryError as exc:
            raise QueryError(f"annotations name a video the archive lacks: {exc}") from exc
        features = archive.video_features(record)
        grid = features.dense.grid().astype(np.float32)
        events = [(a.query, *event_frames(features.times, a.start, a.end)) for a in anns if a.present]
        videos.append(TrainingVideo(name, features.times, features.embeddings.astype(np.float32),
                                    grid.reshape(grid.shape[0], -1, grid.shape[-1]), events))
    return videos


@dataclass(frozen=True)
class Example:
    video: int  # index into the sampler's videos
    start: int  # first frame shown
    stop: int  # one past the last frame shown
    level: str  # "dense", "fine", "coarse" (grounding) or "fine-presence", "coarse-presence"
    query: str
    prompt: str
    answer: str


class ExampleSampler:
    """Random examples for each training stage."""

    def __init__(self, videos: Sequence[TrainingVideo], windows: WindowConfig, seed: int = 0) -> None:
        self.videos = [v for v in videos if v.frames >= 2]
        if not any(v.events for v in self.videos):
            raise ValueError("no annotated event to train on")
        self.windows = windows
        self.rng = np.random.default_rng(seed)
        self.captions = sorted({c for v in self.videos for c, _, _ in v.events})

    def all_queries(self) -> list[str]:
        """Every query an example can ask: the captions and their reversed forms."""
        reverse = {r for c in self.captions if (r := reversed_caption(c))}
        return sorted(set(self.captions) | reverse)

    # -- queries ----------------------------------------------------------------------
    def _negative_query(self, video: TrainingVideo, start: int, stop: int) -> str | None:
        """A query whose event is not within ``[start, stop)``: hard half of the time.
        None if every known caption happens there."""
        inside = video.captions_overlapping(start, stop)
        inside |= _also_true(inside)
        if self.rng.random() < 0.5:
            # sorted: set order follows the per-process hash seed, and training must not
            candidates = [r for c in sorted(inside) if (r := reversed_caption(c)) and r not in inside]
            if candidates:
                return candidates[self.rng.integers(len(candidates))]
        for _ in range(20):
            caption = self.captions[self.rng.integers(len(self.captions))]
            if caption not in inside:
                return caption
        outside = [c for c in self.captions if c not in inside]
        return outside[self.rng.integers(len(outside))] if outside else None

    def _negative(self, min_len: int, max_len: int, align: int) -> tuple[int, int, int, str]:
        for _ in range(1000):
            v, start, stop = self._range(min_len, max_len, align)
            query = self._negative_query(self.videos[v], start, stop)
            if query is not None:
                return v, start, stop, query
        raise ValueError("no range lacks an event to ask about: too few distinct captions")

    def _positive(self, min_len: int, max_len: int, align: int = 1):
        """``(video, event, start, stop)`` with the event wholly inside the range."""
        for _ in range(1000):
            v = int(self.rng.integers(len(self.videos)))
            video = self.videos[v]
            if not video.events:
                continue
            caption, i, j = video.events[self.rng.integers(len(video.events))]
            length = int(self.rng.integers(min_len, max_len + 1))
            length = min(length, video.frames)
            if j - i + 1 > length:
                continue
            lo, hi = max(0, j - length + 1), min(i, video.frames - length)
            if align > 1:  # window-aligned starts, as ingest cuts them
                lo, hi = -(-lo // align) * align, hi // align * align
            if lo > hi:
                continue
            start = int(self.rng.integers(lo // align, hi // align + 1)) * align
            stop = min(start + length, video.frames)
            if i >= start and j < stop:
                return v, (caption, i, j), start, stop
        raise ValueError("no event fits the requested clip lengths")

    def _range(self, min_len: int, max_len: int, align: int = 1) -> tuple[int, int, int]:
        v = int(self.rng.integers(len(self.videos)))
        video = self.videos[v]
        length = min(int(self.rng.integers(min_len, max_len + 1)), video.frames)
        start = int(self.rng.integers(0, video.frames - length + 1))
        start = start // align * align
        return v, start, min(start + length, video.frames)

    # -- examples ---------------------------------------------------------------------
    def grounding(self, level: str) -> Example:
        """``From s to e.`` over frames (dense) or windows (fine, coarse), or Not Present."""
        w = self.windows
        if level == "dense":
            unit, min_len, max_len, align = 1, min(10, w.dense), w.dense, 1
        elif level == "fine":
            unit, min_len, max_len, align = w.fine, 2 * w.fine, w.fine * w.fine_per_call, 1
        elif level == "coarse":
            unit, min_len, max_len, align = w.coarse, w.coarse, w.coarse * w.coarse_per_call, w.coarse
        else:
            raise ValueError(level)
        if self.rng.random() < 0.5:
            v, (caption, i, j), start, stop = self._positive(min_len, max_len, align)
            return Example(v, start, stop, level, caption, grounding_prompt(caption),
                           span_answer((i - start) // unit, (j - start) // unit))
        v, start, stop, query = self._negative(min_len, max_len, align)
        return Example(v, start, stop, level, query, grounding_prompt(query), ABSENT_ANSWER)

    def presence(self, kind: str) -> Example:
        """One window (fine or coarse): does the event happen in it? ``yes`` / ``no``."""
        size = self.windows.fine if kind == "fine" else self.windows.coarse
        align = 1 if kind == "fine" else size
        if self.rng.random() < 0.5:
            v, (caption, _, _), start, stop = self._positive(size, size, align)
            return Example(v, start, stop, f"{kind}-presence", caption, presence_prompt(caption), "yes")
        v, start, stop, query = self._negative(size, size, align)
        return Example(v, start, stop, f"{kind}-presence", query, presence_prompt(query), "no")

    def for_stage(self, stage: str) -> Example:
        r = self.rng.random()
        if stage == "1a":  # a fifth single windows with yes/no: a from-scratch LM learns those
            # answer words here, before stage 1B freezes it (a pretrained LM knows them)
            if r < 0.2:
                return self.presence("fine" if r < 0.1 else "coarse")
            return self.grounding("dense")
        if stage == "1b":
            return self.presence("fine" if r < 0.5 else "coarse")
        if stage == "2":  # sparse levels, with dense replay so level 3 is not forgotten
            return self.grounding("coarse" if r < 0.4 else "fine" if r < 0.8 else "dense")
        raise ValueError(f"unknown stage {stage!r}")
