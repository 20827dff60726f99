"""The live-stream reader thread (used by :mod:`vidseek.indexer.stream`).

:class:`StreamReader` connects to the source (again, after a drop), demuxes its video
packets, decodes and samples frames at the archive's rate by presentation time, remuxes the
packets into a recording when asked, and posts what it read as messages to a queue that
the ingest consumes: :class:`NewPart`, :class:`SampledFrame`, :class:`ReaderStatus`,
:class:`StreamEnded`, or the exception that stopped it.

Decoding less, as for files: once a connection's first frame has fixed its timeline, the
packets go through the same :class:`~vidseek.indexer.decode.DecodePlan` as
:class:`~vidseek.indexer.decode.FrameSampler`'s, so a frame sampling cannot pick is not
decoded (``skip_nonref``), and at a sampling interval longer than the source's GOP a whole
GOP is not decoded. The sampled frames and their times are those of a full decode.
"""

from __future__ import annotations

import logging
import math
import queue
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import av
import numpy as np

from ..errors import StreamError
from .decode_plan import DecodePlan, Todo, decoder_reset_test, sampling_interval
from .pipeline import IngestConfig

if TYPE_CHECKING:
    from .stream import StreamOptions

__all__ = ["NewPart", "SampledFrame", "ReaderStatus", "StreamEnded", "StreamReader"]

logger = logging.getLogger(__name__)

_HLS = re.compile(r"\.m3u8?($|\?)", re.IGNORECASE)
_MAX_PREROLL_PACKETS = 2000  # a source whose frames do not come out is not buffered for ever


# -- the reader thread's messages --------------------------------------------------------
@dataclass(frozen=True)
class NewPart:
    """A part starts (a connection's first frame, or ``part_seconds`` after the last part)."""

    offset: float  # session time the part starts at
    aired_at: float  # wall clock at ``offset``
    gap_before: float
    recording: str
    width: int
    height: int
    codec: str
    native_fps: float


@dataclass(frozen=True)
class SampledFrame:
    time: float  # session seconds
    pixels: np.ndarray


@dataclass(frozen=True)
class ReaderStatus:
    state: str  # "dropped" (a connection was lost) or "retrying" (an attempt failed)
    error: str


@dataclass(frozen=True)
class StreamEnded:
    pass


def _problem(exc: BaseException, url: str, redacted: str) -> str:
    """An FFmpeg error's message with the URL it quotes redacted."""
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).replace(url, redacted)


