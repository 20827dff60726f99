"""Grounder building blocks: answer parser, entropy, captions, relevance, recursion control."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

import vidseek

from vidseek.store.dense_tokens import DenseTokens
from vidseek.indexer.sparse import compute_sparse_tokens
from vidseek.models.adapter import AdapterConfig, HierarchicalAdapter, relevance_features
from vidseek.models.answers import (
    confidence,
    event_phrase,
    grounding_prompt,
    mean_token_entropy,
    parse_answer,
    presence_prompt,
)
from vidseek.models.grounder import Generation, VideoTokens
from vidseek.query.grounded import GroundingOptions, ground_video
from vidseek.store.catalog import VideoRecord
from vidseek.store.files import VideoFeatures
from vidseek.train.grounding_data import event_frames, reversed_caption


@pytest.mark.parametrize("text, n, expected", [
    ("From 3 to 7.", 10, ("span", 3, 7, "")),
    ("From 3 to 7 .", 10, ("span", 3, 7, "")),  # word-level tokenizers space the full stop
    ("from 7 to 3.", 10, ("span", 3, 7, "swapped a reversed span")),
    ("From 8 to 14.", 10, ("span", 8, 9, "clamped to 0-9")),
    ("From -2 to 4.", 10, ("span", 0, 4, "clamped to 0-9")),
    ("From 12 to 15.", 10, ("invalid", None, None, "span 12-15 lies outside 0-9")),
    ("Not Present.", 10, ("absent", None, None, "")),
    ("not present", 10, ("absent", None, None, "")),
    ("yes", 1, ("yes", None, None, "")),
    ("No.", 1, ("no", None, None, "")),
    ("", 5, ("invalid", None, None, "empty answer")),
    ("From to .", 5, ("invalid", None, None, "not an answer: 'From to .'")),
    ("21 21 21", 5, ("invalid", None, None, "not an answer: '21 21 21'")),
])
def test_parse_answer(text, n, expected):
    a = parse_answer(text, n)
    assert (a.kind, a.start, a.end, a.note) == expected


def test_prompts_follow_method():
    assert grounding_prompt("A small red circle moves left.") == \
        " when can we see the small red circle moves left happening?"
    assert presence_prompt("the goalkeeper drops the ball") == " Does the goalkeeper drops the ball happen?"
    assert event_phrase("  an   owl  ") == "owl"


def test_entropy_matches_hand_computation():
    # step 1: p = (1/2, 1/4, 1/4) -> H = 1.5 ln 2; step 2: uniform over 4 -> H = ln 4
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25, 1e-30], [0.25, 0.25, 0.25, 0.25]]))
    expected = (1.5 * math.log(2) + math.log(4)) / 2
    assert mean_token_entropy(logits) == pytest.approx(expected, rel=1e-5)
    assert confidence(expected) == pytest.approx(1 / expected)
    assert confidence(0.0) == 1e6  # a certain answer stays finite


def test_reversed_captions():
    assert reversed_caption("a small red circle moves left") == "a small red circle moves right"
    assert reversed_caption("a large blue square appears") == "a large blue square disappears"
    assert reversed_caption("a small red circle turns blue") == "a small blue circle turns red"
    assert reversed_caption("a small red circle meets a large blue square") is None
    assert reversed_caption("a small red circle bounces") is None  # it does move up and down


def test_a_bouncing_object_is_never_asked_whether_it_moves_up_or_down():
    from vidseek.models.grounder import WindowConfig
    from vidseek.train.grounding_data import ExampleSampler, TrainingVideo

    bounce, up = "a small red circle bounces", "a small red circle moves up"
    video = TrainingVideo("v", np.arange(40.0), np.zeros((40, 4), np.float32), np.zeros((40, 1, 2), np.float32),
                          [(bounce, 0, 39), (up, 45, 46), ("a large blue square appears", 45, 46)])
    sampler = ExampleSampler([video], WindowConfig(), seed=0)
    asked = {sampler._negative_query(video, 0, 40) for _ in range(200)}
    assert asked == {"a large blue square appears"}  # never "moves up" of the bouncing circle


def test_motion_channel_reads_the_previous_frame():
    """With ``motion`` a dense token sees its grid's change since the frame before; a slice
    given that frame's grid gets the same tokens as the whole video (ingest computes sparse
    tokens from whole videos, queries and training from slices)."""
    torch.manual_seed(0)
    adapter = HierarchicalAdapter(AdapterConfig(embed_dim=16, cells=4, cell_width=8, hidden=32, motion=True)).eval()
    emb, grid = torch.randn(10, 16), torch.randn(10, 4, 8)
    with torch.no_grad():
        whole = adapter.dense(emb, grid)
        assert torch.allclose(adapter.dense(emb[4:], grid[4:], grid[3]), whole[4:], atol=1e-5)
        assert not torch.allclose(adapter.dense(emb[4:], grid[4:])[0], whole[4], atol=1e-3)  # no change shown
        moved = grid.clone()
        moved[5] += torch.randn(4, 8)  # frame 5 changes: its token and frame 6's (changed from 5) move, no other
        changed = (adapter.dense(emb, moved) - whole).abs().amax(1) > 1e-4
    assert changed.tolist() == [i in (5, 6) for i in range(10)]


def test_motion_grounder_tokens_agree_however_the_video_is_cut(tiny_llm_dir, monkeypatch):
    """Ingest computes sparse tokens chunk by chunk, queries read dense tokens of slices:
    with the motion channel both must see each slice's previous frame."""
    import vidseek.indexer.sparse as sparse_module
    from vidseek.models.adapter import COARSE
    from vidseek.models.grounder import Grounder, GrounderConfig
    from vidseek.query.presence_level import VideoView

    g = Grounder.create(GrounderConfig(llm=str(tiny_llm_dir), tuning="full", adapter=AdapterConfig(
        embed_dim=16, cells=4, cell_width=8, hidden=32, heads=2, fine_tokens=2, coarse_tokens=4, motion=True)))
    record, features = _fake_video(300, 4, 8, 16)
    with torch.no_grad():
        whole = g.dense_tokens(features.embeddings, features.dense.grid())
        view = VideoView(g, features, 1.0, features.embeddings[0])
        assert torch.allclose(view.dense(130, 170), whole[130:170], atol=1e-5)
        assert not torch.allclose(g.dense_tokens(features.embeddings[130:170], features.dense.grid(130, 170)),
                                  whole[130:170], atol=1e-3)  # without the previous frame they differ
        monkeypatch.setattr(sparse_module, "_CHUNK_WINDOWS", 1)  # a chunk per window
        chunked, _ = compute_sparse_tokens(g, features, 1.0)
        expected = g.sparse_tokens(whole, g.config.windows.coarse, COARSE)
    assert np.allclose(chunked.tokens.astype(np.float32), expected.numpy(), atol=1e-2)  # stored as float16


