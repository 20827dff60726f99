"""Decoding less (issue 15): skipping non-reference frames, whole GOPs and frame threading
never change which frames are sampled or their times. Each file is compared with the choice made from a
full decode (every frame, PyAV's plain decode loop), on variable-frame-rate and odd-GOP
files with B-frames, where ``skip_frame = NONREF`` really drops frames."""

from __future__ import annotations

import math

import av
import numpy as np
import pytest

from conftest import CLIPS
from vidseek.indexer import FrameSampler
from vidseek.synth import VideoWriter, static_scene_frames

# B-frames that nothing references (no pyramid), a GOP of 13 frames: most frames are droppable
X264_ODD_GOP = {"x264-params": "keyint=13:min-keyint=13:scenecut=0:bframes=3:b-pyramid=none"}


def all_frame_times(path) -> np.ndarray:
    """Presentation times of every frame, from a plain full decode."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        start = (stream.start_time or 0) * stream.time_base
        return np.array([float(f.pts * f.time_base - start) for f in container.decode(stream)])


def exact_choice(shown: np.ndarray, duration: float, fps: float) -> np.ndarray:
    """For each k/fps, the first frame shown at or after it (what the sampler promises)."""
    chosen, k = [], 0
    while k / fps < duration:
        later = shown[shown >= k / fps - 1e-6]
        if not len(later):
            break
        chosen.append(later[0])
        k = math.floor(later[0] * fps + 1e-6) + 1
    return np.array(chosen)


def sampled(path, fps, **options):
    sampler = FrameSampler(path, fps=fps, size=(48, 48), batch_size=5, **options)
    batches = list(sampler)
    return (sampler, np.concatenate([b.times for b in batches]),
            np.concatenate([b.pixels for b in batches]))


def check_exact(path, fps):
    shown = np.sort(all_frame_times(path))
    full, full_times, full_pixels = sampled(path, fps, skip_nonref=False)
    fast, fast_times, fast_pixels = sampled(path, fps, skip_nonref=True, threads=2)
    expected = exact_choice(shown, full.duration, fps)
    frame = np.min(np.diff(shown))
    # the full decode's choice is the exact one, and skipping does not move it by even one frame
    np.testing.assert_allclose(full_times, expected, atol=1e-6)
    np.testing.assert_allclose(fast_times, full_times, atol=1e-6)
    assert np.all(np.abs(fast_times - expected) < frame)
    # skipped frames are ones nothing references, so the sampled pictures are bit-identical
    np.testing.assert_array_equal(fast_pixels, full_pixels)
    assert fast.duration == pytest.approx(full.duration, abs=1e-6)
    return full, fast


@pytest.mark.parametrize("fps", [1.0, 2.0, 0.7, 7.0])
def test_variable_frame_rate_with_b_frames_samples_exactly(tmp_path, fps):
    path = tmp_path / "vfr-b.mp4"
    with VideoWriter(path, fps=25, options=X264_ODD_GOP) as writer:
        t = 0.0
        for i, picture in enumerate(static_scene_frames(150, (96, 64))):
            writer.write(picture, pts_seconds=t)
            t += (0.04, 0.2, 0.08, 0.12, 0.04)[i % 5]  # irregular frame durations
    full, fast = check_exact(path, fps)
    if fps <= 2:  # sparse sampling: most B-frames were never decoded
        assert fast.frames_decoded < 0.8 * full.frames_decoded


@pytest.mark.parametrize("fps", [1.0, 3.0])
def test_odd_gop_with_b_frames_samples_exactly(tmp_path, fps):
    path = tmp_path / "gop13.mp4"
    with VideoWriter(path, fps=25, options=X264_ODD_GOP) as writer:
        for picture in static_scene_frames(173, (96, 64)):
            writer.write(picture)
    full, fast = check_exact(path, fps)
    assert fast.frames_decoded < 0.8 * full.frames_decoded


SHORT_GOP = "keyint=10:min-keyint=10:scenecut=0:bframes=3"  # a keyframe every 0.4 s at 25 fps


@pytest.mark.parametrize("fps", [0.2, 0.5])
def test_sparse_sampling_skips_whole_gops(tmp_path, fps):
    """Sampling less often than the file has keyframes: a GOP holding no sampled frame is
    never sent to the decoder, and the frames and pictures are still a full decode's."""
    path = tmp_path / "short-gop.mp4"
    with VideoWriter(path, fps=25, options={"x264-params": SHORT_GOP}) as writer:
        for picture in static_scene_frames(400, (96, 64)):
            writer.write(picture)
    full, fast = check_exact(path, fps)
    assert full.gops_skipped == 0 and fast.gops_skipped >= 20
    assert fast.frames_decoded < 0.15 * full.frames_decoded


