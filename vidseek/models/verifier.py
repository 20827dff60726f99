"""The level-1 clip verifier: does the query's event happen in this short clip?

Level 1 has to choose where to look, and query-independent sparse tokens cannot tell one
event of an object from another (the LM's yes/no over them ranked windows exactly like the
CLIP peak; docs/evaluation.md). What the stored frame embeddings do tell is where the
query's *objects* are: the 5 % of frames most similar to the query hold a frame of the
event for about 89 % of queries. So level 1 proposes short clips around those frames
(:func:`clip_proposals`, free: the embeddings are stored) and asks a small model whether the
event happens in each: a transformer over the query's words and the clip's dense tokens
(the adapter's, motion included) with each frame's similarity to the query. It is trained
on exactly those proposals (:mod:`vidseek.train.verifier`), so its negatives are the hard
ones: the same objects doing something else.

It reads the dense tokens of the proposed frames only (a few per cent of a video), and its
best logit per coarse window is one of the level-1 presence features
(:mod:`vidseek.models.presence`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["VerifierConfig", "ClipVerifier", "clip_proposals", "window_maxima", "NO_PROPOSAL"]

# The verifier feature of a coarse window no proposal touches: below any logit it gives.
NO_PROPOSAL = -30.0


@dataclass(frozen=True)
class VerifierConfig:
    width: int = 128  # transformer width
    layers: int = 2
    heads: int = 4
    max_frames: int = 32  # a proposal longer than this is split
    max_words: int = 32  # query tokens beyond this are dropped
    proposal_fraction: float = 0.05  # share of a video's frames (most query-similar) proposed
    proposal_pad: int = 1  # frames added on each side of a proposed frame (motion needs them)


def clip_proposals(similarity: np.ndarray, fraction: float, pad: int, max_frames: int) -> list[tuple[int, int]]:
    """Frame ranges ``[a, b)`` around the ``fraction`` of frames most similar to the query,
    each widened by ``pad`` frames a side; touching ranges merge, long ones are cut into
    pieces of at most ``max_frames``. In time order."""
    t = len(similarity)
    if t == 0:
        return []
    chosen = np.zeros(t, dtype=bool)
    chosen[np.argsort(-np.asarray(similarity), kind="stable")[:max(1, int(fraction * t))]] = True
    near = chosen.copy()
    for d in range(1, pad + 1):
        near[d:] |= chosen[:-d]
        near[:-d] |= chosen[d:]
    edges = np.flatnonzero(np.diff(np.concatenate([[0], near.astype(np.int8), [0]])))
    ranges = []
    for a, b in zip(edges[::2], edges[1::2]):
        ranges += [(int(s), int(min(b, s + max_frames))) for s in range(a, b, max_frames)]
    return ranges


def window_maxima(ranges: list[tuple[int, int]], logits: np.ndarray, window: int, windows: int) -> np.ndarray:
    """``[windows]``: each coarse window's best logit among the ranges that touch it
    (:data:`NO_PROPOSAL` where none does)."""
    best = np.full(windows, NO_PROPOSAL)
    for (a, b), logit in zip(ranges, logits):
        for w in range(a // window, min(windows, (b - 1) // window + 1)):
            best[w] = max(best[w], float(logit))
    return best


def similarity_features(similarity: torch.Tensor) -> torch.Tensor:
    """``[t]`` frame–query cosines → ``[t, 3]``: the cosine (×10), relative to the clip's
    mean (×10), and whether the frame is the clip's most similar."""
    return torch.stack([10 * similarity, 10 * (similarity - similarity.mean()),
                        (similarity == similarity.max()).to(similarity.dtype)], 1)


class ClipVerifier(nn.Module):
    """``[CLS] query words [frames]`` → one logit per (clip, query)."""

    def __init__(self, config: VerifierConfig, word_dim: int, frame_dim: int) -> None:
        super().__init__()
        self.config = config
        d = config.width
        self.words = nn.Linear(word_dim, d)
        self.frames = nn.Sequential(nn.LayerNorm(frame_dim), nn.Linear(frame_dim, d))
        self.similarity = nn.Linear(3, d)
        self.positions = nn.Embedding(max(config.max_frames, config.max_words), d)
        self.parts = nn.Embedding(3, d)  # CLS, word, frame
        self.cls = nn.Parameter(torch.zeros(d))
        layer = nn.TransformerEncoderLayer(d, config.heads, 2 * d, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 1))

    def forward(self, words: list[torch.Tensor], frames: list[torch.Tensor],
                similarity: list[torch.Tensor]) -> torch.Tensor:
        """Per clip: the query's word embeddings ``[L, word_dim]``, the clip's dense tokens
        ``[t, frame_dim]`` and frame–query cosines ``[t]`` → ``[clips]`` logits."""
        c = self.config
        pos, parts = self.positions.weight, self.parts.weight
        rows = []
        for w, f, s in zip(words, frames, similarity):
            w, f, s = w[:c.max_words], f[:c.max_frames], s[:c.max_frames]
            rows.append(torch.cat([
                (self.cls + parts[0])[None],
                self.words(w) + parts[1] + pos[:len(w)],
                self.frames(f) + self.similarity(similarity_features(s)) + parts[2] + pos[:len(f)]]))
        length = max(r.shape[0] for r in rows)
        x = rows[0].new_zeros(len(rows), length, c.width)
        pad = torch.ones(len(rows), length, dtype=torch.bool, device=x.device)
        for i, r in enumerate(rows):
            x[i, :len(r)] = r
            pad[i, :len(r)] = False
        return self.head(self.encoder(x, src_key_padding_mask=pad)[:, 0]).squeeze(-1)
