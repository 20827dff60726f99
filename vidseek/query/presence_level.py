"""Level 1 in presence mode: every coarse window of a video gets the calibrated probability
that the query's event happens in it (:mod:`vidseek.models.presence`), from one batched LM
yes/no pass over the cached sparse tokens, the stored frame similarities and, with a clip
verifier, its verdict on the clips proposed around the most query-similar frames (which
reads those frames' dense tokens)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..models.adapter import COARSE, relevance_features
from ..models.answers import presence_prompt
from ..models.grounder import Grounder, VideoTokens
from ..models.presence import PRESENCE_FEATURES, window_features
from ..models.verifier import NO_PROPOSAL, clip_proposals, window_maxima
from ..store.files import VideoFeatures
from .grounding_types import GroundingNode

__all__ = ["VideoView", "coarse_tokens", "presence_inputs", "presence_level", "select_windows",
           "presence_logits", "verified_clips", "level1_pass", "level1_passes", "Level1Pass",
           "window_presence_features"]


class VideoView:
    """Lazy dense tokens of one video, remembering which frames were read."""

    def __init__(self, grounder: Grounder, features: VideoFeatures, fps: float,
                 query_vector: np.ndarray, duration: float = 0.0) -> None:
        self.grounder = grounder
        self.features = features
        self.times = features.times
        self.step = 1.0 / fps
        self.duration = duration  # seconds; 0: unknown
        self.read = np.zeros(len(features.times), dtype=bool)
        # frame–query similarity from the stored embeddings (not dense tokens)
        self.similarity = torch.as_tensor(features.embeddings @ query_vector, device=grounder.device)

    def relevance(self, a: int, b: int, unit: int) -> torch.Tensor:
        return relevance_features(self.similarity[a:b], unit)

    @property
    def frames(self) -> int:
        return len(self.times)

    def dense(self, a: int, b: int) -> torch.Tensor:
        self.read[a:b] = True
        return self.grounder.video_dense_tokens(self.features.embeddings, self.features.dense, a, b)

    def seconds(self, a: int, b: int) -> tuple[float, float]:
        """Frames ``[a, b)`` as a time range (the last frame lasts one sampling step, but
        never past the end of the video)."""
        end = float(self.times[b - 1] + self.step)
        if self.duration > self.times[b - 1]:
            end = min(end, self.duration)
        return float(self.times[a]), end


def coarse_tokens(grounder: Grounder, view: VideoView, sparse: np.ndarray | None) -> torch.Tensor:
    """The video's level-1 sparse tokens ``[windows, n, hidden]``."""
    if sparse is None:  # no cached tokens for this checkpoint: compute them (reads every frame)
        return grounder.sparse_tokens(view.dense(0, view.frames), grounder.config.windows.coarse, COARSE)
    return torch.as_tensor(sparse.astype(np.float32), device=grounder.device)


def presence_inputs(grounder: Grounder, view: VideoView, sparse: np.ndarray | None) -> list[VideoTokens]:
    """One presence input per coarse window: its sparse tokens, shown alone (as stage 1B)."""
    size = grounder.config.windows.coarse
    tokens = coarse_tokens(grounder, view, sparse)
    return [VideoTokens(tokens[i], COARSE, tokens.shape[1],
                        view.relevance(i * size, min(view.frames, (i + 1) * size), size))
            for i in range(tokens.shape[0])]


@dataclass
class Level1Pass:
    """A video's level-1 pass for one query: the presence features of its coarse windows,
    the verified clips, and the frames whose dense tokens it read. :func:`ground_videos`
    computes several videos' passes ahead of their recursions (one batched LM pass)."""

    features: np.ndarray  # [windows, 5], see vidseek.models.presence.window_features
    read: np.ndarray  # [frames] bool
    # the clips proposed around the most query-similar frames: (first frame, last + 1, the
    # verifier's logit), in time order; empty without a verifier
    clips: list[tuple[int, int, float]] = field(default_factory=list)
    # [windows] bool: the windows the LM was asked about (None: every one)
    asked: np.ndarray | None = None


def verified_clips(grounder: Grounder, view: VideoView, query: str) -> list[tuple[int, int, float]]:
    """The clips proposed from the query similarity, each with the clip verifier's logit
    (reads their dense tokens); empty when the grounder has no verifier."""
    if grounder.verifier is None:
        return []
    c = grounder.verifier.config
    similarity = view.similarity.float()
    ranges = clip_proposals(similarity.cpu().numpy(), c.proposal_fraction, c.proposal_pad, c.max_frames)
    if not ranges:
        return []
    logits = grounder.verify(query, [view.dense(a, b) for a, b in ranges], [similarity[a:b] for a, b in ranges])
    return [(a, b, float(x)) for (a, b), x in zip(ranges, logits.cpu().numpy())]


def level1_pass(grounder: Grounder, view: VideoView, lm_logits: np.ndarray, query: str) -> Level1Pass:
    """The level-1 pass of one video from every window's LM yes/no logit: the presence
    features (:func:`vidseek.models.presence.window_features`; the verifier's is each
    window's best clip logit) and the verified clips."""
    clips = verified_clips(grounder, view, query)
    return Level1Pass(_features(grounder, view, lm_logits, clips), view.read, clips)