# keyframes after which a frame still references the GOP before: its GOP must be decoded
NO_FRESH_START = {
    # open GOP: the B-frames after each I-frame (in decode order) are shown before it
    "open GOP, leading frames": SHORT_GOP + ":open-gop=1",
    # open GOP with fixed B-frame runs: some I-frames have no leading frames, yet are no IDR
    "open GOP, some without leading frames": "keyint=10:min-keyint=10:scenecut=0:bframes=2:b-adapt=0:"
                                             "b-pyramid=none:open-gop=1",
    # intra refresh: the frames flagged as keyframes are P-frames (recovery points)
    "intra refresh": "keyint=10:min-keyint=10:scenecut=0:intra-refresh=1:bframes=0",
}


@pytest.mark.parametrize("params", NO_FRESH_START.values(), ids=NO_FRESH_START.keys())
def test_gops_before_a_keyframe_that_is_no_fresh_start_are_decoded(tmp_path, params):
    path = tmp_path / "no-idr.mp4"
    with VideoWriter(path, fps=25, options={"x264-params": params}) as writer:
        for picture in static_scene_frames(300, (96, 64)):
            writer.write(picture)
    for fps in (0.2, 0.5, 1.3):
        _, fast = check_exact(path, fps)
        assert fast.gops_skipped == 0


def test_all_intra_files_decode_little_more_than_the_sampled_frames(tmp_path):
    path = tmp_path / "intra.mp4"
    with VideoWriter(path, fps=25, options={"x264-params": "keyint=1:scenecut=0"}) as writer:
        for picture in static_scene_frames(250, (96, 64)):
            writer.write(picture)
    _, fast = check_exact(path, 0.5)
    assert fast.frames_decoded <= 10 and fast.gops_skipped >= 240


def test_a_file_cut_mid_gop_samples_exactly(tmp_path):
    """A file cut without re-encoding starts with packets that decode to nothing (their
    references were cut off): the first sampled frame is still a full decode's."""
    source, cut = tmp_path / "source.mp4", tmp_path / "cut.mkv"
    with VideoWriter(source, fps=25, options={"x264-params": "keyint=12:min-keyint=12:scenecut=0:bframes=3"}) as writer:
        for picture in static_scene_frames(250, (96, 64)):
            writer.write(picture)
    with av.open(str(source)) as src, av.open(str(cut), "w") as dst:
        stream = src.streams.video[0]
        out = dst.add_stream_from_template(stream)
        for i, packet in enumerate(src.demux(stream)):
            if packet.dts is None or i < 5:  # the first five packets, keyframe included
                continue
            packet.stream = out
            dst.mux(packet)
    for fps in (0.2, 1.3):
        check_exact(cut, fps)


def test_mpeg4_b_frames_sample_exactly(tmp_path):
    path = tmp_path / "mpeg4-b.mp4"
    with VideoWriter(path, fps=10, codec="mpeg4", options={"g": "7", "bf": "2"}) as writer:
        for picture in static_scene_frames(61, (96, 64)):
            writer.write(picture)
    check_exact(path, 1.0)


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_shared_clips_sample_exactly(media, name):
    check_exact(media / name, 1.0)


