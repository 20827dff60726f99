"""Annotation files of the public moment-retrieval sets: Charades-STA, QVHighlights, MAD
(JSON and CSV), read as they are distributed, detected or named; their video ids name
archive videos by file stem; an event true in several windows is scored against any."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vidseek.annotations import Annotation, detect_format, read_annotations, write_annotations
from vidseek.errors import AnnotationError
from vidseek.evaluation import score_predictions
from vidseek.store.catalog import _VIDEO_COLUMNS, Catalog
from vidseek.cli.training import _stage_steps

CHARADES = """3MSZA 24.3 30.4##person turn a light on.
3MSZA 0.0 6.9##a person is putting a book on a shelf.

AO8RW 0.0 7.6##person opens a closet door.
"""

QVHIGHLIGHTS = [
    {"qid": 2579, "query": "A girl and her mother cooked while talking with each other.",
     "duration": 150, "vid": "j7rJstUseKg_360.0_510.0", "relevant_windows": [[96, 114], [10, 20]],
     "relevant_clip_ids": [48, 49], "saliency_scores": [[1, 1, 1]]},
    {"qid": 9, "query": "A man walks a dog.", "duration": 150, "vid": "abc_0.0_150.0",
     "relevant_windows": [[4, 12]]},
]

MAD = {
    "10002": {"movie": "3001_21_JUMP_STREET", "sentence": "Jenko turns to face Schmidt.\n",
              "timestamps": [6098.4, 6101.2], "ext_timestamps": [6097.9, 6101.7],
              "movie_duration": 6300.0},
    "10003": {"movie": "3001_21_JUMP_STREET", "sentence": "He walks away.",
              "timestamps": [6110.0, 6112.5], "ext_timestamps": [6109.5, 6113.0],
              "movie_duration": 6300.0},
}

MAD_CSV = """movie,sentence,t_start,t_end,split
3001_21_JUMP_STREET,"Jenko turns, slowly, to face Schmidt.",6098.4,6101.2,train
1005_Signs,Graham looks up.,55.0,58.5,train
"""


def test_charades_sta_lines(tmp_path):
    path = tmp_path / "charades_sta_test.txt"
    path.write_text(CHARADES)
    rows = read_annotations(path)
    assert [(a.video, a.start, a.end) for a in rows] == [
        ("3MSZA", 24.3, 30.4), ("3MSZA", 0.0, 6.9), ("AO8RW", 0.0, 7.6)]
    assert rows[0].query == "person turn a light on."
    assert read_annotations(path, format="charades") == rows
    bad = tmp_path / "bad.txt"
    bad.write_text("3MSZA 24.3 30.4##fine\nthis line has no span\n")
    with pytest.raises(AnnotationError, match=r"bad.txt:2: expected 'VIDEO START END##SENTENCE'"):
        read_annotations(bad, format="charades")
    backwards = tmp_path / "backwards.txt"
    backwards.write_text("3MSZA 30.4 24.3##reversed span\n")
    with pytest.raises(AnnotationError, match="backwards.txt:1: need 0 <= start < end"):
        read_annotations(backwards)


def test_qvhighlights_keeps_every_window(tmp_path):
    path = tmp_path / "highlight_val_release.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in QVHIGHLIGHTS))
    first, second = read_annotations(path)
    assert first.video == "j7rJstUseKg_360.0_510.0" and first.query.startswith("A girl")
    # the earliest window is the span; every window is kept
    assert (first.start, first.end) == (10.0, 20.0)
    assert first.windows == [(10.0, 20.0), (96.0, 114.0)]
    assert first.extra["qid"] == 2579 and first.extra["duration"] == 150
    assert second.windows == [(4.0, 12.0)]
    # written as our own rows and read back, nothing is lost
    ours = tmp_path / "ours.jsonl"
    write_annotations(ours, [first, second])
    assert detect_format(ours, ours.read_text()) == "vidseek"
    again = read_annotations(ours)
    assert again == [first, second] and again[0].windows == first.windows


def test_mad_json_and_csv(tmp_path):
    path = tmp_path / "MAD_val.json"
    path.write_text(json.dumps(MAD, indent=2))
    rows = read_annotations(path)
    assert [(a.video, a.start, a.end) for a in rows] == [
        ("3001_21_JUMP_STREET", 6098.4, 6101.2), ("3001_21_JUMP_STREET", 6110.0, 6112.5)]
    assert rows[0].query == "Jenko turns to face Schmidt." and rows[0].extra["id"] == "10002"
    csv_path = tmp_path / "mad.csv"
    csv_path.write_text(MAD_CSV)
    rows = read_annotations(csv_path)
    assert [(a.video, a.query, a.start, a.end) for a in rows] == [
        ("3001_21_JUMP_STREET", "Jenko turns, slowly, to face Schmidt.", 6098.4, 6101.2),
        ("1005_Signs", "Graham looks up.", 55.0, 58.5)]
    headless = tmp_path / "headless.csv"
    headless.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(AnnotationError, match="headless.csv: no column for video"):
        read_annotations(headless)


def test_formats_are_detected_or_refused(tmp_path):
    odd = tmp_path / "odd.txt"
    odd.write_text("hello world\n")
    with pytest.raises(AnnotationError, match="odd.txt: cannot tell the annotation format"):
        read_annotations(odd)
    with pytest.raises(AnnotationError, match="unknown annotation format 'srt'"):
        read_annotations(odd, format="srt")
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text(json.dumps({"video": "a.mp4", "query": "q", "start": 1, "end": 2}) + "\n")
    with pytest.raises(AnnotationError, match="wrong.jsonl:1: expected a QVHighlights object"):
        read_annotations(wrong, format="qvhighlights")


def test_an_event_in_several_windows_is_scored_against_the_nearest():
    twice = Annotation("v", "q", 10.0, 20.0, {"windows": [[10, 20], [96, 114]]})
    once = Annotation("v", "q", 10.0, 20.0)
    prediction = [[(96.0, 114.0)]]
    assert score_predictions([twice], prediction).recall["R1@0.7"] == 1.0
    assert score_predictions([once], prediction).recall["R1@0.1"] == 0.0


def test_dataset_video_ids_name_videos_by_file_stem(tmp_path):
    catalog = Catalog(tmp_path / "catalog.db")
    blank = {c: kind() for c, kind in _VIDEO_COLUMNS.items() if c != "id"}  # every column
    for n, name in enumerate(["3MSZA.mp4", "3MSZAB.mp4", "a_b.mkv", "a%b.mp4", "3MSZA.tar.gz"]):
        catalog.commit_video({**blank, "path": f"/footage/{name}", "name": name, "frames": 1,
                              "features_key": f"k{n}", "status": "indexed"}, np.zeros(1))
    assert [v.name for v in catalog.find_videos_by_stem("3MSZA")] == ["3MSZA.mp4"]
    # LIKE wildcards in an id match only themselves
    assert [v.name for v in catalog.find_videos_by_stem("a_b")] == ["a_b.mkv"]
    assert [v.name for v in catalog.find_videos_by_stem("a%b")] == ["a%b.mp4"]
    assert catalog.find_videos_by_stem("3MSZ") == [] and catalog.find_videos_by_stem("a") == []


def test_train_steps_per_stage():
    assert _stage_steps("1a=6000,1b=800,2=2000") == {"1a": 6000, "1b": 800, "2": 2000, "verifier": 1500}
    assert _stage_steps("50") == {"1a": 50, "1b": 50, "2": 50, "verifier": 50}
    assert _stage_steps("verifier=7")["verifier"] == 7
    defaults = _stage_steps(None)
    assert _stage_steps("1b=5") == {**defaults, "1b": 5}
    import typer
    for bad in ("0", "1c=5", "1a=x", "1a=0", ""):
        with pytest.raises(typer.Exit) as exit_info:
            _stage_steps(bad)
        assert exit_info.value.exit_code == 2
