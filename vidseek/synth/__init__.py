"""Making videos: writing frames to real files, splicing clips, procedural content.

Used by the tests, the demo and the benchmarks to build videos whose content is known,
and by users to smoke-test an installation without footage of their own.
``import vidseek.synth`` (``import vidseek`` does not load it).
"""

from .longvideo import WorldVideoConfig, build_world_video
from .writer import Segment, VideoWriter, noise_frames, splice_videos, static_scene_frames

__all__ = ["Segment", "VideoWriter", "noise_frames", "splice_videos", "static_scene_frames",
           "WorldVideoConfig", "build_world_video"]
