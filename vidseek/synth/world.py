"""A procedural video world with exact ground truth.

Clips show coloured shapes doing things on varied backgrounds; each clip carries one event
with its exact time span and a caption from a small template grammar::

    a small red circle appears          a large blue square moves left
    a small green diamond disappears    a large yellow triangle turns purple
    a small orange circle bounces       a small white circle meets a large cyan square

Some events are visible in a single frame (an object is present); others exist only in
the order of frames — the direction of motion, the order of two colours, appearing versus
disappearing. Per-frame similarity cannot tell those apart; a model over token sequences
can. Everything is deterministic given a seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np

__all__ = ["COLOURS", "SHAPES", "SIZES", "BACKGROUNDS", "EVENT_KINDS", "Thing", "Event", "object_boxes",
           "ClipSpec", "random_clip", "render_clip", "static_caption", "all_things"]

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 80, 235), "yellow": (240, 215, 40),
    "purple": (150, 60, 200), "orange": (245, 140, 30), "white": (245, 245, 245), "cyan": (40, 210, 220),
}
SHAPES = ("circle", "square", "triangle", "diamond")
SIZES = {"small": 0.17, "large": 0.30}  # object side as a fraction of the frame side
BACKGROUNDS = ("flat", "textured", "noisy", "moving")
EVENT_KINDS = ("appears", "disappears", "moves left", "moves right", "moves up", "moves down",
               "bounces", "turns", "meets")
# Events no single frame reveals: they need the order of frames.
TEMPORAL_KINDS = frozenset({"moves left", "moves right", "moves up", "moves down", "bounces",
                            "turns", "appears", "disappears"})


@dataclass(frozen=True)
class Thing:
    shape: str
    colour: str
    size: str

    def phrase(self, colour: str | None = None) -> str:
        return f"a {self.size} {colour or self.colour} {self.shape}"


def all_things() -> list[Thing]:
    return [Thing(s, c, z) for z in SIZES for c in COLOURS for s in SHAPES]


@dataclass(frozen=True)
class Event:
    kind: str  # one of EVENT_KINDS
    thing: Thing
    start: float  # seconds from the clip start
    end: float
    new_colour: str | None = None  # for "turns"
    other: Thing | None = None  # for "meets"

    @property
    def caption(self) -> str:
        if self.kind == "turns":
            return f"{self.thing.phrase()} turns {self.new_colour}"
        if self.kind == "meets":
            return f"{self.thing.phrase()} meets {self.other.phrase()}"  # type: ignore[union-attr]
        return f"{self.thing.phrase()} {self.kind}"


@dataclass(frozen=True)
class ClipSpec:
    """One clip: an event, a background, optionally an idle distractor object."""

    event: Event | None  # None: a distractor segment without an event
    background: str
    seconds: float
    seed: int
    idle: Thing | None = None  # a static object that is not part of the event
    bg_colour: tuple[int, int, int] = (60, 60, 70)


def static_caption(things: list[Thing]) -> str:
    """What a single frame shows: ``"a small red circle and a large blue square"``."""
    if not things:
        return "an empty scene"
    return " and ".join(t.phrase() for t in things)


def random_clip(rng: np.random.Generator, seconds: float = 6.0, kind: str | None = None,
                thing: Thing | None = None, avoid: frozenset[Thing] = frozenset()) -> ClipSpec:
    """A random clip with one event spanning 2–3.5 s, starting 1–2 s in.

    No object in ``avoid`` is shown (raises ``ValueError`` if too few objects are left).
    """
    things = [t for t in all_things() if t not in avoid]
    if len(things) < 4:
        raise ValueError("too few unused objects left for another clip")
    thing = thing or things[rng.integers(len(things))]
    kind = kind or EVENT_KINDS[rng.integers(len(EVENT_KINDS))]
    start = float(np.round(rng.uniform(1.0, 2.0), 1))
    end = float(min(seconds - 0.5, start + np.round(rng.uniform(2.0, 3.5), 1)))
    new_colour = other = None
    if kind == "appears":
        end = seconds  # present from its appearance to the end of the clip
    elif kind == "disappears":
        start = 0.0  # present from the start until it vanishes
    elif kind == "turns":
        colours = [c for c in COLOURS
                   if c != thing.colour and Thing(thing.shape, c, thing.size) not in avoid]
        if not colours:
            raise ValueError("too few unused objects left for another clip")
        new_colour = str(rng.choice(colours))
    elif kind == "meets":
        candidates = [t for t in things if t.colour != thing.colour and t.shape != thing.shape]
        if not candidates:
            raise ValueError("too few unused objects left for another clip")
        other = candidates[rng.integers(len(candidates))]
    idle = None
    if kind not in ("meets",) and rng.random() < 0.4:
        candidates = [t for t in things if t.colour != thing.colour and t != thing]
        idle = candidates[rng.integers(len(candidates))] if candidates else None
    background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    bg_colour = tuple(int(v) for v in rng.integers(20, 110, 3))
    return ClipSpec(Event(kind, thing, start, end, new_colour, other), background, seconds,
                    int(rng.integers(2**31)), idle, bg_colour)


def _shape_mask(shape: str, cx: float, cy: float, half: float, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    dx, dy = xs - cx, ys - cy
    if shape == "circle":
        return dx * dx + dy * dy <= half * half
    if shape == "square":
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= half * 1.2
    if shape == "triangle":  # pointing up
        rel = (dy + half) / (2 * half)  # 0 at the apex, 1 at the base
        return (rel >= 0) & (rel <= 1) & (np.abs(dx) <= rel * half)
    raise ValueError(f"unknown shape {shape!r}")


@dataclass
class _Placement:
    thing: Thing
    x: float
    y: float
    colour: str
    visible: bool = True


def _smooth(u: float) -> float:
    u = min(max(u, 0.0), 1.0)
    return u * u * (3 - 2 * u)


def _placements(spec: ClipSpec, t: float, rng_pos: np.random.Generator | None = None,
                anchor: tuple[float, float] = (0.5, 0.5)) -> list[_Placement]:
    """Where every object is at time ``t`` (coordinates as fractions of the frame)."""
    out = []
    if spec.idle is not None:
        out.append(_Placement(spec.idle, 0.2 if anchor[0] > 0.5 else 0.8, 0.2, spec.idle.colour))
    ev = spec.event
    if ev is None:
        return out
    u = _smooth((t - ev.start) / max(ev.end - ev.start, 1e-6))
    x, y = anchor
    travel = 0.45
    if ev.kind.startswith("moves"):
        direction = ev.kind.split()[1]
        dx, dy = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}[direction]
        x, y = x - dx * travel / 2 + dx * travel * u, y - dy * travel / 2 + dy * travel * u
        out.append(_Placement(ev.thing, x, y, ev.thing.colour))
    elif ev.kind == "bounces":  # rests on the floor, hops up twice, lands again
        floor = 0.75
        out.append(_Placement(ev.thing, x, floor - 0.45 * abs(math.sin(2 * math.pi * u)), ev.thing.colour))
    elif ev.kind == "appears":
        out.append(_Placement(ev.thing, x, y, ev.thing.colour, visible=t >= ev.start))
    elif ev.kind == "disappears":
        out.append(_Placement(ev.thing, x, y, ev.thing.colour, visible=t < ev.end))
    elif ev.kind == "turns":
        middle = (ev.start + ev.end) / 2
        out.append(_Placement(ev.thing, x, y, ev.new_colour if t >= middle else ev.thing.colour))
    elif ev.kind == "meets":
        gap = 0.30 * (1 - u)
        out.append(_Placement(ev.thing, 0.5 - gap - 0.1, 0.5, ev.thing.colour))
        out.append(_Placement(ev.other, 0.5 + gap + 0.1, 0.5, ev.other.colour))  # type: ignore[arg-type]
    return out


def visible_things(spec: ClipSpec, t: float) -> list[Thing]:
    """The objects visible at ``t``, with their current colour."""
    return [Thing(p.thing.shape, p.colour, p.thing.size) for p in _placements(spec, t) if p.visible]


def _clip_layout(spec: ClipSpec, size: int) -> tuple[np.random.Generator, np.ndarray | None,
                                                    tuple[float, float]]:
    """The clip's random parts, drawn in a fixed order from its seed: texture, anchor."""
    rng = np.random.default_rng(spec.seed)
    texture = None
    if spec.background in ("textured", "moving"):
        cells = rng.integers(-35, 36, (size // 8 + 2, size // 8 + 2, 3))
        texture = np.repeat(np.repeat(cells, 8, 0), 8, 1)
    anchor = (float(rng.uniform(0.4, 0.6)), float(rng.uniform(0.4, 0.6)))
    return rng, texture, anchor


def object_boxes(spec: ClipSpec, t: float, size: int = 128) -> list[tuple[Thing, tuple[float, float, float, float]]]:
    """The visible objects at ``t`` with their bounding boxes ``(x0, y0, x1, y1)`` in pixels
    of a ``size``-pixel frame (ground truth for object queries)."""
    _, _, anchor = _clip_layout(spec, size)
    out = []
    for p in _placements(spec, t, anchor=anchor):
        if p.visible:
            half = SIZES[p.thing.size] * size / 2
            cx, cy = p.x * size, p.y * size
            box = (max(0.0, cx - half), max(0.0, cy - half), min(size, cx + half), min(size, cy + half))
            out.append((Thing(p.thing.shape, p.colour, p.thing.size), box))
    return out


def render_clip(spec: ClipSpec, fps: float = 10.0, size: int = 128) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(time, frame)`` for the clip; frames are uint8 RGB ``[size, size, 3]``."""
    rng, texture, anchor = _clip_layout(spec, size)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    bg = np.empty((size, size, 3), np.uint8)
    bg[:] = spec.bg_colour
    n_frames = int(round(spec.seconds * fps))
    for i in range(n_frames):
        t = i / fps
        frame = bg.astype(np.int16)
        if texture is not None:
            shift = int(t * 6) if spec.background == "moving" else 0  # camera pans 6 px/s
            frame = frame + texture[shift % 8: shift % 8 + size, (shift // 2) % 8: (shift // 2) % 8 + size]
        for p in _placements(spec, t, anchor=anchor):
            if not p.visible:
                continue
            half = SIZES[p.thing.size] * size / 2
            mask = _shape_mask(p.thing.shape, p.x * size, p.y * size, half, xs, ys)
            frame[mask] = COLOURS[p.colour]
        if spec.background == "noisy":
            frame = frame + rng.normal(0, 10, frame.shape).astype(np.int16)
        yield t, np.clip(frame, 0, 255).astype(np.uint8)