class StreamReader(threading.Thread):
    """Reads the source: connects (again), samples frames, records packets; posts messages.

    ``config``: the archive's ingest settings (``fps``, ``skip_nonref``, ``deblock``,
    ``decode_threads``). ``size``: the side frames are converted to; the consumer sets it,
    then ``sized``, once its encoder is loaded (the reader waits at the first part).
    ``started_at``: the session's wall clock at time 0 (None: a new session, which starts
    at its first frame); ``floor``: session time already committed (a resumed session).
    """

    def __init__(self, url: str, redacted: str, config: IngestConfig, options: StreamOptions,
                 out: "queue.Queue[Any]", started_at: float | None, floor: float,
                 recording_name: str) -> None:
        super().__init__(name="vidseek-stream", daemon=True)
        self.url, self.redacted, self.config = url, redacted, config
        self.options, self.out = options, out
        self.size = 0
        self.started_at = started_at
        self.floor = floor
        self.recording_name = recording_name
        self.stop_event = threading.Event()
        self.sized = threading.Event()  # set once ``size`` is the encoder's input side
        self.frames_decoded = 0
        self.gops_skipped = 0
        self.aired = floor
        self.connected_once = False
        self._part_count = 0

    def stop(self) -> None:
        self.stop_event.set()

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # handed to the consumer
            self.out.put(exc)

    def _open(self) -> av.container.InputContainer:
        options = {}
        if self.url.lower().startswith(("rtsp://", "rtsps://")):
            options["rtsp_transport"] = "tcp"  # UDP loses packets behind NAT and firewalls
        try:
            container = av.open(self.url, options=options,
                                timeout=(self.options.open_timeout, self.options.read_timeout))
        except av.error.FFmpegError as exc:
            raise StreamError(self.redacted, "cannot open the stream: "
                              + _problem(exc, self.url, self.redacted)) from exc
        if not container.streams.video:
            container.close()
            raise StreamError(self.redacted, "the stream has no video")
        return container

    def _run(self) -> None:
        failing_since: float | None = None
        closed_cleanly = False  # the last connection ended by the sender closing it
        backoff = 1.0
        next_interval = 0  # the sampling interval whose first frame is taken next
        while not self.stop_event.is_set():
            try:
                container = self._open()
            except StreamError as exc:
                if not self.connected_once or not self.options.reconnect:
                    raise
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since >= self.options.reconnect_limit:
                    if closed_cleanly:  # the sender closed and did not come back: the end
                        logger.info("%s: the sender closed the stream and did not come back "
                                    "within %gs: ended", self.redacted, self.options.reconnect_limit)
                        self.out.put(StreamEnded())
                        return
                    raise StreamError(self.redacted, f"gave up reconnecting after "
                                      f"{self.options.reconnect_limit:g}s: {exc.problem}") from exc
                self.out.put(ReaderStatus("retrying", exc.problem))
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            failing_since, backoff = None, 1.0
            hls = bool(_HLS.search(urlsplit(self.url).path)) or container.format.name == "hls"
            try:
                ended, error, next_interval = self.read(container, next_interval)
            finally:
                container.close()
            if self.stop_event.is_set():
                return
            if not self.connected_once:
                raise StreamError(self.redacted, "the stream ended before a video frame could be "
                                  f"decoded{': ' + error if error else ''}")
            if ended and (hls or not self.options.reconnect):
                self.out.put(StreamEnded())
                return
            if not self.options.reconnect:
                raise StreamError(self.redacted, f"the connection dropped: {error}")
            logger.warning("%s: connection lost (%s); reconnecting", self.redacted,
                           error or "the sender closed it")
            self.out.put(ReaderStatus("dropped", error or "the sender closed the connection"))
            failing_since, closed_cleanly = time.monotonic(), ended

    def read(self, container: av.container.InputContainer,
             next_interval: int) -> tuple[bool, str, int]:
        """Read one connection; ``(ended cleanly, error, next sampling interval)``. A frame
        is sampled when it is the first of a sampling interval ``[k/fps, (k+1)/fps)`` at or
        after ``next_interval``."""
        stream = container.streams.video[0]
        codec = stream.codec_context
        stream.thread_type = "AUTO"
        codec.thread_count = self.config.decode_threads or 0
        if not self.config.deblock:  # read when the decoder opens, at the first packet
            codec.options = {**codec.options, "skip_loop_filter": "all"}
        fps = self.config.fps
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        first_pts: Fraction | None = None
        offset = 0.0
        part_offset = 0.0
        recorder: _Recorder | None = None
        plan: DecodePlan | None = None  # made at the first frame, which fixes the timeline
        # packets from the first keyframe while no frame came out yet (the decoder's delay):
        # the recording, which starts at the first frame, begins with them
        preroll: deque[av.Packet] = deque(maxlen=_MAX_PREROLL_PACKETS)
        keyed = False  # a keyframe was seen (what came before it cannot be decoded)
        last_t = -math.inf
        skipped_before = self.gops_skipped  # GOPs not decoded by earlier connections
        try:
            for packet in container.demux(stream):
                if self.stop_event.is_set():
                    return False, "", next_interval
                data = packet.size > 0  # not the flush packet at the end
                if (data and recorder is not None and packet.is_keyframe and packet.pts is not None
                        and first_pts is not None and packet.time_base is not None
                        and offset + float(packet.pts * packet.time_base - first_pts) - part_offset
                        >= self.options.part_seconds):
                    # a new part (and recording file) starts on a keyframe
                    recorder.close()
                    part_offset = offset + float(packet.pts * packet.time_base - first_pts)
                    recorder = self._new_part(container, stream, part_offset, 0.0, rate)
                if first_pts is None and data:
                    if packet.is_keyframe and not keyed:
                        preroll.clear()
                        keyed = True
                    preroll.append(packet)
                elif data and recorder is not None:
                    recorder.write(packet)  # a copy: before decoding, so a decode error loses nothing
                todo: Todo = plan.feed(packet) if plan is not None else [(packet, "DEFAULT")]
                for pending, skip in todo:
                    codec.skip_frame = skip
                    for frame in pending.decode():
                        self.frames_decoded += 1
                        if frame.pts is None or frame.time_base is None:
                            if plan is not None:
                                plan.stop()  # packet times no longer say which frame is taken
                            pts = Fraction(self.frames_decoded, 1) / Fraction(rate).limit_denominator(1000)
                        else:
                            pts = frame.pts * frame.time_base
                        if first_pts is None:
                            first_pts = pts
                            offset, gap = self._connection_offset(rate)
                            part_offset = offset
                            recorder = self._new_part(container, stream, offset, gap, rate)
                            self.connected_once = True
                            if frame.pts is not None and frame.time_base is not None:
                                plan = DecodePlan(fps, first_pts - Fraction(offset), stream.time_base,
                                                  self.config.skip_nonref, decoder_reset_test(codec),
                                                  decoding=True)
                        t = offset + float(pts - first_pts)
                        if t <= last_t:  # duplicate or out-of-order pts: keep time monotonic
                            if plan is not None:
                                plan.stop()
                            t = last_t + 1e-6
                        last_t = t
                        if (self.options.part_seconds <= t - part_offset and recorder is None):
                            part_offset = t  # without a recording, a part may start on any frame
                            self._new_part(container, stream, t, 0.0, rate)
                        self.aired = max(self.aired, t + 1.0 / rate)
                        if sampling_interval(t, fps) < next_interval:
                            continue
                        pixels = frame.to_ndarray(width=self.size, height=self.size, format="rgb24")
                        self.out.put(SampledFrame(t, pixels))
                        next_interval = sampling_interval(t, fps) + 1
                if plan is not None:
                    # frames not decoded aired all the same
                    self.aired = max(self.aired, plan.skipped_end + 1.0 / rate)
                    self.gops_skipped = skipped_before + plan.gops_dropped
                if preroll and first_pts is not None:  # the first frame came out
                    if recorder is not None:
                        for early in preroll:
                            recorder.write(early)
                    preroll.clear()
        except av.error.FFmpegError as exc:
            return False, _problem(exc, self.url, self.redacted), next_interval
        finally:
            if recorder is not None:
                recorder.close()
        return True, "", next_interval

    def _connection_offset(self, rate: float) -> tuple[float, float]:
        """Session time of this connection's first frame, and the gap before it."""
        now = time.time()
        if self.started_at is None:  # the session starts now
            self.started_at = now
            return 0.0, 0.0
        prior = max(self.aired, self.floor)  # what earlier connections (or runs) covered
        offset = max(now - self.started_at, prior)
        return offset, offset - prior

    def _new_part(self, container: av.container.InputContainer, stream: av.VideoStream,
                  offset: float, gap: float, rate: float) -> "_Recorder | None":
        assert self.started_at is not None
        self._part_count += 1
        recorder = None
        path = ""
        if self.options.record is not None:
            stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(self.started_at + offset))
            path = str(Path(self.options.record).resolve() / f"{self.recording_name}-{stamp}.ts")
            recorder = _Recorder(Path(path), stream, self.redacted)
        ctx = stream.codec_context
        self.out.put(NewPart(offset, self.started_at + offset, gap, path, ctx.width, ctx.height,
                             ctx.name, rate))
        # the consumer loads the encoder on the first part, which sets the frame size
        while not self.sized.wait(0.25):
            if self.stop_event.is_set():
                break
        return recorder


