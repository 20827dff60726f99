"""Coarse retrieval: a query vector → top frames (FAISS) → moments, ranked.

Training-free and always available; it is also the candidate generator for the grounded
query mode.

Across the archive a query reads little, in three steps:

1. the index gives the top frames (*hits*; approximate scores in compressed kinds);
2. *exact peaks*: videos are visited best hit first, and each hit's exact score is read from
   its feature file (a few rows; neighbouring hits share a read). The hits of a short video
   form one *group*; those of a long video, groups of hits less than ``2·_REACH`` frames
   apart. Visiting stops once ``top_k`` groups beat every unvisited video's best hit;
3. *growth*: groups, strongest first, grow into moments (:func:`runs_around_peaks`) over a
   whole short video or ``_REACH`` frames either side in a long one, until ``top_k``
   moments beat every group not yet grown.
"""

from __future__ import annotations

import heapq
import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image

from ..errors import QueryError
from ..store.archive_store import ArchiveStore
from ..store.catalog import VideoRecord
from ..store.files import DamagedFileError, VideoFeatures
from .moments import Moment, runs_around_peaks

__all__ = ["search_moments", "candidate_videos", "open_query_image", "find_videos", "named_videos",
           "SearchWarning", "note_damaged", "readable_features", "check_request"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchWarning:
    """A video a query had to leave out because a file of it is damaged; ``str()`` says so."""

    video: str  # its file name
    video_id: int
    kind: str  # which file: "features"

    def __str__(self) -> str:
        return (f"{self.video}: its {self.kind} are damaged "
                "(re-ingest it, or run vidseek doctor --repair)")


def note_damaged(warnings: list[SearchWarning] | None, video: VideoRecord,
                 exc: DamagedFileError, kind: str = "features") -> None:
    """Log and report (once per video and query) a video left out of a query's answer."""
    if warnings is not None and any(w.video_id == video.id and w.kind == kind for w in warnings):
        return
    logger.warning("%s: %s damaged (%s); left out of this query", video.path, kind, exc.problem)
    if warnings is not None:
        warnings.append(SearchWarning(video.name, video.id, kind))


def readable_features(store: ArchiveStore, videos: list[VideoRecord],
                      warnings: list[SearchWarning] | None = None,
                      ) -> Iterator[tuple[VideoRecord, VideoFeatures]]:
    """Each video with its stored features, skipping (and reporting) damaged ones and ones
    replaced or removed meanwhile."""
    for video in videos:
        try:
            features = store.video_features(video)
        except FileNotFoundError:
            continue
        except DamagedFileError as exc:
            note_damaged(warnings, video, exc)
            continue
        yield video, features

# How many frames to pull from the index per requested moment: several hits usually fall
# into one moment, and some moments lie in the same video.
_FRAMES_PER_MOMENT = 16
_MIN_FRAMES = 64
# Videos longer than this many frames are scored around the index's hits only, read by
# positional reads: a query touches kilobytes of an hour-long video, not megabytes.
_WHOLE_VIDEO_FRAMES = 1024
_REACH = 128  # frames either side of a hit that a moment may grow into
# Index scores of compressed kinds (8-bit codes) are approximate: a video is skipped only
# when its best hit is this far below the top_k-th group. Measured at 1,000 h (16,000 hits
# of 100 queries): error standard deviation 0.0004, largest 0.0014.
_COMPRESSED_SCORE_SLACK = 0.003


@dataclass(frozen=True)
class _Group:
    """Hits of one video scored together: all of a short video's, or a cluster in a long one."""

    video: VideoRecord
    rows: np.ndarray  # hit frame indices, sorted
    peak: float  # best exact similarity among the hits


def _moments(video: VideoRecord, runs: list[tuple]) -> list[Moment]:
    return [Moment(video=video.name, start=s, end=e, score=score, peak=p,
                   video_id=video.id, path=video.path) for s, e, score, p in runs]


def _whole_video_moments(store: ArchiveStore, video: VideoRecord, query: np.ndarray,
                         n_seeds: int, seeds: np.ndarray | None = None) -> list[Moment]:
    """Moments of a video scored whole, grown from ``seeds`` (or its own best frames)."""
    frames = store.video_frames(video)
    times, sims = frames.times(), frames.embeddings(slice(None)) @ query
    if seeds is None:
        seeds = np.argsort(-sims)[:n_seeds]
    return _moments(video, runs_around_peaks(times, sims, seeds, frame_step=1.0 / video.fps,
                                             end_time=video.duration))


def _exact_groups(store: ArchiveStore, video: VideoRecord, rows: np.ndarray,
                  query: np.ndarray) -> list[_Group]:
    """The video's hits, exactly re-scored, in groups."""
    rows = np.unique(rows[rows < video.frames])
    if len(rows) == 0:
        return []
    sims = store.video_frames(video).embeddings(rows) @ query
    if video.frames <= _WHOLE_VIDEO_FRAMES:
        return [_Group(video, rows, float(sims.max()))]
    cuts = np.flatnonzero(np.diff(rows) > 2 * _REACH) + 1
    return [_Group(video, r, float(s.max())) for r, s in zip(np.split(rows, cuts), np.split(sims, cuts))]


def _grow(store: ArchiveStore, group: _Group, query: np.ndarray) -> list[Moment]:
    """Moments grown from one group's hits, against the background level of the frames
    read (a whole short video; for a long one the stretch around the hits, since an hour of
    footage changes content and the moment must stand out from its surroundings)."""
    video = group.video
    if video.frames <= _WHOLE_VIDEO_FRAMES:
        return _whole_video_moments(store, video, query, 0, group.rows)
    frames = store.video_frames(video)
    lo, hi = max(0, int(group.rows[0]) - _REACH), min(len(frames), int(group.rows[-1]) + _REACH + 1)
    sims = frames.embeddings(slice(lo, hi)) @ query
    return _moments(video, runs_around_peaks(frames.times(slice(lo, hi)), sims, group.rows - lo,
                                             1.0 / video.fps, video.duration))


def _push(heap: list[float], score: float, size: int) -> None:
    """Keep the ``size`` best scores in a min-heap."""
    heapq.heappush(heap, score)
    if len(heap) > size:
        heapq.heappop(heap)


def _beaten(heap: list[float], size: int, bound: float) -> bool:
    return len(heap) == size and heap[0] >= bound


def search_moments(store: ArchiveStore, query: np.ndarray, top_k: int = 10,
                   videos: list[VideoRecord] | None = None,
                   warnings: list[SearchWarning] | None = None) -> list[Moment]:
    """Rank moments for one L2-normalised query vector.

    With ``videos`` the search is exact over those videos' frames; without, the archive's
    FAISS index supplies the hits (see the module's description). A moment scores at least
    its best hit, and no frame outside the hits is taken to score above them; a slack covers
    the scores of compressed indexes. A video whose feature file is damaged is left out and
    reported in ``warnings``.
    """
    if top_k <= 0:
        return []
    query = np.asarray(query, dtype=np.float32).reshape(-1)
    n_frames = max(_MIN_FRAMES, _FRAMES_PER_MOMENT * top_k)
    moments: list[Moment] = []
    if videos is not None:
        for video in videos:
            try:
                moments += _whole_video_moments(store, video, query, n_frames)
            except FileNotFoundError:  # replaced or removed by another process meanwhile
                continue
            except DamagedFileError as exc:
                note_damaged(warnings, video, exc)
    else:
        moments = _moments_from_index(store, query, top_k, n_frames, warnings)
    moments.sort(key=lambda m: -m.score)
    return moments[:top_k]


def _moments_from_index(store: ArchiveStore, query: np.ndarray, top_k: int,
                        n_frames: int, warnings: list[SearchWarning] | None) -> list[Moment]:
    rows: dict[int, list[int]] = defaultdict(list)
    best: dict[int, float] = {}
    for hit in store.search_frames(query, n_frames):  # best first
        rows[hit.video_id].append(hit.row)
        best.setdefault(hit.video_id, hit.score)
    slack = _COMPRESSED_SCORE_SLACK if store.refresh_index().approximate_scores else 0.0
    groups: list[_Group] = []
    peaks: list[float] = []  # min-heap of the top_k group peaks so far
    for video_id in sorted(rows, key=lambda v: -best[v]):
        if _beaten(peaks, top_k, best[video_id] + slack):
            break
        video = store.catalog.video_by_id(video_id)
        if video is None:  # deleted between the index search and now
            continue
        try:
            found = _exact_groups(store, video, np.array(rows[video_id]), query)
        except FileNotFoundError:  # replaced or removed by another process meanwhile
            continue
        except DamagedFileError as exc:
            note_damaged(warnings, video, exc)
            continue
        groups += found
        for group in found:
            _push(peaks, group.peak, top_k)
    groups.sort(key=lambda g: -g.peak)
    moments: list[Moment] = []
    scores: list[float] = []  # min-heap of the top_k moment scores so far
    for group in groups:
        if _beaten(scores, top_k, group.peak):
            break
        try:
            grown = _grow(store, group, query)
        except FileNotFoundError:
            continue
        except DamagedFileError as exc:  # cut since its hits were read
            note_damaged(warnings, group.video, exc)
            continue
        moments += grown
        for moment in grown:
            _push(scores, moment.score, top_k)
    return moments


def candidate_videos(store: ArchiveStore, query: np.ndarray, count: int,
                     warnings: list[SearchWarning] | None = None) -> list[VideoRecord]:
    """The ``count`` videos whose best moments rank highest for ``query`` (CLIP similarity):
    where the grounded mode looks when no video is named."""
    seen: list[int] = []
    for moment in search_moments(store, query, top_k=4 * count, warnings=warnings):
        if moment.video_id not in seen:
            seen.append(moment.video_id)
    records = (store.catalog.video_by_id(i) for i in seen[:count])
    return [r for r in records if r is not None]


def open_query_image(image: "str | os.PathLike | Image.Image | np.ndarray") -> Image.Image:
    """A query picture as RGB: a path, a PIL image or an ``[H, W, 3]`` uint8 array."""
    if isinstance(image, np.ndarray):
        return Image.fromarray(image).convert("RGB")
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    try:
        with Image.open(image) as opened:
            return opened.convert("RGB")
    except (OSError, ValueError) as exc:
        raise QueryError(f"{image}: cannot read the query image: {exc}") from exc


def find_videos(store: ArchiveStore, video: str | int) -> list[VideoRecord]:
    """Indexed videos whose file name, path or id is ``video`` (several may share a name),
    else whose file name without extension is ``video``; an ``int`` is an id only."""
    if isinstance(video, int):
        record = store.catalog.video_by_id(video)
        return [record] if record is not None else []
    if "\0" in video:  # no path holds one (and pathlib raises on it)
        raise QueryError(f"no indexed video named {video!r}")
    found = store.catalog.find_videos(video)
    if not found:
        found = store.catalog.find_videos(str(Path(video).expanduser().resolve()))
    if not found and "/" not in video:  # a dataset's video id: the file name without extension
        found = store.catalog.find_videos_by_stem(video)
    return found


def named_videos(store: ArchiveStore, video: str | int, *, one: bool = False) -> list[VideoRecord]:
    """:func:`find_videos`, with a QueryError when none (or, with ``one``, several) match."""
    found = find_videos(store, video)
    if not found:
        raise QueryError(f"no indexed video named {video!r}")
    if one and len(found) > 1:
        paths = ", ".join(v.path for v in found)
        raise QueryError(f"{video!r} names {len(found)} videos ({paths}); give a path or id")
    return found


def check_request(mode: str, modes: Sequence[str], text: str | None, image: object,
                  top_k: int) -> None:
    """QueryError unless the search asks for a known mode, exactly one of a text or an
    image (text only in grounded mode), and at least one result."""
    if mode not in modes:
        raise QueryError(f"unknown search mode {mode!r} (one of {', '.join(modes)})")
    if (text is None) == (image is None):
        raise QueryError("give exactly one of a text query or an image")
    if top_k < 1:
        raise QueryError(f"top_k must be at least 1, got {top_k}")
    if mode == "grounded" and image is not None:
        raise QueryError("the grounded mode takes a text query, not an image")
