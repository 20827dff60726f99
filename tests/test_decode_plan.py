"""DecodePlan on hand-made packet sequences: the cases a real file rarely shows in order.

(tests/test_decode_exact.py checks the plan on real encoded files against full decodes.)
"""

from __future__ import annotations

from fractions import Fraction

from vidseek.indexer.decode_plan import DecodePlan


class Packet:
    """What the plan reads of a packet: pts (in 1/10 s), keyframe flag, size (0: flush)."""

    def __init__(self, pts: int | None, keyframe: bool = False, size: int = 10) -> None:
        self.pts, self.is_keyframe, self.size = pts, keyframe, size

    def __repr__(self) -> str:
        return f"{'K' if self.is_keyframe else 'P'}{self.pts}"


def plan() -> DecodePlan:
    """1 fps over 1/10 s packet times; every keyframe a fresh start (an IDR)."""
    return DecodePlan(1.0, Fraction(0), Fraction(1, 10), True, lambda packet: True)


def names(todo) -> list[str]:
    return [f"{packet!r}:{skip}" for packet, skip in todo]


def test_a_gop_without_a_sampled_frame_is_held_then_dropped():
    p = plan()
    assert names(p.feed(Packet(0, True))) == ["K0:DEFAULT"]
    assert names(p.feed(Packet(2))) == ["P2:NONREF"]  # interval 0 already has its frame
    assert names(p.feed(Packet(4, True))) == []  # K4's GOP holds nothing new: held
    assert names(p.feed(Packet(10, True))) == []  # K10 is wanted, but waits on the held GOP
    assert names(p.feed(Packet(12))) == ["K10:DEFAULT", "P12:NONREF"]  # no leading frame: K4 dropped
    assert p.gops_dropped == 1


def test_after_stop_what_is_kept_is_decoded_even_at_the_end():
    """Frames out of order make packet times meaningless: a held GOP may hold the frame taken."""
    p = plan()
    for packet in (Packet(0, True), Packet(2), Packet(4, True), Packet(10, True)):
        p.feed(packet)
    assert names(p.feed(Packet(12, True))) == ["K10:DEFAULT"]  # K12 (interval 1 again) held
    p.stop()
    assert names(p.feed(Packet(None, size=0))) == ["K12:NONREF", "PNone:DEFAULT"]
    assert p.gops_dropped == 1


def test_leading_frames_stop_gop_dropping_for_good():
    p = plan()
    p.feed(Packet(0, True))
    assert names(p.feed(Packet(4, True))) == []  # held
    # shown before its keyframe: an open GOP, which references the held GOP
    assert names(p.feed(Packet(8, True))) == []
    assert names(p.feed(Packet(6))) == ["K4:NONREF", "K8:NONREF", "P6:NONREF"]
    assert names(p.feed(Packet(30, True))) == ["K30:DEFAULT"]  # every GOP decoded from here on
    assert p.gops_dropped == 0


def test_a_stream_that_does_not_start_on_a_fresh_keyframe_drops_no_gop():
    p = plan()
    assert names(p.feed(Packet(0))) == ["P0:DEFAULT"]
    assert names(p.feed(Packet(4, True))) == ["K4:NONREF"]
    assert names(p.feed(Packet(30, True))) == ["K30:DEFAULT"]
    assert p.gops_dropped == 0


def test_a_plan_joining_a_gop_being_decoded_sends_its_rest():
    """A live connection is planned from its first frame: the GOP under way is decoded."""
    p = DecodePlan(1.0, Fraction(0), Fraction(1, 10), True, lambda packet: True, decoding=True)
    assert names(p.feed(Packet(3))) == ["P3:DEFAULT"]
    assert names(p.feed(Packet(5))) == ["P5:NONREF"]
    assert names(p.feed(Packet(12, True))) == ["K12:DEFAULT"]
    assert p.gops_dropped == 0
