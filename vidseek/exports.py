"""Search results for media tools: OpenTimelineIO timelines, CMX 3600 EDLs, contact sheets.

Every exporter takes the moments a search returned (``Moment`` or ``ObjectHit``) and the
catalog records of their videos, and writes one file atomically (:mod:`vidseek.atomic`).
:func:`export_results` picks the format from the file's suffix: ``.otio``, ``.edl``,
``.jpg``/``.jpeg``.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw

from .atomic import atomic_write, atomic_write_bytes
from .errors import MissingDependencyError, QueryError, VideoError
from .indexer.decode import read_frame
from .store.catalog import VideoRecord

__all__ = ["EXPORT_FORMATS", "ExportItem", "export_results", "export_otio", "export_edl",
           "export_contact_sheet", "edl_timeline_rate"]

EXPORT_FORMATS = {".otio": "OpenTimelineIO", ".edl": "CMX 3600 EDL", ".jpg": "contact sheet",
                  ".jpeg": "contact sheet"}

_MEDIA_EXTRA = "pip install 'vidseek[media]'"


@dataclass(frozen=True)
class ExportItem:
    """One result to export: a span of an indexed video."""

    video: VideoRecord
    start: float
    end: float
    score: float
    peak: float

    @property
    def rate(self) -> float:
        """The video's own frame rate, for frame-accurate ranges (25 when unknown)."""
        return self.video.native_fps if self.video.native_fps > 0 else 25.0


