"""Streaming video decoding with PyAV.

Frames are sampled at a target rate by *presentation time* (the stream's pts), never by
counting frames, so variable-frame-rate files get correct timestamps. Only the sampled
frames are converted, straight from the decoder's YUV to RGB at the encoder's input size
(one swscale pass, no full-size RGB copy); the file is never held in memory.

Decoding less: at 1 fps from a 25 fps source, 24 of 25 frames are thrown away. A packet whose
frame cannot be a sampled one is sent to the decoder with ``skip_frame = NONREF``, so a
non-reference frame (most B-frames) is not decoded at all; reference frames still are (later
frames need them). When the sampling interval is longer than a GOP (0.2 fps on a file with a
keyframe every 2 s), a whole GOP without a frame that can be sampled is not sent to the
decoder at all. Which frames can be sampled is known from the packets' presentation times
before decoding (:mod:`vidseek.indexer.decode_plan`, shared with live streams), so the
sampled frames and their times are exactly those of a full decode (see :class:`FrameSampler`).

Partial-decode policy: iterating a :class:`FrameSampler` yields every batch that decoded and then
raises :class:`~vidseek.errors.CorruptVideoError` (or its subclass
:class:`~vidseek.errors.TruncatedVideoError` when the stream stops well short of the
duration the container declares). Callers decide what to do with the partial frames;
ingest rejects the whole file so the archive never holds half a video.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import stat
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np
from PIL import Image

from ..errors import (ConfigError, CorruptVideoError, EmptyFileError, NotAVideoError, TruncatedVideoError,
                      VideoError)
from .decode_plan import DecodePlan, decoder_reset_test, sampling_interval

__all__ = ["VideoInfo", "FrameBatch", "FrameSampler", "probe_video", "read_frame"]

logger = logging.getLogger(__name__)

# A stream whose last frame ends this far before the declared duration is truncated.
_TRUNCATION_TOLERANCE_S = 1.0
_TRUNCATION_TOLERANCE_FRACTION = 0.01


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video's first video stream."""

    path: Path
    duration: float  # seconds, as declared by the container (0.0 when unknown)
    width: int
    height: int
    codec: str
    native_fps: float  # average frame rate (0.0 when unknown)


@dataclass(frozen=True)
class FrameBatch:
    """Consecutive sampled frames: ``pixels[i]`` was shown at ``times[i]`` seconds."""

    times: np.ndarray  # float64 [B], seconds from the start of the stream
    pixels: np.ndarray  # uint8 [B, H, W, 3], RGB

    def __len__(self) -> int:
        return len(self.times)


# What a path is when it is not a regular file (os.stat's mode), to name it in errors.
_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"))
# Still-image formats and codecs FFmpeg opens as a one-frame "video".
_IMAGE_CODECS = frozenset({"png", "apng", "mjpeg", "jpegls", "jpeg2000", "bmp", "tiff", "webp",
                           "gif", "ppm", "pgm", "pbm", "pam", "qoi", "sgi", "targa", "xbm",
                           "xwd", "dpx", "exr", "hdr", "pcx", "sunrast", "jpegxl", "photocd"})
_IMAGE_NAMES = {"mjpeg": "JPEG", "jpegls": "JPEG-LS", "jpeg2000": "JPEG 2000", "jpegxl": "JPEG XL"}


def cannot_read(path: Path, exc: OSError) -> VideoError:
    """The error for an input that exists but cannot be read ("cannot read the file:
    permission denied"); the daemon retries these, the cause may be passing."""
    reason = "permission denied" if exc.errno in (errno.EACCES, errno.EPERM) else (exc.strerror or str(exc))
    return VideoError(path, f"cannot read the file: {reason}")


