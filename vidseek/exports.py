"""Search results for media tools: OpenTimelineIO timelines, CMX 3600 EDLs, contact sheets.

Every exporter takes the moments a search returned (``Moment`` or ``ObjectHit``) and the
catalog records of their videos, and writes one file atomically. :func:`export_results`
picks the format from the file's suffix: ``.otio``, ``.edl``, ``.jpg``/``.jpeg``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw

from .errors import MissingDependencyError, QueryError, VideoError
from .indexer.decode import read_frame
from .store.catalog import VideoRecord

__all__ = ["EXPORT_FORMATS", "ExportItem", "export_results", "export_otio", "export_edl",
           "export_contact_sheet", "edl_timecode"]

EXPORT_FORMATS = {".otio": "OpenTimelineIO", ".edl": "CMX 3600 EDL", ".jpg": "contact sheet",
                  ".jpeg": "contact sheet"}


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


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def export_results(items: Sequence[ExportItem], path: str | os.PathLike, title: str = "vidseek results") -> Path:
    """Write ``items`` to ``path`` in the format its suffix names.

    Raises :class:`~vidseek.errors.QueryError` for an unknown suffix, too many results for the
    format, or a file that cannot be written (the message names the file).
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
    except OSError as exc:
        raise QueryError(f"{path}: cannot write the export: {exc.strerror or exc}") from exc
    finally:
        path.with_name(f".{path.name}.tmp").unlink(missing_ok=True)
    return path


# EDL event numbers have three digits; a contact sheet must stay under JPEG's 65,535 pixels.
_LIMITS = {".edl": 999, ".jpg": 400, ".jpeg": 400}


# -- OpenTimelineIO ------------------------------------------------------------------
def export_otio(items: Sequence[ExportItem], path: str | os.PathLike, title: str = "vidseek results") -> None:
    """A timeline with one clip per result, in rank order, each referencing its file, with
    a marker at the best frame and the score in the clip's metadata (``vidseek``)."""
    try:
        import opentimelineio as otio
    except ImportError as exc:
        raise MissingDependencyError("OTIO export needs opentimelineio: pip install 'vidseek[media]'") from exc
    timeline = otio.schema.Timeline(name=title)
    track = otio.schema.Track(name="results", kind=otio.schema.TrackKind.Video)
    timeline.tracks.append(track)
    for rank, item in enumerate(items, 1):
        rate = item.rate
        start = otio.opentime.RationalTime(round(item.start * rate), rate)
        duration = otio.opentime.RationalTime(max(1, round((item.end - item.start) * rate)), rate)
        media = otio.schema.ExternalReference(
            target_url=Path(item.video.path).resolve().as_uri(),
            available_range=otio.opentime.TimeRange(
                otio.opentime.RationalTime(0, rate),
                otio.opentime.RationalTime(round(item.video.duration * rate), rate)))
        clip = otio.schema.Clip(name=f"{rank:03d} {item.video.name}", media_reference=media,
                                source_range=otio.opentime.TimeRange(start, duration))
        clip.metadata["vidseek"] = {"rank": rank, "score": float(item.score), "peak": float(item.peak),
                                    "video_id": item.video.id, "start": item.start, "end": item.end}
        peak = otio.opentime.RationalTime(round(item.peak * rate), rate)
        clip.markers.append(otio.schema.Marker(
            name=f"best frame, score {item.score:.3f}",
            marked_range=otio.opentime.TimeRange(peak, otio.opentime.RationalTime(1, rate))))
        track.append(clip)
    _write_atomically(Path(path), otio.adapters.write_to_string(timeline, "otio_json").encode())


# -- CMX 3600 ------------------------------------------------------------------------
def edl_timecode(frames: int, base: int) -> str:
    """``HH:MM:SS:FF`` non-drop-frame label of a frame count at an integer timecode ``base``
    (30 for 29.97 fps material: NDF counts frames, it does not track the wall clock)."""
    hours, rest = divmod(int(frames), 3600 * base)
    minutes, rest = divmod(rest, 60 * base)
    secs, frame = divmod(rest, base)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}:{frame:02d}"


def export_edl(items: Sequence[ExportItem], path: str | os.PathLike, title: str = "vidseek results",
               record_start_frames: int | None = None) -> None:
    """A CMX 3600 EDL, one cut per result, laid end to end on the record side from 01:00:00:00.

    Source timecodes count frames of each file at its own rate from 00:00:00:00 (the file's
    own start, not any camera timecode it carries), labelled non-drop-frame at the rate
    rounded to an integer. The record side counts frames at the first result's rate; source
    and record lengths of a cut are the same number of frames. CMX 3600 has 8-character reels:
    the reel is ``AX`` and the file is named in a ``FROM CLIP NAME`` comment.
    """
    record_base = max(1, round(items[0].rate)) if items else 25
    record = 3600 * record_base if record_start_frames is None else record_start_frames
    lines = [f"TITLE: {title[:70]}", "FCM: NON-DROP FRAME", ""]
    for n, item in enumerate(items, 1):
        base = max(1, round(item.rate))
        src_in = int(math.floor(item.start * item.rate + 0.5))
        length = max(1, int(math.floor((item.end - item.start) * item.rate + 0.5)))
        lines.append(f"{n:03d}  AX       V     C        {edl_timecode(src_in, base)} "
                     f"{edl_timecode(src_in + length, base)} {edl_timecode(record, record_base)} "
                     f"{edl_timecode(record + length, record_base)}")
        lines.append(f"* FROM CLIP NAME: {item.video.name}")
        lines.append(f"* COMMENT: vidseek rank {n}, score {item.score:.3f}, best frame at "
                     f"{edl_timecode(int(math.floor(item.peak * item.rate + 0.5)), base)}")
        lines.append("")
        record += length
    _write_atomically(Path(path), "\r\n".join(lines).encode("ascii", "replace"))


# -- contact sheet -------------------------------------------------------------------
def export_contact_sheet(items: Sequence[ExportItem], path: str | os.PathLike,
                         title: str = "vidseek results", columns: int = 4, width: int = 320) -> None:
    """A JPEG grid of the best frame of each result, labelled with video, range and score."""
    if not items:
        raise QueryError("nothing to put on a contact sheet: the search found no results")
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
    tmp = Path(path).with_name(f".{Path(path).name}.tmp")
    sheet.save(tmp, "JPEG", quality=88)
    os.replace(tmp, path)


def _clock(seconds: float) -> str:
    minutes, sec = divmod(seconds, 60)
    return f"{int(minutes)}:{sec:04.1f}"
