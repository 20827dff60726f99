"""Exports for media tools, each read back by its reference reader: the .otio through
opentimelineio, the .edl through OpenTimelineIO's CMX 3600 adapter (otio-cmx3600-adapter) at
the rate the file declares, mixed-rate results included; contact sheet; CLI."""

from __future__ import annotations

import dataclasses
import re
import sys
from fractions import Fraction
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import vidseek
import vidseek.indexer
from vidseek.cli import app
from vidseek.exports import ExportItem, edl_timeline_rate, export_results
from vidseek.synth import VideoWriter

otio = pytest.importorskip("opentimelineio")
pytest.importorskip("otio_cmx3600_adapter")


@pytest.fixture(scope="module")
def results(tmp_path_factory, trained_encoder_dir, media):
    root = tmp_path_factory.mktemp("exports")
    archive = vidseek.Archive.open(root / "archive", model=trained_encoder_dir, device="cpu")
    archive.ingest([media])
    frame = root / "frame.png"
    vidseek.indexer.read_frame(media / "bikes.mp4", 5.0).save(frame)
    moments = archive.search(image=frame, top_k=4)
    assert len(moments) >= 2
    yield archive, moments, root
    archive.close()


def _moment(archive, name: str, start: float, end: float, score: float) -> vidseek.Moment:
    record = archive.find_video(name)
    return vidseek.Moment(video=name, start=start, end=end, score=score, peak=(start + end) / 2,
                          video_id=record.id, path=record.path)


def _declared_rate(text: str) -> Fraction:
    """The rate the EDL declares in its first event's ``* TIMELINE RATE:`` comment."""
    match = re.search(r"^\* TIMELINE RATE: ([\d.]+) FPS(?: \((\d+)/(\d+)\))? NON-DROP FRAME\r$", text, re.M)
    assert match, text
    return Fraction(int(match[2]), int(match[3])) if match[2] else Fraction(match[1])


def _read_edl(path: Path, rate: Fraction | None = None):
    """The EDL as the reference reader reads it, at the declared rate unless told another."""
    text = path.read_bytes().decode("ascii")
    assert text.startswith("TITLE: ") and "\r\nFCM: NON-DROP FRAME\r\n" in text
    declared = _declared_rate(text)
    timeline = otio.adapters.read_from_file(str(path), adapter_name="cmx_3600",
                                            rate=float(rate or declared))
    return timeline, declared, text


def _check_edl(timeline, rate: Fraction, expected: list[tuple[str, float, float]]) -> list[tuple[float, float]]:
    """Each event points at ``(file, start, end)`` within a frame at ``rate``; the record side is
    contiguous from 01:00:00:00. Returns each event's source (in, out) in seconds."""
    (track,) = timeline.tracks
    clips = list(track)
    assert all(isinstance(c, otio.schema.Clip) for c in clips)  # the reader puts a Gap in any hole
    assert len(clips) == len(expected)
    frame = 1 / float(rate)
    record_at = Fraction(3600 * round(rate)) / rate  # 01:00:00:00 (NDF: a frame count) in seconds
    spans = []
    for clip, (path, start, end) in zip(clips, expected):
        src = clip.source_range
        assert Path(unquote(urlparse(clip.media_reference.target_url).path)) == Path(path).resolve()
        assert clip.name == Path(path).name
        assert src.start_time.to_seconds() == pytest.approx(start, abs=frame)
        assert src.end_time_exclusive().to_seconds() == pytest.approx(end, abs=frame)
        record = clip.transformed_time_range(clip.trimmed_range(), timeline.tracks)
        assert record.duration == src.duration  # the reader checked it too
        assert record.start_time.to_seconds() == pytest.approx(float(record_at), abs=1e-9)
        record_at += Fraction(record.duration.value) / rate  # the next cut starts where this ends
        spans.append((src.start_time.to_seconds(), src.end_time_exclusive().to_seconds()))
    return spans


