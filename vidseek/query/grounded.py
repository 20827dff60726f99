"""Grounded queries (ReVisionLLM): level 1 over cached sparse tokens, recursive refinement.

For one video and one query:

1. **Level 1 (coarse)**, over the video's level-1 windows (sparse tokens cached at ingest).
   ``level1="presence"`` (the default, :mod:`.presence_level`): every window gets a
   calibrated probability that the event happens in it (from the LM's yes/no over its
   sparse tokens, the stored frame similarities and, with a clip verifier, its verdict on
   short clips around the most query-similar frames, whose dense tokens it reads), and the
   ``top_k`` most likely windows go on. ``level1="answer"`` (the paper): the windows are cut into segments of
   ``coarse_per_call``; the LLM answers each segment with a window span or ``Not Present.``.
2. **Level 2**, ``refine="clips"`` (the default): the clips the verifier judged at level 1
   that touch each kept window (no LM call, no new dense tokens read), best verdict first;
   a window no clip touches is its own clip (one whose clips all went to a likelier kept
   window has none). ``refine="windows"`` (always with
   ``level1="answer"``), with ``levels=3``: each kept span, widened by one fine window per
   side, is cut into fine windows whose sparse tokens the compressor computes from the
   span's dense tokens; the LLM answers a fine-window span.
3. **Dense level**: each kept span, widened by a few frames, is shown one token per frame
   (at most ``WindowConfig.dense`` frames per call; longer spans are split); the LLM answers
   a frame span. Recursion stops here: the span fits one dense window.

Every answer gets R = 1 / mean token entropy and P(Not), the probability of starting
``Not Present.``; at every level the ``top_k`` span answers survive, ranked by
R × (1 − P(Not)) (``ranking="entropy"``: R alone, as in the paper; ``"time"``: time order,
the ablation). The final moments are the last level's spans, scored the same way. A video no longer
than one dense window starts at the dense level.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from typing import Callable

import numpy as np
import torch

from ..errors import QueryError
from ..models.adapter import COARSE, DENSE, FINE
from ..models.answers import ParsedAnswer, grounding_prompt
from ..models.grounder import Generation, Grounder, VideoTokens
from ..store.archive_store import ArchiveStore
from ..store.catalog import VideoRecord
from ..store.files import VideoFeatures
from .grounding_types import (LEVEL1_MODES, LEVEL_KINDS, REFINE_MODES, GroundingNode, GroundingOptions,
                             GroundingResult)
from .moments import Moment
from .presence_level import (Level1Pass, VideoView, coarse_tokens, level1_passes, presence_level,
                             select_windows, window_presence_features)
from .search import SearchWarning, candidate_videos, readable_features

__all__ = ["GroundingOptions", "GroundingNode", "GroundingResult", "ground_video", "ground_videos",
           "ranked_moments", "window_presence_features", "LEVEL1_MODES", "REFINE_MODES"]

logger = logging.getLogger(__name__)


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> float:
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / max(1, min(a[1] - a[0], b[1] - b[0]))


def _score(node: GroundingNode, options: GroundingOptions) -> float:
    return node.confidence * (1 - node.p_absent) if options.ranking == "presence" else node.confidence


def _select(nodes: list[GroundingNode], options: GroundingOptions) -> list[GroundingNode]:
    """The ``top_k`` span answers, by R (or in time order), skipping near-duplicates:
    overlapping calls often answer the same span."""
    spans = [n for n in nodes if n.frames is not None]
    if options.ranking != "time":
        spans.sort(key=lambda n: -_score(n, options))
        if options.level1 == "presence" and all(n.presence is not None for n in spans):
            # where (the level-1 window's presence) decides first, the answer's confidence
            # within a window second: each window's best span, then each one's second...
            rank: dict[int | None, int] = {}
            order = []
            for n in spans:
                order.append((rank.get(n.window, 0), -(n.presence or 0.0)))
                rank[n.window] = rank.get(n.window, 0) + 1
            spans = [n for _, n in sorted(zip(order, spans), key=lambda x: x[0])]
    kept: list[GroundingNode] = []
    for node in spans:
        if len(kept) == options.top_k:
            break
        if all(_overlap(node.frames, k.frames) < 0.5 for k in kept):  # type: ignore[arg-type]
            node.kept = True
            kept.append(node)
    return kept


def _answer(grounder: Grounder, inputs: list[VideoTokens], prompt: str,
            options: GroundingOptions) -> list[Generation]:
    """One batched LLM pass. With ``force_spans``, if fewer than ``top_k`` calls start a span
    at their first token, the calls that abstained least surely are made to start "From"
    and answer a span, in the same pass."""
    gens = grounder.generate(inputs, [prompt] * len(inputs), options.max_new_tokens,
                             force_spans=options.top_k if options.force_spans else 0)
    for i, g in enumerate(gens):
        if g.forced and g.answer.is_span:
            note = f"forced after {g.forced_from!r}, P(Not)={g.p_absent:.2f}"
            answer = ParsedAnswer("span", g.answer.start, g.answer.end,
                                  "; ".join(x for x in (g.answer.note, note) if x))
            gens[i] = replace(g, answer=answer)
    return gens


def _nodes(view: VideoView, level: int, kind: int, calls: list[tuple[int, int, int]],
           generations: list[Generation]) -> list[GroundingNode]:
    """``calls[i] = (first frame shown, frames per index, last frame shown + 1)``."""
    nodes = []
    for (a, unit, b), gen in zip(calls, generations):
        frames = None
        span = None
        if gen.answer.is_span:
            start, end = gen.answer.start, gen.answer.end
            assert start is not None and end is not None  # a span answer has both
            fa = a + start * unit
            fb = min(b, a + (end + 1) * unit)
            frames = (fa, fb)
            span = view.seconds(fa, fb)
        verdict = gen.answer.kind + (f" ({gen.answer.note})" if gen.answer.note else "")
        nodes.append(GroundingNode(level, LEVEL_KINDS[kind], view.seconds(a, b), gen.text, verdict,
                                   span, gen.confidence, gen.p_absent, frames=frames))
    return nodes


def _coarse_level(grounder: Grounder, view: VideoView, sparse: np.ndarray | None,
                  prompt: str, options: GroundingOptions) -> list[GroundingNode]:
    w = grounder.config.windows
    sparse_t = coarse_tokens(grounder, view, sparse)
    inputs, calls = [], []
    for first in range(0, sparse_t.shape[0], w.coarse_per_call):
        chunk = sparse_t[first: first + w.coarse_per_call]
        a, b = first * w.coarse, min(view.frames, (first + len(chunk)) * w.coarse)
        inputs.append(VideoTokens(chunk.reshape(-1, chunk.shape[-1]), COARSE, chunk.shape[1],
                                  view.relevance(a, b, w.coarse)))
        calls.append((a, w.coarse, b))
    gens = _answer(grounder, inputs, prompt, options)
    return _nodes(view, 1, COARSE, calls, gens)


def _fine_level(grounder: Grounder, view: VideoView, parents: list[GroundingNode], prompt: str,
                options: GroundingOptions) -> None:
    w = grounder.config.windows
    inputs, calls, owners = [], [], []
    for parent in parents:
        a, b = parent.frames  # type: ignore[misc]
        a, b = max(0, a - w.fine), min(view.frames, b + w.fine)
        sparse = grounder.sparse_tokens(view.dense(a, b), w.fine, FINE)
        for first in range(0, sparse.shape[0], w.fine_per_call):
            chunk = sparse[first: first + w.fine_per_call]
            s, e = a + first * w.fine, min(b, a + (first + len(chunk)) * w.fine)
            inputs.append(VideoTokens(chunk.reshape(-1, chunk.shape[-1]), FINE, chunk.shape[1],
                                      view.relevance(s, e, w.fine)))
            calls.append((s, w.fine, e))
            owners.append(parent)
    gens = _answer(grounder, inputs, prompt, options)
    for owner, node in zip(owners, _nodes(view, owners[0].level + 1 if owners else 2, FINE, calls, gens)):
        node.presence, node.window = owner.presence, owner.window
        owner.children.append(node)


def _clip_level(view: VideoView, windows: list[GroundingNode], clips: list[tuple[int, int, float]]) -> None:
    """Level 2 with ``refine="clips"``: each kept window's children are the verified clips
    touching it, best verdict first (a clip touching two kept windows goes to the likelier
    one; the other gets no copy), scored by the verifier's probability; a window no clip
    touches is its own child. No LM call."""
    claimed: set[tuple[int, int]] = set()
    for window in windows:  # most likely first
        a, b = window.frames  # type: ignore[misc]
        touching = [(ca, cb, logit) for ca, cb, logit in clips if ca < b and cb > a]
        for ca, cb, logit in sorted(touching, key=lambda c: -c[2]):
            if (ca, cb) in claimed:
                continue
            claimed.add((ca, cb))
            p = 1.0 / (1.0 + math.exp(-logit))
            window.children.append(GroundingNode(
                2, "clip", view.seconds(ca, cb), f"verifier logit {logit:+.2f}", "span",
                view.seconds(ca, cb), p, 1.0 - p, frames=(ca, cb), presence=window.presence,
                window=window.window))
        if not touching:
            window.children.append(GroundingNode(
                2, "clip", window.shown, "no verified clip: the whole window", "span", window.shown,
                0.5, 0.5, frames=window.frames, presence=window.presence, window=window.window))


def _dense_calls(a: int, b: int, size: int) -> list[tuple[int, int]]:
    """Split frames ``[a, b)`` into pieces of at most ``size`` frames overlapping by a quarter."""
    if b - a <= size:
        return [(a, b)]
    stride = max(1, size * 3 // 4)
    starts = list(range(a, b - size, stride)) + [b - size]
    return [(s, s + size) for s in starts]


def _dense_level(grounder: Grounder, view: VideoView, parents: list[GroundingNode] | None,
                 prompt: str, options: GroundingOptions, level: int) -> list[GroundingNode]:
    w = grounder.config.windows
    spans = [(0, view.frames)] if parents is None else [
        (max(0, p.frames[0] - options.dense_margin), min(view.frames, p.frames[1] + options.dense_margin))  # type: ignore[index]
        for p in parents]
    inputs, calls, owners = [], [], []
    for n, (a, b) in enumerate(spans):
        for s, e in _dense_calls(a, b, w.dense):
            inputs.append(VideoTokens(view.dense(s, e), DENSE, 1, view.relevance(s, e, 1)))
            calls.append((s, 1, e))
            owners.append(None if parents is None else parents[n])
    gens = _answer(grounder, inputs, prompt, options)
    nodes = _nodes(view, level, DENSE, calls, gens)
    for owner, node in zip(owners, nodes):
        if owner is not None:
            node.presence, node.window = owner.presence, owner.window
            owner.children.append(node)
    return nodes


@torch.no_grad()
def ground_video(grounder: Grounder, video: VideoRecord, features: VideoFeatures,
                 sparse: np.ndarray | None, query: str, query_vector: np.ndarray,
                 options: GroundingOptions = GroundingOptions(),
                 level1: Level1Pass | None = None,
                 windows_kept: int | None = None, level1_seconds: float = 0.0) -> GroundingResult:
    """Run the recursion on one video. ``sparse`` are its cached level-1 tokens
    ``[windows, n, hidden]`` for this grounder's adapter (None: computed here);
    ``query_vector`` is the query's normalised CLIP text embedding.

    With ``level1="presence"``: ``level1`` holds the video's level-1 pass (the presence
    features of its coarse windows and the verified clips) when already computed
    (:func:`ground_videos` batches several videos' together), ``windows_kept`` how many
    level-1 windows go on (default ``top_k``; 0: none)."""
    if not query.strip():
        raise QueryError("the text query is empty")
    grounder.eval()
    prompt = grounding_prompt(query)
    view = VideoView(grounder, features, video.fps, np.asarray(query_vector, dtype=np.float32),
                     video.duration)
    w = grounder.config.windows
    timings: dict[int, float] = {}
    t0 = time.perf_counter()
    if view.frames == 0:
        return GroundingResult(video, query, [], [], 0, 0, {})
    previous: list[list[GroundingNode]] = []  # kept nodes of each level above the last, best first

    def windows() -> list[GroundingNode]:  # level 1 in presence mode: a node per coarse window
        nonlocal level1
        if level1 is None:
            level1 = level1_passes(grounder, [view], [sparse], query, options.presence_shortlist)[0]
            assert level1 is not None  # the view has frames
        view.read |= level1.read
        return presence_level(grounder, view, level1.features, level1.asked)

    if view.frames <= w.dense and options.level1 == "presence" and windows_kept == 0:
        # a short video whose one window did not make the archive-wide cut: no LM answers,
        # the window itself is its only (filler) moment
        tree = windows()
        final = []
        timings[1] = time.perf_counter() - t0 + level1_seconds
    elif view.frames <= w.dense:
        tree = _dense_level(grounder, view, None, prompt, options, level=1)
        if options.level1 == "presence":  # one window: its presence is the whole video's
            window = windows()[0]
            for node in tree:
                node.presence, node.window = window.presence, 0
        final = _select(tree, options)
        timings[1] = time.perf_counter() - t0 + level1_seconds
    else:
        if options.level1 == "presence":
            tree = windows()
            final = select_windows(tree, options.top_k if windows_kept is None else windows_kept)
        else:
            tree = _coarse_level(grounder, view, sparse, prompt, options)
            final = _select(tree, options)
        timings[1] = time.perf_counter() - t0 + level1_seconds
        # the levels below level 1, in order
        if options.refines_clips:
            below = ("clip", "dense")[:options.levels - 1]
        else:
            below = ("fine", "dense")[3 - options.levels:]
        level = 1
        for step in below:
            if not final:
                break
            t0 = time.perf_counter()
            level += 1
            previous.append(final)
            if step == "fine":
                _fine_level(grounder, view, final, prompt, options)
                final = _select([c for p in final for c in p.children], options)
            elif step == "clip":
                _clip_level(view, final, level1.clips if level1 is not None else [])
                final = _select([c for p in final for c in p.children], options)
            else:
                final = _select(_dense_level(grounder, view, final, prompt, options, level), options)
            timings[level] = time.perf_counter() - t0
    if options.level1 == "presence" and tree and tree[0].kind == "coarse":  # unkept windows fill last
        previous.insert(0, [n for n in sorted(tree, key=lambda n: -(n.presence or 0.0)) if not n.kept])
    threshold = options.min_presence
    if threshold is None:
        threshold = grounder.presence_calibration.threshold if options.level1 == "presence" else 0.0
    moments = _moments(video, final, previous, options, threshold)
    return GroundingResult(video, query, moments, tree, view.frames, int(view.read.sum()), timings)


def _moments(video: VideoRecord, final: list[GroundingNode], previous: list[list[GroundingNode]],
             options: GroundingOptions, min_presence: float) -> list[Moment]:
    """The final spans as moments, best first; fewer than ``top_k`` are filled up with the kept
    spans of the levels above that no moment overlaps yet (coarser, so scored lower), then
    those under ``min_presence`` are dropped."""
    def moment(node: GroundingNode, score: float) -> Moment:
        start, end = node.span  # type: ignore[misc]
        return Moment(video=video.name, start=start, end=end, score=score, peak=(start + end) / 2,
                      video_id=video.id, path=video.path, presence=node.presence)

    presence_mode = options.level1 == "presence" and all(n.presence is not None for n in final)
    moments = []
    best: dict[int | None, float] = {}
    for node in final:
        if presence_mode:
            # the window's presence, shared out among its spans by their answers' confidence
            top = best.setdefault(node.window, max(_score(node, options), 1e-9))
            score = (node.presence or 0.0) * min(1.0, _score(node, options) / top)
        else:
            score = _score(node, options)
        moments.append(moment(node, score))
    taken = [n.frames for n in final if n.frames is not None]
    lowest = min((m.score for m in moments), default=1.0)
    wanted = options.moments or options.top_k
    for node in (n for level in reversed(previous) for n in level):  # the finest level first
        if len(moments) >= wanted:
            break
        if node.frames is None or any(_overlap(node.frames, t) > 0 for t in taken):
            continue
        taken.append(node.frames)
        base = node.presence if presence_mode and node.presence is not None else _score(node, options)
        moments.append(moment(node, min(base, lowest) * 0.5))
        lowest = moments[-1].score
    moments.sort(key=lambda m: -m.score)
    return [m for m in moments[:wanted] if m.presence is None or m.presence >= min_presence]


def ranked_moments(results: list[GroundingResult], top_k: int) -> list[Moment]:
    """The best ``top_k`` moments of several videos' results, by score."""
    return sorted((m for r in results for m in r.moments), key=lambda m: -m.score)[:top_k]


def ground_videos(store: ArchiveStore, grounder: Grounder,
                  sparse_tokens: Callable[[VideoRecord, VideoFeatures], np.ndarray | None],
                  query: str, query_vector: np.ndarray, videos: list[VideoRecord] | None,
                  options: GroundingOptions, candidates: int,
                  warnings: list[SearchWarning] | None = None) -> list[GroundingResult]:
    """Ground ``query`` in each of ``videos``, or (None) in the ``candidates`` videos that
    CLIP similarity ranks best; videos whose files are damaged are left out and reported.

    With ``level1="presence"`` the coarse windows of every video are scored in one batched
    pass, and the ``top_k`` windows with the highest presence across all the videos go on to
    the finer levels (presence is calibrated, so windows of different videos compare)."""
    if videos is None:
        videos = candidate_videos(store, query_vector, candidates, warnings)
    loaded = [(record, features, sparse_tokens(record, features))
              for record, features in readable_features(store, videos, warnings)]
    if options.level1 != "presence" or not query.strip() or not loaded:
        return [ground_video(grounder, record, features, sparse, query, query_vector, options)
                for record, features, sparse in loaded]
    vector = np.asarray(query_vector, dtype=np.float32)
    t0 = time.perf_counter()
    views = [VideoView(grounder, f, r.fps, vector) for r, f, _ in loaded]
    with torch.no_grad():
        passes = level1_passes(grounder, views, [s for _, _, s in loaded], query, options.presence_shortlist)
    # how many of the archive-wide best windows fall in each video
    scored = []
    for n, level1 in enumerate(passes):
        if level1 is not None:
            scored += [(float(p), n) for p in grounder.presence_calibration.probability(level1.features)]
    kept = [0] * len(loaded)
    for _, n in sorted(scored, reverse=True)[:options.top_k]:
        kept[n] += 1
    shared = (time.perf_counter() - t0) / max(1, len(scored))  # the pass's time, per window
    return [ground_video(grounder, record, features, sparse, query, query_vector, options,
                         level1=level1, windows_kept=k,
                         level1_seconds=shared * (len(level1.features) if level1 is not None else 0))
            for (record, features, sparse), level1, k in zip(loaded, passes, kept)]
