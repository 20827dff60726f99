"""Temporal grounding annotations: ``(video, query, start, end)`` rows in JSON Lines.

One object per line::

    {"video": "world_000.mp4", "query": "a small red circle moves left", "start": 12.0, "end": 14.5}
    {"video": "world_000.mp4", "query": "a large blue square appears", "start": null, "end": null}

``start``/``end`` are seconds; both null means the event is absent from the video (the
answer is "Not Present"). Extra keys (e.g. ``kind``) are kept in ``extra``. This is the
format of Charades-STA / MAD style annotations after conversion, and what ``vidseek eval``
and training read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .atomic import atomic_write_text
from .errors import AnnotationError

__all__ = ["Annotation", "AnnotationError", "read_annotations", "write_annotations"]


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


def read_annotations(path: str | Path) -> list[Annotation]:
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise AnnotationError(f"{path}: cannot read annotations: {exc}") from exc
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AnnotationError(f"{path}:{n}: not valid JSON: {exc.msg}") from exc
        out.append(_parse(data, f"{path}:{n}"))
    if not out:
        raise AnnotationError(f"{path}: no annotations")
    return out


def write_annotations(path: str | Path, annotations: Iterable[Annotation]) -> None:
    atomic_write_text(path, "".join(json.dumps(a.to_dict()) + "\n" for a in annotations))
