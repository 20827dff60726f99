"""Live sources for tests and benchmarks: a clip sequence aired in real time as HLS or MPEG-TS.

:class:`LiveFeed` decodes its clips once (resized to one size), then :meth:`LiveFeed.air`
encodes them frame by frame at the wall-clock pace of the frame rate into a sink: an HLS
folder (playlist and segments written as they air, ``#EXT-X-ENDLIST`` at the end; serve the
folder over HTTP to get a live playlist) or an MPEG-TS URL that FFmpeg opens for writing
(``tcp://host:port`` connects to a listening ingest). ``aired`` maps each sent frame's
stream time to the wall clock it was sent at, so a benchmark can tell when a moment aired.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
import numpy as np

__all__ = ["LiveFeed", "clip_frames"]

logger = logging.getLogger(__name__)


def clip_frames(path: str | Path, size: tuple[int, int], seconds: float | None = None,
                fps: float = 25.0) -> list[np.ndarray]:
    """A clip's frames as RGB arrays of ``size``, resampled to ``fps`` (by presentation time)."""
    frames: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        next_t = 0.0
        for frame in container.decode(stream):
            t = float(frame.pts * frame.time_base) if frame.pts is not None else next_t
            while t + 1e-6 >= next_t and (seconds is None or next_t < seconds):
                frames.append(frame.to_ndarray(width=size[0], height=size[1], format="rgb24"))
                next_t = len(frames) / fps
    return frames


@dataclass
class LiveFeed:
    """Frames to air at ``fps``; ``size`` is (width, height), even numbers."""

    frames: Sequence[np.ndarray]
    fps: int = 25
    aired: list[tuple[float, float]] = field(default_factory=list)  # (stream seconds, wall clock)

    @classmethod
    def from_clips(cls, clips: Sequence[str | Path], size: tuple[int, int] = (320, 240),
                   fps: int = 25, loops: int = 1) -> "LiveFeed":
        frames = [f for clip in clips for f in clip_frames(clip, size, fps=fps)]
        return cls(frames * loops, fps)

    @property
    def seconds(self) -> float:
        return len(self.frames) / self.fps

    def air(self, target: str | Path, *, hls: bool = False, stop: threading.Event | None = None,
            start: int = 0, count: int | None = None, segment_seconds: float = 1.0,
            time_offset: float = 0.0, codec: str = "libx264") -> int:
        """Encode frames ``start`` .. ``start + count`` in real time into ``target``: an HLS
        folder (``hls``: it gets ``live.m3u8``) or an MPEG-TS URL. Returns the frames sent.
        ``time_offset`` shifts the pts (a sender that resumes later in its timeline)."""
        frames = self.frames[start: None if count is None else start + count]
        height, width = frames[0].shape[:2]
        if hls:
            folder = Path(target)
            folder.mkdir(parents=True, exist_ok=True)
            out = av.open(str(folder / "live.m3u8"), mode="w", format="hls", options={
                "hls_time": str(segment_seconds), "hls_list_size": "0",
                "hls_segment_filename": str(folder / "seg%05d.ts")})
        else:
            out = av.open(str(target), mode="w", format="mpegts")
        sent = 0
        try:
            stream = out.add_stream(codec, rate=self.fps)
            assert isinstance(stream, av.VideoStream)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            if codec == "libx264":
                stream.options = {"preset": "ultrafast", "tune": "zerolatency",
                                  "g": str(self.fps), "keyint_min": str(self.fps)}
            stream.time_base = Fraction(1, self.fps)
            first = time.monotonic()
            base = round(time_offset * self.fps)
            for n, pixels in enumerate(frames):
                if stop is not None and stop.is_set():
                    break
                delay = first + n / self.fps - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                frame.pts = base + n
                for packet in stream.encode(frame):
                    out.mux(packet)
                self.aired.append(((base + n) / self.fps, time.time()))
                sent += 1
            for packet in stream.encode():
                out.mux(packet)
        except (av.error.FFmpegError, OSError) as exc:  # the receiver went away
            logger.info("live feed to %s stopped: %s", target, exc)
        finally:
            try:
                out.close()
            except (av.error.FFmpegError, OSError):
                pass
        return sent
