"""Temporal grounding annotations: ``(video, query, start, end)`` rows in JSON Lines.

One object per line::

    {"video": "world_000.mp4", "query": "a small red circle moves left", "start": 12.0, "end": 14.5}
    {"video": "world_000.mp4", "query": "a large blue square appears", "start": null, "end": null}

``start``/``end`` are seconds; both null means the event is absent from the video (the
answer is "Not Present"). Extra keys (e.g. ``kind``) are kept in ``extra``; a
``"windows": [[s, e], ...]`` key lists every true span when an event happens more than once
(``start``/``end`` are then the first one; evaluation counts a prediction right if it
matches any).

:func:`read_annotations` also reads the public moment-retrieval sets as they are
distributed (``format=`` or detected from the file):

- ``charades``: Charades-STA, a text line per query: ``VIDEO START END##SENTENCE``;
- ``qvhighlights``: QVHighlights JSON Lines: ``{"vid", "query", "relevant_windows": [[s, e], ...]}``;
- ``mad``: MAD's JSON (``{id: {"movie", "sentence", "timestamps": [s, e]}}``) or a CSV whose
  header names the video (``movie``/``video``/``vid``), the sentence (``sentence``/``query``)
  and the span (``start``/``end``, or ``t_start``/``t_end``).

Their video ids (``3MSZA``, ``j7rJstUseKg_360.0_510.0``, ``3001_21_JUMP_STREET``) name archive
videos by file name without extension (see :meth:`vidseek.Archive.find_videos`).
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .atomic import atomic_write_text
from .errors import AnnotationError

__all__ = ["Annotation", "AnnotationError", "ANNOTATION_FORMATS", "read_annotations",
           "write_annotations", "detect_format"]

ANNOTATION_FORMATS = ("auto", "vidseek", "charades", "qvhighlights", "mad")


@dataclass(frozen=True)
class Annotation:
    video: str
    query: str
    start: float | None
    end: float | None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def present(self) -> bool:
        return self.start is not None

    @property
    def windows(self) -> list[tuple[float, float]]:
        """Every true span of the event (empty when it is absent)."""
        if self.start is None or self.end is None:
            return []
        listed = self.extra.get("windows")
        if listed:
            return [(float(a), float(b)) for a, b in listed]
        return [(self.start, self.end)]

    def to_dict(self) -> dict[str, Any]:
        return {"video": self.video, "query": self.query, "start": self.start, "end": self.end,
                **self.extra}


def _parse(data: Any, where: str) -> Annotation:
    if not isinstance(data, dict):
        raise AnnotationError(f"{where}: expected a JSON object")
    missing = {"video", "query", "start", "end"} - set(data)
    if missing:
        raise AnnotationError(f"{where}: missing key(s) {', '.join(sorted(missing))}")
    video, query, start, end = data["video"], data["query"], data["start"], data["end"]
    if not isinstance(video, str) or not video or not isinstance(query, str) or not query.strip():
        raise AnnotationError(f"{where}: 'video' and 'query' must be non-empty strings")
    if (start is None) != (end is None):
        raise AnnotationError(f"{where}: 'start' and 'end' must both be numbers or both null")
    if start is not None:
        if not all(isinstance(v, (int, float)) for v in (start, end)):
            raise AnnotationError(f"{where}: 'start' and 'end' must be numbers (seconds)")
        if not 0 <= start < end:
            raise AnnotationError(f"{where}: need 0 <= start < end, got {start}..{end}")
        start, end = float(start), float(end)
    extra = {k: v for k, v in data.items() if k not in ("video", "query", "start", "end")}
    return Annotation(video, query, start, end, extra)


def read_annotations(path: str | Path, format: str = "auto") -> list[Annotation]:
    """The annotations of ``path`` in ``format`` (one of :data:`ANNOTATION_FORMATS`;
    ``auto`` detects it from the file's name and first lines)."""
    path = Path(path)
    if format not in ANNOTATION_FORMATS:
        raise AnnotationError(f"{path}: unknown annotation format {format!r} "
                              f"(one of {', '.join(ANNOTATION_FORMATS)})")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"{path}: cannot read annotations: {exc}") from exc
    if format == "auto":
        format = detect_format(path, text)
    out = _READERS[format](path, text)
    if not out:
        raise AnnotationError(f"{path}: no annotations")
    return out


