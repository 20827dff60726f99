"""Growing frame similarities into moments."""

from __future__ import annotations

import numpy as np

from vidseek.query.moments import runs_around_peaks


def test_runs_grow_at_half_height_and_shoulders_are_dropped():
    times = np.arange(12, dtype=float)
    sims = np.array([0.2, 0.2, 0.9, 0.5, 0.45, 0.2, 0.2, 0.2, 0.7, 0.8, 0.2, 0.2])
    # median 0.2: seed 2 grows while sims >= 0.55 (just frame 2); seed 3 (0.5) would grow
    # to frames 3-4, a shoulder touching the stronger moment, so it is dropped; seed 9 grows
    # to frames 8-9
    runs = runs_around_peaks(times, sims, seeds=[2, 3, 9], frame_step=1.0, end_time=11.5)
    assert runs == [(2.0, 3.0, 0.9, 2.0), (8.0, 10.0, 0.8, 9.0)]
    # a seed away from stronger runs keeps its own moment
    runs = runs_around_peaks(times, sims, seeds=[2, 4], frame_step=1.0, end_time=11.5)
    assert runs[0] == (2.0, 3.0, 0.9, 2.0) and len(runs) == 1  # 4 grows to 3-4: touches 2


def test_last_run_is_capped_at_the_video_end():
    times = np.arange(4, dtype=float)
    sims = np.array([0.1, 0.1, 0.1, 0.9])
    assert runs_around_peaks(times, sims, [3], frame_step=1.0, end_time=3.4) == [(3.0, 3.4, 0.9, 3.0)]
    assert runs_around_peaks(np.zeros(0), np.zeros(0), [], 1.0, 0.0) == []
