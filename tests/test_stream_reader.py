"""A live connection decodes less the way a file does (issue 15): the stream reader samples
through the same decode plan as FrameSampler, so it skips non-reference frames and, at a
sampling interval longer than the GOP, whole GOPs; the frames it samples, their times and
pixels, and the recording it writes are those of a full decode.

The reader is given MPEG-TS files (H.264 in Annex B, as a live TS or RTSP feed carries it)
opened with PyAV, so no feed has to air in real time.
"""

from __future__ import annotations

import queue

import av
import numpy as np
import pytest

from vidseek.indexer import FrameSampler, StreamOptions
from vidseek.indexer.pipeline import IngestConfig
from vidseek.indexer.stream_reader import NewPart, SampledFrame, StreamReader
from vidseek.synth import VideoWriter, static_scene_frames

SIDE = 48
IDR_EVERY_10 = "keyint=10:min-keyint=10:scenecut=0:bframes=3"  # an IDR every 0.4 s at 25 fps
OPEN_GOP = IDR_EVERY_10 + ":open-gop=1"  # I-frames that are no IDR: no GOP may be dropped


def live_ts(path, params: str, frames: int = 300):
    with VideoWriter(path, fps=25, options={"x264-params": params}) as writer:
        for picture in static_scene_frames(frames, (96, 64)):
            writer.write(picture)
    return path


def read_connection(path, fps: float, skip_nonref: bool, record=None):
    """What the reader posts for one connection to ``path``: (reader, times, pixels, parts)."""
    out: queue.Queue = queue.Queue()
    reader = StreamReader("tcp://feed", "tcp://feed", IngestConfig(fps=fps, skip_nonref=skip_nonref),
                          StreamOptions(record=record), out, None, 0.0, "feed")
    reader.size = SIDE
    reader.sized.set()
    with av.open(str(path)) as container:
        ended, error, _ = reader.read(container, 0)
    assert ended and not error
    messages = []
    while not out.empty():
        messages.append(out.get())
    frames = [m for m in messages if isinstance(m, SampledFrame)]
    parts = [m for m in messages if isinstance(m, NewPart)]
    return reader, np.array([f.time for f in frames]), np.stack([f.pixels for f in frames]), parts


def file_choice(path, fps: float):
    sampler = FrameSampler(path, fps=fps, size=(SIDE, SIDE), skip_nonref=False)
    batches = list(sampler)
    return np.concatenate([b.times for b in batches]), np.concatenate([b.pixels for b in batches])


@pytest.mark.parametrize("fps", [0.2, 1.3])
def test_a_connection_samples_a_full_decodes_frames_while_skipping_gops(tmp_path, fps):
    path = live_ts(tmp_path / "live.ts", IDR_EVERY_10)
    full, full_times, full_pixels, _ = read_connection(path, fps, skip_nonref=False)
    fast, fast_times, fast_pixels, parts = read_connection(path, fps, skip_nonref=True)
    times, pixels = file_choice(path, fps)
    # the same frames as a full decode of the connection, and as a file's sampler takes
    np.testing.assert_allclose(full_times, times, atol=1e-6)
    np.testing.assert_allclose(fast_times, full_times, atol=1e-6)
    np.testing.assert_array_equal(fast_pixels, full_pixels)
    np.testing.assert_array_equal(full_pixels, pixels)
    assert len(parts) == 1 and parts[0].codec == "h264"
    assert full.gops_skipped == 0 and full.frames_decoded == 300
    # frames not decoded still aired: the next connection starts after them
    assert fast.aired == pytest.approx(full.aired, abs=1e-6)
    if fps < 1:  # one GOP in 12 holds a sampled frame
        assert fast.gops_skipped >= 20 and fast.frames_decoded < 0.2 * full.frames_decoded
    else:  # every GOP holds one, but most B-frames were not decoded
        assert fast.frames_decoded < 0.8 * full.frames_decoded


def test_open_gop_connections_drop_no_gop_and_stay_exact(tmp_path):
    path = live_ts(tmp_path / "open.ts", OPEN_GOP)
    _, full_times, full_pixels, _ = read_connection(path, 0.2, skip_nonref=False)
    fast, fast_times, fast_pixels, _ = read_connection(path, 0.2, skip_nonref=True)
    np.testing.assert_allclose(fast_times, full_times, atol=1e-6)
    np.testing.assert_array_equal(fast_pixels, full_pixels)
    assert fast.gops_skipped == 0


def test_the_recording_keeps_every_packet_of_gops_not_decoded(tmp_path):
    path = live_ts(tmp_path / "live.ts", IDR_EVERY_10)
    reader, _, _, parts = read_connection(path, 0.2, skip_nonref=True, record=tmp_path / "rec")
    assert reader.gops_skipped >= 20
    recording = parts[0].recording
    assert recording.endswith(".ts")
    with av.open(recording) as container:
        recorded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    with av.open(str(path)) as container:
        source = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(recorded) == len(source) == 300
    np.testing.assert_array_equal(recorded[150], source[150])
