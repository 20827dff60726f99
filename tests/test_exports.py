"""Exports for media tools: OpenTimelineIO round trip, CMX 3600 EDL, contact sheet, CLI."""

from __future__ import annotations

import re

import pytest
from PIL import Image
from typer.testing import CliRunner

import vidseek
import vidseek.indexer
from vidseek.cli import app
from vidseek.exports import edl_timecode

otio = pytest.importorskip("opentimelineio")


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


def test_edl_lists_each_result_as_a_cut(results):
    archive, moments, root = results
    path = archive.export(moments, root / "results.edl")
    text = path.read_bytes().decode("ascii")
    assert text.startswith("TITLE: vidseek results\r\nFCM: NON-DROP FRAME")
    events = re.findall(r"^(\d{3})  AX\s+V\s+C\s+(\S+) (\S+) (\S+) (\S+)\r$", text, re.M)
    assert [int(e[0]) for e in events] == list(range(1, len(moments) + 1))
    first = archive.find_video(moments[0].video_id)
    base = round(first.native_fps)

    def frames(tc: str, b: int) -> int:
        h, m, sec, f = map(int, tc.split(":"))
        return ((h * 60 + m) * 60 + sec) * b + f

    assert events[0][3] == "01:00:00:00"
    for (_, src_in, src_out, rec_in, rec_out), nxt, moment in zip(events, events[1:] + [None], moments):
        src_base = round(archive.find_video(moment.video_id).native_fps)
        length = frames(src_out, src_base) - frames(src_in, src_base)
        assert length >= 1 and frames(rec_out, base) - frames(rec_in, base) == length  # same cut
        assert abs(frames(src_in, src_base) / archive.find_video(moment.video_id).native_fps
                   - moment.start) <= 1 / src_base
        if nxt is not None:
            assert nxt[3] == rec_out  # cuts laid end to end
    assert text.count("* FROM CLIP NAME: ") == len(moments)
    assert edl_timecode(93_087, 25) == "01:02:03:12"
    assert edl_timecode(17_982, 30) == "00:09:59:12"  # 600 s of 29.97 fps, labelled NDF


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