def test_checkpoints_from_before_the_motion_channel_load(tiny_llm_dir):
    from vidseek.models.grounder import Grounder, GrounderConfig

    config = GrounderConfig(llm=str(tiny_llm_dir), tuning="full", adapter=AdapterConfig(
        embed_dim=16, cells=4, cell_width=8, hidden=32, heads=2, fine_tokens=2, coarse_tokens=4))
    data = config.to_dict()
    del data["adapter"]["motion"]  # as such manifests were written
    old = GrounderConfig.from_dict(data)
    assert old.adapter.motion is False
    state = Grounder.create(config).adapter.state_dict()
    Grounder.create(old).adapter.load_state_dict(state, strict=True)  # no weight missing or extra


def test_event_frames_cover_the_span():
    times = np.arange(10, dtype=np.float64)  # 1 fps
    assert event_frames(times, 2.5, 5.0) == (2, 4)
    assert event_frames(times, 0.0, 0.4) == (0, 0)
    assert event_frames(times, 8.2, 30.0) == (8, 9)


def test_relevance_features():
    sims = torch.tensor([0.1, 0.2, 0.9, 0.1, 0.1, 0.3])
    feats = relevance_features(sims, 2)
    assert feats.shape == (3, 3)
    assert torch.allclose(feats[:, 0], torch.tensor([2.0, 9.0, 3.0]))
    assert int(feats[:, 1].argmax()) == 1 and int(feats[:, 2].argmax()) == 1
    assert relevance_features(sims[:5], 2).shape == (3, 3)  # a short last window


