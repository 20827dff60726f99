"""Synthetic frame features written straight into an archive, for scale tests.

Decoding and encoding thousands of hours is not possible on a test machine, but the index
and the query path only see vectors. :class:`SceneFeatures` draws frame embeddings the way
footage produces them: a video is a sequence of scenes (a few to tens of seconds), each near
one of many shared *themes* (the archive's recurring content), with small frame-to-frame
noise. :meth:`SceneFeatures.plant` writes a short event whose frames lie near a given query
vector, so a search has a known right answer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..store.dense_tokens import DenseTokens
from ..store.archive_store import ArchiveStore
from ..store.catalog import VideoRecord
from ..store.files import VideoFeatures

__all__ = ["SceneFeatures", "commit_features"]


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@dataclass
class SceneFeatures:
    """A generator of clustered, temporally coherent frame embeddings."""

    dim: int
    themes: int = 4096  # shared content clusters across the archive
    mean_scene_frames: float = 20.0
    scene_spread: float = 0.6  # scene centre = theme + spread · noise (before normalising)
    frame_noise: float = 0.25  # frame = scene centre + noise
    seed: int = 0

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self._themes = _unit(self.rng.standard_normal((self.themes, self.dim), dtype=np.float32))

    def video(self, frames: int) -> np.ndarray:
        """``[frames, dim]`` unit embeddings of one video."""
        lengths = []
        while sum(lengths) < frames:
            lengths.append(1 + int(self.rng.exponential(self.mean_scene_frames - 1)))
        themes = self._themes[self.rng.integers(0, len(self._themes), len(lengths))]
        centres = _unit(themes + self.scene_spread / np.sqrt(self.dim)
                        * self.rng.standard_normal(themes.shape, dtype=np.float32))
        per_frame = np.repeat(centres, lengths, axis=0)[:frames]
        noise = self.rng.standard_normal((frames, self.dim), dtype=np.float32)
        return _unit(per_frame + self.frame_noise / np.sqrt(self.dim) * noise)

    def add_themes(self, vectors: np.ndarray) -> None:
        """Make ``vectors`` (e.g. text query embeddings) recurring content of the archive:
        scenes near them appear like scenes of any other theme."""
        self._themes = np.concatenate([self._themes, _unit(np.asarray(vectors, np.float32))])

    def queries(self, count: int, novel: bool = False) -> np.ndarray:
        """Queries from the archive's own distribution (near themes): their exact top
        neighbours compete closely, which is what approximate search finds hard. ``novel``
        queries point elsewhere, where no content lies."""
        if novel:
            return _unit(self.rng.standard_normal((count, self.dim), dtype=np.float32))
        themes = self._themes[self.rng.integers(0, len(self._themes), count)]
        return _unit(themes + self.scene_spread / np.sqrt(self.dim)
                     * self.rng.standard_normal(themes.shape, dtype=np.float32))

    def plant(self, embeddings: np.ndarray, start: int, length: int, target: np.ndarray,
              strength: float = 0.9) -> None:
        """Make frames ``start:start+length`` an event matching ``target`` (in place): each
        frame's cosine similarity to ``target`` is about ``strength``."""
        noise = _unit(self.rng.standard_normal((length, self.dim), dtype=np.float32))
        noise -= (noise @ target)[:, None] * target[None]  # orthogonal to the target
        embeddings[start:start + length] = _unit(
            strength * target[None] + np.sqrt(1 - strength ** 2) * _unit(noise))


def commit_features(store: ArchiveStore, path: str, embeddings: np.ndarray,
                    fps: float = 1.0) -> VideoRecord:
    """Commit a video made only of frame embeddings (one all-zero dense token grid of 1×1
    cells on its first frame, carried forward: object queries find nothing in it)."""
    frames = len(embeddings)
    width = int(store.manifest["encoder"]["vision_width"])
    kept = np.zeros((frames, 1, 1), bool)
    kept[0] = True
    features = VideoFeatures(np.arange(frames, dtype=np.float64) / fps, embeddings,
                             DenseTokens(np.zeros((1, width), np.float16), kept))
    fields = dict(path=path, name=path.rsplit("/", 1)[-1], content_hash=f"synthetic:{path}",
                  size_bytes=0, duration=frames / fps, fps=fps, native_fps=fps, width=0,
                  height=0, codec="synthetic", frames=frames, kept_fraction=1.0 / frames,
                  status="indexed", indexed_at=time.time(), ingest_seconds=0.0)
    return store.commit_video(fields, features)