class _Recorder:
    """Remuxes a stream's video packets, unchanged, into an MPEG-TS file whose time 0 is
    the part's first frame."""

    def __init__(self, path: Path, stream: av.VideoStream, redacted: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.out = av.open(str(path), mode="w", format="mpegts")
        self.stream = self.out.add_stream_from_template(stream)
        self.base: int | None = None
        self.redacted = redacted

    def write(self, packet: av.Packet) -> None:
        """Mux a copy of ``packet``: muxing rescales a packet's times to the output stream,
        and the decode plan may still hold the original, to be decoded later."""
        if packet.pts is None or packet.dts is None:
            return
        if self.base is None:
            self.base = packet.dts
        copy = av.Packet(bytes(packet))
        copy.pts, copy.dts = packet.pts - self.base, packet.dts - self.base
        copy.time_base = packet.time_base
        copy.duration = packet.duration
        copy.is_keyframe = packet.is_keyframe
        copy.stream = self.stream
        try:
            self.out.mux(copy)
        except (av.error.FFmpegError, ValueError) as exc:  # one bad packet must not stop indexing
            logger.warning("%s: packet not recorded in %s: %s", self.redacted, self.path, exc)

    def close(self) -> None:
        try:
            self.out.close()
        except av.error.FFmpegError as exc:
            logger.warning("%s: recording %s not closed cleanly: %s", self.redacted, self.path, exc)
