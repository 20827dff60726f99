"""The level-1 clip verifier: proposals, window maxima, checkpoints, what level 1 reads."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from test_grounding_units import _fake_video, _ScriptedGrounder
from vidseek.errors import ConfigError
from vidseek.indexer.sparse import compute_sparse_tokens
from vidseek.models.adapter import DENSE
from vidseek.models.adapter import AdapterConfig
from vidseek.models.grounder import Grounder, GrounderConfig
from vidseek.models.presence import PRESENCE_FEATURES, PresenceCalibration
from vidseek.models.verifier import NO_PROPOSAL, VerifierConfig, clip_proposals, window_maxima
from vidseek.query.grounded import GroundingOptions, ground_video
from vidseek.query.presence_level import window_presence_features


def test_proposals_surround_the_most_similar_frames():
    sims = np.zeros(100)
    sims[[10, 11, 40, 70]] = [0.9, 0.8, 0.7, 0.6]
    # 4 % of 100 frames: the four peaks; frames 10 and 11 merge; one frame of context a side
    assert clip_proposals(sims, 0.04, 1, 32) == [(9, 13), (39, 42), (69, 72)]
    assert clip_proposals(sims, 0.04, 0, 32) == [(10, 12), (40, 41), (70, 71)]
    assert clip_proposals(sims, 0.01, 2, 32) == [(8, 13)]  # at least one frame, the best
    # long runs are cut into pieces of at most max_frames, in time order
    assert clip_proposals(np.arange(100.0), 0.5, 0, 20) == [(50, 70), (70, 90), (90, 100)]
    assert clip_proposals(np.zeros(0), 0.05, 1, 32) == []
    edge = np.zeros(10)
    edge[[0, 9]] = 1
    assert clip_proposals(edge, 0.2, 3, 32) == [(0, 4), (6, 10)]  # clipped at the ends


def test_window_maxima_take_the_best_clip_touching_each_window():
    best = window_maxima([(5, 8), (55, 65), (58, 62), (130, 131)], np.array([1.0, 2.0, 3.0, -4.0]), 60, 4)
    assert best.tolist() == [3.0, 3.0, -4.0, NO_PROPOSAL]  # the 55-65 clip touches windows 0 and 1


def _grounder(tiny_llm_dir, verifier: bool) -> Grounder:
    g = Grounder.create(GrounderConfig(llm=str(tiny_llm_dir), tuning="full", adapter=AdapterConfig(
        embed_dim=16, cells=4, cell_width=8, hidden=32, heads=2, fine_tokens=2, coarse_tokens=4)))
    if verifier:
        g.add_verifier(VerifierConfig(width=32, heads=2))
    return g


def test_verifier_checkpoints_round_trip_and_old_ones_load(tiny_llm_dir, tmp_path):
    g = _grounder(tiny_llm_dir, verifier=True)
    frames = [torch.randn(5, 32), torch.randn(9, 32)]
    sims = [torch.rand(5), torch.rand(9)]
    with torch.no_grad():
        expected = g.verify("a small red circle moves left", frames, sims)
    g.save(tmp_path / "ckpt")
    loaded = Grounder.load(tmp_path / "ckpt")
    assert loaded.config.verifier == VerifierConfig(width=32, heads=2)
    with torch.no_grad():
        assert torch.allclose(loaded.verify("a small red circle moves left", frames, sims), expected)
        assert not torch.allclose(loaded.verify("a small red circle moves right", frames, sims), expected)
    # manifests written before the verifier have no such key
    data = g.config.to_dict()
    del data["verifier"]
    assert GrounderConfig.from_dict(data).verifier is None
    assert _grounder(tiny_llm_dir, verifier=False).verifier is None


def test_calibrations_fitted_before_the_verifier_still_load():
    old = {"weights": [0.3, 0.4, 0.3, 0.2], "bias": -6.0, "calibrated": True, "fitted_on": "x",
           "threshold": 0.07, "features": list(PRESENCE_FEATURES[:4])}
    cal = PresenceCalibration.from_dict(old)
    x = np.random.default_rng(0).normal(size=(6, 5))
    manual = 1 / (1 + np.exp(-(x[:, :4] @ np.array(old["weights"]) + old["bias"])))
    assert np.allclose(cal.probability(x), manual)  # the verifier column is not read
    assert PresenceCalibration.from_dict(cal.to_dict()) == cal
    new = PresenceCalibration((0.1,) * 5, -1.0)
    assert new.to_dict()["features"] == list(PRESENCE_FEATURES)
    with pytest.raises(ValueError):
        PresenceCalibration.from_dict({**old, "features": ["peak", "lm_logit", "peak_z", "mean_z"]})


@pytest.mark.parametrize("verifier", [False, True])
def test_level1_reads_dense_tokens_of_the_proposals_only(tiny_llm_dir, verifier):
    g = _grounder(tiny_llm_dir, verifier)
    record, features = _fake_video(1000, 4, 8, 16)
    query = np.full(16, 0.25, dtype=np.float32)
    features.embeddings[130:171] = query  # the 5 % most similar frames: 41 here, 9 there
    features.embeddings[610:619] = query
    x = window_presence_features(g, features, 1.0, None, "a red circle", query)
    windows = math.ceil(1000 / g.config.windows.coarse)
    assert x.shape == (windows, len(PRESENCE_FEATURES))
    cached, _ = compute_sparse_tokens(g, features, 1.0)  # as ingest stores them
    result = ground_video(g, record, features, cached.tokens, "a red circle", query, GroundingOptions(levels=1))
    if not verifier:
        assert (x[:, 4] == 0).all() and result.dense_fraction == 0.0  # sparse tokens only
        return
    c = g.verifier.config
    ranges = clip_proposals(features.embeddings @ query, c.proposal_fraction, c.proposal_pad, c.max_frames)
    touched = {w for a, b in ranges for w in range(a // 60, (b - 1) // 60 + 1)}
    assert touched == {2, 10}
    assert all((x[w, 4] > NO_PROPOSAL) == (w in touched) for w in range(windows))
    read = sum(b - a for a, b in ranges) / 1000
    assert result.dense_fraction == pytest.approx(read)  # the proposals, nothing else
    assert 0 < read <= c.proposal_fraction * (1 + 2 * c.proposal_pad)
    assert all(("verifier " in n.answer) == (n.window in touched) for n in result.tree)
    assert all(("no clip proposed" in n.answer) == (n.window not in touched) for n in result.tree)


def _two_similar_stretches() -> tuple:
    record, features = _fake_video(1000, 4, 8, 16)
    query = np.full(16, 0.25, dtype=np.float32)
    features.embeddings[130:171] = query
    features.embeddings[610:619] = query
    return record, features, query


def test_refine_clips_grounds_the_verified_clips_not_whole_windows(tiny_llm_dir):
    g = _ScriptedGrounder(_grounder(tiny_llm_dir, verifier=True))
    record, features, query = _two_similar_stretches()
    c = g.verifier.config
    ranges = clip_proposals(features.embeddings @ query, c.proposal_fraction, c.proposal_pad, c.max_frames)
    assert len(ranges) == 3  # 129-172 cut at 32 frames, and 609-620
    logits = torch.tensor([-1.0, 0.5, 2.0])  # the verifier prefers the short stretch
    g.verify = lambda q, frames, sims: logits[:len(frames)]
    options = GroundingOptions(levels=2, top_k=3, refine="clips", min_presence=0.0)
    cached, _ = compute_sparse_tokens(g.real, features, 1.0)  # as ingest stores them
    clips = ground_video(g, record, features, cached.tokens, "a red circle", query, options)
    assert g.calls == []  # the clips need no LM answer
    kept = [n for n in clips.tree if n.kept]
    assert len(kept) == 3
    claimed: set = set()
    by_range = dict(zip(ranges, logits.tolist()))
    for window in kept:  # most likely first: the proposals touching it, best first, else itself
        a, b = window.frames
        touching = [r for r in ranges if r[0] < b and r[1] > a]
        mine = sorted((r for r in touching if r not in claimed), key=lambda r: -by_range[r])
        claimed |= set(mine)
        assert [n.frames for n in window.children] == (mine if touching else [(a, b)])
        assert all(n.kind == "clip" and n.level == 2 for n in window.children)
    read = sum(b - a for a, b in ranges) / 1000
    assert clips.dense_fraction == pytest.approx(read)  # what level 1 read, nothing more
    spans = {(round(m.start), round(m.end)) for m in clips.moments}
    assert (609, 620) in spans  # the verifier's favourite

    g.calls.clear()
    dense = ground_video(g, record, features, cached.tokens, "a red circle", query, replace(options, levels=3))
    assert g.calls and all(kind == DENSE for kind, _ in g.calls)
    margin = options.dense_margin
    final = [n for n in dense.tree if n.kept]
    shown = [c.frames for w in final for c in w.children if c.kept]
    assert all(n <= (b - a) + 2 * margin for (_, n), (a, b) in zip(g.calls, shown))
    # the dense level reads only around the kept clips (a window without one is its own)
    allowed = np.zeros(1000, bool)
    for a, b in ranges + [(max(0, a - margin), b + margin) for a, b in shown]:
        allowed[a:b] = True
    assert dense.dense_frames_read <= allowed.sum() < 200
    assert all(m.start >= 0 for m in dense.moments) and len(dense.moments) == 3


def test_refine_clips_without_a_verifier_refines_whole_windows(tiny_llm_dir):
    g = _ScriptedGrounder(_grounder(tiny_llm_dir, verifier=False))
    record, features, query = _two_similar_stretches()
    base = GroundingOptions(top_k=3, min_presence=0.0)
    windows = ground_video(g, record, features, None, "q", query, replace(base, levels=2, refine="windows"))
    clips = ground_video(g, record, features, None, "q", query, replace(base, levels=3, refine="clips"))
    kept = [n for n in clips.tree if n.kept]
    assert all([c.frames for c in w.children] == [w.frames] for w in kept)
    assert [(m.start, m.end) for m in clips.moments] == [(m.start, m.end) for m in windows.moments]
    assert GroundingOptions().refine == "clips"
    assert GroundingOptions().refines_clips
    assert not GroundingOptions(refine="clips", level1="answer").refines_clips  # spans, not windows
    with pytest.raises(ConfigError):
        GroundingOptions(refine="spans")
