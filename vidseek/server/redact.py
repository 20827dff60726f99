"""What anonymous clients may read: video names and ids, never server paths or internals.

Messages meant for the admin (job errors, library errors) name files by absolute path and
workers as ``host:pid:token``. For anonymous clients each path is cut to its last component
(the file name they know already from the video list) and each worker name is hidden.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

__all__ = ["public_text", "public_encoder", "looks_like_path"]

# An absolute path: a slash not inside a word, up to a blank, a quote, a colon or a bracket
_ABSOLUTE = re.compile(r"(?<![\w.~/-])(?:~[\w.-]*)?/[^\s'\"`,;:()\[\]{}<>]+")
# host:pid:token (jobs.worker_id: the token is 8 hex digits)
_WORKER = re.compile(r"\b[\w.-]+:\d+:[0-9a-f]{8}\b")


def _last_part(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1] or "/"


def public_text(text: str, known: Iterable[str | Path] = ()) -> str:
    """``text`` without server paths or worker names. ``known`` paths (which may hold
    blanks, unlike what the pattern finds) are cut to their last component first."""
    for path in sorted({str(p) for p in known if str(p) not in ("", "/", ".")}, key=len, reverse=True):
        text = text.replace(path + "/", "").replace(path, _last_part(path))
    text = _WORKER.sub("…", text)
    return _ABSOLUTE.sub(lambda m: _last_part(m.group(0)), text)


def public_encoder(name: str) -> str:
    """A hub id as it is; a local checkpoint folder by its last component."""
    return _last_part(name) if name.startswith(("/", "~", ".")) else name


def looks_like_path(value: str) -> bool:
    """A path rather than a name: video file names hold no slash (``~`` would be expanded)."""
    return value.startswith("~") or "/" in value
