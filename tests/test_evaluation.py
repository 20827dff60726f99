"""Grounding metrics on hand-made cases with exact expected numbers; annotation files."""

from __future__ import annotations

import json

import pytest

from vidseek.annotations import Annotation, AnnotationError, read_annotations, write_annotations
from vidseek.evaluation import score_predictions, temporal_iou, window_recall
from vidseek.query.grounded import GroundingNode, GroundingResult


def test_temporal_iou():
    assert temporal_iou((0, 10), (0, 10)) == 1.0
    assert temporal_iou((0, 10), (5, 15)) == pytest.approx(5 / 15)
    assert temporal_iou((0, 2), (3, 4)) == 0.0
    assert temporal_iou((2, 4), (0, 10)) == pytest.approx(0.2)


def test_recall_and_miou_exact():
    anns = [
        Annotation("v.mp4", "q1", 10.0, 20.0),  # top-1 IoU 1.0
        Annotation("v.mp4", "q2", 10.0, 20.0),  # top-1 IoU 5/15 = 0.333; 2nd has IoU 0.6
        Annotation("v.mp4", "q3", 0.0, 10.0),  # top-1 IoU 0; 5th IoU 0.8; 6th exact but ignored
        Annotation("v.mp4", "q4", 0.0, 4.0),  # no prediction at all
        Annotation("v.mp4", "q5", None, None),  # absent: not scored
    ]
    preds = [
        [(10.0, 20.0)],
        [(15.0, 25.0), (14.0, 20.0)],
        [(50.0, 60.0), (70, 80), (90, 95), (96, 97), (0.0, 8.0), (0.0, 10.0)],
        [],
        [(1.0, 2.0)],
    ]
    report = score_predictions(anns, preds, mode="test")
    assert report.queries == 4 and report.absent_queries == 1
    r = report.recall
    assert r["R1@0.1"] == 0.5 and r["R1@0.3"] == 0.5  # q1 and q2 (0.333)
    assert r["R1@0.5"] == 0.25 and r["R1@0.7"] == 0.25  # q1 only
    assert r["R5@0.1"] == 0.75 and r["R5@0.5"] == 0.75  # q1, q2 (0.6), q3 (0.8)
    assert r["R5@0.7"] == 0.5  # q1, q3
    assert report.miou == pytest.approx((1.0 + 1 / 3 + 0 + 0) / 4)
    assert "R1@0.5" in report.table() and "| test |" in report.table()


def test_per_kind_breakdown():
    anns = [Annotation("v", "a", 0.0, 1.0, {"kind": "appears"}),
            Annotation("v", "b", 0.0, 1.0, {"kind": "moves left"}),
            Annotation("v", "c", 2.0, 3.0, {"kind": "moves left"})]
    report = score_predictions(anns, [[(0, 1)], [(0, 1)], [(0, 1)]])
    assert report.per_kind["appears"] == {"R1@0.5": 1.0, "mIoU": 1.0, "queries": 1}
    assert report.per_kind["moves left"]["R1@0.5"] == 0.5


def _node(level, kind, span, kept, presence=None, children=()):
    return GroundingNode(level, kind, span, "", "span", span, 1.0, 0.0, kept=kept,
                         children=list(children), presence=presence)