def _features(grounder: Grounder, view: VideoView, lm_logits: np.ndarray,
              clips: list[tuple[int, int, float]]) -> np.ndarray:
    size = grounder.config.windows.coarse
    verified = None
    if grounder.verifier is not None:
        verified = window_maxima([(a, b) for a, b, _ in clips], np.array([x for _, _, x in clips]),
                                 size, -(-view.frames // size))
    return window_features(lm_logits, view.similarity.float().cpu().numpy(), size, verified)


def level1_passes(grounder: Grounder, views: list[VideoView], sparse: list[np.ndarray | None],
                  query: str, shortlist: int = 0) -> list[Level1Pass | None]:
    """The level-1 passes of several videos (None for a video without frames), with one
    batched LM yes/no pass.

    ``shortlist > 0`` asks the LM about that many windows only, across all the videos: the
    ones the other presence signals (frame similarity, the verifier) rank best; ranking by
    the calibrated presence with the LM logit left out is ranking by those signals alone,
    since the logit enters linearly. Every other window gets the lowest logit the LM gave,
    so it never outranks an asked window on the LM's account. The LM is the costly part of
    level 1 with a real-sized LM (and most windows of a long video show nothing like the
    query); ``shortlist=0`` asks about every window."""
    clips = [verified_clips(grounder, view, query) if view.frames else [] for view in views]
    blank = [_features(grounder, view, np.zeros(-(-view.frames // grounder.config.windows.coarse)), c)
             if view.frames else None for view, c in zip(views, clips)]
    asked = [np.ones(len(x), dtype=bool) if x is not None else np.zeros(0, dtype=bool) for x in blank]
    total = sum(len(x) for x in asked)
    if 0 < shortlist < total:
        order = np.argsort(-np.concatenate([grounder.presence_calibration.probability(x) for x in blank
                                            if x is not None]), kind="stable")
        chosen = np.zeros(total, dtype=bool)
        chosen[order[:shortlist]] = True
        first = 0
        for n, a in enumerate(asked):
            asked[n] = chosen[first:first + len(a)]
            first += len(a)
    inputs = []
    for view, s, a in zip(views, sparse, asked):
        if a.any():
            every = presence_inputs(grounder, view, s)
            inputs += [every[i] for i in np.flatnonzero(a)]
    flat = presence_logits(grounder, inputs, query) if inputs else np.zeros(0)
    floor = float(flat.min()) if len(flat) else 0.0
    passes: list[Level1Pass | None] = []
    first = 0
    for view, x, a, c in zip(views, blank, asked, clips):
        if x is None:
            passes.append(None)
            continue
        x[:, 0] = floor
        x[a, 0] = flat[first:first + int(a.sum())]
        first += int(a.sum())
        passes.append(Level1Pass(x, view.read, c, asked=a))
    return passes


def presence_level(grounder: Grounder, view: VideoView, features: np.ndarray,
                   asked: np.ndarray | None = None) -> list[GroundingNode]:
    """A node per coarse window carrying its calibrated presence probability, from its
    :class:`Level1Pass` features (``asked``: the windows the LM was asked about)."""
    size = grounder.config.windows.coarse
    probs = grounder.presence_calibration.probability(features)
    nodes = []
    for i, (p, row) in enumerate(zip(probs, features)):
        a, b = i * size, min(view.frames, (i + 1) * size)
        why = f"yes-no logit {row[0]:+.2f}" if asked is None or asked[i] else "LM not asked (shortlist)"
        if grounder.verifier is not None:
            why += f", verifier {row[4]:+.2f}" if row[4] > NO_PROPOSAL else ", no clip proposed"
        nodes.append(GroundingNode(1, "coarse", view.seconds(a, b), why,
                                   "presence", view.seconds(a, b), float(p), 1.0 - float(p),
                                   frames=(a, b), presence=float(p), window=i))
    return nodes


def select_windows(nodes: list[GroundingNode], keep: int) -> list[GroundingNode]:
    kept = sorted(nodes, key=lambda n: -(n.presence or 0.0))[:keep]
    for node in kept:
        node.kept = True
    return kept


def presence_logits(grounder: Grounder, inputs: list[VideoTokens], query: str) -> np.ndarray:
    """The LM's yes/no logits for presence inputs, one batched pass."""
    return grounder.presence_logits(inputs, [presence_prompt(query)] * len(inputs)).cpu().numpy()


@torch.no_grad()
def window_presence_features(grounder: Grounder, features: VideoFeatures, fps: float,
                             sparse: np.ndarray | None, query: str,
                             query_vector: np.ndarray) -> np.ndarray:
    """``[windows, 5]``: the level-1 presence features (:mod:`vidseek.models.presence`) of
    each coarse window of one video for one query; what the calibration is fitted on."""
    view = VideoView(grounder, features, fps, np.asarray(query_vector, dtype=np.float32))
    if view.frames == 0:
        return np.zeros((0, len(PRESENCE_FEATURES)))
    logits = presence_logits(grounder, presence_inputs(grounder, view, sparse), query)
    return level1_pass(grounder, view, logits, query).features
