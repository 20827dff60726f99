"""Writing real video files with PyAV (its bundled FFmpeg has libx264, mpeg4, vp9, av1)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import av
import numpy as np

__all__ = ["VideoWriter", "Segment", "splice_videos", "noise_frames", "static_scene_frames"]


class VideoWriter:
    """Encode RGB frames into a video file: ``with VideoWriter(path, 25) as w: w.write(frame)``.

    ``pts_seconds`` in :meth:`write` allows variable frame rate output.
    """

    def __init__(self, path: str | Path, fps: float = 25.0, size: tuple[int, int] | None = None,
                 codec: str = "libx264", pix_fmt: str = "yuv420p", crf: int = 23,
                 options: dict[str, str] | None = None) -> None:
        self.path = Path(path)
        self.fps = fps
        self.size = size
        self._container = av.open(str(self.path), mode="w")
        rate = Fraction(fps).limit_denominator(1001)
        opts = dict(options or {})
        if codec == "libx264":
            opts.setdefault("crf", str(crf))
            opts.setdefault("preset", "veryfast")
        self._stream = self._container.add_stream(codec, rate=rate, options=opts)
        self._stream.pix_fmt = pix_fmt
        self._stream.time_base = Fraction(1, 90000) if codec != "mpeg4" else Fraction(1, int(round(fps)))
        self._count = 0
        self._opened = False

    def _open_stream(self, frame: np.ndarray) -> None:
        height, width = frame.shape[:2]
        self._stream.width, self._stream.height = width, height
        self._opened = True

    def write(self, frame: np.ndarray, pts_seconds: float | None = None) -> None:
        """Append one uint8 RGB frame ``[H, W, 3]`` (resized to ``size`` if one was given)."""
        if self.size is not None and (frame.shape[1], frame.shape[0]) != self.size:
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            video_frame = video_frame.reformat(width=self.size[0], height=self.size[1])
            frame = video_frame.to_ndarray(format="rgb24")
        if not self._opened:
            self._open_stream(frame)
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        seconds = self._count / self.fps if pts_seconds is None else pts_seconds
        video_frame.pts = int(round(seconds / self._stream.time_base))
        video_frame.time_base = self._stream.time_base
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)
        self._count += 1

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Segment:
    """A piece of a spliced video: ``seconds`` of ``source`` from ``start`` (looped if short),
    or, with ``frames``, generated frames."""

    source: str | Path | None = None
    start: float = 0.0
    seconds: float | None = None  # None: to the end of the source
    frames: Sequence[np.ndarray] | None = None


def _source_frames(path: Path, size: tuple[int, int]) -> Iterator[tuple[float, np.ndarray]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        start = stream.start_time * stream.time_base if stream.start_time is not None else 0
        for frame in container.decode(stream):
            t = float(frame.pts * frame.time_base - start) if frame.pts is not None else 0.0
            yield t, frame.to_ndarray(width=size[0], height=size[1], format="rgb24")


def splice_videos(out: str | Path, segments: Iterable[Segment], size: tuple[int, int] = (640, 360),
                  fps: float = 25.0, **writer_options) -> list[tuple[float, float]]:
    """Write ``segments`` one after another into ``out``; returns each one's (start, end) time."""
    spans = []
    clock = 0
    with VideoWriter(out, fps=fps, size=size, **writer_options) as writer:
        for seg in segments:
            first = clock
            if seg.frames is not None:
                for frame in seg.frames:
                    writer.write(frame)
                    clock += 1
            else:
                wanted = None if seg.seconds is None else int(round(seg.seconds * fps))
                written = 0
                while wanted is None or written < wanted:
                    produced = False
                    pass_start = written  # each pass over the source restarts its clock
                    for t, frame in _source_frames(Path(seg.source), size):
                        # resample the source to the output rate by presentation time
                        if t + 1e-6 < seg.start + (written - pass_start) / fps:
                            continue
                        writer.write(frame)
                        clock += 1
                        written += 1
                        produced = True
                        if wanted is not None and written >= wanted:
                            break
                    if wanted is None or not produced:
                        break
            spans.append((first / fps, clock / fps))
    return spans


def noise_frames(count: int, size: tuple[int, int] = (320, 240), seed: int = 0) -> list[np.ndarray]:
    """Frames of fresh uniform noise: every pixel changes every frame."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8) for _ in range(count)]


def static_scene_frames(count: int, size: tuple[int, int] = (320, 240), seed: int = 0,
                        square: int = 24) -> list[np.ndarray]:
    """A fixed textured background with one small square sliding across it."""
    rng = np.random.default_rng(seed)
    height, width = size[1], size[0]
    background = np.repeat(np.repeat(rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3),
                                                  dtype=np.uint8), 16, 0), 16, 1)[:height, :width]
    frames = []
    for i in range(count):
        frame = background.copy()
        x = int((width - square) * i / max(1, count - 1))
        y = height // 2 - square // 2
        frame[y:y + square, x:x + square] = (255, 40, 40)
        frames.append(frame)
    return frames