def test_right_window_recall_per_level():
    """L1@k: one of the k windows with the highest presence holds half the event; L2/L3: one
    of the spans kept at that level does."""
    event = Annotation("v", "q", 130.0, 140.0)  # inside window [120, 180)
    dense_miss = _node(3, "dense", (100.0, 104.0), True)
    dense_hit = _node(3, "dense", (131.0, 138.0), True)
    fine = _node(2, "fine", (125.0, 145.0), True, children=[dense_miss])
    fine_other = _node(2, "fine", (60.0, 70.0), False, children=[dense_hit])  # not kept: no L2 hit
    # (dense_hit is kept at level 3: the L3 hit)
    tree = [_node(1, "coarse", (0.0, 60.0), True, 0.9, [fine_other]),
            _node(1, "coarse", (60.0, 120.0), False, 0.5),
            _node(1, "coarse", (120.0, 180.0), True, 0.7, [fine]),
            _node(1, "coarse", (180.0, 240.0), False, 0.1)]
    result = GroundingResult(None, "q", [], tree, 240, 0, {})  # type: ignore[arg-type]
    hits = window_recall(result, event)
    assert hits == {"L1@1": False, "L1@3": True, "L1@5": True, "L2": True, "L3": True}
    edge = Annotation("v", "q", 170.0, 200.0)  # 10 s in window 2, 20 s (over half) in window 3
    assert window_recall(result, edge)["L1@3"] is False and window_recall(result, edge)["L1@5"] is True
    answer_mode = [_node(1, "coarse", (0.0, 480.0), True, children=[]), _node(1, "coarse", (480.0, 960.0), False)]
    answer = GroundingResult(None, "q", [], answer_mode, 960, 0, {})  # type: ignore[arg-type]
    assert window_recall(answer, event, levels=3, ranked=False) == {"L1": True, "L2": False, "L3": False}
    # a video that was not a candidate (empty tree) misses at every level
    empty = GroundingResult(None, "q", [], [], 0, 0, {})  # type: ignore[arg-type]
    assert window_recall(empty, event, levels=2) == {"L1@1": False, "L1@3": False, "L1@5": False, "L2": False}
    # a short video starts at the dense level: its kept spans count for every level
    short = GroundingResult(None, "q", [], [_node(1, "dense", (131.0, 137.0), True)], 20, 20, {})  # type: ignore[arg-type]
    assert window_recall(short, event, levels=3) == {"L1@1": True, "L1@3": True, "L1@5": True, "L2": True, "L3": True}


def test_annotation_files_round_trip_and_errors(tmp_path):
    path = tmp_path / "a.jsonl"
    anns = [Annotation("v.mp4", "a red circle appears", 1.0, 3.5, {"kind": "appears"}),
            Annotation("v.mp4", "a blue square", None, None)]
    write_annotations(path, anns)
    assert read_annotations(path) == anns
    assert read_annotations(path)[0].extra == {"kind": "appears"}
    bad = tmp_path / "bad.jsonl"
    cases = [
        ('{"video": "v", "query": "q", "start": 1}', "missing key"),
        ('{"video": "v", "query": "q", "start": 5, "end": 2}', "start < end"),
        ('{"video": "v", "query": "q", "start": null, "end": 2}', "both"),
        ("not json", "not valid JSON"),
    ]
    for line, message in cases:
        bad.write_text(json.dumps({"video": "v", "query": "q", "start": 0, "end": 1}) + "\n" + line + "\n")
        with pytest.raises(AnnotationError, match=f"bad.jsonl:2: .*{message}"):
            read_annotations(bad)


