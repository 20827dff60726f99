"""Turning frame similarities into moments: contiguous runs of high similarity.

Each seed frame (a top hit from the index) is grown into a run over the video's full
similarity curve: neighbours are added while their similarity stays above half-way between
the video's median similarity and the seed's (full width at half maximum). A weaker run that
touches a stronger one is its shoulder and is dropped; a run is scored by the highest
similarity inside it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Moment", "runs_around_peaks"]


@dataclass(frozen=True)
class Moment:
    """A time range of one video that matches a query."""

    video: str  # file name
    start: float  # seconds
    end: float  # seconds
    score: float  # peak cosine similarity (or the query mode's own score)
    peak: float  # time of the best-matching frame, seconds
    video_id: int
    path: str
    # grounded mode: the calibrated probability that the event happens in the level-1
    # window this moment comes from (None in CLIP mode)
    presence: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def runs_around_peaks(
    times: np.ndarray,
    sims: np.ndarray,
    seeds: np.ndarray,
    frame_step: float,
    end_time: float,
    background: float | None = None,
) -> list[tuple[float, float, float, float]]:
    """``(start, end, score, peak_time)`` runs grown from ``seeds`` (frame indices).

    ``frame_step`` is the sampling interval: a frame at ``t`` covers ``[t, t + step)``;
    ``end_time`` caps the last frame's span (the video's duration). ``background`` is the
    video's typical similarity (default: the median of ``sims``), for callers that pass
    only a stretch of a long video.
    """
    if len(times) == 0:
        return []
    base = float(np.median(sims)) if background is None else background
    covered = np.zeros(len(times), dtype=bool)
    spans: list[tuple[int, int]] = []  # frame index ranges, inclusive
    for seed in sorted({int(s) for s in seeds}, key=lambda i: -sims[i]):
        if covered[seed]:
            continue
        floor = base + 0.5 * (float(sims[seed]) - base)
        lo = hi = seed
        while lo > 0 and sims[lo - 1] >= floor and not covered[lo - 1]:
            lo -= 1
        while hi + 1 < len(times) and sims[hi + 1] >= floor and not covered[hi + 1]:
            hi += 1
        covered[lo:hi + 1] = True
        spans.append((lo, hi))
    # A run touching a stronger one is that moment's shoulder (below its half height): drop
    # it rather than list pieces of one event as separate moments.
    kept: list[tuple[int, int]] = []
    for lo, hi in spans:  # strongest first
        if not any(lo <= k_hi + 1 and hi >= k_lo - 1 for k_lo, k_hi in kept):
            kept.append((lo, hi))
    runs = []
    for lo, hi in sorted(kept):
        best = lo + int(np.argmax(sims[lo:hi + 1]))
        end = float(times[hi]) + frame_step
        if end_time > times[hi]:
            end = min(end, end_time)
        runs.append((float(times[lo]), end, float(sims[best]), float(times[best])))
    return runs
