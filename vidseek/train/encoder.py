"""Training a small CLIP-style encoder on local footage (no model hub needed).

Self-supervised and contrastive: two views of the same moment — a frame and a neighbouring
frame of the same video, each randomly cropped, colour-jittered and noised — must embed
closer to each other than to any other frame of the batch (InfoNCE, both directions).
Only the vision tower and its projection are trained; the result is saved as an ordinary
transformers checkpoint that :meth:`vidseek.FrameEncoder.load` reads.

This gives a real, discriminative image encoder where no pretrained CLIP is available
(tests, demos, air-gapped machines); it does not learn language.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..indexer.decode import FrameSampler
from ..models.encoder import FrameEncoder

__all__ = ["EncoderTrainingConfig", "EncoderTrainingReport", "FrameDataset", "train_image_encoder"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderTrainingConfig:
    steps: int = 300
    batch_size: int = 64
    learning_rate: float = 1e-3
    temperature: float = 0.1
    neighbour_seconds: float = 1.0  # a positive may be this far from its anchor in time
    min_crop_area: float = 0.5  # random crops keep at least this share of the frame
    seed: int = 0


@dataclass
class EncoderTrainingReport:
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    frames: int = 0


@dataclass
class FrameDataset:
    """Frames sampled from videos, with the video each came from and its time."""

    pixels: np.ndarray  # uint8 [N, S, S, 3]
    video: np.ndarray  # int [N]
    times: np.ndarray  # float [N]

    @classmethod
    def from_videos(cls, paths: Sequence[str | Path], size: int, fps: float = 4.0) -> "FrameDataset":
        pixels, video, times = [], [], []
        for n, path in enumerate(paths):
            for batch in FrameSampler(path, fps=fps, size=(size, size), batch_size=64):
                pixels.append(batch.pixels)
                times.append(batch.times)
                video.append(np.full(len(batch), n))
        return cls(np.concatenate(pixels), np.concatenate(video), np.concatenate(times))

    def positives(self, anchors: np.ndarray, window: float, rng: np.random.Generator) -> np.ndarray:
        """For each anchor, a random frame of the same video within ``window`` seconds."""
        out = np.empty_like(anchors)
        for i, a in enumerate(anchors):
            near = np.flatnonzero((self.video == self.video[a]) & (np.abs(self.times - self.times[a]) <= window))
            out[i] = rng.choice(near)
        return out


def _augment(x: torch.Tensor, min_area: float, generator: torch.Generator) -> torch.Tensor:
    """Random resized crop, brightness/contrast jitter and pixel noise on a [B,3,S,S] batch in [0,1]."""
    b, _, s, _ = x.shape
    out = torch.empty_like(x)
    for i in range(b):
        area = min_area + (1 - min_area) * torch.rand(1, generator=generator).item()
        side = max(4, int(round(s * area ** 0.5)))
        top = int(torch.randint(0, s - side + 1, (1,), generator=generator))
        left = int(torch.randint(0, s - side + 1, (1,), generator=generator))
        crop = x[i:i + 1, :, top:top + side, left:left + side]
        out[i] = F.interpolate(crop, size=(s, s), mode="bilinear", align_corners=False)[0]
    brightness = 1 + 0.4 * (torch.rand(b, 1, 1, 1, generator=generator) - 0.5)
    contrast = 1 + 0.4 * (torch.rand(b, 1, 1, 1, generator=generator) - 0.5)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * contrast + mean * brightness
    out = out + 0.02 * torch.randn(out.shape, generator=generator)
    return out.clamp(0, 1)


def train_image_encoder(
    encoder: FrameEncoder,
    data: FrameDataset,
    out_dir: str | Path,
    config: EncoderTrainingConfig = EncoderTrainingConfig(),
    progress: Callable[[int, float], None] | None = None,
) -> EncoderTrainingReport:
    """Train ``encoder``'s vision tower on ``data`` and save the checkpoint to ``out_dir``.

    ``progress(step, loss)`` is called after every step.
    """
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = encoder.model
    model.train()
    params = [p for n, p in model.named_parameters() if n.startswith(("vision_model", "visual_projection"))]
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(("vision_model", "visual_projection")))
    optimiser = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=config.learning_rate,
                                                   total_steps=config.steps, pct_start=0.1)
    report = EncoderTrainingReport(frames=len(data.pixels))
    started = time.perf_counter()
    all_pixels = torch.from_numpy(data.pixels).permute(0, 3, 1, 2).float().div_(255)
    batch = min(config.batch_size, len(data.pixels))
    mean, std = encoder._mean.cpu(), encoder._std.cpu()
    for step in range(config.steps):
        anchors = rng.choice(len(data.pixels), size=batch, replace=False)
        partners = data.positives(anchors, config.neighbour_seconds, rng)
        views = [_augment(all_pixels[idx], config.min_crop_area, generator) for idx in (anchors, partners)]
        emb = [F.normalize(model.get_image_features(pixel_values=(v - mean) / std).pooler_output, dim=-1)
               for v in views]
        logits = emb[0] @ emb[1].T / config.temperature
        # frames of the same video within the window are not negatives of each other
        same = torch.from_numpy(
            (data.video[anchors][:, None] == data.video[partners][None, :])
            & (np.abs(data.times[anchors][:, None] - data.times[partners][None, :]) <= config.neighbour_seconds))
        same.fill_diagonal_(False)
        logits = logits.masked_fill(same, -1e4)
        target = torch.arange(batch)
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        report.losses.append(float(loss.detach()))
        if progress is not None:
            progress(step, float(loss))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    report.seconds = time.perf_counter() - started
    _save(encoder, out_dir)
    logger.info("trained image encoder: %d steps, loss %.3f -> %.3f, %.0fs", config.steps,
                report.losses[0], report.losses[-1], report.seconds)
    return report


def _save(encoder: FrameEncoder, out_dir: str | Path) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    encoder.model.save_pretrained(str(out))
    encoder.tokenizer.save_pretrained(str(out))
    source = Path(encoder.info.name)
    if (source / "preprocessor_config.json").exists() and source.resolve() != out.resolve():
        shutil.copy(source / "preprocessor_config.json", out / "preprocessor_config.json")
