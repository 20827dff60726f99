"""Temporal grounding metrics (as in MAD and Charades-STA) and archive evaluation.

- IoU of two spans: length of their intersection over length of their union.
- **R@n, IoU=m**: share of queries for which at least one of the top-``n`` predicted moments
  has IoU ≥ ``m`` with the ground truth.
- **mIoU**: mean IoU of the top-1 prediction.

A query with no prediction scores IoU 0. Queries whose event is absent from the video
(``start``/``end`` null) are not part of these metrics; they are counted separately.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

from .annotations import Annotation

from .query.grounded import GroundingOptions
from .errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from .archive import Archive

__all__ = ["temporal_iou", "EvalReport", "score_predictions", "evaluate_archive", "mode_label",
           "RECALL_AT", "IOU_THRESHOLDS"]

RECALL_AT = (1, 5)
IOU_THRESHOLDS = (0.1, 0.3, 0.5, 0.7)


def temporal_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


@dataclass
class EvalReport:
    mode: str
    queries: int  # queries with a ground-truth span
    absent_queries: int  # queries whose event is absent (not scored here)
    recall: dict[str, float]  # "R1@0.5" -> share in [0, 1]
    miou: float
    per_kind: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0
    # grounded modes: mean share of a video's frames whose dense tokens a query read, and
    # how often a query answered nothing (every segment "Not Present.")
    dense_fraction: float | None = None
    no_answer: float | None = None

    def to_dict(self) -> dict:
        return {"mode": self.mode, "queries": self.queries, "absent_queries": self.absent_queries,
                "recall": self.recall, "mIoU": self.miou, "per_kind": self.per_kind,
                "seconds": self.seconds, "dense_fraction": self.dense_fraction,
                "no_answer": self.no_answer}

    def table(self) -> str:
        keys = list(self.recall)
        header = "| mode | " + " | ".join(keys) + " | mIoU | queries |"
        rule = "|" + "---|" * (len(keys) + 3)
        row = (f"| {self.mode} | " + " | ".join(f"{100 * self.recall[k]:.1f}" for k in keys)
               + f" | {100 * self.miou:.1f} | {self.queries} |")
        lines = [header, rule, row]
        if self.per_kind:
            lines += ["", "| event kind | R1@0.5 | mIoU | queries |", "|---|---|---|---|"]
            for kind, m in sorted(self.per_kind.items()):
                lines.append(f"| {kind} | {100 * m['R1@0.5']:.1f} | {100 * m['mIoU']:.1f} | {int(m['queries'])} |")
        return "\n".join(lines)


def _best_iou(prediction: tuple[float, float], annotation: Annotation) -> float:
    """IoU with the nearest true span (an event may happen more than once)."""
    return max((temporal_iou(prediction, w) for w in annotation.windows), default=0.0)


def _metrics(rows: list[tuple[Annotation, Sequence[tuple[float, float]]]]) -> tuple[dict[str, float], float]:
    recall = {}
    for n in RECALL_AT:
        for m in IOU_THRESHOLDS:
            hits = [any(_best_iou(p, a) >= m for p in preds[:n]) for a, preds in rows]
            recall[f"R{n}@{m}"] = sum(hits) / len(rows) if rows else 0.0
    ious = [_best_iou(preds[0], a) if preds else 0.0 for a, preds in rows]
    return recall, (sum(ious) / len(ious) if ious else 0.0)


def score_predictions(annotations: Sequence[Annotation],
                      predictions: Sequence[Sequence[tuple[float, float]]], mode: str = "") -> EvalReport:
    """Metrics for ``predictions[i]`` (ranked ``(start, end)`` spans) against ``annotations[i]``."""
    if len(annotations) != len(predictions):
        raise ValueError("one prediction list per annotation is needed")
    rows = [(a, list(p)) for a, p in zip(annotations, predictions) if a.present]
    recall, miou = _metrics(rows)
    by_kind: dict[str, list] = defaultdict(list)
    for a, p in rows:
        if "kind" in a.extra:
            by_kind[str(a.extra["kind"])].append((a, p))
    per_kind = {}
    for kind, kind_rows in by_kind.items():
        r, mi = _metrics(kind_rows)
        per_kind[kind] = {"R1@0.5": r["R1@0.5"], "mIoU": mi, "queries": len(kind_rows)}
    return EvalReport(mode, len(rows), len(annotations) - len(rows), recall, miou, per_kind)


def mode_label(mode: str, grounding: GroundingOptions | None = None) -> str:
    if mode != "grounded":
        return mode
    g = grounding or GroundingOptions()
    levels = {1: "level 1 only", 2: "2 levels", 3: "3 levels"}[g.levels]
    ranking = {"presence": "", "entropy": ", ranked by R only", "time": ", no confidence ranking"}[g.ranking]
    return f"grounded, {levels}{ranking}"


def evaluate_archive(archive: "Archive", annotations: Sequence[Annotation], mode: str = "clip",
                     top_k: int = 5, progress: Callable[[int, int], None] | None = None,
                     grounding: GroundingOptions | None = None) -> EvalReport:
    """Run every present query against its video in ``archive`` and score the results.

    ``annotation.video`` must name one indexed video (file name, path or id). ``mode`` is
    ``clip`` or ``grounded`` (with ``grounding`` options: levels, entropy ranking).
    """
    if mode not in ("clip", "grounded"):
        raise ConfigError(f"unknown query mode {mode!r} (available: clip, grounded)")
    started = time.perf_counter()
    predictions = []
    fractions, empty = [], 0
    for n, ann in enumerate(annotations):
        if ann.present:
            # exactly the annotated video: two folders may each hold a world_000.mp4
            video = archive.find_video(ann.video)
            if mode == "grounded":
                result = archive.ground(ann.query, video=str(video.id), options=grounding)[0]
                moments = result.moments[:top_k]
                fractions.append(result.dense_fraction)
                empty += not moments
            else:
                moments = archive.search(ann.query, top_k=top_k, video=str(video.id))
            predictions.append([(m.start, m.end) for m in moments])
        else:
            predictions.append([])
        if progress is not None:
            progress(n + 1, len(annotations))
    report = score_predictions(annotations, predictions, mode=mode_label(mode, grounding))
    report.seconds = time.perf_counter() - started
    if mode == "grounded" and fractions:
        report.dense_fraction = sum(fractions) / len(fractions)
        report.no_answer = empty / len(fractions)
    return report
