"""The command line: exit codes, output formats, and docs kept in step with --help."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vidseek.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def cli_archive(tmp_path_factory, tiny_clip_dir, media):
    archive = tmp_path_factory.mktemp("cli") / "archive"
    result = run("ingest", str(media), "--archive", str(archive), "--model", str(tiny_clip_dir),
                 "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "3 indexed, 0 skipped, 0 failed" in result.output
    return archive


def test_search_json_schema(cli_archive):
    result = run("search", "a man talking in a car", "--archive", str(cli_archive), "--json", "-k", "4")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert 1 <= len(rows) <= 4
    for row in rows:
        assert {"video", "start", "end", "score"} <= set(row)
        assert isinstance(row["video"], str) and row["video"].endswith(".mp4")
        for key in ("start", "end", "score"):
            assert isinstance(row[key], float)
        assert 0.0 <= row["start"] < row["end"]
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    quantised = run("search", "a man talking in a car", "--archive", str(cli_archive), "--json",
                    "-k", "4", "--int8-text", "--nprobe", "8")
    assert quantised.exit_code == 0, quantised.output
    assert len(json.loads(quantised.output)) == len(rows)


def test_search_by_image_limited_to_one_video(cli_archive, media, tmp_path):
    from vidseek.indexer import read_frame

    frame = tmp_path / "frame.png"
    read_frame(media / "bikes.mp4", 4.0).save(frame)
    result = run("search", "--image", str(frame), "--archive", str(cli_archive), "--json",
                 "--video", "carphone_pristine.mp4")
    assert result.exit_code == 0, result.output
    assert {r["video"] for r in json.loads(result.output)} == {"carphone_pristine.mp4"}


def test_reingest_reports_skips_and_info_lists_videos(cli_archive, media):
    result = run("ingest", str(media / "bikes.mp4"), "--archive", str(cli_archive))
    assert result.exit_code == 0 and "0 indexed, 1 skipped" in result.output
    result = run("info", "--archive", str(cli_archive), "--json")
    data = json.loads(result.output)
    assert data["videos"] == 3 and data["frames"] == 20
    assert sorted(v["name"] for v in data["video_list"]) == sorted(
        ["bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"])


def test_failed_file_gives_exit_1_and_names_it(cli_archive, media, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_text("not a video")
    good = tmp_path / "car.mp4"
    shutil.copy(media / "carphone_pristine.mp4", good)
    result = run("ingest", str(bad), str(good), "--archive", str(cli_archive))
    assert result.exit_code == 1
    assert "broken.mp4" in result.output and "1 indexed" in result.output


def test_errors_are_clear_and_nonzero(cli_archive, tmp_path):
    result = run("search", "x", "--archive", str(tmp_path / "nowhere"))
    assert result.exit_code == 1 and "no archive here" in result.output
    result = run("search", "--archive", str(cli_archive))
    assert result.exit_code == 2 and "exactly one" in result.output
    result = run("search", "x", "--archive", str(cli_archive), "--video", "nope.mp4")
    assert result.exit_code == 1 and "no indexed video named 'nope.mp4'" in result.output
    result = run("search", "x", "--archive", str(cli_archive), "--top-k", "0")
    assert result.exit_code == 2


@pytest.mark.parametrize("args, message", [
    (["ingest", "x", "--fps", "nan"], "--fps must be a positive number"),
    (["ingest", "x", "--fps", "inf"], "--fps must be a positive number"),
    (["ingest", "x", "--fps", "0"], "--fps must be a positive number"),
    (["ingest", "x", "--fps", "-1"], "--fps must be a positive number"),
    (["ingest", "x", "--prune-threshold", "nan"], "--prune-threshold must be a number >= 0"),
    (["ingest", "x", "--prune-threshold", "inf"], "--prune-threshold must be a number >= 0"),
    (["ingest", "x", "--prune-threshold", "-1"], "--prune-threshold must be a number >= 0"),
    (["synth", "out", "--minutes", "nan"], "--minutes must be a number >= 0.1"),
    (["train", "--annotations", "a.jsonl", "-o", "g", "--lr", "inf"], "--lr must be a positive number"),
    (["watch", ".", "--settle", "-1"], "--settle must be a number >= 0"),
    (["watch", ".", "--poll", "nan"], "--poll must be a number >= 0.05"),
    (["object", "--video", "v.mp4", "--time", "nan", "--box", "0,0,1,1"], "--time must be a number >= 0"),
    (["ingest", "x", "--engine", "spark"], "--engine must be local or ray, not 'spark'"),
])
def test_bad_numbers_are_named_before_anything_is_opened(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    if args[0] != "synth":
        args = [*args, "--archive", str(tmp_path / "archive")]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert f"error: {message}" in result.output
    assert not (tmp_path / "archive").exists() and not (tmp_path / "out").exists()


def test_choices_and_integer_ranges_are_checked_by_the_parser(tmp_path):
    for args in (["search", "x", "--mode", "fast"],
                 ["ingest", "x", "--batch-size", "0"], ["ingest", "x", "--workers", "0"],
                 ["jobs", "--status", "lost"], ["eval", "--annotations", "a", "--ranking", "best"],
                 ["search", "--object", "--video", "v.mp4"]):  # object queries have their own command
        result = runner.invoke(app, [*args, "--archive", str(tmp_path / "archive")])
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output
    assert not (tmp_path / "archive").exists()


def test_object_command(cli_archive, media, tmp_path):
    from vidseek.indexer import read_frame

    common = ["--archive", str(cli_archive), "-k", "3", "--json"]
    result = run("object", "--video", "bikes.mp4", "--time", "4", "--box", "100,50,250,200", *common)
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)
    assert 1 <= len(hits) <= 3
    for hit in hits:
        assert {"video", "video_id", "start", "end", "score", "peak", "track"} <= set(hit)
        assert hit["track"] and all(len(p["box"]) == 4 for p in hit["track"])
    track = run("object", "--video", "bikes.mp4", "--time", "4", "--box", "100,50,250,200",
                "--within", "bikes.mp4", *common)
    assert track.exit_code == 0, track.output
    assert {h["video"] for h in json.loads(track.output)} == {"bikes.mp4"}
    frame = tmp_path / "frame.png"
    picture = read_frame(media / "bikes.mp4", 4.0)
    picture.save(frame)
    mask = tmp_path / "mask.png"
    from PIL import Image

    region = Image.new("L", picture.size, 0)
    region.paste(255, (100, 50, 250, 200))
    region.save(mask)
    by_image = run("object", "--image", str(frame), "--mask", str(mask), "--archive", str(cli_archive),
                   "--export", str(tmp_path / "hits.edl"))
    assert by_image.exit_code == 0, by_image.output
    assert "box at peak" in by_image.output and (tmp_path / "hits.edl").exists()


@pytest.mark.parametrize("args, message", [
    ([], "--box x0,y0,x1,y1 or --mask IMAGE (exactly one)"),
    (["--box", "1,1,9,9", "--mask", "MASK", "--video", "bikes.mp4", "--time", "1"], "(exactly one)"),
    (["--box", "1,1,9,9"], "--video V --time T or --image IMAGE (exactly one)"),
    (["--box", "1,1,9,9", "--video", "bikes.mp4", "--image", "MASK"], "(exactly one)"),
    (["--box", "1,1,9,9", "--video", "bikes.mp4"], "--video needs --time"),
    (["--box", "1,1,9,9", "--image", "MASK", "--time", "1"], "--time goes with --video"),
])
def test_object_command_needs_one_region_on_one_picture(tmp_path, args, message):
    picture = tmp_path / "mask.png"
    picture.write_bytes(b"")
    args = [str(picture) if a == "MASK" else a for a in args]
    result = runner.invoke(app, ["object", *args, "--archive", str(tmp_path / "archive")])
    assert result.exit_code == 2, result.output
    assert "error: " in result.output and message in result.output
    assert not (tmp_path / "archive").exists()


def test_object_command_rejects_bad_boxes_and_unknown_videos(cli_archive):
    for box in ("1,2,3", "a,b,c,d", "10,10,5,20", "0,0,nan,5"):
        result = run("object", "--video", "bikes.mp4", "--time", "1", "--box", box,
                     "--archive", str(cli_archive))
        assert result.exit_code == 1 and "error: --box must be x0,y0,x1,y1" in result.output, result.output
    result = run("object", "--video", "bikes.mp4", "--time", "1", "--box", "0,0,5000,50",
                 "--archive", str(cli_archive))
    assert result.exit_code == 1 and "error: " in result.output and "box" in result.output
    result = run("object", "--video", "nope.mp4", "--time", "1", "--box", "0,0,50,50",
                 "--archive", str(cli_archive))
    assert result.exit_code == 1 and "no indexed video named 'nope.mp4'" in result.output


def test_installed_entry_point_runs(cli_archive):
    exe = Path(sys.executable).with_name("vidseek")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "vidseek.cli"]
    proc = subprocess.run([*cmd, "info", "--archive", str(cli_archive)], capture_output=True,
                          text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "bikes.mp4" in proc.stdout


def test_docs_match_help():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import cli_docs
    finally:
        sys.path.pop(0)
    assert (ROOT / "docs" / "cli.md").read_text() == cli_docs.render(), (
        "docs/cli.md is out of date: run `python scripts/cli_docs.py`")


def test_odd_paths_are_per_file_errors_not_tracebacks(cli_archive, media, tmp_path):
    loop = tmp_path / "self.mp4"
    loop.symlink_to(loop)
    dangling = tmp_path / "gone.mp4"
    dangling.symlink_to(tmp_path / "nowhere.mp4")
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    result = runner.invoke(app, ["ingest", str(loop), str(dangling), str(fifo), "/dev/null",
                                 str(media / "bikes.mp4"), "--archive", str(cli_archive)])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert f"failed   {loop}: symbolic link loop" in result.output
    assert f"failed   {dangling}: dangling symbolic link" in result.output
    assert f"failed   {fifo}: is a FIFO (named pipe), not a video file" in result.output
    assert "failed   /dev/null: is a character device, not a video file" in result.output
    assert "0 indexed, 1 skipped, 4 failed" in result.output  # bikes.mp4: indexed already


def test_ingest_settings_other_than_the_archives_are_refused(cli_archive, media, tmp_path):
    def state():
        listing = run("info", "--archive", str(cli_archive), "--json")
        data = json.loads(listing.output)
        return data["video_list"], data["fps"], data["prune_threshold"]

    before = state()
    clip = tmp_path / "new.mp4"
    shutil.copy(media / "bikes.mp4", clip)
    for option, value, message in [("--fps", "2", "fps 1 (given 2)"),
                                   ("--prune-threshold", "0.5", "prune_threshold 0.1 (given 0.5)")]:
        result = run("ingest", str(clip), "--archive", str(cli_archive), option, value)
        assert result.exit_code == 1, result.output
        assert f"error: {cli_archive}: this archive was built with {message}" in result.output
        assert state() == before
    result = run("ingest", str(clip), "--archive", str(cli_archive), "--fps", "1", "--batch-size", "3")
    assert result.exit_code == 0 and "1 indexed" in result.output  # the archive's own settings
    result = run("info", "--archive", str(cli_archive), "--json")
    assert {v["fps"] for v in json.loads(result.output)["video_list"]} == {1.0}
