"""Coarse retrieval: a query vector → top frames (FAISS) → moments, ranked.

Training-free and always available; it is also the candidate generator for the grounded
query mode.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np

from ..store.archive_store import ArchiveStore
from ..store.catalog import VideoRecord
from .moments import Moment, runs_around_peaks

__all__ = ["search_moments"]

logger = logging.getLogger(__name__)

# How many frames to pull from the index per requested moment: several hits usually fall
# into one moment, and some moments lie in the same video.
_FRAMES_PER_MOMENT = 16
_MIN_FRAMES = 64


def _video_moments(store: ArchiveStore, video: VideoRecord, query: np.ndarray,
                   hit_times: list[float] | None, n_seeds: int) -> list[Moment]:
    """Moments of one video, grown from the index's hits in it (or its own best frames)."""
    try:
        times, emb = store.video_embeddings(video)
    except FileNotFoundError:  # replaced or removed by another process since the lookup
        return []
    sims = emb @ query
    if hit_times is not None:
        seeds = np.searchsorted(times, np.asarray(hit_times) - 1e-6)
        seeds = np.clip(seeds, 0, len(times) - 1)
    else:
        seeds = np.argsort(-sims)[:n_seeds]
    runs = runs_around_peaks(times, sims, seeds, frame_step=1.0 / video.fps,
                             end_time=video.duration)
    return [Moment(video=video.name, start=s, end=e, score=score, peak=p,
                   video_id=video.id, path=video.path) for s, e, score, p in runs]


def search_moments(store: ArchiveStore, query: np.ndarray, top_k: int = 10,
                   videos: list[VideoRecord] | None = None) -> list[Moment]:
    """Rank moments for one L2-normalised query vector.

    With ``videos`` the search is exact over those videos' frames; without, the archive's
    FAISS index supplies the seed frames.
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
        for hit in store.search_frames(query, n_frames):
            by_video[hit.video_id].append(hit.time)
        for video_id, hit_times in by_video.items():
            video = store.catalog.video_by_id(video_id)
            if video is None:  # deleted between the index search and now
                continue
            moments += _video_moments(store, video, query, hit_times, n_frames)
    moments.sort(key=lambda m: -m.score)
    return moments[:top_k]
