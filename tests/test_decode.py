"""Decoding real and generated files: durations, timestamps, sampling, bad input."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from conftest import CLIPS
from vidseek.errors import CorruptVideoError, EmptyFileError, NotAVideoError, TruncatedVideoError, VideoError
from vidseek.indexer import FrameSampler, probe_video, read_frame
from vidseek.synth import VideoWriter, noise_frames, static_scene_frames


def sample(path, fps=1.0, size=(64, 64)):
    sampler = FrameSampler(path, fps=fps, size=size, batch_size=4)
    batches = list(sampler)
    return sampler, np.concatenate([b.times for b in batches]), np.concatenate([b.pixels for b in batches])


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_shared_clips_decode_with_correct_duration_and_monotonic_times(media, name):
    seconds, native_fps = CLIPS[name]
    info = probe_video(media / name)
    assert info.native_fps == pytest.approx(native_fps, abs=0.01)
    for fps in (1.0, 2.0):
        sampler, times, pixels = sample(media / name, fps=fps)
        assert sampler.duration == pytest.approx(seconds, abs=0.06)
        assert info.duration == pytest.approx(seconds, abs=0.06)
        assert np.all(np.diff(times) > 0)
        assert times[0] == 0.0
        # one frame per 1/fps interval, each at or just after its target time
        assert len(times) == int(np.ceil(seconds * fps - 1e-3))
        targets = np.arange(len(times)) / fps
        assert np.all(times >= targets - 1e-6) and np.all(times < targets + 1.0 / native_fps + 1e-6)
        assert pixels.shape == (len(times), 64, 64, 3) and pixels.dtype == np.uint8
        assert pixels.std() > 10  # real picture content, not blank frames


def test_variable_frame_rate_uses_presentation_times(tmp_path):
    path = tmp_path / "vfr.mp4"
    shown = []
    with VideoWriter(path, fps=25) as writer:
        t = 0.0
        for i, frame in enumerate(static_scene_frames(40, (160, 120))):
            writer.write(frame, pts_seconds=t)
            shown.append(t)
            t += 0.04 if i % 2 else 0.2  # alternate short and long frame durations
    _, times, _ = sample(path, fps=2.0)
    shown = np.array(shown)
    for k, got in enumerate(times):  # each sample is the first frame shown at or after k/2 s
        expected = shown[shown >= k / 2.0 - 1e-6][0]
        assert got == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize("codec,pix_fmt", [("libx264", "yuv444p"), ("mpeg4", "yuv420p")])
def test_odd_frame_sizes(tmp_path, codec, pix_fmt):
    path = tmp_path / f"odd-{codec}.mp4"
    with VideoWriter(path, fps=10, codec=codec, pix_fmt=pix_fmt) as writer:
        for frame in static_scene_frames(30, (177, 99)):
            writer.write(frame)
    info = probe_video(path)
    assert (info.width, info.height) == (177, 99)
    _, times, pixels = sample(path, size=(56, 56))
    assert len(times) == 3 and pixels.shape[1:] == (56, 56, 3)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(EmptyFileError, match="empty.mp4"):
        list(FrameSampler(path))


def test_text_renamed_to_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("these are my notes, not a video\n" * 20)
    with pytest.raises(NotAVideoError, match="notes.mp4"):
        probe_video(path)


def _write_mp4(path, faststart):
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for frame in noise_frames(100, (320, 240)):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_truncated_file_without_index_is_corrupt(tmp_path):
    path = tmp_path / "cut.mp4"
    _write_mp4(path, faststart=False)  # index (moov) at the end: cut off with the tail
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CorruptVideoError, match="cut.mp4"):
        list(FrameSampler(path))


def test_truncated_faststart_file_yields_what_decoded_then_raises(tmp_path):
    path = tmp_path / "cut-fast.mp4"
    _write_mp4(path, faststart=True)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    sampler = FrameSampler(path, size=(32, 32))
    got = []
    with pytest.raises(TruncatedVideoError, match="cut-fast.mp4") as excinfo:
        for batch in sampler:
            got.extend(batch.times)
    assert 0 < excinfo.value.frames_decoded < 100
    assert got == [0.0, 1.0]  # the frames before the cut were delivered


def test_read_frame_matches_sampled_frame(media):
    image = read_frame(media / "bikes.mp4", 5.0)
    assert image.size == (640, 272)
    _, times, pixels = sample(media / "bikes.mp4", size=(640, 272))
    diff = np.abs(np.asarray(image, dtype=int) - pixels[5].astype(int)).mean()
    assert diff < 1.0


# -- inputs that are not video files (issue 17, items 4, 5 and 12) ---------------------
@pytest.mark.parametrize("fmt, name", [("PNG", "PNG"), ("JPEG", "JPEG")])
def test_a_still_image_renamed_mp4_is_not_a_video(tmp_path, fmt, name):
    from PIL import Image

    path = tmp_path / f"still-{fmt.lower()}.mp4"
    pixels = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)
    with pytest.raises(NotAVideoError, match=f"still-{fmt.lower()}.mp4: is a still image \\({name}\\), not a video"):
        probe_video(path)
    with pytest.raises(NotAVideoError, match="still image"):
        list(FrameSampler(path))


def test_links_fifos_and_devices_are_named(tmp_path):
    import os

    loop = tmp_path / "self.mp4"
    loop.symlink_to(loop)
    dangling = tmp_path / "gone.mp4"
    dangling.symlink_to(tmp_path / "nowhere.mp4")
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)  # av.open would block on it forever
    device = tmp_path / "null.mp4"
    device.symlink_to("/dev/null")
    for path, problem in [(loop, "symbolic link loop"), (dangling, "dangling symbolic link"),
                          (fifo, "is a FIFO (named pipe), not a video file"),
                          (device, "is a character device, not a video file"),
                          (tmp_path, "is a directory, not a video file")]:
        with pytest.raises(NotAVideoError) as caught:
            probe_video(path)
        assert str(caught.value).startswith(f"{path}: {problem}"), caught.value


_PROBE_AS_USER = """
import os, sys
from vidseek.indexer.decode import probe_video  # imported as root, then the user is dropped
os.setuid(int(sys.argv[2]))
try:
    probe_video(sys.argv[1])
    print("no error")