class _ScriptedGrounder:
    """A grounder stand-in that answers a fixed span: tests the recursion's control flow."""

    def __init__(self, real):
        self.real = real
        self.config = real.config
        self.device = real.device
        self.calls: list[tuple[int, int]] = []
        self.presence_calls: list[int] = []

    def eval(self):
        return self

    @property
    def verifier(self):
        return self.real.verifier

    def verify(self, query, frames, similarity):
        return self.real.verify(query, frames, similarity)

    def dense_tokens(self, emb, grid, previous=None):
        return self.real.dense_tokens(emb, grid, previous)

    def video_dense_tokens(self, embeddings, grids, a, b):
        return self.real.video_dense_tokens(embeddings, grids, a, b)

    def sparse_tokens(self, dense, window, kind):
        return self.real.sparse_tokens(dense, window, kind)

    @property
    def presence_calibration(self):
        return self.real.presence_calibration

    def presence_logits(self, videos: list[VideoTokens], prompts):
        """Window i's yes/no logit: i / 4 (later windows more likely), one call per pass."""
        self.presence_calls.append(len(videos))
        return torch.arange(len(videos), dtype=torch.float32) / 4

    def generate(self, videos: list[VideoTokens], prompts, max_new_tokens=12, force_spans=0):
        out = []
        for v in videos:
            self.calls.append((v.kind, v.n_indices))
            n = v.n_indices
            text = f"From {n // 2} to {min(n - 1, n // 2 + 1)}."
            out.append(Generation(text, parse_answer(text, n), 0.5, 2.0 + 0.01 * n, 0.1))
        return out


