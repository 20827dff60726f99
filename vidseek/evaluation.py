"""Temporal grounding metrics (as in MAD and Charades-STA) and archive evaluation.

- IoU of two spans: length of their intersection over length of their union.
- **R@n, IoU=m**: share of queries for which at least one of the top-``n`` predicted moments
  has IoU ≥ ``m`` with the ground truth.
- **mIoU**: mean IoU of the top-1 prediction.

A query with no prediction scores IoU 0. Queries whose event is absent from the video
(``start``/``end`` null) are not part of these metrics; they are counted separately.

Grounded modes also report, from the recursion tree of each present query:

- **right-window recall per level** (``window_recall``): is the true event inside what a
  level kept? ``L1@k``: one of the ``k`` level-1 windows with the highest presence (with
  ``level1="answer"``: one of the kept level-1 spans) holds at least half of the event;
  ``L2``, ``L3``: one of the spans kept at that level does. It tells which level loses
  the event.
- **abstention**: absent-event queries are run too; ``absent_rejected`` is the share whose
  every moment falls below the presence threshold (``GroundingOptions.min_presence``, by
  default the checkpoint's, chosen on held-out queries), and ``recall_without_abstention``
  the R@n the present queries would score with no threshold (the threshold's cost).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import replace
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

from .annotations import Annotation

from .query.grounded import GroundingNode, GroundingOptions, GroundingResult, ranked_moments
from .errors import ConfigError, QueryError

if TYPE_CHECKING:  # pragma: no cover
    from .archive import Archive

logger = logging.getLogger(__name__)

__all__ = ["temporal_iou", "EvalReport", "score_predictions", "evaluate_archive", "mode_label",
           "window_recall", "RECALL_AT", "IOU_THRESHOLDS", "WINDOW_RECALL_AT"]

RECALL_AT = (1, 5)
IOU_THRESHOLDS = (0.1, 0.3, 0.5, 0.7)
WINDOW_RECALL_AT = (1, 3, 5)  # level-1 windows by presence


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
    # grounded modes (see the module doc): right-window recall per level ("L1@3" -> share),
    # the presence threshold applied, the share of absent events it rejected, and R@n with
    # no threshold
    window_recall: dict[str, float] = field(default_factory=dict)
    min_presence: float | None = None
    absent_rejected: float | None = None
    recall_without_abstention: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"mode": self.mode, "queries": self.queries, "absent_queries": self.absent_queries,
                "recall": self.recall, "mIoU": self.miou, "per_kind": self.per_kind,
                "seconds": self.seconds, "dense_fraction": self.dense_fraction,
                "no_answer": self.no_answer, "window_recall": self.window_recall,
                "min_presence": self.min_presence, "absent_rejected": self.absent_rejected,
                "recall_without_abstention": self.recall_without_abstention}

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
        if self.window_recall:
            keys = list(self.window_recall)
            lines += ["", "| right-window recall | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys),
                      "| share of present queries | "
                      + " | ".join(f"{100 * self.window_recall[k]:.1f}" for k in keys) + " |"]
        if self.absent_rejected is not None and self.recall_without_abstention:
            lines += ["", f"abstention at min presence {self.min_presence:.3f}: "
                      f"{100 * self.absent_rejected:.1f}% of {self.absent_queries} absent events rejected; "
                      f"R1@0.5 {100 * self.recall['R1@0.5']:.1f} "
                      f"(without abstention {100 * self.recall_without_abstention['R1@0.5']:.1f})"]
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
    level1 = "" if g.level1 == "presence" else ", level 1 answers spans"
    refine = "" if g.refines_clips or g.level1 != "presence" else ", whole windows"
    shortlist = ""
    if g.level1 == "presence" and g.presence_shortlist != GroundingOptions().presence_shortlist:
        shortlist = (", LM asked about every window" if g.presence_shortlist == 0
                     else f", LM asked about {g.presence_shortlist} windows")
    return f"grounded, {levels}{refine}{level1}{shortlist}{ranking}"


def _holds_event(span: tuple[float, float] | None, annotation: Annotation) -> bool:
    """``span`` holds at least half of one occurrence of the event."""
    if span is None:
        return False
    return any(max(0.0, min(span[1], b) - max(span[0], a)) >= 0.5 * (b - a) for a, b in annotation.windows)


def _kept_by_level(tree: list[GroundingNode]) -> dict[int, list[GroundingNode]]:
    levels: dict[int, list[GroundingNode]] = defaultdict(list)
    stack = list(tree)
    while stack:
        node = stack.pop()
        if node.kept:
            levels[node.level].append(node)
        stack += node.children
    return levels


def window_recall(result: GroundingResult, annotation: Annotation, levels: int = 3,
                  ranked: bool = True) -> dict[str, bool]:
    """Per level (1 to ``levels``, the recursion's depth), whether what the level kept holds
    the event (see the module doc); a level the recursion did not reach is a miss.
    ``ranked``: level 1 as ``L1@k``, the ``k`` windows of highest presence of the video
    (presence mode, one video); otherwise ``L1``, the windows or spans level 1 kept (the
    paper's level 1, or an archive-wide search, which keeps the best windows across videos)."""
    hits: dict[str, bool] = {}
    windows = [n for n in result.tree if n.presence is not None and n.kind == "coarse"]
    kept = _kept_by_level(result.tree)
    first = any(_holds_event(n.span, annotation) for n in kept.get(1, []))
    if ranked:
        best = sorted(windows, key=lambda n: -(n.presence or 0.0))
        for k in WINDOW_RECALL_AT:  # a video that starts at the dense level: its kept spans
            hits[f"L1@{k}"] = any(_holds_event(n.span, annotation) for n in best[:k]) if windows else first
    else:
        hits["L1"] = first
    short = bool(result.tree) and not any(n.kind == "coarse" for n in result.tree)
    for level in range(2, levels + 1):  # a short video's level 1 is already the dense level
        hits[f"L{level}"] = first if short else any(_holds_event(n.span, annotation)
                                                    for n in kept.get(level, []))
    return hits


def _prediction_row(mode: str, annotation: Annotation, moments: list, dropped: list,
                    archive_wide: bool, truth: Annotation) -> dict:
    row = {"mode": mode, "query": annotation.query, "video": annotation.video,
           "kind": annotation.extra.get("kind"),
           "truth": [annotation.start, annotation.end] if annotation.present else None,
           "moments": [[round(m.start, 3), round(m.end, 3), round(m.score, 5)] for m in moments]}
    if archive_wide:  # which video each moment is in, and where the event happens in the archive
        row["moment_videos"] = [m.video for m in moments]
        row["moment_video_ids"] = [m.video_id for m in moments]
        row["occurrences"] = [[vid, a, b] for vid, spans in sorted(truth.extra.get("by_video", {}).items())
                              for a, b in spans]
        row["present"] = truth.present  # in the archive: "truth" is the annotated video's own
    if dropped or any(m.presence is not None for m in moments):
        row["presence"] = [None if m.presence is None else round(m.presence, 5) for m in moments]
        # what the presence threshold removed: [start, end, score, presence]
        row["dropped"] = [[round(m.start, 3), round(m.end, 3), round(m.score, 5), round(m.presence, 5)]
                          for m in dropped]
    return row


# Archive-wide scoring puts every video on one timeline, each starting at its id times this
# (longer than any video), so that spans of different videos never overlap.
_VIDEO_OFFSET = 1e7


def _on_timeline(moment) -> tuple[float, float]:
    offset = moment.video_id * _VIDEO_OFFSET
    return (moment.start + offset, moment.end + offset)


def _archive_truths(archive: "Archive", annotations: Sequence[Annotation],
                    occurrences: Sequence[Annotation]) -> list[Annotation]:
    """Each annotation with the spans of its event in every video that holds it, on the
    archive's timeline: in its own video its own spans only (as single-video scoring has
    them), in other videos those ``occurrences`` annotate with the same query; the
    video-local spans per video id are kept in ``extra["by_video"]``. Occurrences in videos
    the archive does not hold are left out, with a warning."""
    elsewhere: dict[str, dict[int, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    ids: dict[str, int | None] = {}

    def video_id(name: str) -> int | None:
        if name not in ids:
            try:
                ids[name] = archive.find_video(name).id
            except QueryError:
                ids[name] = None
                logger.warning("occurrences in %s are left out: the archive holds no such video", name)
        return ids[name]

    for ann in occurrences:
        vid = video_id(ann.video)
        for window in ann.windows if vid is not None else []:
            if window not in elsewhere[ann.query][vid]:
                elsewhere[ann.query][vid].append(window)
    truths = []
    for ann in annotations:
        own = video_id(ann.video)
        by_video = {vid: list(w) for vid, w in elsewhere.get(ann.query, {}).items() if vid != own}
        if ann.windows and own is not None:
            by_video[own] = list(ann.windows)
        for vid, spans in by_video.items():
            if any(b >= _VIDEO_OFFSET for _, b in spans):
                raise ValueError(f"{ann.video}: a span ends after {_VIDEO_OFFSET:g} s; archive-wide "
                                 "scoring cannot place it")
        if not by_video:
            truths.append(ann)
            continue
        windows = sorted((a + vid * _VIDEO_OFFSET, b + vid * _VIDEO_OFFSET)
                         for vid, w in by_video.items() for a, b in w)
        first = by_video.get(own) if own is not None and own in by_video else next(iter(by_video.values()))
        truths.append(Annotation(ann.video, ann.query, first[0][0], first[0][1],  # type: ignore[index]
                                 {**ann.extra, "windows": windows, "by_video": by_video}))
    return truths


def _archive_window_recall(results: list[GroundingResult], truth: Annotation, levels: int) -> dict[str, bool]:
    """Right-window recall across the videos of an archive-wide query: a level holds the
    event if what it kept in any video holds one of that video's occurrences."""
    hits: dict[str, bool] = {}
    by_video = truth.extra.get("by_video", {})
    for result in results:
        spans = by_video.get(result.video.id)
        if not spans:
            continue
        local = Annotation(result.video.name, truth.query, spans[0][0], spans[0][1], {"windows": spans})
        for key, hit in window_recall(result, local, levels, ranked=False).items():
            hits[key] = hits.get(key, False) or hit
    return hits or {"L1": False, **{f"L{level}": False for level in range(2, levels + 1)}}


def evaluate_archive(archive: "Archive", annotations: Sequence[Annotation], mode: str = "clip",
                     top_k: int = 5, progress: Callable[[int, int], None] | None = None,
                     grounding: GroundingOptions | None = None,
                     predictions: list[dict] | None = None,
                     prediction_mode: str | None = None, archive_wide: bool = False,
                     occurrences: Sequence[Annotation] = ()) -> EvalReport:
    """Run every query against its video in ``archive`` and score the results.

    ``annotation.video`` must name one indexed video (file name, path or id). ``mode`` is
    ``clip`` or ``grounded`` (with ``grounding`` options; a grounded query returns ``top_k``
    moments, see :meth:`GroundingOptions.with_results`). Grounded modes also run the
    absent-event queries (abstention). ``predictions``, when given, receives one dict per
    query, absent events included: ``{"mode", "query", "video", "kind", "truth", "moments": [[start, end, score], ...]}``
    (best first; grounded: with ``presence`` per moment and the moments the threshold
    ``dropped``), ``mode`` being ``prediction_mode`` or the report's label.

    ``archive_wide``: each query searches the whole archive, as a user without ``--video``
    does, and right-window recall counts the windows kept across all candidate videos
    (``L1``, ``L2``...). ``occurrences`` are the annotations of the archive's other videos: a
    moment in another video is right where that video holds the same event (the same query
    text), as it is for a user searching the archive, and a query absent from its own video
    but annotated in another is a present one there. Without them a moment in another video
    counts as wrong (which undercounts wherever videos share events).
    """
    if mode not in ("clip", "grounded"):
        raise ConfigError(f"unknown query mode {mode!r} (available: clip, grounded)")
    started = time.perf_counter()
    label = mode_label(mode, grounding)
    threshold = None
    options = None
    if mode == "grounded":
        base = (grounding or GroundingOptions()).with_results(top_k)
        threshold = base.min_presence
        if threshold is None:
            grounder = archive.grounder
            threshold = (grounder.presence_calibration.threshold
                         if grounder is not None and base.level1 == "presence" else 0.0)
        options = replace(base, min_presence=0.0)  # the threshold is applied here, to see its cost
    truths = _archive_truths(archive, annotations, occurrences) if archive_wide else None
    kept, unfiltered = [], []
    fractions, empty, scored_present = [], 0, 0
    window_hits: dict[str, list[bool]] = defaultdict(list)
    absent_rejected = []
    for n, ann in enumerate(annotations):
        truth = truths[n] if truths is not None else ann
        # exactly the annotated video: two folders may each hold a world_000.mp4
        if mode == "grounded":
            video = archive.find_video(ann.video)
            if truths is not None:
                results = archive.ground(ann.query, options=options)
                moments = ranked_moments(results, top_k)
            else:
                result = archive.ground(ann.query, video=str(video.id), options=options)[0]
                moments = result.moments[:top_k]
            passed = [m for m in moments if m.presence is None or m.presence >= threshold]  # type: ignore[operator]
            dropped = [m for m in moments if m not in passed]
            if truths is not None and truth.present:
                # the dense tokens read in the annotated video, where it holds the event
                own = [r for r in results if r.video.id == video.id]
                if video.id in truth.extra.get("by_video", {}):
                    fractions.append(own[0].dense_fraction if own else 0.0)
                empty += not passed
                scored_present += 1
                for key, hit in _archive_window_recall(results, truth, options.levels).items():  # type: ignore[union-attr]
                    window_hits[key].append(hit)
            elif truths is None and ann.present:
                fractions.append(result.dense_fraction)
                empty += not passed
                scored_present += 1
                ranked = options.level1 == "presence"  # type: ignore[union-attr]
                for key, hit in window_recall(result, ann, options.levels, ranked).items():  # type: ignore[union-attr]
                    window_hits[key].append(hit)
            else:
                absent_rejected.append(not passed)
        elif truth.present or predictions is not None:  # CLIP mode never abstains: absent ones
            video = archive.find_video(ann.video)        # are run only to be written down
            passed = archive.search(ann.query, top_k=top_k, video=None if archive_wide else str(video.id))
            moments, dropped = passed, []
        else:
            passed = moments = dropped = []
        if truths is not None:  # on the archive's timeline (see _archive_truths)
            kept.append([_on_timeline(m) for m in passed])
            unfiltered.append([_on_timeline(m) for m in moments])
        else:
            kept.append([(m.start, m.end) for m in passed])
            unfiltered.append([(m.start, m.end) for m in moments])
        if predictions is not None:
            predictions.append(_prediction_row(prediction_mode or label, ann, passed, dropped, archive_wide, truth))
        if progress is not None:
            progress(n + 1, len(annotations))
    scored = truths if truths is not None else list(annotations)
    report = score_predictions(scored, kept, mode=label + (", archive-wide" if archive_wide else ""))
    report.seconds = time.perf_counter() - started
    if mode == "grounded" and scored_present:
        report.dense_fraction = sum(fractions) / len(fractions) if fractions else 0.0
        report.no_answer = empty / scored_present
        report.window_recall = {k: sum(v) / len(v) for k, v in window_hits.items()}
        report.min_presence = threshold
        report.absent_rejected = sum(absent_rejected) / len(absent_rejected) if absent_rejected else None
        report.recall_without_abstention = score_predictions(scored, unfiltered).recall
    return report
