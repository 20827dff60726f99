"""Turning video files into features: decoding (PyAV), file discovery, dense-token pruning,
the decode → encode pipeline, ingest orchestration, folder watching."""

from .decode import FrameSampler, VideoInfo, probe_video, read_frame
from .discover import VIDEO_EXTENSIONS, discover_videos, real_path

__all__ = ["FrameSampler", "VideoInfo", "probe_video", "read_frame", "VIDEO_EXTENSIONS", "discover_videos",
           "real_path"]
