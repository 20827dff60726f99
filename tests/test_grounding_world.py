"""End to end on the procedural world: train a small grounder on stored features, then find
events in held-out short videos (the dense level: each video fits one dense window)."""

from __future__ import annotations

import pytest

import vidseek
import vidseek.annotations
import vidseek.evaluation
import vidseek.synth
from conftest import one_torch_thread
from vidseek.models.llm import build_tiny_llm
from vidseek.train.grounding import GroundingTrainConfig, train_grounder_from_archive

TRAIN_STEPS = 700


@pytest.fixture(scope="module")
def world_archive(tmp_path_factory, world_encoder):
    root = tmp_path_factory.mktemp("gworld-e2e")
    train, test = [], []
    (root / "train").mkdir()
    (root / "test").mkdir()
    for seed in range(3):
        train += vidseek.synth.build_world_video(root / "train" / f"t{seed}.mp4", 300, seed=50 + seed)
    for seed in range(10):
        test += vidseek.synth.build_world_video(root / "test" / f"h{seed}.mp4", 30, seed=90 + seed)
    # int8 features, pinned: the thresholds below were set on them, and auto's choice
    # depends on the CPU (bf16 on one with AMX)
    archive = vidseek.Archive.open(root / "archive", model=world_encoder.path,
                                   config=vidseek.IngestConfig(precision="int8"))
    archive.ingest([root / "train", root / "test"])
    yield archive, train, test, root
    archive.close()


@pytest.fixture(scope="module")
def world_grounder(world_archive):
    archive, train, test, root = world_archive
    out = root / "grounder"
    words = sorted({w for a in train + test for w in a.query.split()} |
                   set("when can we see the happening Does happen From to Not Present yes no".split()))
    llm = build_tiny_llm(root / "llm", words, hidden=96, layers=2, heads=4)
    with one_torch_thread():  # reproducible: the same figures on every run of this machine
        [report] = train_grounder_from_archive(
            out, archive, train, ["1a"], llm=str(llm), tuning="full",
            train=GroundingTrainConfig(steps={"1a": TRAIN_STEPS}, batch_size=16, lr=2e-3, warmup=30))
    return out, report


def test_grounder_finds_events_in_held_out_videos(world_archive, world_grounder):
    archive, train, test, root = world_archive
    out, report = world_grounder
    assert report.last_loss < 0.6 * report.first_loss
    archive.set_grounder(out)
    grounded = vidseek.evaluation.evaluate_archive(archive, test, mode="grounded")
    shuffled = [vidseek.annotations.Annotation(a.video, b.query, a.start, a.end) for a, b in
                zip(test, test[1:] + test[:1])]  # each video asked about another video's event
    baseline = vidseek.evaluation.evaluate_archive(archive, shuffled, mode="grounded")
    print(grounded.table(), baseline.table(), sep="\n\n")
    # Training is reproducible (one torch thread, hash-independent sampling): two runs gave
    # the same R1@0.3 of 43.5 % (R1@0.5 26.1 %). Before that fix, runs varied from 19.6 to
    # 60.9 %, against 4.3–15.2 % for the shuffled queries. A random 3-frame span in these
    # 30-frame videos reaches IoU 0.3 about 10 % of the time.
    assert grounded.queries >= 30
    assert grounded.recall["R1@0.3"] >= 0.2
    assert grounded.recall["R1@0.3"] >= 1.5 * baseline.recall["R1@0.3"]
    # The same checkpoint with an int8 LM (queries only): answers barely move.
    with vidseek.Archive.open(root / "archive", int8_llm=True) as quantised:
        assert quantised.grounder.llm_int8
        int8 = vidseek.evaluation.evaluate_archive(quantised, test, mode="grounded")
    print(f"int8 LM: R1@0.3 {int8.recall['R1@0.3']:.3f} (float32 {grounded.recall['R1@0.3']:.3f})")
    assert int8.recall["R1@0.3"] >= grounded.recall["R1@0.3"] - 0.1
    assert int8.recall["R1@0.3"] >= 1.5 * baseline.recall["R1@0.3"]
    with pytest.raises(vidseek.ModelError, match="queries only"):
        quantised.grounder.save(root / "nope")