def _check_file(path: Path) -> bytes:
    """Name what keeps ``path`` from being read as a video file, before FFmpeg sees it (a
    FIFO would block it, a permission error would pass for "not a video"); return the
    file's first bytes."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise NotAVideoError(path, f"dangling symbolic link: its target {os.readlink(path)} "
                                       "does not exist") from None
        raise NotAVideoError(path, "file does not exist") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotAVideoError(path, "symbolic link loop: the link leads back to itself") from None
        raise cannot_read(path, exc) from exc
    for test, kind in _FILE_KINDS:
        if test(info.st_mode):
            raise NotAVideoError(path, f"is {kind}, not a video file")
    if info.st_size == 0:
        raise EmptyFileError(path, "file is empty (0 bytes)")
    try:
        with open(path, "rb") as fh:
            return fh.read(12)
    except OSError as exc:
        raise cannot_read(path, exc) from exc


def _still_image(container: av.container.InputContainer, stream: av.VideoStream) -> str | None:
    """The image format (``PNG``, ``JPEG``...) if the file is a still picture, else None:
    FFmpeg opened it with an image demuxer (``png_pipe``, ``jpeg_pipe``...), or its one
    stream holds a single frame of an image codec (a one-frame GIF; MJPEG with many frames
    is a real video)."""
    codec = stream.codec_context.name
    fmt = container.format.name
    if fmt.endswith("_pipe") or fmt == "image2" or (codec in _IMAGE_CODECS and stream.frames == 1):
        return _IMAGE_NAMES.get(codec, codec.upper())
    return None


def _open(path: Path) -> av.container.InputContainer:
    head = _check_file(path)
    try:
        container = av.open(str(path), mode="r")
    except av.error.FFmpegError as exc:
        if isinstance(exc, PermissionError):
            raise cannot_read(path, exc) from exc
        if head[4:8] == b"ftyp":
            raise CorruptVideoError(
                path, f"MP4/MOV header found but the file cannot be read (truncated or damaged?): {exc}"
            ) from exc
        raise NotAVideoError(path, f"not a video FFmpeg can read: {exc}") from exc
    if not container.streams.video:
        container.close()
        raise NotAVideoError(path, "contains no video stream")
    image = _still_image(container, container.streams.video[0])
    if image is not None:
        container.close()
        raise NotAVideoError(path, f"is a still image ({image}), not a video")
    return container


def _declared_duration(container: av.container.InputContainer, stream: av.VideoStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def probe_video(path: str | Path) -> VideoInfo:
    """Read a video's header: duration, size, codec, frame rate. Decodes nothing."""
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        return VideoInfo(
            path=path,
            duration=_declared_duration(container, stream),
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            codec=stream.codec_context.name,
            native_fps=float(rate) if rate else 0.0,
        )
    finally:
        container.close()


def _frame_time(frame: av.VideoFrame, start: Fraction, fallback: float) -> float:
    if frame.pts is None or frame.time_base is None:
        return fallback
    return float(frame.pts * frame.time_base - start)