def test_otio_timeline_reads_back_with_the_same_ranges(results):
    archive, moments, root = results
    path = archive.export(moments, root / "results.otio", title="bikes")
    timeline = otio.adapters.read_from_file(str(path))
    clips = list(timeline.find_clips())
    assert timeline.name == "bikes" and len(clips) == len(moments)
    for clip, moment in zip(clips, moments):
        record = archive.find_video(moment.video_id)
        rate = record.native_fps
        rng = clip.source_range
        assert rng.start_time.to_seconds() == pytest.approx(moment.start, abs=1 / rate)
        assert rng.end_time_exclusive().to_seconds() == pytest.approx(moment.end, abs=1 / rate)
        assert rng.start_time.rate == pytest.approx(rate)
        assert clip.media_reference.target_url.endswith("/" + moment.video)
        assert clip.media_reference.available_range.duration.to_seconds() == pytest.approx(record.duration, abs=1 / rate)
        assert clip.metadata["vidseek"]["score"] == pytest.approx(moment.score)
        (marker,) = clip.markers
        assert marker.marked_range.start_time.to_seconds() == pytest.approx(moment.peak, abs=1 / rate)
    # the whole timeline is the results end to end
    total = sum(m.end - m.start for m in moments)
    assert timeline.duration().to_seconds() == pytest.approx(total, abs=len(moments) / 24)


def test_edl_of_search_results_reads_back_at_its_declared_rate(results):
    archive, moments, root = results
    path = archive.export(moments, root / "results.edl")
    timeline, rate, text = _read_edl(path)
    assert timeline.name == "vidseek results"
    _check_edl(timeline, rate, [(m.path, m.start, m.end) for m in moments])
    assert text.count("\r\n* FROM CLIP NAME:  ") == len(moments)
    for n, (clip, moment) in enumerate(zip(timeline.find_clips(), moments), 1):
        comments = clip.metadata["cmx_3600"]["comments"]
        assert any(c.startswith(f"COMMENT: VIDSEEK RANK {n}, SCORE {moment.score:.3f}, BEST FRAME AT ")
                   for c in comments)