def detect_format(path: Path, text: str) -> str:
    """The format a file's name and first non-empty line say it is in."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if _CHARADES_LINE.match(first):
        return "charades"
    if path.suffix.lower() == ".csv":
        return "mad"
    if first.startswith("{"):
        try:
            data = json.loads(first)
        except json.JSONDecodeError:  # a JSON document over several lines: MAD's dict
            return "mad"
        if isinstance(data, dict) and "relevant_windows" in data:
            return "qvhighlights"
        if isinstance(data, dict) and {"video", "query"} <= set(data):
            return "vidseek"
        return "mad"
    raise AnnotationError(f"{path}: cannot tell the annotation format from its first line; "
                          f"give it (one of {', '.join(ANNOTATION_FORMATS[1:])})")


def _json_lines(path: Path, text: str) -> list[tuple[str, Any]]:
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append((f"{path}:{n}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise AnnotationError(f"{path}:{n}: not valid JSON: {exc.msg}") from exc
    return rows


def _read_vidseek(path: Path, text: str) -> list[Annotation]:
    return [_parse(data, where) for where, data in _json_lines(path, text)]


_CHARADES_LINE = re.compile(r"^(\S+)\s+(-?[\d.]+)\s+(-?[\d.]+)\s*##(.*)$")


def _read_charades(path: Path, text: str) -> list[Annotation]:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _CHARADES_LINE.match(line.strip())
        if match is None:
            raise AnnotationError(f"{path}:{n}: expected 'VIDEO START END##SENTENCE' (Charades-STA)")
        video, start, end, sentence = match.groups()
        out.append(_parse({"video": video, "query": sentence.strip(), "start": float(start),
                           "end": float(end)}, f"{path}:{n}"))
    return out


def _read_qvhighlights(path: Path, text: str) -> list[Annotation]:
    out = []
    for where, data in _json_lines(path, text):
        if not isinstance(data, dict) or not {"vid", "query"} <= set(data):
            raise AnnotationError(f"{where}: expected a QVHighlights object with 'vid' and 'query'")
        windows = data.get("relevant_windows") or []
        try:
            spans = sorted((float(a), float(b)) for a, b in windows)
        except (TypeError, ValueError) as exc:
            raise AnnotationError(f"{where}: 'relevant_windows' must be [[start, end], ...]") from exc
        extra = {k: data[k] for k in ("qid", "duration") if k in data}
        row = {"video": data["vid"], "query": data["query"], **extra,
               "start": spans[0][0] if spans else None, "end": spans[0][1] if spans else None}
        if len(spans) > 1:
            row["windows"] = [list(span) for span in spans]
        out.append(_parse(row, where))
    return out


def _read_mad(path: Path, text: str) -> list[Annotation]:
    if path.suffix.lower() == ".csv":
        return _read_mad_csv(path, text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{path}: not valid JSON: {exc.msg} (line {exc.lineno})") from exc
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: expected MAD's JSON object of annotations by id")
    out = []
    for key, item in data.items():
        where = f"{path}: {key}"
        if not isinstance(item, dict) or not {"movie", "sentence", "timestamps"} <= set(item):
            raise AnnotationError(f"{where}: expected 'movie', 'sentence' and 'timestamps'")
        stamps = item["timestamps"]
        if not isinstance(stamps, list) or len(stamps) != 2:
            raise AnnotationError(f"{where}: 'timestamps' must be [start, end]")
        out.append(_parse({"video": item["movie"], "query": item["sentence"].strip(),
                           "start": stamps[0], "end": stamps[1], "id": key}, where))
    return out


_MAD_COLUMNS = {"video": ("movie", "video", "vid"), "query": ("sentence", "query"),
                "start": ("start", "t_start", "start_time"), "end": ("end", "t_end", "end_time")}


def _read_mad_csv(path: Path, text: str) -> list[Annotation]:
    reader = csv.DictReader(text.splitlines())
    header = {name.strip().lower(): name for name in reader.fieldnames or []}
    columns = {}
    for key, names in _MAD_COLUMNS.items():
        found = next((header[n] for n in names if n in header), None)
        if found is None:
            raise AnnotationError(f"{path}: no column for {key} (one of {', '.join(names)}) in the header")
        columns[key] = found
    out = []
    for n, row in enumerate(reader, 2):
        where = f"{path}:{n}"
        try:
            start, end = float(row[columns["start"]]), float(row[columns["end"]])
        except (TypeError, ValueError) as exc:
            raise AnnotationError(f"{where}: start and end must be numbers (seconds)") from exc
        out.append(_parse({"video": (row[columns["video"]] or "").strip(),
                           "query": row[columns["query"]] or "", "start": start, "end": end}, where))
    return out


_READERS = {"vidseek": _read_vidseek, "charades": _read_charades,
            "qvhighlights": _read_qvhighlights, "mad": _read_mad}


def write_annotations(path: str | Path, annotations: Iterable[Annotation]) -> None:
    atomic_write_text(path, "".join(json.dumps(a.to_dict()) + "\n" for a in annotations))
