"""Training a small CLIP-style encoder locally (no model hub needed).

Two contrastive objectives, usable together:

- **captions** (image ↔ text): frames of the procedural world (:mod:`vidseek.synth.world`)
  paired with what they show ("a small red circle and a large blue square") or, inside an
  event, the event's caption; InfoNCE in both directions, frames sharing a caption are all
  positives of it. This teaches both towers, so text search means something.
- **footage** (image ↔ image): two views of the same moment of real footage — a frame and a
  neighbouring frame, each randomly cropped, colour-jittered and noised — must match; this
  makes the vision tower discriminate real pictures (image queries on real video).

The result is saved as an ordinary transformers checkpoint that
:meth:`vidseek.FrameEncoder.load` reads.
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
from ..synth.world import random_clip, render_clip, static_caption, visible_things

__all__ = ["EncoderTrainingConfig", "EncoderTrainingReport", "FrameDataset", "CaptionedFrames",
           "train_encoder", "caption_retrieval_accuracy"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderTrainingConfig:
    steps: int = 300
    batch_size: int = 64
    learning_rate: float = 1e-3
    temperature: float = 0.07
    footage_batch_size: int = 32  # footage pairs per step, when training on both
    neighbour_seconds: float = 1.0  # footage: a positive may be this far from its anchor
    min_crop_area: float = 0.5  # footage: random crops keep at least this share of the frame
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


@dataclass
class CaptionedFrames:
    """World frames with captions: ``captions[i]`` describes ``pixels[i]``."""

    pixels: np.ndarray  # uint8 [N, S, S, 3]
    captions: list[str]
    clip: np.ndarray  # int [N]: which generated clip a frame came from

    @classmethod
    def generate(cls, clips: int, size: int, seed: int = 0, fps: float = 2.0,
                 event_caption_share: float = 0.5) -> "CaptionedFrames":
        """Render ``clips`` random world clips at ``fps``; frames are downsampled to ``size``."""
        rng = np.random.default_rng(seed)
        pixels, captions, clip_ids = [], [], []
        for n in range(clips):
            spec = random_clip(rng)
            for t, frame in render_clip(spec, fps=fps, size=size * 2):
                pixels.append(frame.reshape(size, 2, size, 2, 3).mean(axis=(1, 3)).astype(np.uint8))
                ev = spec.event
                if ev is not None and ev.start <= t <= ev.end and rng.random() < event_caption_share:
                    captions.append(ev.caption)
                else:
                    captions.append(static_caption(visible_things(spec, t)))
                clip_ids.append(n)
        return cls(np.stack(pixels), captions, np.asarray(clip_ids))


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


class _Trainer:
    def __init__(self, encoder: FrameEncoder, config: EncoderTrainingConfig) -> None:
        self.encoder = encoder
        self.model = encoder.model
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)

    def embed_images(self, pixels01: torch.Tensor) -> torch.Tensor:
        out = self.model.get_image_features(pixel_values=self.encoder.normalise(pixels01))
        return F.normalize(out.pooler_output, dim=-1)

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        info = self.encoder.info
        batch = self.encoder.tokenizer(texts, padding=True, truncation=True,
                                       max_length=info.max_text_tokens, return_tensors="pt")
        out = self.model.get_text_features(input_ids=batch["input_ids"],
                                           attention_mask=batch["attention_mask"])
        return F.normalize(out.pooler_output, dim=-1)

    def caption_loss(self, data: CaptionedFrames, batch: int) -> torch.Tensor:
        idx = self.rng.choice(len(data.pixels), size=batch, replace=False)
        images = torch.from_numpy(data.pixels[idx]).permute(0, 3, 1, 2).float().div_(255)
        captions = [data.captions[i] for i in idx]
        unique = sorted(set(captions))
        which = torch.tensor([unique.index(c) for c in captions])
        logits = self.embed_images(images) @ self.embed_texts(unique).T / self.config.temperature
        image_to_text = F.cross_entropy(logits, which)
        positives = F.one_hot(which, len(unique)).float().T  # [U, B]
        text_to_image = -(positives / positives.sum(1, keepdim=True) * F.log_softmax(logits.T, 1)).sum(1).mean()
        return (image_to_text + text_to_image) / 2

    def footage_loss(self, data: FrameDataset, batch: int) -> torch.Tensor:
        c = self.config
        anchors = self.rng.choice(len(data.pixels), size=batch, replace=False)
        partners = data.positives(anchors, c.neighbour_seconds, self.rng)
        views = [self.embed_images(_augment(torch.from_numpy(data.pixels[i]).permute(0, 3, 1, 2).float() / 255,
                                            c.min_crop_area, self.generator)) for i in (anchors, partners)]
        logits = views[0] @ views[1].T / max(c.temperature, 0.1)
        # frames of the same video within the window are not negatives of each other
        same = torch.from_numpy(
            (data.video[anchors][:, None] == data.video[partners][None, :])
            & (np.abs(data.times[anchors][:, None] - data.times[partners][None, :]) <= c.neighbour_seconds))
        same.fill_diagonal_(False)
        logits = logits.masked_fill(same, -1e4)
        target = torch.arange(batch)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def train_encoder(
    encoder: FrameEncoder,
    out_dir: str | Path,
    captions: CaptionedFrames | None = None,
    footage: FrameDataset | None = None,
    config: EncoderTrainingConfig = EncoderTrainingConfig(),
    progress: Callable[[int, float], None] | None = None,
) -> EncoderTrainingReport:
    """Train ``encoder`` on captioned frames and/or footage; save it to ``out_dir``.

    With footage only, just the vision tower and its projection are trained.
    ``progress(step, loss)`` is called after every step.
    """
    if captions is None and footage is None:
        raise ValueError("give captioned frames, footage, or both")
    torch.manual_seed(config.seed)
    trainer = _Trainer(encoder, config)
    model = encoder.model
    trainable = ("vision_model", "visual_projection") + (
        ("text_model", "text_projection", "logit_scale") if captions is not None else ())
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(trainable))
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=config.learning_rate,
                                                   total_steps=config.steps, pct_start=0.1)
    sizes = [len(d.pixels) for d in (captions, footage) if d is not None]
    report = EncoderTrainingReport(frames=sum(sizes))
    started = time.perf_counter()
    model.train()
    for step in range(config.steps):
        loss = torch.zeros(())
        if captions is not None:
            loss = loss + trainer.caption_loss(captions, min(config.batch_size, len(captions.pixels)))
        if footage is not None:
            batch = config.footage_batch_size if captions is not None else config.batch_size
            loss = loss + trainer.footage_loss(footage, min(batch, len(footage.pixels)))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        report.losses.append(float(loss.detach()))
        if progress is not None:
            progress(step, report.losses[-1])
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    report.seconds = time.perf_counter() - started
    _save(encoder, out_dir)
    logger.info("trained encoder: %d steps, loss %.3f -> %.3f, %.0fs", config.steps,
                report.losses[0], report.losses[-1], report.seconds)
    return report


def caption_retrieval_accuracy(encoder: FrameEncoder, data: CaptionedFrames) -> float:
    """Top-1 caption→frame accuracy: for each distinct caption, is the best-matching frame
    one that caption describes? (Held-out data: generate it with another seed.)"""
    unique = sorted(set(data.captions))
    images = np.concatenate([encoder.encode_frames(data.pixels[i:i + 256]).embeddings
                             for i in range(0, len(data.pixels), 256)])
    texts = encoder.encode_text(unique)
    best = (texts @ images.T).argmax(axis=1)
    return float(np.mean([data.captions[b] == c for b, c in zip(best, unique)]))


def _save(encoder: FrameEncoder, out_dir: str | Path) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    encoder.model.save_pretrained(str(out))
    encoder.tokenizer.save_pretrained(str(out))
    source = Path(encoder.info.name)
    if (source / "preprocessor_config.json").exists() and source.resolve() != out.resolve():
        shutil.copy(source / "preprocessor_config.json", out / "preprocessor_config.json")