def test_mixed_rate_edl_reads_back_at_the_declared_rate(results):
    """25 and 29.97 fps clips in one EDL: one timeline rate, the other clips converted at real
    speed; the reference reader used to reject such a file ("Source and record duration
    don't match")."""
    archive, _, root = results
    fps = {name: archive.find_video(name).native_fps
           for name in ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4")}
    assert fps["bikes.mp4"] == fps["bigbuckbunny.mp4"] == 25 and fps["carphone_pristine.mp4"] == pytest.approx(29.97, abs=0.01)
    cases = {  # mostly 29.97 fps -> a 29.97 timeline; mostly 25 fps -> a 25 timeline
        Fraction(30000, 1001): [("carphone_pristine.mp4", 1.0, 2.5), ("bikes.mp4", 3.0, 4.0),
                                ("carphone_pristine.mp4", 0.1, 0.62), ("bigbuckbunny.mp4", 2.0, 3.04),
                                ("carphone_pristine.mp4", 3.2, 3.9)],
        Fraction(25): [("carphone_pristine.mp4", 1.0, 2.5), ("bikes.mp4", 3.0, 4.0),
                       ("bigbuckbunny.mp4", 2.0, 3.04), ("bikes.mp4", 7.13, 9.77)],
    }
    for expected_rate, spans in cases.items():
        moments = [_moment(archive, name, start, end, 0.9 - 0.1 * n) for n, (name, start, end) in enumerate(spans)]
        path = archive.export(moments, root / f"mixed-{float(expected_rate):.0f}.edl")
        timeline, rate, text = _read_edl(path)
        assert rate == expected_rate
        _check_edl(timeline, rate, [(m.path, m.start, m.end) for m in moments])
        # each converted event (and only those) says so
        for clip, moment in zip(timeline.find_clips(), moments):
            converted = abs(fps[moment.video] - float(rate)) > 0.01
            notes = [c for c in clip.metadata["cmx_3600"]["comments"] if c.startswith("SOURCE RATE: ")]
            assert notes == ([f"SOURCE RATE: {'25' if fps[moment.video] == 25 else '29.97'} FPS, "
                              f"CONVERTED TO {'25' if rate == 25 else '29.97'} FPS AT REAL SPEED"]
                             if converted else [])
    # the event of the bug report: 3-4 s of a 25 fps clip on the 29.97 timeline is 30 frames
    # on both sides, not 25 source frames against 35 record frames
    events = re.findall(r"^(\d{3})  AX\s+V\s+C\s+(\S+) (\S+) (\S+) (\S+)\r$",
                        (root / "mixed-30.edl").read_bytes().decode("ascii"), re.M)
    assert events[1][1:] == ("00:00:03:00", "00:00:04:00", "01:00:01:15", "01:00:02:15")
    # non-drop-frame labels are frame counts, so a reader at a plain 30 accepts the file too
    timeline, _, _ = _read_edl(root / "mixed-30.edl", rate=Fraction(30))
    assert len(list(timeline.find_clips())) == 5


def test_odd_rate_source_goes_on_a_multiple_rate(results, tmp_path):
    """A 15 fps file is not a timecode rate: its EDL is timed at 30 fps, frames doubled."""
    archive, _, root = results
    clip = tmp_path / "fifteen.mp4"
    rng = np.random.default_rng(0)
    with VideoWriter(clip, fps=15) as writer:
        for _ in range(60):
            writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    info = vidseek.indexer.probe_video(clip)
    assert info.native_fps == 15
    record = dataclasses.replace(archive.find_video("bikes.mp4"), id=99, path=str(clip), name=clip.name,
                                 native_fps=info.native_fps, duration=info.duration)
    bikes = archive.find_video("bikes.mp4")
    items = [ExportItem(record, 0.4, 1.8, 0.9, 1.0), ExportItem(record, 2.2, 3.6, 0.8, 3.0),
             ExportItem(bikes, 1.0, 2.0, 0.7, 1.5)]
    path = export_results(items, tmp_path / "fifteen.edl")
    timeline, rate, text = _read_edl(path)
    assert rate == 30 and "SOURCE RATE: 15 FPS, CONVERTED TO 30 FPS AT REAL SPEED" in text
    spans = _check_edl(timeline, rate, [(i.video.path, i.start, i.end) for i in items])
    assert spans[0] == pytest.approx((0.4, 1.8))  # 15 fps frames land exactly on 30 fps ones

    def timeline_rate(fps: float) -> Fraction:
        return edl_timeline_rate([ExportItem(dataclasses.replace(bikes, native_fps=fps), 0, 1, 1, 0)])

    assert [timeline_rate(r) for r in (25, 29.97, 23.98, 24, 12.5, 59.94, 120, 18)] == [
        25, Fraction(30000, 1001), Fraction(24000, 1001), 24, 25, Fraction(60000, 1001), 60, 24]
    # no results: a valid EDL of no events
    empty = export_results([], tmp_path / "empty.edl")
    assert empty.read_bytes() == b"TITLE: vidseek results\r\nFCM: NON-DROP FRAME\r\n\r\n"
    assert list(otio.adapters.read_from_file(str(empty), adapter_name="cmx_3600", rate=25).find_clips()) == []


def test_edl_without_the_adapter_names_the_extra(results, monkeypatch):
    archive, moments, root = results
    monkeypatch.setitem(sys.modules, "otio_cmx3600_adapter", None)  # import fails as if absent
    target = root / "no-adapter.edl"
    with pytest.raises(vidseek.MissingDependencyError, match=r"no-adapter\.edl.*otio-cmx3600-adapter.*vidseek\[media\]"):
        archive.export(moments, target)
    assert not target.exists()


def test_contact_sheet_and_cli_export(results, media):
    archive, moments, root = results
    sheet = archive.export(moments, root / "sheet.jpg")
    with Image.open(sheet) as image:
        assert image.format == "JPEG" and image.width >= 2 * 320
        assert len(set(image.convert("L").getdata())) > 50  # real pictures, not a blank canvas
    with pytest.raises(vidseek.QueryError, match="unknown export format"):
        archive.export(moments, root / "results.xml")
    with pytest.raises(vidseek.QueryError, match="cannot write"):
        archive.export(moments, root / "missing-folder" / "results.edl")
    runner = CliRunner()
    out = root / "cli.otio"
    result = runner.invoke(app, ["search", "--image", str(root / "frame.png"), "-a",
                                 str(archive.path), "-k", "3", "--export", str(out)])
    assert result.exit_code == 0, result.output
    assert len(list(otio.adapters.read_from_file(str(out)).find_clips())) == 3
    bad = runner.invoke(app, ["search", "x", "-a", str(archive.path), "--export", "r.mov"])
    assert bad.exit_code == 2 and "--export" in bad.output
    # every export went through the atomic writer: no temporary file is left beside them
    assert not [p.name for p in root.iterdir() if ".tmp" in p.name]
