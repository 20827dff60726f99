"""Staged training of the grounder (ReVisionLLM), resumable.

- **1a** dense, short clips: adapter + projector + LoRA (or the whole LM with
  ``tuning="full"``); answers ``From s to e.`` over frames, or ``Not Present.``.
- **1b** sparse, single windows: the sparse compressor only (the LM, LoRA, projector and
  dense projection are frozen); ``Does the <event> happen?`` → ``yes`` / ``no``. This gives
  the compressor a direct signal before stage 2 has to rely on it.
- **2** sparse, long spans: LoRA (or the LM) only; ``From w1 to w2.`` over coarse and fine
  windows, with a share of dense examples replayed so level 3 is not forgotten.
- **verifier** (not in the paper): the level-1 clip verifier only
  (:mod:`vidseek.train.verifier`), on the clips level 1 proposes; a few minutes.

The checkpoint directory is rewritten atomically every ``save_every`` steps with the
optimiser state, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..models.adapter import COARSE, DENSE, FINE, adapter_config_for, relevance_features
from ..models.grounder import STAGES, Grounder, GrounderConfig, VideoTokens, WindowConfig
from .grounding_data import Example, ExampleSampler, TrainingVideo
from .verifier import optimizer_step, train_verifier
from ..atomic import atomic_write
from ..errors import ConfigError

__all__ = ["GroundingTrainConfig", "TrainProgress", "StageReport", "train_grounder",
           "train_grounder_from_archive", "grounder_config_for", "example_batch",
           "adapter_config_for", "TINY_LLM", "DEFAULT_STEPS"]

logger = logging.getLogger(__name__)

DEFAULT_STEPS = {"1a": 3000, "1b": 1000, "2": 3000, "verifier": 1500}


@dataclass(frozen=True)
class GroundingTrainConfig:
    steps: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_STEPS))
    batch_size: int = 32
    lr: float = 5e-4  # peak learning rate (linear warm-up, cosine decay)
    warmup: int = 100
    save_every: int = 500
    seed: int = 0
    verifier_lr: float = 1e-3  # peak learning rate of the verifier stage (a small model from scratch)
    verifier_batch: int = 64  # clips per verifier step


@dataclass(frozen=True)
class TrainProgress:
    stage: str
    step: int
    steps: int
    loss: float


@dataclass
class StageReport:
    stage: str
    steps: int
    first_loss: float  # mean over the first 50 steps run in this call
    last_loss: float  # mean over the last 50 steps
    seconds: float
    resumed_from: int = 0


QueryEmbedder = Callable[[list[str]], np.ndarray]


def example_batch(grounder: Grounder, videos: Sequence[TrainingVideo], examples: Sequence[Example],
                  query_vectors: dict[str, np.ndarray]) -> tuple[list[VideoTokens], list[str], list[str]]:
    """Tokens for each example through the current adapter (with gradients).

    ``query_vectors`` maps each query to its CLIP text embedding (the relevance channel).
    """
    w = grounder.config.windows
    inputs = []
    for ex in examples:
        video = videos[ex.video]
        emb = video.embeddings[ex.start:ex.stop]
        previous = video.grid[ex.start - 1] if ex.start > 0 else None
        dense = grounder.dense_tokens(emb, video.grid[ex.start:ex.stop], previous)
        sims = torch.as_tensor(emb @ query_vectors[ex.query], device=grounder.device)
        if ex.level == "dense":
            inputs.append(VideoTokens(dense, DENSE, 1, relevance_features(sims, 1)))
            continue
        kind = FINE if ex.level.startswith("fine") else COARSE
        size = w.fine if kind == FINE else w.coarse
        sparse = grounder.sparse_tokens(dense, size, kind)
        inputs.append(VideoTokens(sparse.reshape(-1, sparse.shape[-1]), kind, sparse.shape[1],
                                  relevance_features(sims, size)))
    return inputs, [ex.prompt for ex in examples], [ex.answer for ex in examples]


def _lr(step: int, steps: int, cfg: GroundingTrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _run_stage(grounder: Grounder, sampler: ExampleSampler, query_vectors: dict[str, np.ndarray],
               stage: str, out: Path, cfg: GroundingTrainConfig, training: dict,
               progress: Callable[[TrainProgress], None] | None) -> StageReport:
    steps = cfg.steps[stage]
    trainable = grounder.freeze_for(stage)
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=0.01)
    start = 0
    state_path = out / "trainer.pt"
    if training.get("stage") == stage and state_path.exists():
        state = torch.load(state_path, map_location=grounder.device, weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        sampler.rng = np.random.default_rng(state["sampler_seed"])
        torch.set_rng_state(state["torch_rng"])
        start = int(state["step"])
        logger.info("stage %s: resuming at step %d of %d", stage, start, steps)
    grounder.train()
    losses: list[float] = []
    t0 = time.perf_counter()

    def save(step: int) -> None:
        seed = int(sampler.rng.integers(2**62))
        sampler.rng = np.random.default_rng(seed)  # the saved seed continues this stream
        training.update(stage=stage, step=step)
        trainer = {"optimizer": optimizer.state_dict(), "step": step, "sampler_seed": seed,
                   "torch_rng": torch.get_rng_state()}
        grounder.save(out, extra={"training": training})
        atomic_write(state_path, lambda tmp: torch.save(trainer, tmp))

    for step in range(start, steps):
        for group in optimizer.param_groups:
            group["lr"] = _lr(step, steps, cfg)
        examples = [sampler.for_stage(stage) for _ in range(cfg.batch_size)]
        loss = grounder.loss(*example_batch(grounder, sampler.videos, examples, query_vectors))
        losses.append(optimizer_step(optimizer, loss, trainable))
        if progress is not None:
            progress(TrainProgress(stage, step + 1, steps, losses[-1]))
        if (step + 1) % 50 == 0:
            logger.info("stage %s step %d/%d loss %.4f", stage, step + 1, steps, np.mean(losses[-50:]))
        if (step + 1) % cfg.save_every == 0 and step + 1 < steps:
            save(step + 1)
    training.setdefault("done", [])
    if stage not in training["done"]:
        training["done"].append(stage)
    if stage in ("1a", "2") and "verifier" in training["done"]:
        # the verifier reads the adapter's dense tokens and the LM's word embeddings: it must
        # be trained again on what they are now
        training["done"].remove("verifier")
        logger.warning("stage %s changed what the clip verifier reads: run the verifier stage again", stage)
    training.update(stage=None, step=0)
    grounder.save(out, extra={"training": training})
    state_path.unlink(missing_ok=True)
    grounder.eval()
    return StageReport(stage, steps - start, float(np.mean(losses[:50])) if losses else float("nan"),
                       float(np.mean(losses[-50:])) if losses else float("nan"),
                       time.perf_counter() - t0, start)


def _run_verifier_stage(grounder: Grounder, videos: Sequence[TrainingVideo],
                        query_vectors: dict[str, np.ndarray], out: Path, cfg: GroundingTrainConfig,
                        training: dict, progress: Callable[[TrainProgress], None] | None) -> StageReport:
    """The verifier stage: a few minutes, so it restarts rather than resumes."""
    if grounder.verifier is None:
        grounder.add_verifier(seed=cfg.seed)
    steps = cfg.steps.get("verifier", DEFAULT_STEPS["verifier"])
    grounder.freeze_for("verifier")
    t0 = time.perf_counter()

    def report(step: int, total: int, loss: float) -> None:
        if progress is not None:
            progress(TrainProgress("verifier", step, total, loss))

    losses, clips = train_verifier(grounder, videos, query_vectors, steps, cfg.verifier_lr,
                                   cfg.verifier_batch, cfg.seed, report)
    logger.info("stage verifier: %d proposed clips to train on", clips)
    training.setdefault("done", [])
    if "verifier" not in training["done"]:
        training["done"].append("verifier")
    training.update(stage=None, step=0)
    grounder.save(out, extra={"training": training})
    grounder.eval()
    return StageReport("verifier", steps, float(np.mean(losses[:50])) if losses else float("nan"),
                       float(np.mean(losses[-50:])) if losses else float("nan"), time.perf_counter() - t0)


def train_grounder(out: str | os.PathLike, videos: Sequence[TrainingVideo], stages: Sequence[str],
                   embed_text: QueryEmbedder, config: GrounderConfig | None = None,
                   train: GroundingTrainConfig = GroundingTrainConfig(), device: str | None = None,
                   progress: Callable[[TrainProgress], None] | None = None) -> list[StageReport]:
    """Run ``stages`` (in the order 1a, 1b, 2, verifier) into the checkpoint directory ``out``.

    ``embed_text`` is the archive encoder's text side (texts → normalised embeddings).

    If ``out`` already holds a checkpoint, training continues from it: finished stages are
    skipped unless named again after a newer one, an interrupted stage resumes at its last
    saved step. Otherwise ``config`` describes the new grounder.
    """
    out = Path(out)
    for stage in stages:
        if stage not in STAGES:
            raise ConfigError(f"unknown stage {stage!r} (one of {', '.join(STAGES)})")
    if (out / "manifest.json").exists():
        grounder = Grounder.load(out, device=device)
        training = dict(grounder.manifest.get("training", {}))
    else:
        if config is None:
            raise ConfigError(f"{out}: no checkpoint to continue; a GrounderConfig is needed")
        grounder = Grounder.create(config, device=device, seed=train.seed)
        training = {"done": []}
    sampler = ExampleSampler(videos, grounder.config.windows, seed=train.seed)
    queries = sampler.all_queries()
    query_vectors = dict(zip(queries, np.asarray(embed_text(queries), dtype=np.float32)))
    reports = []
    for stage in sorted(set(stages), key=STAGES.index):
        if stage in training.get("done", []) and training.get("stage") != stage and len(stages) > 1:
            logger.info("stage %s already done; skipped", stage)
            continue
        if stage == "verifier":
            reports.append(_run_verifier_stage(grounder, sampler.videos, query_vectors, out, train,
                                               training, progress))
        else:
            reports.append(_run_stage(grounder, sampler, query_vectors, stage, out, train, training, progress))
    return reports


TINY_LLM = "tiny"
_PROMPT_WORDS = "when can we see the happening Does happen From to Not Present yes no".split()


def grounder_config_for(archive, llm: str, annotations: Sequence, out: Path,
                        tuning: str | None = None, windows: WindowConfig = WindowConfig()) -> GrounderConfig:
    """A new grounder's config for ``archive``'s encoder.

    ``llm="tiny"`` builds a small Llama-architecture LM from scratch, with a word-level
    vocabulary taken from the annotations, into ``out/base-llm`` (trained fully; for the
    synthetic world and tests). Any other value is loaded pretrained and tuned with LoRA
    unless ``tuning`` says otherwise.
    """
    from ..models.llm import build_tiny_llm

    if archive.is_empty:
        raise ConfigError(f"{archive.path}: the archive holds no video yet")
    manifest = archive.manifest
    if llm == TINY_LLM:
        words = sorted({w for a in annotations for w in a.query.replace(".", " ").split()} | set(_PROMPT_WORDS))
        llm = str(build_tiny_llm(out.with_name(out.name + ".base-llm"), words))
        tuning = tuning or "full"
    return GrounderConfig(llm=llm, adapter=adapter_config_for(manifest["encoder"]),
                          windows=windows, tuning=tuning or "lora")


def train_grounder_from_archive(out: str | os.PathLike, archive, annotations: Sequence,
                                stages: Sequence[str], llm: str | None = None,
                                tuning: str | None = None,
                                train: GroundingTrainConfig = GroundingTrainConfig(),
                                device: str | None = None,
                                progress: Callable[[TrainProgress], None] | None = None) -> list[StageReport]:
    """Train (or continue training) a grounding checkpoint on ``archive``'s stored features
    of the annotated videos. ``llm`` is needed for a new checkpoint only."""
    from .grounding_data import load_training_videos

    out = Path(out)
    videos = load_training_videos(archive, annotations)
    config = None
    if not (out / "manifest.json").exists():
        if llm is None:
            raise ConfigError(f"{out}: a new checkpoint needs an LLM (e.g. smollm2, a hub id, or tiny)")
        config = grounder_config_for(archive, llm, annotations, out, tuning)
    return train_grounder(out, videos, stages, archive.encoder.encode_text, config, train,
                          device=device, progress=progress)