def _fake_video(frames: int, cells: int, width: int, dim: int) -> tuple[VideoRecord, VideoFeatures]:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(frames, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    side = int(math.isqrt(cells))
    kept = np.ones((frames, side, side), bool)
    tokens = rng.normal(size=(frames * cells, width)).astype(np.float16)
    features = VideoFeatures(np.arange(frames, dtype=np.float64), emb, DenseTokens(tokens, kept))
    record = VideoRecord(1, "/x.mp4", "x.mp4", "h", 1, float(frames), 1.0, 25.0, 64, 64, "h264",
                         frames, 1.0, "k", "indexed", 0.0, 0.0)
    return record, features


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_recursion_nests_and_terminates(tiny_grounder, levels):
    g = _ScriptedGrounder(tiny_grounder)
    a = g.config.adapter
    record, features = _fake_video(1000, a.cells, a.cell_width, a.embed_dim)
    cached, _ = compute_sparse_tokens(tiny_grounder, features, 1.0)  # as ingest stores them
    result = ground_video(g, record, features, cached.tokens, "a red circle", features.embeddings[0],
                          GroundingOptions(levels=levels, top_k=2, level1="answer"))
    w = g.config.windows
    assert [c[0] for c in g.calls[: len(result.tree)]] == [2] * len(result.tree)  # level 1 = coarse
    assert len(result.tree) == math.ceil(math.ceil(1000 / w.coarse) / w.coarse_per_call)

    def check(node, depth):
        assert node.level == depth
        for child in node.children:
            # a child is shown its parent's answered span, widened by a margin at most
            assert node.span[0] - w.fine <= child.shown[0] and child.shown[1] <= node.span[1] + w.fine
            assert child.span[0] >= child.shown[0] and child.span[1] <= child.shown[1]
            check(child, depth + 1)
        if not node.children:
            return depth
        return max(check(c, depth + 1) for c in node.children)

    depths = [check(n, 1) for n in result.tree]
    assert max(depths) == levels
    kinds = {1: {"coarse"}, 2: {"coarse", "dense"}, 3: {"coarse", "fine", "dense"}}[levels]

    def collect(node):
        yield node.kind
        for c in node.children:
            yield from collect(c)

    assert {k for n in result.tree for k in collect(n)} == kinds
    assert 1 <= len(result.moments) <= 2
    if levels > 1:  # final spans are frame spans of the dense level: a few seconds long
        assert all(m.end - m.start <= 3 for m in result.moments)
        assert 0 < result.dense_fraction < 0.35  # 2 windows of 60 frames + margins, of 1000
    else:
        assert result.dense_fraction == 0.0  # level 1 reads the cached sparse tokens only


@pytest.mark.parametrize("levels", [1, 3])
def test_presence_level1_scores_every_window_in_one_pass(tiny_grounder, levels):
    """level1="presence": one batched yes/no pass over every coarse window, the top_k windows
    by presence go on, and each finer node inherits its window's presence."""
    g = _ScriptedGrounder(tiny_grounder)
    a = g.config.adapter
    record, features = _fake_video(1000, a.cells, a.cell_width, a.embed_dim)
    cached, _ = compute_sparse_tokens(tiny_grounder, features, 1.0)  # as ingest stores them
    result = ground_video(g, record, features, cached.tokens, "a red circle", features.embeddings[0],
                          GroundingOptions(levels=levels, top_k=2, presence_shortlist=0))
    windows = math.ceil(1000 / g.config.windows.coarse)
    assert g.presence_calls == [windows]  # one pass, every window
    assert len(result.tree) == windows and all(n.kind == "coarse" for n in result.tree)
    presence = [n.presence for n in result.tree]
    assert all(0 < p < 1 for p in presence)
    kept = [n.window for n in result.tree if n.kept]
    assert sorted(kept) == sorted(np.argsort(presence)[-2:].tolist())
    # level 1 reads only the cached sparse tokens; finer levels read the kept windows' frames
    assert (result.dense_fraction == 0.0) if levels == 1 else (0 < result.dense_fraction < 0.35)
    for node in result.tree:
        stack = list(node.children)
        assert node.kept or not stack  # only kept windows are refined
        while stack:
            child = stack.pop()
            assert child.presence == node.presence and child.window == node.window
            stack += child.children
    # moments carry their window's presence, best first
    assert result.moments and all(m.presence in presence for m in result.moments)
    assert [m.score for m in result.moments] == sorted((m.score for m in result.moments), reverse=True)


def test_presence_shortlist_asks_the_lm_about_the_best_windows_only(tiny_grounder):
    """presence_shortlist=N: the LM's yes/no runs on the N windows the other signals rank
    best; every other window gets the lowest logit it gave and says it was not asked."""
    from vidseek.query.presence_level import VideoView, level1_passes

    g = _ScriptedGrounder(tiny_grounder)
    a = g.config.adapter
    record, features = _fake_video(1000, a.cells, a.cell_width, a.embed_dim)
    cached, _ = compute_sparse_tokens(tiny_grounder, features, 1.0)
    query = features.embeddings[0]
    windows = math.ceil(1000 / g.config.windows.coarse)
    result = ground_video(g, record, features, cached.tokens, "a red circle", query,
                          GroundingOptions(levels=1, top_k=2, presence_shortlist=5))
    assert g.presence_calls == [5]
    asked = [n for n in result.tree if "not asked" not in n.answer]
    assert len(asked) == 5 and len(result.tree) == windows
    # the asked windows are the best by the LM-free signals (the LM logit enters linearly)
    view = VideoView(g, features, 1.0, np.asarray(query, dtype=np.float32))
    blank = level1_passes(g, [view], [cached.tokens], "a red circle", shortlist=0)[0]
    assert blank is not None
    free = blank.features.copy()
    free[:, 0] = 0.0
    best = set(np.argsort(-g.presence_calibration.probability(free), kind="stable")[:5].tolist())
    assert {n.window for n in asked} == best
    # the scripted LM gives window i of the asked list the logit i / 4: the floor is 0
    (full,) = [p for p in level1_passes(g, [view], [cached.tokens], "a red circle", shortlist=5)]
    assert full is not None and full.asked is not None and full.asked.sum() == 5
    assert np.all(full.features[~full.asked, 0] == 0.0)
    assert sorted(full.features[full.asked, 0].tolist()) == [0.0, 0.25, 0.5, 0.75, 1.0]
    # a shortlist as long as the video asks about every window, like 0
    g.presence_calls.clear()
    ground_video(g, record, features, cached.tokens, "a red circle", query,
                 GroundingOptions(levels=1, top_k=2, presence_shortlist=windows))
    assert g.presence_calls == [windows]
    with pytest.raises(vidseek.ConfigError):
        GroundingOptions(presence_shortlist=-1)


def test_presence_top_k_is_honest_and_min_presence_abstains(tiny_grounder):
    g = _ScriptedGrounder(tiny_grounder)
    a = g.config.adapter
    record, features = _fake_video(1000, a.cells, a.cell_width, a.embed_dim)
    query = features.embeddings[0]
    options = GroundingOptions(levels=3).with_results(8)
    assert options.top_k == 5 and options.moments == 8
    result = ground_video(g, record, features, None, "x", query, options)
    assert len(result.moments) == 8  # 5 refined spans + the next windows by presence
    spans = sorted((m.start, m.end) for m in result.moments)
    assert all(b[0] >= a[1] - 1e-9 or b[1] <= a[0] for a, b in zip(spans, spans[1:]))  # disjoint
    # whole level-1 windows fill last, the most likely first
    windows = [m.presence for m in result.moments if m.end - m.start >= g.config.windows.coarse - 1e-6]
    assert windows and windows == sorted(windows, reverse=True)
    threshold = sorted(m.presence for m in result.moments)[4]
    strict = ground_video(g, record, features, None, "x", query, replace(options, min_presence=threshold))
    assert 0 < len(strict.moments) < 8 and all(m.presence >= threshold for m in strict.moments)
    none = ground_video(g, record, features, None, "x", query, replace(options, min_presence=1.0))
    assert none.moments == []


def test_presence_calibration_is_fitted_and_round_trips():
    from vidseek.models.presence import PresenceCalibration, fit_logistic

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 4))
    true_w, true_b = np.array([1.5, 0.0, -0.7, 0.3]), -1.0
    y = rng.random(4000) < 1 / (1 + np.exp(-(x @ true_w + true_b)))
    w, b = fit_logistic(x, y, l2=1e-4)
    assert np.allclose(w, true_w, atol=0.15) and abs(b - true_b) < 0.15
    cal = PresenceCalibration(tuple(w), b, fitted_on="test")
    again = PresenceCalibration.from_dict(cal.to_dict())
    assert again == cal and np.allclose(again.probability(x[:5]), cal.probability(x[:5]))
    with pytest.raises(ValueError):
        fit_logistic(x, np.zeros(4000))  # one class only