def test_abstention_curve_and_separability_from_a_predictions_file(tmp_path):
    """benchmarks/abstention.py re-applies thresholds to the moments a predictions file holds
    (kept and dropped) and says how well the best presence separates present from absent."""
    import subprocess
    import sys
    from pathlib import Path

    def row(truth, moments, mode="grounded-3"):
        # moments: (start, end, score, presence); those under 0.1 as the default dropped them
        kept = [m for m in moments if m[3] >= 0.1]
        return {"mode": mode, "query": "q", "kind": "k", "truth": truth,
                "moments": [list(m[:3]) for m in kept], "presence": [m[3] for m in kept],
                "dropped": [list(m) for m in moments if m[3] < 0.1]}

    rows = [row([10, 14], [(10, 14, 0.9, 0.6), (30, 34, 0.5, 0.3)]),   # right at the top
            row([50, 54], [(70, 74, 0.8, 0.4), (50, 54, 0.7, 0.4)]),   # right second
            row(None, [(5, 9, 0.5, 0.2)]),                               # absent, weaker
            row(None, [(5, 9, 0.5, 0.05)]),                              # absent, already dropped
            row(None, [(5, 9, 0.5, 0.5)], mode="grounded-3-archive")]    # archive-wide: left out
    predictions = tmp_path / "p.jsonl"
    predictions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "a.json"
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "abstention.py"
    done = subprocess.run([sys.executable, str(script), str(predictions), "--thresholds", "0,0.1,0.3,0.5",
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "AUC 1.000" in done.stdout
    result = json.loads(out.read_text())["modes"]
    assert set(result) == {"grounded-3"}
    assert result["grounded-3"]["best_presence_auc"] == 1.0
    by = {t["threshold"]: t for t in result["grounded-3"]["thresholds"]}
    assert by[0.0]["absent_rejected"] == 0 and by[0.0]["r1_05"] == 50 and by[0.0]["r5_01"] == 100
    assert by[0.1]["absent_rejected"] == 50
    assert by[0.3]["absent_rejected"] == 100 and by[0.3]["r1_05"] == 50
    assert by[0.5]["r1_05"] == 50 and by[0.5]["r5_01"] == 50   # only the first query keeps a moment


def test_archive_wide_scoring_counts_the_event_in_any_video_that_holds_it():
    """Searching the whole archive, a moment in another video is right where that video holds
    the same event (given as ``occurrences``); a query absent from its own video but present
    in another is a present one. Without occurrences, other videos' moments count as wrong."""
    from types import SimpleNamespace

    from vidseek.errors import QueryError
    from vidseek.evaluation import evaluate_archive
    from vidseek.query.moments import Moment

    videos = {"a.mp4": SimpleNamespace(id=1, name="a.mp4"), "b.mp4": SimpleNamespace(id=2, name="b.mp4")}

    def moment(video: str, start: float, end: float, score: float) -> Moment:
        return Moment(video, start, end, score, (start + end) / 2, videos[video].id, video)

    hits = {"the red cube moves left": [moment("b.mp4", 50, 54, 0.9), moment("a.mp4", 30, 34, 0.8)],
            "the blue ball bounces": [moment("a.mp4", 10, 13, 0.9)],
            "the green star turns red": [moment("b.mp4", 70, 72, 0.9)]}

    class Archive:
        def find_video(self, name):
            if name not in videos:
                raise QueryError(f"no video {name}")
            return videos[name]

        def search(self, query, top_k, video=None):
            assert video is None  # archive-wide: no video named
            return hits[query][:top_k]

    annotations = [Annotation("a.mp4", "the red cube moves left", 10, 14, {"kind": "moves left"}),
                   Annotation("a.mp4", "the blue ball bounces", 10, 13, {"kind": "bounces"}),
                   Annotation("a.mp4", "the green star turns red", None, None, {"kind": "turns"})]
    occurrences = [Annotation("b.mp4", "the red cube moves left", 50, 54),
                   Annotation("b.mp4", "the green star turns red", 70, 72),
                   Annotation("b.mp4", "something else", 1, 2),
                   Annotation("gone.mp4", "the blue ball bounces", 1, 2)]  # not in the archive: left out
    alone = evaluate_archive(Archive(), annotations, archive_wide=True)
    assert alone.queries == 2 and alone.recall["R1@0.5"] == 0.5  # b's moment counted wrong
    rows: list[dict] = []
    shared = evaluate_archive(Archive(), annotations, archive_wide=True, occurrences=occurrences,
                              predictions=rows)
    assert shared.queries == 3 and shared.recall["R1@0.5"] == 1.0 and shared.recall["R5@0.5"] == 1.0
    # a moment in video a at b's time is not right: the timelines of videos never mix
    hits["the red cube moves left"] = [moment("a.mp4", 50, 54, 0.9)]
    mixed = evaluate_archive(Archive(), annotations, archive_wide=True, occurrences=occurrences)
    assert mixed.recall["R1@0.5"] == 2 / 3
    assert rows[0]["occurrences"] == [[1, 10, 14], [2, 50, 54]] and rows[0]["moment_video_ids"] == [2, 1]
    assert rows[2]["truth"] is None and rows[2]["occurrences"] == [[2, 70, 72]] and rows[2]["present"]
    # the same query annotated twice in its own video: each annotation keeps its own span there
    twice = [Annotation("a.mp4", "the blue ball bounces", 10, 13), Annotation("a.mp4", "the blue ball bounces", 40, 43)]
    both = evaluate_archive(Archive(), twice, archive_wide=True, occurrences=twice)
    assert both.queries == 2 and both.recall["R1@0.5"] == 0.5
