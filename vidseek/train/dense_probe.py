"""How well a grounder's dense level (the last level of the recursion) answers on clips.

The recursion can only be as good as its last level: given a clip of at most
``WindowConfig.dense`` frames, does the LM answer the event's frame span, and does it say
``Not Present.`` when asked about an event the clip does not hold? Examples are drawn the
way stage 1A draws them (:class:`~.grounding_data.ExampleSampler`), from annotated videos
of an archive, so on videos the grounder was not trained on this is a held-out test:

- **positives** per event kind: the answer's frame span has IoU ≥ 0.5 with the event's;
- **hard negatives**: the clip holds the *reversed* event ("moves right" asked of a clip where
  the object moves left, the colours of "turns" swapped, "disappears" for "appears");
  rejected when the answer is ``Not Present.``;
- **easy negatives**: an event of another part of the archive.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Sequence

import torch

from ..annotations import Annotation
from ..evaluation import temporal_iou
from ..models.answers import parse_answer
from ..models.grounder import Grounder
from .grounding import example_batch
from .grounding_data import ExampleSampler, load_training_videos, reversed_caption

__all__ = ["DenseProbeReport", "probe_dense_level"]


@dataclass
class DenseProbeReport:
    examples: int
    positives: dict[str, tuple[int, int]] = field(default_factory=dict)  # kind → (right, asked)
    hard_negatives: tuple[int, int] = (0, 0)  # (rejected, asked)
    easy_negatives: tuple[int, int] = (0, 0)

    @staticmethod
    def _share(pair: tuple[int, int]) -> float:
        return 100.0 * pair[0] / pair[1] if pair[1] else float("nan")

    @property
    def positive_accuracy(self) -> float:
        """% of positives answered with IoU ≥ 0.5, over every kind."""
        return self._share((sum(r for r, _ in self.positives.values()),
                            sum(n for _, n in self.positives.values())))

    @property
    def worst_kind(self) -> tuple[str, float] | None:
        shares = {k: self._share(v) for k, v in self.positives.items()}
        return min(shares.items(), key=lambda kv: kv[1]) if shares else None

    def to_dict(self) -> dict:
        return {"examples": self.examples,
                "positives_r1_at_0.5": {k: round(self._share(v), 1) for k, v in self.positives.items()},
                "positives_asked": {k: v[1] for k, v in self.positives.items()},
                "all_positives_r1_at_0.5": round(self.positive_accuracy, 1),
                "hard_negatives_rejected": round(self._share(self.hard_negatives), 1),
                "hard_negatives_asked": self.hard_negatives[1],
                "easy_negatives_rejected": round(self._share(self.easy_negatives), 1),
                "easy_negatives_asked": self.easy_negatives[1]}

    def table(self) -> str:
        lines = ["| asked | examples | right |", "|---|---|---|"]
        for kind in sorted(self.positives):
            right, asked = self.positives[kind]
            lines.append(f"| {kind}: span IoU ≥ 0.5 | {asked} | {self._share((right, asked)):.1f}% |")
        lines.append(f"| reversed event: Not Present | {self.hard_negatives[1]} | "
                     f"{self._share(self.hard_negatives):.1f}% |")
        lines.append(f"| other event: Not Present | {self.easy_negatives[1]} | "
                     f"{self._share(self.easy_negatives):.1f}% |")
        return "\n".join(lines)


@torch.no_grad()
def probe_dense_level(archive, grounder: Grounder, annotations: Sequence[Annotation], examples: int = 600,
                      seed: int = 0, batch_size: int = 64) -> DenseProbeReport:
    """Ask ``grounder``'s dense level ``examples`` questions about clips of ``archive``'s
    annotated videos (about half positives; of the negatives about half hard) and score
    the answers. Annotations without a ``kind`` are grouped as ``"all"``."""
    sampler = ExampleSampler(load_training_videos(archive, annotations), grounder.config.windows, seed=seed)
    videos = sampler.videos  # what Example.video indexes (videos under 2 frames are left out)
    asked = [sampler.grounding("dense") for _ in range(examples)]
    queries = sorted({ex.query for ex in asked})
    vectors = dict(zip(queries, archive.encoder.encode_text(queries)))
    kinds = {a.query: str(a.extra.get("kind", "all")) for a in annotations}
    positives: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    hard, easy = [0, 0], [0, 0]
    grounder.eval()
    for first in range(0, len(asked), batch_size):
        batch = asked[first:first + batch_size]
        inputs, prompts, _ = example_batch(grounder, videos, batch, vectors)
        for ex, gen in zip(batch, grounder.generate(inputs, prompts)):
            truth = parse_answer(ex.answer, ex.stop - ex.start)
            if truth.is_span:
                tally = positives[kinds.get(ex.query, "all")]
                right = gen.answer.is_span and temporal_iou(  # inclusive frame indices
                    (gen.answer.start, gen.answer.end + 1), (truth.start, truth.end + 1)) >= 0.5  # type: ignore[operator, arg-type]
            else:
                inside = videos[ex.video].captions_overlapping(ex.start, ex.stop)
                tally = hard if any(reversed_caption(c) == ex.query for c in inside) else easy
                right = gen.answer.kind == "absent"  # an unreadable answer is not a rejection
            tally[0] += int(right)
            tally[1] += 1
    return DenseProbeReport(examples, {k: (v[0], v[1]) for k, v in positives.items()},
                            (hard[0], hard[1]), (easy[0], easy[1]))