def export_results(items: Sequence[ExportItem], path: str | os.PathLike, title: str = "vidseek results") -> Path:
    """Write ``items`` to ``path`` in the format its suffix names.

    Raises :class:`~vidseek.errors.QueryError` for an unknown suffix, too many results for the
    format, or a file that cannot be written (the message names the file), and
    :class:`~vidseek.errors.MissingDependencyError` when the format needs the ``media`` extra.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in EXPORT_FORMATS:
        raise QueryError(f"{path}: unknown export format {suffix or '(none)'} "
                         f"(use {', '.join(EXPORT_FORMATS)})")
    limit = _LIMITS.get(suffix)
    if limit is not None and len(items) > limit:
        raise QueryError(f"{path}: a {EXPORT_FORMATS[suffix]} holds at most {limit} results, "
                         f"not {len(items)}; ask for fewer")
    try:
        if suffix == ".otio":
            export_otio(items, path, title)
        elif suffix == ".edl":
            export_edl(items, path, title)
        else:
            export_contact_sheet(items, path, title)
    except OSError as exc:  # atomic_write has already removed its temporary file
        raise QueryError(f"{path}: cannot write the export: {exc.strerror or exc}") from exc
    return path


# EDL event numbers have three digits; a contact sheet must stay under JPEG's 65,535 pixels.
_LIMITS = {".edl": 999, ".jpg": 400, ".jpeg": 400}


def _frames(seconds: float, rate: float) -> int:
    """The frame nearest ``seconds`` at ``rate`` (half frames round up, never to even)."""
    return int(math.floor(seconds * rate + 0.5))


# -- OpenTimelineIO ------------------------------------------------------------------
def _import_otio(path: Path, what: str):
    try:
        import opentimelineio as otio
    except ImportError as exc:
        raise MissingDependencyError(f"{path}: {what} needs opentimelineio: {_MEDIA_EXTRA}") from exc
    return otio


def _timeline(otio, items: Sequence[ExportItem], title: str, rate: Fraction | None = None):
    """The results as an OTIO timeline: one video track, one clip per result in rank order,
    each referencing its file, with a marker at the best frame and the score in the clip's
    metadata (``vidseek``).

    ``rate=None`` keeps every clip at its own video's rate (OTIO mixes rates freely). A
    ``rate`` puts every range on frames of that one rate, converted at real speed: a frame
    count means the same seconds of the file at any rate (the only reading a one-rate EDL
    can have). Times are then labelled at the rate rounded to an integer, so a 29.97 fps
    count is written as non-drop-frame timecode (see :func:`export_edl`).
    """
    timeline = otio.schema.Timeline(name=title)
    track = otio.schema.Track(name="results", kind=otio.schema.TrackKind.Video)
    timeline.tracks.append(track)
    for rank, item in enumerate(items, 1):
        count = float(rate) if rate is not None else item.rate
        label = round(count) if rate is not None else item.rate

        def at(seconds: float, count=count, label=label):
            return otio.opentime.RationalTime(_frames(seconds, count), label)

        # in and out each land on their nearest frame (at most half a frame off); a span
        # shorter than a frame still gets one
        start = at(item.start)
        end = otio.opentime.RationalTime(max(start.value + 1, at(item.end).value), label)
        media = otio.schema.ExternalReference(
            target_url=Path(item.video.path).resolve().as_uri(),
            available_range=otio.opentime.TimeRange(at(0.0), at(item.video.duration)))
        clip = otio.schema.Clip(name=f"{rank:03d} {item.video.name}", media_reference=media,
                                source_range=otio.opentime.range_from_start_end_time(start, end))
        clip.metadata["vidseek"] = {"rank": rank, "score": float(item.score), "peak": float(item.peak),
                                    "video_id": item.video.id, "start": item.start, "end": item.end}
        clip.markers.append(otio.schema.Marker(
            name=f"best frame, score {item.score:.3f}",
            marked_range=otio.opentime.TimeRange(at(item.peak), otio.opentime.RationalTime(1, label))))
        track.append(clip)
    return timeline


def export_otio(items: Sequence[ExportItem], path: str | os.PathLike, title: str = "vidseek results") -> None:
    """A timeline with one clip per result, in rank order, each at its video's own rate,
    referencing its file, with a marker at the best frame and the score in the clip's
    metadata (``vidseek``)."""
    otio = _import_otio(Path(path), "OTIO export")
    timeline = _timeline(otio, items, title)
    atomic_write_bytes(path, otio.adapters.write_to_string(timeline, "otio_json").encode())


# -- CMX 3600 ------------------------------------------------------------------------
# The timecode rates OpenTimelineIO (and so the reference EDL reader) accepts: 24, 25, 30,
# 48, 50, 60 and the NTSC rates 1000/1001 of 24, 30, 48 and 60.
_TIMECODE_RATES = tuple(sorted([Fraction(r) for r in (24, 25, 30, 48, 50, 60)]
                               + [Fraction(r * 1000, 1001) for r in (24, 30, 48, 60)]))
_RECORD_START_HOURS = 1  # the record side starts at 01:00:00:00, as editors' sequences do


def _timecode_rate(rate: float) -> Fraction:
    """The timecode rate a video of ``rate`` fps goes on best: its own when it is one
    (29.97 → 30000/1001); else the nearest that is a whole multiple or divisor of it, so every
    source frame maps to whole timeline frames (15 → 30, 12.5 → 25, 120 → 60); else the
    nearest integer rate (18 → 24)."""
    for candidate in _TIMECODE_RATES:
        if abs(float(candidate) - rate) < 0.01:
            return candidate
    whole = []
    for candidate in _TIMECODE_RATES:
        ratio = max(float(candidate) / rate, rate / float(candidate))
        if abs(ratio - round(ratio)) < 1e-3:
            whole.append((ratio, candidate))
    if whole:
        return min(whole)[1]
    return min((c for c in _TIMECODE_RATES if c.denominator == 1),
               key=lambda c: abs(math.log(float(c) / rate)))


def edl_timeline_rate(items: Sequence[ExportItem]) -> Fraction:
    """The one rate an EDL of ``items`` is timed at: the timecode rate (see
    :func:`_timecode_rate`) most results' videos go on, ties to the better-ranked result, so
    as few results as possible are converted; 25 for no results."""
    if not items:
        return Fraction(25)
    rates = [_timecode_rate(item.rate) for item in items]
    counts = Counter(rates)
    return max(rates, key=lambda r: (counts[r], -rates.index(r)))


def _fps(rate: float | Fraction) -> str:
    """``25``, ``29.97``, ``23.976``, ``12.5``: a rate as editors write it."""
    return f"{float(rate):.3f}".rstrip("0").rstrip(".")


def _declared_rate(rate: Fraction) -> str:
    """The rate as the EDL declares it: readers need the exact fraction of an NTSC rate
    (OpenTimelineIO rejects 29.97 itself as a timecode rate)."""
    if rate.denominator == 1:
        return f"{rate.numerator} FPS"
    return f"{_fps(rate)} FPS ({rate.numerator}/{rate.denominator})"


def _edl_title(title: str) -> str:
    # one line of printable text (non-ASCII is written as '?'); CMX 3600 titles have at most 70 characters
    return re.sub(r"\s+", " ", "".join(ch if ch.isprintable() else " " for ch in title)).strip()[:70]


def export_edl(items: Sequence[ExportItem], path: str | os.PathLike, title: str = "vidseek results") -> None:
    """A CMX 3600 EDL, one cut per result, laid end to end on the record side from 01:00:00:00,
    written by OpenTimelineIO's CMX 3600 adapter (``otio-cmx3600-adapter``) from the same
    timeline :func:`export_otio` writes, so its reader accepts the file at the declared rate.

    One timeline rate, :func:`edl_timeline_rate`, times both sides of every event (CMX 3600
    has no per-event rate: a reader applies one rate to every timecode, and an event whose
    source and record lengths differ is rejected). Sources at another rate are converted at
    real speed: their in/out count timeline frames from the file's start, so they name the
    same seconds of the file, and a ``* SOURCE RATE:`` comment says so. Timecodes are
    non-drop-frame (NTSC rates count frames labelled at 30, 24, ...); the first event's
    ``* TIMELINE RATE:`` comment declares the rate to read the file at. Source timecode
    00:00:00:00 is the file's own start, not any camera timecode it carries. The reel is
    ``AX`` (CMX 3600 reels have 8 characters); the file's name is in ``* FROM CLIP NAME:``,
    its URL in ``* FROM CLIP:``, and rank, score and best frame in a ``* COMMENT:``.
    """
    path = Path(path)
    otio = _import_otio(path, "EDL export")
    try:
        from otio_cmx3600_adapter import cmx_3600
    except ImportError as exc:
        raise MissingDependencyError(
            f"{path}: EDL export needs otio-cmx3600-adapter: {_MEDIA_EXTRA}") from exc
    rate = edl_timeline_rate(items)
    label = round(rate)
    header = f"TITLE: {_edl_title(title)}\nFCM: NON-DROP FRAME\n\n"
    if not items:  # the adapter cannot write an empty track; an EDL of no events is valid
        atomic_write_bytes(path, header.replace("\n", "\r\n").encode("ascii", "replace"))
        return
    timeline = _timeline(otio, items, title, rate)
    track = timeline.tracks[0]
    for rank, (item, clip) in enumerate(zip(items, track), 1):
        # Editors match "FROM CLIP NAME" against their clips' names: the bare file name.
        clip.name = item.video.name
        # Rank, score and best frame go in comments: CMX 3600 has no field for them, and a
        # "* LOC:" locator would misplace the best frame (the adapter writes locators in
        # source time, Avid and Resolve read them as record time).
        peak = clip.markers[0].marked_range.start_time
        clip.markers.clear()
        comments = []
        if rank == 1:
            comments.append(f"TIMELINE RATE: {_declared_rate(rate)} NON-DROP FRAME")
        if abs(item.rate - float(rate)) >= 0.01:  # 29.97 on a 30000/1001 timeline is no conversion
            comments.append(f"SOURCE RATE: {_fps(item.rate)} FPS, "
                            f"CONVERTED TO {_fps(rate)} FPS AT REAL SPEED")
        comments.append(f"COMMENT: VIDSEEK RANK {rank}, SCORE {item.score:.3f}, "
                        f"BEST FRAME AT {otio.opentime.to_timecode(peak, label)}")
        # Reel AX (an auxiliary source, the file-based convention) rather than the adapter's
        # reel from the file name cut to 8 characters, which may merge two files' reels.
        clip.metadata["cmx_3600"] = {"reel": "AX", "comments": comments}
    # The adapter ignores global_start_time; it reads the record start, as its own reader
    # stores it, from the track's source range starting that far before zero.
    record_start = otio.opentime.RationalTime(_RECORD_START_HOURS * 3600 * label, label)
    track.source_range = otio.opentime.TimeRange(-record_start, track.duration())
    # Our header, not the adapter's: it writes no FCM line. Rate ``label`` with times already
    # on whole frames: timecodes are frame counts, never rescaled or rounded again, and
    # non-drop-frame (the adapter would infer drop-frame from an NTSC rate).
    timeline.name = ""
    events = cmx_3600.write_to_string(timeline, rate=label, style="avid", reelname_len=8)
    # CRLF, ASCII: what the format's oldest readers expect (file URLs are %-encoded already)
    text = (header + events).replace("\r\n", "\n").replace("\n", "\r\n")
    atomic_write_bytes(path, text.encode("ascii", "replace"))


# -- contact sheet -------------------------------------------------------------------
def export_contact_sheet(items: Sequence[ExportItem], path: str | os.PathLike,
                         title: str = "vidseek results", columns: int = 4, width: int = 320) -> None:
    """A JPEG grid of the best frame of each result, labelled with video, range and score."""
    if not items:
        raise QueryError(f"{path}: nothing to put on a contact sheet: the search found no results")
    label_h, pad, title_h = 34, 8, 30
    thumbs = []
    for item in items:
        try:
            frame = read_frame(item.video.path, item.peak)
        except (VideoError, OSError):
            frame = Image.new("RGB", (16, 9), (40, 40, 40))  # file gone: a grey tile, still labelled
        height = max(1, round(frame.height * width / frame.width))
        thumbs.append(frame.convert("RGB").resize((width, height), Image.BILINEAR))
    cell_h = max(t.height for t in thumbs) + label_h
    rows = math.ceil(len(thumbs) / columns)
    cols = min(columns, len(thumbs))
    sheet = Image.new("RGB", (pad + cols * (width + pad), title_h + pad + rows * (cell_h + pad)), (24, 26, 32))
    draw = ImageDraw.Draw(sheet)
    draw.text((pad, 8), title[:120], fill=(240, 240, 240))
    for n, (item, thumb) in enumerate(zip(items, thumbs)):
        x = pad + (n % columns) * (width + pad)
        y = title_h + pad + (n // columns) * (cell_h + pad)
        sheet.paste(thumb, (x, y))
        draw.text((x, y + thumb.height + 3), f"{n + 1}. {item.video.name}"[:48], fill=(240, 240, 240))
        draw.text((x, y + thumb.height + 18),
                  f"{_clock(item.start)}-{_clock(item.end)}  score {item.score:.3f}", fill=(170, 175, 190))
    atomic_write(path, lambda tmp: sheet.save(tmp, "JPEG", quality=88))


def _clock(seconds: float) -> str:
    minutes, sec = divmod(seconds, 60)
    return f"{int(minutes)}:{sec:04.1f}"