class FrameSampler:
    """Decode a video and yield RGB frames sampled every ``1/fps`` seconds, in batches.

    For each target time ``k/fps`` the first frame shown at or after it is taken, so a
    sampled frame's timestamp is its true presentation time. ``size`` is (width, height)
    of the returned pixels: frames are resized (not cropped) so the whole picture is kept.
    After iteration, ``frames_decoded`` (frames the decoder produced) and ``duration`` (end
    of the last frame, seconds) describe what was read.

    ``skip_nonref`` (default on): a frame is taken only if it is the earliest of its interval
    ``[k/fps, (k+1)/fps)``, so a packet whose presentation time is later than another packet
    already seen in the same interval is decoded with ``skip_frame = NONREF``: if nothing
    references it, FFmpeg does not decode it. Every frame that can be taken is still decoded,
    so the choice and the times equal a full decode's exactly. A whole GOP with no frame
    that can be taken is not decoded at all (sparse sampling: 0.2 fps on a file with a
    keyframe every 2 s decodes one GOP in five; ``gops_skipped`` counts them). Skipping stops
    for the rest of the file at the first packet without a timestamp or frame out of order
    (nothing to reason from). ``threads``: FFmpeg decoding threads (frame threading); 0 lets
    FFmpeg pick one per core, which oversubscribes the cores the encoder uses at the same time.

    ``deblock`` (default on): False sets FFmpeg's ``skip_loop_filter = all``, so H.264 and
    HEVC decode without their in-loop deblocking filter, 1.3-1.4x faster on 720p H.264.
    Not exact: pixels differ slightly (blocking edges stay, and reference frames carry
    the difference forward until the next keyframe); times and the sampled frames are the
    same. Codecs without such a filter ignore it.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float = 1.0,
        size: tuple[int, int] = (224, 224),
        batch_size: int = 16,
        *,
        skip_nonref: bool = True,
        threads: int = 0,
        deblock: bool = True,
    ) -> None:
        if not math.isfinite(fps) or fps <= 0:
            raise ConfigError(f"fps must be a positive number, got {fps}")
        if batch_size <= 0:
            raise ConfigError(f"batch_size must be positive, got {batch_size}")
        if threads < 0:
            raise ConfigError(f"threads must be >= 0 (0: FFmpeg's choice), got {threads}")
        self.path = Path(path)
        self.fps = fps
        self.size = size
        self.batch_size = batch_size
        self.skip_nonref = skip_nonref
        self.threads = threads
        self.deblock = deblock
        self.frames_decoded = 0
        self.gops_skipped = 0
        self.duration = 0.0

    def __iter__(self) -> Iterator[FrameBatch]:
        path, fps = self.path, self.fps
        width, height = self.size
        container = _open(path)
        self.frames_decoded = self.gops_skipped = 0
        times: list[float] = []
        pixels: list[np.ndarray] = []
        try:
            stream = container.streams.video[0]
            codec = stream.codec_context
            # frame threading: parallel across frames, so it works on any H.264 (slice threading
            # needs the encoder to have cut frames into slices)
            stream.thread_type = "FRAME"
            codec.thread_count = self.threads
            if not self.deblock:  # read when the decoder opens, at the first packet
                codec.options = {**codec.options, "skip_loop_filter": "all"}
            start = Fraction(0)
            if stream.start_time is not None and stream.time_base is not None:
                start = stream.start_time * stream.time_base
            rate = float(stream.average_rate or stream.guessed_rate or 25)
            declared = _declared_duration(container, stream)
            next_interval = 0  # the interval whose first frame is taken next
            last_time = -math.inf
            plan = DecodePlan(fps, start, stream.time_base, self.skip_nonref, decoder_reset_test(codec))
            try:
                for packet in container.demux(stream):
                    for todo, skip in plan.feed(packet):
                        codec.skip_frame = skip
                        for frame in todo.decode():
                            fallback = last_time + 1.0 / rate if self.frames_decoded else 0.0
                            t = _frame_time(frame, start, fallback)
                            self.frames_decoded += 1
                            if frame.pts is None or t <= last_time:
                                plan.stop()  # packet times no longer say which frame is taken
                            if t <= last_time:  # duplicate or out-of-order pts: keep time monotonic
                                t = last_time + 1e-6
                            last_time = t
                            self.duration = max(t, 0.0) + 1.0 / rate
                            if sampling_interval(t, fps) < next_interval:
                                continue
                            times.append(max(t, 0.0))
                            pixels.append(frame.to_ndarray(width=width, height=height, format="rgb24"))
                            next_interval = sampling_interval(t, fps) + 1
                            if len(times) == self.batch_size:
                                yield FrameBatch(np.asarray(times), np.stack(pixels))
                                times, pixels = [], []
                self.gops_skipped = plan.gops_dropped
                self.duration = max(self.duration, plan.skipped_end + 1.0 / rate)
            except av.error.FFmpegError as exc:
                if times:
                    yield FrameBatch(np.asarray(times), np.stack(pixels))
                raise CorruptVideoError(
                    path,
                    f"decoding failed after {self.frames_decoded} frames: {exc}",
                    frames_decoded=self.frames_decoded,
                ) from exc
            if times:
                yield FrameBatch(np.asarray(times), np.stack(pixels))
            if self.frames_decoded == 0:
                raise CorruptVideoError(path, "no frame could be decoded", frames_decoded=0)
            tolerance = max(_TRUNCATION_TOLERANCE_S, _TRUNCATION_TOLERANCE_FRACTION * declared)
            if declared > 0 and self.duration < declared - tolerance:
                raise TruncatedVideoError(
                    path,
                    f"stream ends at {self.duration:.2f}s but the container declares "
                    f"{declared:.2f}s (truncated file?); {self.frames_decoded} frames decoded",
                    frames_decoded=self.frames_decoded,
                )
        finally:
            container.close()


def read_frame(path: str | Path, time: float) -> Image.Image:
    """Return the frame shown at ``time`` seconds as a full-size RGB image."""
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        start = Fraction(0)
        if stream.start_time is not None and stream.time_base is not None:
            start = stream.start_time * stream.time_base
        if time > 0 and stream.time_base is not None:
            container.seek(int((Fraction(time).limit_denominator(10**6) + start) / stream.time_base),
                           stream=stream, backward=True)
        chosen = None
        for frame in container.decode(stream):
            t = _frame_time(frame, start, 0.0)
            if chosen is not None and t > time + 1e-6:
                break
            chosen = frame
        if chosen is None:
            raise CorruptVideoError(path, f"no frame decodes at {time:.2f}s")
        return chosen.to_image()
    except av.error.FFmpegError as exc:
        raise CorruptVideoError(path, f"decoding failed near {time:.2f}s: {exc}") from exc
    finally:
        container.close()
