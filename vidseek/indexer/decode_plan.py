"""Which demuxed packets a sampling decoder must decode (files and live streams alike).

Frames are sampled by presentation time: for each interval ``[k/fps, (k+1)/fps)`` the
first frame shown in it is taken. Packets carry their presentation times before they are
decoded, so the frames that can be taken are known in advance, and the rest need not be
decoded: a non-reference frame is dropped by FFmpeg (``skip_frame = NONREF``), and a whole
GOP that nothing later references is not sent to the decoder at all. The sampled frames
and their times stay exactly those of a full decode (tests/test_decode_exact.py).
"""

from __future__ import annotations

import enum
import math
from fractions import Fraction
from typing import Callable, Iterator, Literal

import av

__all__ = ["DecodePlan", "decoder_reset_test", "sampling_interval"]

Skip = Literal["DEFAULT", "NONREF"]  # the codec's skip_frame for one packet
Todo = list[tuple[av.Packet, Skip]]  # packets to decode now, in order, with their skip_frame


def sampling_interval(t: float, fps: float) -> int:
    """The sampling interval ``[k/fps, (k+1)/fps)`` a time falls in (a microsecond of slack)."""
    return math.floor(t * fps + 1e-6)


def _nal_types(data: bytes, length_size: int) -> Iterator[int]:
    """The first header byte of each NAL unit of an H.264/HEVC packet: length-prefixed
    (``length_size`` bytes, MP4/MKV) or, with ``length_size`` 0, after Annex B start codes."""
    if length_size:
        i = 0
        while i + length_size < len(data):
            n = int.from_bytes(data[i:i + length_size], "big")
            yield data[i + length_size]
            i += length_size + n
        return
    i = data.find(b"\x00\x00\x01")
    while 0 <= i < len(data) - 3:
        yield data[i + 3]
        i = data.find(b"\x00\x00\x01", i + 3)


def decoder_reset_test(codec: av.codec.context.CodecContext) -> Callable[[av.Packet], bool] | None:
    """For a codec where it can be told from the packet, a test of whether a keyframe packet
    starts afresh (no later frame references anything before it): an H.264 IDR picture, an
    HEVC IDR picture, any frame of an intra-only codec. None where it cannot be told (a
    keyframe flag alone also marks open-GOP I-frames and intra-refresh recovery points,
    which reference earlier frames)."""
    if codec.codec.intra_only:
        return lambda packet: True
    if codec.name not in ("h264", "hevc"):
        return None
    extra = codec.extradata or b""
    length_size = 0  # Annex B unless the extradata is an avcC/hvcC record
    if extra[:1] == b"\x01" and codec.name == "h264" and len(extra) > 4:
        length_size = (extra[4] & 3) + 1
    elif extra[:1] == b"\x01" and codec.name == "hevc" and len(extra) > 21:
        length_size = (extra[21] & 3) + 1
    if codec.name == "h264":
        return lambda packet: any(b & 0x1F == 5 for b in _nal_types(bytes(packet), length_size))
    return lambda packet: any((b >> 1) & 0x3F in (19, 20) for b in _nal_types(bytes(packet), length_size))


class _Mode(enum.Enum):
    ALL = "decode every packet"  # nothing to reason from (no timestamps, frames out of order)
    NONREF = "skip non-reference frames that cannot be sampled"
    GOPS = "also drop whole GOPs that cannot be sampled"


