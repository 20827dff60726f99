"""Turning video files into features: decoding (PyAV), file discovery, dense-token pruning,
the decode → encode pipeline, ingest orchestration, folder watching, live streams."""

from .decode import FrameSampler, VideoInfo, probe_video, read_frame
from .discover import VIDEO_EXTENSIONS, discover_videos, real_path
from .stream import StreamOptions, StreamProgress, StreamReport, is_stream_url, redact_url

__all__ = ["FrameSampler", "VideoInfo", "probe_video", "read_frame", "VIDEO_EXTENSIONS", "discover_videos",
           "real_path", "StreamOptions", "StreamProgress", "StreamReport", "is_stream_url", "redact_url"]