def test_threads_must_not_be_negative(tmp_path):
    from vidseek.errors import ConfigError

    with pytest.raises(ConfigError, match="threads"):
        FrameSampler(tmp_path / "x.mp4", threads=-1)


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_decoding_without_deblocking_keeps_the_frames_and_times(media, name):
    """deblock=False (FFmpeg's skip_loop_filter) is not exact, but it samples the same
    frames at the same times, and the pictures stay close to the exact ones."""
    exact, exact_times, exact_pixels = sampled(media / name, 1.0, threads=1)
    fast, fast_times, fast_pixels = sampled(media / name, 1.0, threads=1, deblock=False)
    np.testing.assert_array_equal(fast_times, exact_times)
    assert fast.frames_decoded == exact.frames_decoded
    diff = np.abs(fast_pixels.astype(np.int16) - exact_pixels.astype(np.int16))
    assert diff.mean() < 3.0, f"{name}: mean |pixel difference| {diff.mean():.2f}"


def test_deblocking_is_really_skipped_on_h264(tmp_path):
    """On a strongly quantised H.264 file the deblocking filter changes many pixels: skipping
    it must show (else the option silently did nothing)."""
    path = tmp_path / "blocky.mp4"
    with VideoWriter(path, fps=25, options={"crf": "45"}) as writer:
        for picture in static_scene_frames(50, (192, 128)):
            writer.write(picture)
    _, _, exact = sampled(path, 5.0)
    _, _, fast = sampled(path, 5.0, deblock=False)
    assert np.mean(exact != fast) > 0.05


def test_ingest_without_deblocking_from_the_cli(media, trained_encoder_dir, tmp_path):
    """`vidseek ingest --no-deblock` reaches the decoder: the same frame times as a default
    ingest, embeddings close to its but not identical."""
    from typer.testing import CliRunner

    import vidseek
    from vidseek.cli import app

    vectors = {}
    for flag in ("--deblock", "--no-deblock"):
        root = tmp_path / flag.strip("-")
        result = CliRunner().invoke(app, ["ingest", str(media / "bikes.mp4"), "--archive", str(root),
                                          "--model", str(trained_encoder_dir), "--precision", "fp32", flag])
        assert result.exit_code == 0, result.output
        with vidseek.Archive.open(root) as archive:
            features = archive.video_features(archive.find_video("bikes.mp4"))
            vectors[flag] = (features.times, features.embeddings)
    (times, exact), (fast_times, fast) = vectors["--deblock"], vectors["--no-deblock"]
    np.testing.assert_array_equal(fast_times, times)
    cosine = np.sum(exact * fast, axis=1) / np.linalg.norm(exact, axis=1) / np.linalg.norm(fast, axis=1)
    assert not np.array_equal(exact, fast) and cosine.min() > 0.99


def test_stream_ingest_options_reach_the_stream(tmp_path, trained_encoder_dir, monkeypatch):
    """`vidseek ingest URL`: --no-deblock and --batch-size are the settings the stream is
    ingested with (the reader decodes with the first, the encoder batches with the second)."""
    from typer.testing import CliRunner

    import vidseek.cli.stream
    from vidseek.cli import app

    seen = {}
    monkeypatch.setattr(vidseek.cli.stream, "ingest_stream",
                        lambda url, arch, options: seen.update(url=url, config=arch.config, options=options))
    result = CliRunner().invoke(app, ["ingest", "rtsp://127.0.0.1:9/live", "--archive", str(tmp_path / "s"),
                                      "--model", str(trained_encoder_dir), "--no-deblock",
                                      "--batch-size", "5", "--commit-every", "4"])
    assert result.exit_code == 0, result.output
    assert seen["url"] == "rtsp://127.0.0.1:9/live"
    assert seen["config"].deblock is False and seen["config"].batch_size == 5
    assert seen["options"].commit_every == 4
