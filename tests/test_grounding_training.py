"""Grounder training: stages freeze what they must, the loss falls, checkpoints resume."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from vidseek.models.adapter import AdapterConfig
from vidseek.models.grounder import Grounder, GrounderConfig, WindowConfig
from vidseek.train.grounding import GroundingTrainConfig, train_grounder
from vidseek.train.grounding_data import ExampleSampler, TrainingVideo

CAPTIONS = ["a small red circle appears", "a large blue square moves left",
            "a small green diamond turns yellow", "a large white triangle bounces"]
DIM, CELLS, WIDTH = 16, 4, 8


def _embed_text(texts: list[str]) -> np.ndarray:
    """A deterministic stand-in for the CLIP text tower."""
    out = []
    for text in texts:
        # crc32, not hash(): str hashes change per process (PYTHONHASHSEED)
        rng = np.random.default_rng(zlib.crc32(text.encode()))
        v = rng.normal(size=DIM)
        out.append(v / np.linalg.norm(v))
    return np.stack(out).astype(np.float32)


def test_text_stand_in_is_the_same_in_every_process():
    """The training data must not change between runs (str hash() is salted per process)."""
    here = _embed_text(CAPTIONS)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import numpy as np; "
            "from test_grounding_training import _embed_text, CAPTIONS; "
            "np.save(sys.stdout.buffer, _embed_text(CAPTIONS))")
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent)], check=True,
                             capture_output=True, env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        assert np.array_equal(np.load(io.BytesIO(out)), here)


def _videos(n: int = 3, frames: int = 400, seed: int = 0) -> list[TrainingVideo]:
    """Random features with each caption's event planted: its frames carry the caption's
    text vector, so the relevance channel and the features both point at the event."""
    rng = np.random.default_rng(seed)
    vectors = dict(zip(CAPTIONS, _embed_text(CAPTIONS)))
    videos = []
    for v in range(n):
        emb = rng.normal(size=(frames, DIM)).astype(np.float32) * 0.3
        grid = rng.normal(size=(frames, CELLS, WIDTH)).astype(np.float32)
        events = []
        for k, caption in enumerate(CAPTIONS):
            start = 20 + 60 * k + int(rng.integers(0, 30))
            emb[start:start + 3] += 2 * vectors[caption]
            grid[start:start + 3, k % CELLS] += 3.0
            events.append((caption, start, start + 2))
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        videos.append(TrainingVideo(f"v{v}.mp4", np.arange(frames, dtype=np.float64), emb, grid, events))
    return videos


def _config(llm_dir, tuning: str) -> GrounderConfig:
    return GrounderConfig(llm=str(llm_dir), tuning=tuning, lora_rank=4, lora_alpha=8,
                          adapter=AdapterConfig(embed_dim=DIM, cells=CELLS, cell_width=WIDTH, hidden=32,
                                                heads=2, fine_tokens=2, coarse_tokens=4),
                          windows=WindowConfig(coarse=60, fine=10, dense=32, coarse_per_call=4,
                                               fine_per_call=8))


def _snapshot(grounder: Grounder) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in grounder.named_parameters()}


@pytest.mark.parametrize("tuning", ["lora", "full"])
def test_each_stage_updates_only_its_parameters(tmp_path, tiny_llm_dir, tuning):
    out = tmp_path / "ckpt"
    cfg = GroundingTrainConfig(steps={"1a": 3, "1b": 3, "2": 3}, batch_size=4, warmup=1, save_every=100)
    train_grounder(out, _videos(1), ["1a"], _embed_text, _config(tiny_llm_dir, tuning), cfg)
    trainable_by_stage = {
        "1b": lambda n: n.startswith("adapter.compressor."),
        "2": (lambda n: "lora_" in n) if tuning == "lora" else (lambda n: n.startswith("llm.")),
    }
    for stage, is_trainable in trainable_by_stage.items():
        before = _snapshot(Grounder.load(out))
        train_grounder(out, _videos(1), [stage], _embed_text, None, cfg)
        after = _snapshot(Grounder.load(out))
        assert before.keys() == after.keys()
        changed = {n for n in before if not torch.equal(before[n], after[n])}
        frozen = {n for n in before if not is_trainable(n)}
        assert not changed & frozen, f"stage {stage} changed frozen {sorted(changed & frozen)[:3]}"
        assert changed, f"stage {stage} changed nothing"
        if tuning == "lora":  # base weights never move under LoRA
            assert not any(n.startswith("llm.") and "lora_" not in n for n in changed)


def test_verifier_stage_trains_only_the_verifier_and_learns(tmp_path, tiny_llm_dir):
    """The verifier stage gives a checkpoint without a verifier one, trains it alone on the
    clips level 1 proposes, and it then tells the clip holding the event in held-out videos."""
    from vidseek.models.verifier import clip_proposals

    out = tmp_path / "ckpt"
    cfg = GroundingTrainConfig(steps={"1a": 2, "2": 2, "verifier": 300}, batch_size=4, warmup=1, verifier_batch=32)
    train_grounder(out, _videos(1), ["1a"], _embed_text, _config(tiny_llm_dir, "full"), cfg)
    before = _snapshot(Grounder.load(out))
    assert Grounder.load(out).verifier is None
    [report] = train_grounder(out, _videos(3), ["verifier"], _embed_text, None, cfg)
    grounder = Grounder.load(out)
    after = _snapshot(grounder)
    assert set(after) - set(before) and all(n.startswith("verifier.") for n in set(after) - set(before))
    assert all(torch.equal(before[n], after[n]) for n in before)  # nothing else moved
    assert report.stage == "verifier" and report.last_loss < 0.5 * report.first_loss
    assert "verifier" in grounder.manifest["training"]["done"]
    c = grounder.verifier.config
    hits = 0
    with torch.no_grad():
        for video in _videos(2, seed=7):  # held out
            dense = grounder.dense_tokens(video.embeddings, video.grid)
            for (caption, first, last), vector in zip(video.events, _embed_text(CAPTIONS)):
                sims = video.embeddings @ vector
                ranges = clip_proposals(sims, c.proposal_fraction, c.proposal_pad, c.max_frames)
                logits = grounder.verify(caption, [dense[a:b] for a, b in ranges],
                                         [torch.as_tensor(sims[a:b]) for a, b in ranges])
                a, b = ranges[int(logits.argmax())]
                hits += a <= first and last < b
    assert hits >= 7  # of 8 events
    # retraining a stage the verifier reads from marks it to be trained again
    train_grounder(out, _videos(1), ["2"], _embed_text, None, cfg)
    assert "verifier" not in Grounder.load(out).manifest["training"]["done"]


def test_training_lowers_the_loss_and_resumes(tmp_path, tiny_llm_dir):
    out = tmp_path / "ckpt"
    cfg = GroundingTrainConfig(steps={"1a": 150}, batch_size=16, lr=2e-3, warmup=10, save_every=50)
    seen = []

    def crash_at_120(p):
        seen.append(p.loss)
        if p.step == 120:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_grounder(out, _videos(), ["1a"], _embed_text, _config(tiny_llm_dir, "full"), cfg,
                       progress=crash_at_120)
    assert (out / "trainer.pt").exists()
    [report] = train_grounder(out, _videos(), ["1a"], _embed_text, None, cfg)
    assert report.resumed_from == 100  # the last save before the interruption
    assert report.steps == 50
    assert np.mean(seen[-20:]) < 0.5 * np.mean(seen[:20])
    assert not (out / "trainer.pt").exists()
    assert Grounder.load(out).manifest["training"]["done"] == ["1a"]


def test_sampler_examples_are_consistent():
    videos = _videos(2)
    sampler = ExampleSampler(videos, WindowConfig(coarse=60, fine=10, dense=32, coarse_per_call=4,
                                                  fine_per_call=8), seed=1)
    for level, unit in (("dense", 1), ("fine", 10), ("coarse", 60)):
        for _ in range(50):
            ex = sampler.grounding(level)
            video = videos[ex.video]
            inside = video.captions_overlapping(ex.start, ex.stop)
            if ex.answer == "Not Present.":
                assert ex.query not in inside
            else:
                caption, i, j = next(e for e in video.events if e[0] == ex.query)
                assert ex.start <= i and j < ex.stop
                assert ex.answer == f"From {(i - ex.start) // unit} to {(j - ex.start) // unit}."
                if level == "coarse":
                    assert ex.start % 60 == 0  # windows as ingest cuts them
    answers = {sampler.presence("fine").answer for _ in range(40)}
    assert answers == {"yes", "no"}
