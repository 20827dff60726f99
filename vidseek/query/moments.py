"""Turning frame similarities into moments: contiguous runs of high similarity.

Each seed frame (a top hit from the index) is grown into a run over the video's full
similarity curve: neighbours are added while their similarity stays above half-way between
the video's median similarity and the seed's (full width at half maximum). Overlapping runs
merge; a run is scored by its peak similarity.
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

    def to_dict(self) -> dict:
        return asdict(self)


def runs_around_peaks(
    times: np.ndarray,
    sims: np.ndarray,
    seeds: np.ndarray,
    frame_step: float,
    end_time: float,
) -> list[tuple[float, float, float, float]]:
    """``(start, end, score, peak_time)`` runs grown from ``seeds`` (frame indices).

    ``frame_step`` is the sampling interval: a frame at ``t`` covers ``[t, t + step)``;
    ``end_time`` caps the last frame's span (the video's duration).
    """
    if len(times) == 0:
        return []
    base = float(np.median(sims))
    covered = np.zeros(len(times), dtype=bool)
    runs = []
    for seed in sorted({int(s) for s in seeds}, key=lambda i: -sims[i]):
        if covered[seed]:
            continue
        peak = float(sims[seed])
        floor = base + 0.5 * (peak - base)
        lo = hi = seed
        while lo > 0 and sims[lo - 1] >= floor and not covered[lo - 1]:
            lo -= 1
        while hi + 1 < len(times) and sims[hi + 1] >= floor and not covered[hi + 1]:
            hi += 1
        covered[lo:hi + 1] = True
        end = min(float(times[hi]) + frame_step, end_time) if end_time > times[hi] else float(
            times[hi]) + frame_step
        runs.append((float(times[lo]), end, peak, float(times[seed])))
    return runs
