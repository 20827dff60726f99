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