class DecodePlan:
    """Feed it the demuxed packets in order; it answers which to decode now, and how.

    A packet is *wanted* when its presentation time is the earliest seen so far in its
    sampling interval: only such a frame can be the one sampled there. Others go to the
    decoder with ``NONREF`` (FFmpeg drops them unless later frames reference them).

    Modes, which only ever go down (GOPS → NONREF → ALL):

    - GOPS: a GOP (a keyframe and the packets up to the next) with no wanted packet is not
      decoded when the next keyframe starts afresh (``resets``: an IDR picture, an
      intra-only codec), since nothing after it then references it. The plan starts here
      when ``enabled`` and ``resets`` is given, and leaves for NONREF for good at a
      keyframe that does not start afresh (an open-GOP I-frame, an intra-refresh recovery
      point), at frames shown before their keyframe (leading frames reference the GOP
      before), at a GOP longer than ``_MAX_GOP_PACKETS``, and when the stream does not
      begin on a fresh keyframe (a file cut mid-GOP: its first packets decode to nothing,
      and "wanted" assumes every packet sent gives a frame). ``decoding``: the decoder has
      already begun the current GOP (a live connection, planned from its first frame):
      the packets up to the next keyframe are sent.
    - NONREF: every GOP is decoded; unwanted packets with ``NONREF``.
    - ALL: every packet is decoded; after a packet without a timestamp, or when the caller
      saw frames out of order (:meth:`stop`).

    In GOPS mode a GOP's packets are kept until its first wanted packet, then sent with
    every later packet of the GOP as it comes. A GOP without one is *held* at the next
    keyframe, and dropped once the packet after that keyframe shows no leading frame.
    """

    _MAX_GOP_PACKETS = 2000  # a stream without later keyframes is decoded, not buffered

    def __init__(self, fps: float, start: Fraction, time_base: Fraction | None, enabled: bool,
                 resets: Callable[[av.Packet], bool] | None = None, *, decoding: bool = False) -> None:
        self.fps = fps
        self.start = start  # the time subtracted from a packet's pts to give its sampling time
        self.time_base = time_base
        self.resets = resets
        if not enabled or time_base is None:
            self.mode = _Mode.ALL
        else:
            self.mode = _Mode.GOPS if resets is not None else _Mode.NONREF
        self.earliest: dict[int, Fraction] = {}  # per interval, the earliest packet time seen
        self.gop: Todo = []  # the current GOP's packets not sent yet
        self.gop_sending = decoding  # the current GOP has a wanted packet: sent, or sent after `held`
        self.first = not decoding  # no packet with data seen yet
        self.keyframe_time: Fraction | None = None  # the current GOP's keyframe's time
        self.held: Todo | None = None  # the previous GOP, unwanted: dropped unless leading frames come
        self.skipped_end = 0.0  # the latest packet time not decoded (its frame may not come out)
        self.gops_dropped = 0

    def stop(self) -> None:
        """Frames came out of order: packet times no longer say which frame is taken, so
        decode everything from here on (what is kept is sent with the next packet)."""
        self.mode = _Mode.ALL

    def feed(self, packet: av.Packet) -> Todo:
        """The packets to decode now (``packet``, after earlier ones kept), each with its skip_frame."""
        if packet.size and (packet.pts is None or self.time_base is None):
            self.mode = _Mode.ALL  # nothing to reason from
        if self.mode is _Mode.ALL:  # what is kept is sent too (even at the end: after stop())
            return self._send_kept() + [(packet, "DEFAULT")]
        if not packet.size:  # the flush packet at the end of the stream
            return self.finish() + [(packet, "DEFAULT")]
        assert packet.pts is not None and self.time_base is not None
        p = packet.pts * self.time_base - self.start
        out: Todo = []
        if self.mode is _Mode.GOPS:
            out = self._gop_boundary(packet, p)
        self.first = False
        entry: tuple[av.Packet, Skip] = (packet, "DEFAULT" if self._wanted(p) else "NONREF")
        if self.mode is not _Mode.GOPS:
            return out + [entry]
        return out + self._add_to_gop(entry)

    def finish(self) -> Todo:
        """At the end of the stream: what still has to be decoded (an unwanted last GOP, and
        a held GOP followed only by a keyframe, need not)."""
        if self.held is not None:
            self._drop(self.held)
        out = self.gop if self.gop_sending else []
        if self.gop and not self.gop_sending:
            self._drop(self.gop)
        self.held, self.gop = None, []
        return out

    # -- steps of feed -----------------------------------------------------------------
    def _wanted(self, p: Fraction) -> bool:
        """Whether the packet shown at ``p`` is the earliest of its interval so far."""
        interval = sampling_interval(float(p), self.fps)
        first = self.earliest.get(interval)
        wanted = first is None or p <= first
        if wanted:
            self.earliest[interval] = p
        else:
            self.skipped_end = max(self.skipped_end, float(p))
        if len(self.earliest) > 64:  # only intervals near the decoder's reorder window matter
            del self.earliest[min(self.earliest)]
        return wanted

    def _gop_boundary(self, packet: av.Packet, p: Fraction) -> Todo:
        """GOPS mode, before ``packet`` is queued: leave the mode where dropping stops being
        safe; at a fresh keyframe, start a new GOP (holding the last one if unwanted); at
        the packet after it, drop the held GOP unless ``packet`` is a leading frame."""
        assert self.resets is not None
        if (self.first or packet.is_keyframe) and not (packet.is_keyframe and self.resets(packet)):
            return self._send_kept()  # a stream cut mid-GOP, or a keyframe that is no fresh start
        if packet.is_keyframe:
            out: Todo = []
            if self.held is not None:  # the GOP after it was a lone keyframe: no leading frames
                self._drop(self.held)
                self.held = None
            if self.gop_sending:
                out = self.gop  # it waited on the held GOP, now dropped
            else:
                self.held = self.gop or None
            self.gop, self.gop_sending, self.keyframe_time = [], False, p
            return out
        if self.held is not None:  # the first packet after a keyframe
            if self.keyframe_time is not None and p < self.keyframe_time:
                return self._send_kept()  # open GOPs: leading frames reference the held GOP
            self._drop(self.held)
            self.held = None
        return []

    def _add_to_gop(self, entry: tuple[av.Packet, Skip]) -> Todo:
        """GOPS mode: queue ``entry`` in the current GOP; send the GOP once it has a wanted
        packet and no held GOP waits before it."""
        self.gop.append(entry)
        self.gop_sending = self.gop_sending or entry[1] == "DEFAULT"
        if len(self.gop) > self._MAX_GOP_PACKETS:
            return self._send_kept()
        if self.gop_sending and self.held is None:
            out, self.gop = self.gop, []
            return out
        return []

    def _send_kept(self) -> Todo:
        """Everything kept (held and current GOP), to decode now; no GOP is dropped from here
        on (GOPS mode becomes NONREF)."""
        out = (self.held or []) + self.gop
        self.held, self.gop, self.gop_sending = None, [], True
        if self.mode is _Mode.GOPS:
            self.mode = _Mode.NONREF
        return out

    def _drop(self, packets: Todo) -> None:
        self.gops_dropped += 1
        for packet, _ in packets:
            if packet.pts is not None and self.time_base is not None:
                self.skipped_end = max(self.skipped_end, float(packet.pts * self.time_base - self.start))