def test_abstention_threshold_keeps_the_best_window_of_its_share_of_present_queries():
    from vidseek.models.presence import abstention_threshold

    best = np.linspace(0.01, 1.0, 100)  # 100 present queries' best window presence
    t = abstention_threshold(best, keep=0.97)
    assert (best >= t).sum() == 97 and abstention_threshold(best, keep=1.0) == pytest.approx(0.01)
    assert abstention_threshold(np.array([])) == 0.0


def test_short_video_goes_straight_to_dense(tiny_grounder):
    g = _ScriptedGrounder(tiny_grounder)
    a = g.config.adapter
    record, features = _fake_video(20, a.cells, a.cell_width, a.embed_dim)
    result = ground_video(g, record, features, None, "x", features.embeddings[0], GroundingOptions())
    assert [n.kind for n in result.tree] == ["dense"] and result.moments
    assert result.moments[0].start == 10.0 and result.moments[0].end == 12.0


def test_short_video_outside_the_archive_wide_cut_asks_the_lm_nothing(tiny_grounder):
    """ground_videos keeps the best windows across videos; a short video whose one window
    missed the cut (windows_kept=0) gets its window as a filler moment, no LM answer."""
    g = _ScriptedGrounder(tiny_grounder)
    a = g.config.adapter
    record, features = _fake_video(20, a.cells, a.cell_width, a.embed_dim)
    result = ground_video(g, record, features, None, "x", features.embeddings[0],
                          GroundingOptions(min_presence=0.0), windows_kept=0)
    assert g.calls == [] and [n.kind for n in result.tree] == ["coarse"]
    [moment] = result.moments
    assert (moment.start, moment.end) == (0.0, 20.0)
    assert moment.score == pytest.approx(0.5 * moment.presence)


class _AbstainingGrounder(_ScriptedGrounder):
    """Says "Not Present." unless forced (Grounder.generate's contract: the force_spans
    least sure abstentions answer a span); P(Not) grows with the call's first frame."""

    def generate(self, videos, prompts, max_new_tokens=12, force_spans=0):
        out = []
        for n, v in enumerate(videos):
            forced = n < force_spans  # P(Not) = 0.5 + 0.01 n: the first are the least sure
            text = "From 1 to 2." if forced else "Not Present."
            out.append(Generation(text, parse_answer(text, v.n_indices), 0.5, 2.0, 0.5 + 0.01 * n,
                                  forced, "Not" if forced else ""))
        self.calls.append(force_spans)
        return out


