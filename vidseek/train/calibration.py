"""Fitting the level-1 presence calibration (:mod:`vidseek.models.presence`) on held-out videos.

For every annotated query of the calibration videos (absent events included), every coarse
window of its video gets the presence features; a window is a positive when it holds at
least half of the event. A logistic regression on those rows turns the features into a
probability; it is stored in the checkpoint, and the grounded mode's level 1 uses it.
The calibration videos must be ones the grounder was not trained on (the LM's yes/no is
overconfident on its training data), nor ones it is evaluated on.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from ..annotations import Annotation
from ..models.presence import PRESENCE_FEATURES, PresenceCalibration, abstention_threshold, fit_logistic
from ..query.presence_level import window_presence_features

__all__ = ["CalibrationReport", "fit_presence_calibration", "window_labels"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CalibrationReport:
    calibration: PresenceCalibration
    rows: int  # (query, window) pairs fitted on
    positives: int
    queries: int
    videos: int
    # on the fitted rows: the mean predicted probability and the observed rate of positives
    # (equal for a well-calibrated logistic fit), and the share of present queries whose
    # best-scored window holds the event
    mean_probability: float
    positive_rate: float
    top1_window_recall: float
    # the default abstention threshold (calibration.threshold) on these queries: the share
    # of absent events it rejects, of present events whose best window it keeps, and of
    # present events whose best window held the event and fell below it (their right answer lost)
    absent_rejected: float = 0.0
    present_kept: float = 1.0
    right_lost: float = 0.0
    # which signal finds the window: for each presence feature alone and for the fitted
    # probability, the share of present queries whose k best windows hold the event
    # ({"lm_logit": {"1": 0.25, "3": 0.52, "5": 0.73}, ..., "calibrated": {...}})
    window_recall_by_signal: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"calibration": self.calibration.to_dict(), "rows": self.rows,
                "positives": self.positives, "queries": self.queries, "videos": self.videos,
                "mean_probability": round(self.mean_probability, 4),
                "positive_rate": round(self.positive_rate, 4),
                "top1_window_recall": round(self.top1_window_recall, 4),
                "absent_rejected": round(self.absent_rejected, 4),
                "present_kept": round(self.present_kept, 4),
                "right_lost": round(self.right_lost, 4),
                "window_recall_by_signal": self.window_recall_by_signal}

    def describe(self) -> str:
        return (f"{self.calibration.describe()}; {self.rows} windows of {self.queries} queries on "
                f"{self.videos} videos; top-1 window holds the event for "
                f"{100 * self.top1_window_recall:.1f}% of present queries; the default threshold "
                f"rejects {100 * self.absent_rejected:.0f}% of absent events, keeps "
                f"{100 * self.present_kept:.0f}% of present ones and drops the right best window of "
                f"{100 * self.right_lost:.1f}% of them; right-window recall@1/3/5 by signal: "
                + ", ".join(f"{name} " + "/".join(f"{100 * v:.0f}" for v in recall.values())
                            for name, recall in self.window_recall_by_signal.items()))


def window_labels(times: np.ndarray, window: int, spans: Sequence[tuple[float, float]]) -> np.ndarray:
    """``[windows]`` booleans: the window (of ``window`` sampled frames, at ``times``) holds
    at least half of one of the event's ``spans`` (an event may happen more than once; the
    same rule as the evaluation's right-window recall); all false for an absent event."""
    n = -(-len(times) // window)
    labels = np.zeros(n, dtype=bool)
    step = float(times[1] - times[0]) if len(times) > 1 else 1.0
    for start, end in spans:
        if end <= start:
            continue
        for i in range(n):
            a = float(times[i * window])
            b = float(times[min(len(times), (i + 1) * window) - 1]) + step
            labels[i] |= max(0.0, min(b, end) - max(a, start)) >= 0.5 * (end - start)
    return labels


def _window_recall(score, rows: list[np.ndarray], labels: list[np.ndarray]) -> dict[str, float]:
    """Share of the queries with an event whose ``k`` best windows by ``score`` hold it."""
    hits: dict[str, list[bool]] = {str(k): [] for k in (1, 3, 5)}
    for xq, yq in zip(rows, labels):
        if yq.any():
            order = np.argsort(-score(xq), kind="stable")
            for k in hits:
                hits[k].append(bool(yq[order[:int(k)]].any()))
    return {k: round(float(np.mean(v)), 4) if v else 0.0 for k, v in hits.items()}


def fit_presence_calibration(checkpoint: str | os.PathLike, archive,
                             annotations: Sequence[Annotation]) -> CalibrationReport:
    """Fit the presence calibration of ``archive``'s grounder (the checkpoint at
    ``checkpoint``) on ``annotations`` of videos in ``archive``; store it in the checkpoint."""
    grounder = archive.grounder
    if grounder is None:
        raise ValueError(f"{archive.path}: set the grounder to calibrate first")
    size = grounder.config.windows.coarse
    by_video: dict[str, list[Annotation]] = {}
    for ann in annotations:
        by_video.setdefault(ann.video, []).append(ann)
    rows, labels, absent = [], [], []
    for name, anns in by_video.items():
        record = archive.find_video(name)
        features = archive.video_features(record)
        for ann in anns:
            x = window_presence_features(grounder, features, record.fps, None, ann.query,
                                         archive.embed_query(text=ann.query))
            y = window_labels(features.times, size, ann.windows)
            rows.append(x)
            labels.append(y)
            absent.append(not ann.present)
    # a grounder without a clip verifier has no verifier feature to fit
    used = len(PRESENCE_FEATURES) if grounder.verifier is not None else len(PRESENCE_FEATURES) - 1
    x, y = np.concatenate(rows)[:, :used], np.concatenate(labels)
    weights, bias = fit_logistic(x, y.astype(np.float64))
    calibration = PresenceCalibration(tuple(float(w) for w in weights), bias, True,
                                      f"{len(by_video)} videos, {len(annotations)} queries")
    per_query = [calibration.probability(xq) for xq in rows]
    best = np.array([pq.max() if len(pq) else 0.0 for pq in per_query])
    # present queries whose best window holds the event: their top answer can be right
    right = np.array([bool(len(pq)) and bool(yq[int(np.argmax(pq))]) for pq, yq in zip(per_query, labels)])
    is_absent = np.array(absent, dtype=bool)
    threshold = abstention_threshold(best[~is_absent])
    calibration = replace(calibration, threshold=threshold)
    present = int((~is_absent & np.array([yq.any() for yq in labels])).sum())
    hits = int(right.sum())
    probs = calibration.probability(x)
    is_present = ~is_absent
    signals = {name: (lambda xq, j=j: xq[:, j]) for j, name in enumerate(PRESENCE_FEATURES[:used])}
    signals["calibrated"] = calibration.probability
    by_signal = {name: _window_recall(score, rows, labels) for name, score in signals.items()}
    report = CalibrationReport(
        calibration, len(y), int(y.sum()), len(annotations), len(by_video),
        float(probs.mean()), float(y.mean()), hits / max(1, present),
        float((best[is_absent] < threshold).mean()) if is_absent.any() else 0.0,
        float((best[is_present] >= threshold).mean()) if is_present.any() else 1.0,
        float((right & (best < threshold)).sum() / max(1, is_present.sum())), by_signal)
    grounder.record_presence_calibration(Path(checkpoint), calibration)
    logger.info("presence calibration: %s", report.describe())
    return report