def test_presence_calibration_on_long_videos(world_archive, world_grounder, tmp_path):
    """The level-1 presence calibration: fitted on one set of videos, stored in the checkpoint,
    then the grounded evaluation reports right-window recall per level and abstention."""
    import shutil

    import numpy as np

    from vidseek.train.calibration import fit_presence_calibration

    archive, train, test, root = world_archive
    out = tmp_path / "calibrated"
    shutil.copytree(world_grounder[0], out)  # the other test uses the uncalibrated checkpoint
    archive.set_grounder(out)
    assert not archive.grounder.presence_calibration.calibrated
    fit_on = [a for a in train if a.video == "t0.mp4"]  # 300 s: 6 level-1 windows of 60 frames
    windows = -(-len(archive.video_features(archive.find_video("t0.mp4")).times) // 60)
    with one_torch_thread():
        fit = fit_presence_calibration(out, archive, fit_on)
    assert fit.queries == len(fit_on) and fit.rows == windows * len(fit_on) and fit.positives > 0
    assert abs(fit.mean_probability - fit.positive_rate) < 0.01  # a logistic fit's intercept property
    assert set(fit.window_recall_by_signal) == {"lm_logit", "peak", "peak_z", "mean_z", "calibrated"}
    recall = fit.window_recall_by_signal["calibrated"]
    assert recall["1"] <= recall["3"] <= recall["5"] and recall["3"] > 3 / windows  # beats chance
    assert 0.0 < fit.calibration.threshold < 1.0 and fit.present_kept >= 0.97
    assert 0.0 <= fit.right_lost <= 1 - fit.present_kept + 1e-9  # only dropped best windows are lost
    with vidseek.Archive.open(root / "archive") as reopened:  # stored in the checkpoint
        reopened.set_grounder(out)
        stored = reopened.grounder.presence_calibration
        assert stored.calibrated and stored.threshold == pytest.approx(fit.calibration.threshold)
        held_out = [a for a in train if a.video == "t1.mp4"][:24]
        rows: list[dict] = []
        report = vidseek.evaluation.evaluate_archive(
            reopened, held_out, mode="grounded", grounding=vidseek.GroundingOptions(levels=2),
            predictions=rows)
    assert set(report.window_recall) == {"L1@1", "L1@3", "L1@5", "L2"}
    assert report.window_recall["L1@1"] <= report.window_recall["L1@3"] <= report.window_recall["L1@5"]
    assert report.min_presence == pytest.approx(stored.threshold)
    absent = [a for a in held_out if not a.present]
    assert (report.absent_rejected is None) == (not absent)
    assert len(rows) == len(held_out)  # absent events too
    for row, ann in zip(rows, held_out):
        assert row["truth"] == ([ann.start, ann.end] if ann.present else None)
        assert all(p >= report.min_presence for p in row["presence"])
        assert all(d[3] < report.min_presence for d in row["dropped"])
        assert len(row["moments"]) + len(row["dropped"]) == 5  # honest top-5 before abstention
    # R@n without abstention is never below R@n with it
    assert all(report.recall_without_abstention[k] >= v for k, v in report.recall.items())
    # archive-wide, as a user without --video: moments of other videos count as wrong
    wide_rows: list[dict] = []
    with vidseek.Archive.open(root / "archive") as reopened:
        reopened.set_grounder(out)
        wide = vidseek.evaluation.evaluate_archive(
            reopened, held_out[:8], mode="grounded", grounding=vidseek.GroundingOptions(levels=2),
            predictions=wide_rows, archive_wide=True)
        clip_wide = vidseek.evaluation.evaluate_archive(reopened, held_out[:8], archive_wide=True)
    assert wide.mode.endswith("archive-wide") and set(wide.window_recall) == {"L1", "L2"}
    assert clip_wide.mode == "clip, archive-wide" and clip_wide.queries == sum(a.present for a in held_out[:8])
    assert all(len(r["moment_videos"]) == len(r["moments"]) for r in wide_rows)
    assert any(v != "t1.mp4" for r in wide_rows for v in r["moment_videos"])  # other videos compete
    assert np.isfinite(report.miou)


def test_dense_level_probe_on_held_out_clips(world_archive, world_grounder):
    """The dense level alone, on clips of the held-out videos (item 5 of the grounding
    issue): span IoU >= 0.5 per event kind, reversed and unrelated events rejected."""
    from vidseek.synth.world import EVENT_KINDS
    from vidseek.train import probe_dense_level

    archive, train, test, root = world_archive
    archive.set_grounder(world_grounder[0])
    with one_torch_thread():
        report = probe_dense_level(archive, archive.grounder, test, examples=240, seed=0)
        again = probe_dense_level(archive, archive.grounder, test, examples=240, seed=0)
    print(report.table())
    assert report.to_dict() == again.to_dict()  # the same questions for the same seed
    asked = sum(n for _, n in report.positives.values()) + report.hard_negatives[1] + report.easy_negatives[1]
    assert asked == 240 and set(report.positives) <= set(EVENT_KINDS)
    assert report.hard_negatives[1] > 0 and report.easy_negatives[1] > 0
    # A random span of 1-3 frames in a clip of 10-30 reaches IoU 0.5 a few % of the time.
    assert report.positive_accuracy >= 20.0
    assert report.to_dict()["easy_negatives_rejected"] >= 50.0


def test_clip_verifier_learns_clips_and_holds_on_a_held_out_video(world_archive, world_grounder, tmp_path):
    """The verifier stage on two training videos: among the clips level 1 proposes for a query,
    it learns to rank the clip that holds the event above the others (on a training video),
    and on the held-out third video it ranks them at least as well as the clips' peak CLIP
    similarity does."""
    import shutil

    import numpy as np
    import torch

    from vidseek.models.verifier import clip_proposals
    from vidseek.train.grounding_data import event_frames

    archive, train, test, root = world_archive
    out = tmp_path / "verified"
    shutil.copytree(world_grounder[0], out)
    with one_torch_thread():
        [report] = train_grounder_from_archive(
            out, archive, [a for a in train if a.video != "t1.mp4"], ["verifier"],
            train=GroundingTrainConfig(steps={"verifier": 600}, verifier_batch=32))
    assert report.last_loss < 0.6 * report.first_loss
    archive.set_grounder(out)
    g = archive.grounder
    c = g.verifier.config

    def rank_clips(video: str) -> dict[str, float]:
        """Per query with clips that hold the event and clips that do not: whether the top
        clip holds it, and the chance that a holding clip outranks a non-holding one (AUC),
        by the verifier's logit and by the clip's peak similarity; means over queries."""
        record = archive.find_video(video)
        features = archive.video_features(record)
        dense = g.dense_tokens(features.embeddings, features.dense.grid())
        scores: dict[str, list[float]] = {"top1 verifier": [], "top1 peak": [], "auc verifier": [],
                                          "auc peak": []}
        with one_torch_thread(), torch.no_grad():
            for ann in (a for a in train if a.video == video and a.present):
                vector = archive.embed_query(text=ann.query)
                first, last = event_frames(features.times, ann.start, ann.end)
                sims = features.embeddings @ vector
                ranges = clip_proposals(sims, c.proposal_fraction, c.proposal_pad, c.max_frames)
                holds = np.array([max(0, min(b, last + 1) - max(a, first)) >= 0.5 * (last - first + 1)
                                  for a, b in ranges])
                if holds.all() or not holds.any():
                    continue
                by = {"verifier": g.verify(ann.query, [dense[a:b] for a, b in ranges],
                                           [torch.as_tensor(sims[a:b]) for a, b in ranges]).numpy(),
                      "peak": np.array([sims[a:b].max() for a, b in ranges])}
                for name, s in by.items():
                    scores[f"top1 {name}"].append(float(holds[int(s.argmax())]))
                    scores[f"auc {name}"].append(float((s[holds][:, None] > s[~holds][None, :]).mean()))
        assert len(scores["top1 peak"]) >= 30, video
        return {k: round(float(np.mean(v)), 3) for k, v in scores.items()}

    seen, held_out = rank_clips("t0.mp4"), rank_clips("t1.mp4")
    print(f"ranking level 1's clips, training video: {seen}; held-out video: {held_out}")
    # Measured (one thread; AMD EPYC, int8 features): training video top-1 0.92 against peak
    # 0.59; held-out AUC 0.72 against 0.72. Two 5-minute videos are too few for the verifier to
    # generalise beyond the peak here (the margin was +7 and +0 points of held-out top-1 on two
    # CPUs); the recipe's checkpoint, trained on hours, gains 11 points of window top-1 on
    # held-out worlds (docs/evaluation.md).
    assert seen["top1 verifier"] >= seen["top1 peak"] + 0.2
    assert held_out["auc verifier"] >= max(0.6, held_out["auc peak"] - 0.05)