@pytest.mark.parametrize("force, expected", [(True, 2), (False, 0)])
def test_abstentions_are_forced_into_spans_only_when_asked(tiny_grounder, force, expected):
    g = _AbstainingGrounder(tiny_grounder)
    a = g.config.adapter
    record, features = _fake_video(1000, a.cells, a.cell_width, a.embed_dim)
    result = ground_video(g, record, features, None, "x", features.embeddings[0],
                          GroundingOptions(levels=1, top_k=2, force_spans=force, level1="answer"))
    kept = [n for n in result.tree if n.kept]
    assert len(kept) == expected == len(result.moments)
    if force:  # the two least sure abstentions: the first two segments
        assert [n.shown[0] for n in kept] == [0.0, 480.0]
        assert all("forced" in n.verdict for n in kept)
        assert result.moments[0].score == pytest.approx(2.0 * (1 - 0.5))  # R x (1 - P(Not))


def test_forced_spans_start_from_in_the_same_pass(tiny_grounder):
    """generate(force_spans=k): rows that do not start "From" are made to, least sure of
    "Not Present." first, within one batch; the forced token does not count in the entropy."""
    from vidseek.models.adapter import DENSE

    g = tiny_grounder.eval()
    torch.manual_seed(1)
    videos = [VideoTokens(g.dense_tokens(torch.randn(12, 16).numpy(), torch.randn(12, 4, 8).numpy()), DENSE)
              for _ in range(4)]
    prompts = [grounding_prompt(f"a red circle moves {d}") for d in ("left", "right", "up", "down")]
    free = g.generate(videos, prompts, max_new_tokens=6)
    assert not any(x.forced or x.forced_from for x in free)
    starts = sum(x.text.startswith("From") for x in free)
    forced = g.generate(videos, prompts, max_new_tokens=6, force_spans=4)
    assert all(x.text.startswith("From") for x in forced)
    assert sum(x.forced for x in forced) == 4 - starts
    for a, b in zip(free, forced):
        assert b.p_absent == pytest.approx(a.p_absent)
        if not b.forced:
            assert b.text == a.text and b.mean_entropy == pytest.approx(a.mean_entropy, rel=1e-4)
    two = g.generate(videos, prompts, max_new_tokens=6, force_spans=starts + 1)
    chosen = [n for n, x in enumerate(two) if x.forced]
    others = [n for n, x in enumerate(free) if not x.text.startswith("From")]
    assert len(chosen) == min(1, len(others))
    if chosen:  # the abstention least sure of "Not Present."
        assert free[chosen[0]].p_absent == min(free[n].p_absent for n in others)


def test_grounding_options_are_validated():
    with pytest.raises(vidseek.ConfigError):
        GroundingOptions(levels=4)
    with pytest.raises(vidseek.ConfigError):
        GroundingOptions(ranking="vibes")
    with pytest.raises(ValueError):  # a ConfigError is a ValueError too
        GroundingOptions(top_k=0)


def test_int8_lm_merges_lora_and_answers_like_float32(tiny_llm_dir):
    """quantize_llm folds LoRA into the weights and swaps the LM's linear layers for int8
    ones: answers keep their form and confidence, and the grounder refuses to train or save."""
    from vidseek.models.adapter import DENSE, AdapterConfig
    from vidseek.models.grounder import Grounder, GrounderConfig

    config = GrounderConfig(llm=str(tiny_llm_dir), tuning="lora", adapter=AdapterConfig(
        embed_dim=16, cells=4, cell_width=8, hidden=32, heads=2, fine_tokens=2, coarse_tokens=4))
    g = Grounder.create(config, device="cpu", seed=3)
    with torch.no_grad():  # LoRA's B starts at zero: give it weight, so merging matters
        for name, p in g.llm.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    g.eval()
    torch.manual_seed(0)
    video = VideoTokens(g.dense_tokens(torch.randn(12, 16).numpy(), torch.randn(12, 4, 8).numpy()), DENSE)
    prompts = [grounding_prompt("a red circle moves left"), presence_prompt("a blue square appears")]
    before = g.generate([video, video], prompts)
    g.quantize_llm()
    assert g.llm_int8 and not any("lora_" in n for n, _ in g.llm.named_parameters())
    assert not any(p.requires_grad for p in g.parameters())
    after = g.generate([video, video], prompts)
    for a, b in zip(before, after):
        assert a.confidence == pytest.approx(b.confidence, rel=0.1)
    with pytest.raises(vidseek.ModelError, match="queries only"):
        g.freeze_for("1a")
    half = Grounder.create(config, device="cpu", seed=3)
    half.llm.half()
    with pytest.raises(vidseek.ModelError, match="float32"):
        half.quantize_llm()
    assert not half.llm_int8 and any("lora_" in n for n, _ in half.llm.named_parameters())  # untouched