except BaseException as exc:
    print(f"{type(exc).__name__}: {exc}")
"""


def _probe_in_child(path, uid=65534) -> str:
    """probe_video(path) in a child process running as ``uid``; the error it raised. A fresh
    interpreter, not a fork: a fork of this many-threaded process can hang for ever on a lock
    (malloc's) that another thread held at the fork (seen once, in the full suite)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _PROBE_AS_USER, str(path), str(uid)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


@pytest.mark.skipif(not hasattr(__import__("os"), "setuid") or __import__("os").geteuid() != 0,
                    reason="needs root to drop to another user (root itself reads mode-000 files)")
def test_permission_denied_is_not_called_not_a_video(media, tmp_path):
    import os
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp())  # not under tmp_path, which other users cannot enter
    try:
        os.chmod(folder, 0o755)
        video = folder / "locked.mp4"
        shutil.copy(media / "bikes.mp4", video)
        os.chmod(video, 0)
        assert _probe_in_child(video) == f"VideoError: {video}: cannot read the file: permission denied"
    finally:
        shutil.rmtree(folder)


def test_permission_denied_from_the_decoder_is_named(media, tmp_path, monkeypatch):
    """Also where the file opens but FFmpeg is refused (e.g. a mandatory access control)."""
    import errno

    import vidseek.indexer.decode as decode

    def refused(*args, **kwargs):
        raise av.error.PermissionError(errno.EACCES, "Permission denied", str(args[0]))

    monkeypatch.setattr(decode.av, "open", refused)
    with pytest.raises(VideoError) as caught:
        probe_video(media / "bikes.mp4")
    assert not isinstance(caught.value, NotAVideoError)
    assert str(caught.value) == f"{media / 'bikes.mp4'}: cannot read the file: permission denied"
