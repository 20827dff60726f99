"""Stage ``verifier``: the level-1 clip verifier (:mod:`vidseek.models.verifier`).

Trained on what it will see at query time: for every annotated event of the training
videos (and every reversed event the video does not hold), the clips
:func:`~vidseek.models.verifier.clip_proposals` proposes from the stored frame embeddings'
similarity to the query. A clip is a positive when it holds at least half of one of the
query's events. Nearly every proposal shows the query's objects, so the negatives are the
hard ones: the same objects before or after the event, or doing something else. The adapter
is frozen (its dense tokens are computed once per video); only the verifier learns.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..models.grounder import Grounder
from ..models.verifier import VerifierConfig, clip_proposals
from .grounding_data import TrainingVideo, _also_true, reversed_caption

__all__ = ["VerifierExample", "verifier_examples", "train_verifier", "optimizer_step"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifierExample:
    video: int  # index into the videos
    start: int  # first frame of the proposed clip
    stop: int  # one past its last frame
    query: str
    present: bool  # the clip holds at least half of one of the query's events


def _holds(start: int, stop: int, first: int, last: int) -> bool:
    """Frames ``[start, stop)`` hold at least half of the event on frames ``first..last``."""
    return max(0, min(stop, last + 1) - max(start, first)) >= 0.5 * (last - first + 1)


def verifier_examples(videos: Sequence[TrainingVideo], query_vectors: dict[str, np.ndarray],
                      config: VerifierConfig) -> list[VerifierExample]:
    """Every proposal for every event of ``videos`` and for its reversed form; proposals
    that hold an event implying the query (a bouncing object moves up) are left out."""
    examples = []
    for v, video in enumerate(videos):
        events: dict[str, list[tuple[int, int]]] = {}
        for caption, first, last in video.events:
            events.setdefault(caption, []).append((first, last))
        queries = sorted(set(events) | {r for c in events if (r := reversed_caption(c)) and r not in events})
        for query in queries:
            similarity = video.embeddings @ query_vectors[query]
            for a, b in clip_proposals(similarity, config.proposal_fraction, config.proposal_pad,
                                       config.max_frames):
                present = any(_holds(a, b, i, j) for i, j in events.get(query, []))
                if not present and query in _also_true(video.captions_overlapping(a, b)):
                    continue
                examples.append(VerifierExample(v, a, b, query, present))
    return examples


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, params: list[nn.Parameter]) -> float:
    """One update from ``loss``, gradients clipped to norm 1; returns the loss."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    return loss.item()


def train_verifier(grounder: Grounder, videos: Sequence[TrainingVideo], query_vectors: dict[str, np.ndarray],
                   steps: int, lr: float = 1e-3, batch_size: int = 64, seed: int = 0,
                   progress: Callable[[int, int, float], None] | None = None) -> tuple[list[float], int]:
    """Train ``grounder.verifier`` for ``steps`` steps of ``batch_size`` clips (a quarter of
    them positives); returns the losses and the number of training clips."""
    if grounder.verifier is None:
        raise ValueError("the grounder has no clip verifier to train")
    examples = verifier_examples(videos, query_vectors, grounder.verifier.config)
    positives = [e for e in examples if e.present]
    negatives = [e for e in examples if not e.present]
    if not positives or not negatives:
        raise ValueError("the verifier needs proposals with the event and proposals without it")
    with torch.no_grad():  # the adapter is frozen: dense tokens once per video
        dense = [grounder.dense_tokens(v.embeddings, v.grid) for v in videos]
    words = {q: grounder.query_words(q) for q in {e.query for e in examples}}
    verifier = grounder.verifier
    params = list(verifier.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    rng = np.random.default_rng(seed)
    n_pos = max(1, batch_size // 4)
    warmup = min(100, max(1, steps // 10))
    verifier.train()
    losses: list[float] = []
    loss_fn = nn.BCEWithLogitsLoss()
    for step in range(steps):
        scale = min(1.0, (step + 1) / warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * step / max(1, steps))))
        for group in optimizer.param_groups:
            group["lr"] = lr * scale
        batch = ([positives[i] for i in rng.integers(len(positives), size=n_pos)]
                 + [negatives[i] for i in rng.integers(len(negatives), size=batch_size - n_pos)])
        sims = [torch.as_tensor(videos[e.video].embeddings[e.start:e.stop] @ query_vectors[e.query],
                                device=grounder.device) for e in batch]
        logits = verifier([words[e.query] for e in batch], [dense[e.video][e.start:e.stop] for e in batch], sims)
        target = torch.tensor([float(e.present) for e in batch], device=grounder.device)
        losses.append(optimizer_step(optimizer, loss_fn(logits, target), params))
        if progress is not None:
            progress(step + 1, steps, losses[-1])
        if (step + 1) % 100 == 0:
            logger.info("stage verifier step %d/%d loss %.4f", step + 1, steps, np.mean(losses[-100:]))
    verifier.eval()
    return losses, len(examples)

