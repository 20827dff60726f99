"""One call that produces a usable encoder offline: a tiny CLIP trained on the procedural
world's captions (so text queries mean something) and, optionally, on real footage (so image
queries on that footage discriminate). Held-out caption→frame accuracy is measured."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..models.encoder import FrameEncoder
from ..models.tiny import build_tiny_clip
from .encoder import (CaptionedFrames, EncoderTrainingConfig, EncoderTrainingReport, FrameDataset,
                      caption_retrieval_accuracy, train_encoder)

__all__ = ["WorldEncoderReport", "train_world_encoder"]

_HELD_OUT_SEED_OFFSET = 10_007  # held-out clips never share a seed with training clips


@dataclass
class WorldEncoderReport(EncoderTrainingReport):
    path: Path = Path()
    heldout_accuracy: float = 0.0  # top-1 caption→frame over held-out world frames
    heldout_captions: int = 0


def train_world_encoder(
    out_dir: str | Path,
    steps: int = 500,
    clips: int = 2000,
    footage: Sequence[str | Path] = (),
    seed: int = 0,
    progress: Callable[[int, float], None] | None = None,
) -> WorldEncoderReport:
    """Build a tiny CLIP, train it on ``clips`` world clips (+ ``footage``), save to ``out_dir``."""
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        encoder = FrameEncoder.load(build_tiny_clip(Path(tmp) / "base", seed=seed), device="cpu")
    side = encoder.info.image_size
    captions = CaptionedFrames.generate(clips, side, seed=seed, fps=1.0)
    frames = FrameDataset.from_videos(list(footage), side, fps=4.0) if footage else None
    config = EncoderTrainingConfig(steps=steps, batch_size=128, learning_rate=2e-3, seed=seed)
    base = train_encoder(encoder, out_dir, captions=captions, footage=frames, config=config,
                         progress=progress)
    held_out = CaptionedFrames.generate(80, side, seed=seed + _HELD_OUT_SEED_OFFSET,
                                        event_caption_share=0.0)
    return WorldEncoderReport(
        losses=base.losses, seconds=base.seconds, frames=base.frames, path=out_dir,
        heldout_accuracy=caption_retrieval_accuracy(encoder, held_out),
        heldout_captions=len(set(held_out.captions)))
