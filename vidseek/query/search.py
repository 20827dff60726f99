"""Coarse retrieval: a query vector → top frames (FAISS) → moments, ranked.

Training-free and always available; it is also the candidate generator for the grounded
query mode.
"""

from __future__ import annotations

import heapq
import logging
from collections import defaultdict

import numpy as np

from ..store.archive_store import ArchiveStore
from ..store.catalog import VideoRecord
from ..store.files import FrameReader
from .moments import Moment, runs_around_peaks

__all__ = ["search_moments"]

logger = logging.getLogger(__name__)

# How many frames to pull from the index per requested moment: several hits usually fall
# into one moment, and some moments lie in the same video.
_FRAMES_PER_MOMENT = 16
_MIN_FRAMES = 64
# Videos longer than this many frames are scored around the index's hits only, read by
# positional reads: a query touches kilobytes of an hour-long video, not megabytes.
_WHOLE_VIDEO_FRAMES = 1024
_REACH = 128  # frames either side of a hit that a moment may grow into
# Index scores of compressed kinds (8-bit codes) are off by a few thousandths in cosine: a
# video is skipped only when its best hit is this far below the top_k-th moment.
_COMPRESSED_SCORE_SLACK = 0.01


def _video_moments(store: ArchiveStore, video: VideoRecord, query: np.ndarray,
                   hit_times: list[float] | None, n_seeds: int) -> list[Moment]:
    """Moments of one video, grown from the index's hits in it (or its own best frames)."""
    try:
        frames = store.video_frames(video)
        step = 1.0 / video.fps
        if hit_times is None or len(frames) <= _WHOLE_VIDEO_FRAMES:
            times, sims = frames.times(), frames.embeddings(slice(None)) @ query
            if hit_times is not None:
                seeds = np.clip(np.searchsorted(times, np.asarray(hit_times) - 1e-6), 0, len(times) - 1)
            else:
                seeds = np.argsort(-sims)[:n_seeds]
            runs = runs_around_peaks(times, sims, seeds, frame_step=step, end_time=video.duration)
        else:
            runs = _runs_near_hits(frames, query, hit_times, step, video.duration)
    except FileNotFoundError:  # replaced or removed by another process since the lookup
        return []
    return [Moment(video=video.name, start=s, end=e, score=score, peak=p,
                   video_id=video.id, path=video.path) for s, e, score, p in runs]


def _runs_near_hits(frames: FrameReader, query: np.ndarray, hit_times: list[float],
                    step: float, duration: float) -> list[tuple]:
    """Runs of a long video, each grown within ``_REACH`` frames of its hits, against the
    background level of that stretch (an hour of footage changes content; the stretch
    around a hit is what the moment must stand out from)."""
    times = frames.times()
    seeds = np.unique(np.clip(np.searchsorted(times, np.asarray(hit_times) - 1e-6), 0, len(times) - 1))
    groups: list[list[int]] = []  # hits whose reaches overlap are scored together
    for seed in seeds.tolist():
        if groups and seed - groups[-1][-1] <= 2 * _REACH:
            groups[-1].append(seed)
        else:
            groups.append([seed])
    runs: list[tuple] = []
    for group in groups:
        lo, hi = max(0, group[0] - _REACH), min(len(times), group[-1] + _REACH + 1)
        sims = frames.embeddings(slice(lo, hi)) @ query
        runs += runs_around_peaks(times[lo:hi], sims, np.array(group) - lo, step, duration)
    return runs


def search_moments(store: ArchiveStore, query: np.ndarray, top_k: int = 10,
                   videos: list[VideoRecord] | None = None) -> list[Moment]:
    """Rank moments for one L2-normalised query vector.

    With ``videos`` the search is exact over those videos' frames; without, the archive's
    FAISS index supplies the seed frames, and videos are visited best hit first until no
    unvisited video can place a moment in the top ``top_k`` (a moment scores at least its
    best hit, and no frame outside the hits scores above them; a slack covers the scores
    of compressed indexes).
    """
    if top_k <= 0:
        return []
    query = np.asarray(query, dtype=np.float32).reshape(-1)
    n_frames = max(_MIN_FRAMES, _FRAMES_PER_MOMENT * top_k)
    moments: list[Moment] = []
    if videos is not None:
        for video in videos:
            moments += _video_moments(store, video, query, None, n_frames)
    else:
        by_video: dict[int, list[float]] = defaultdict(list)
        best: dict[int, float] = {}
        for hit in store.search_frames(query, n_frames):  # best first
            by_video[hit.video_id].append(hit.time)
            best.setdefault(hit.video_id, hit.score)
        slack = _COMPRESSED_SCORE_SLACK if store.refresh_index().approximate_scores else 0.0
        kth_best: list[float] = []  # min-heap of the top_k moment scores so far
        for video_id in sorted(by_video, key=lambda v: -best[v]):
            if len(kth_best) == top_k and kth_best[0] >= best[video_id] + slack:
                break
            video = store.catalog.video_by_id(video_id)
            if video is None:  # deleted between the index search and now
                continue
            found = _video_moments(store, video, query, by_video[video_id], n_frames)
            moments += found
            for moment in found:
                heapq.heappush(kth_best, moment.score)
                if len(kth_best) > top_k:
                    heapq.heappop(kth_best)
    moments.sort(key=lambda m: -m.score)
    return moments[:top_k]
