"""Prompts, answer targets, the answer parser and entropy confidence.

The grounder's answers are ``From s to e.`` (token indices of the video it was shown),
``Not Present.``, ``yes`` or ``no``. Small models produce malformed text now and then; the
parser clamps out-of-range indices, swaps reversed spans and rejects the rest with a reason,
so one bad generation never breaks a query.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

__all__ = ["event_phrase", "grounding_prompt", "presence_prompt", "span_answer",
           "ABSENT_ANSWER", "ParsedAnswer", "parse_answer", "mean_token_entropy", "confidence"]

ABSENT_ANSWER = "Not Present."


def event_phrase(query: str) -> str:
    """The query as the ``<event>`` of a prompt: trimmed, no leading article or full stop."""
    text = " ".join(query.strip().rstrip(".?!").split())
    return re.sub(r"^(a|an|the)\s+", "", text, flags=re.IGNORECASE)


def grounding_prompt(query: str) -> str:
    """Follows the video tokens: ``<video> when can we see the <event> happening?``"""
    return f" when can we see the {event_phrase(query)} happening?"


def presence_prompt(query: str) -> str:
    """Stage 1B: ``<video> Does the <event> happen?``"""
    return f" Does the {event_phrase(query)} happen?"


def span_answer(start: int, end: int) -> str:
    return f"From {start} to {end}."


@dataclass(frozen=True)
class ParsedAnswer:
    kind: str  # "span", "absent", "yes", "no" or "invalid"
    start: int | None = None  # token indices, inclusive, within [0, n_tokens)
    end: int | None = None
    note: str = ""  # what the parser repaired, or why it rejected the text

    @property
    def is_span(self) -> bool:
        return self.kind == "span"


_SPAN = re.compile(r"from\s*(-?\d+)\s*(?:to|-|until)\s*(-?\d+)", re.IGNORECASE)


def parse_answer(text: str, n_tokens: int) -> ParsedAnswer:
    """Read a generated answer about a video of ``n_tokens`` time steps."""
    clean = " ".join(text.split())
    low = clean.lower()
    match = _SPAN.search(clean)
    if match:
        start, end = int(match.group(1)), int(match.group(2))
        notes = []
        if start > end:
            start, end = end, start
            notes.append("swapped a reversed span")
        if end < 0 or start > n_tokens - 1:
            return ParsedAnswer("invalid", note=f"span {start}-{end} lies outside 0-{n_tokens - 1}")
        if start < 0 or end > n_tokens - 1:
            start, end = max(start, 0), min(end, n_tokens - 1)
            notes.append(f"clamped to 0-{n_tokens - 1}")
        return ParsedAnswer("span", start, end, "; ".join(notes))
    if low.startswith("not") or "not present" in low:
        return ParsedAnswer("absent")
    if re.match(r"^\W*yes\b", low):
        return ParsedAnswer("yes")
    if re.match(r"^\W*no\b", low):
        return ParsedAnswer("no")
    if not clean:
        return ParsedAnswer("invalid", note="empty answer")
    return ParsedAnswer("invalid", note=f"not an answer: {clean[:40]!r}")


def mean_token_entropy(logits: torch.Tensor) -> float:
    """Mean over steps of the entropy (nats) of each step's next-token distribution.

    ``logits`` is ``[steps, vocab]``, one row per generated token.
    """
    logp = torch.log_softmax(logits.float(), dim=-1)
    entropy = -(logp.exp() * logp).sum(-1)
    return float(entropy.mean())


def confidence(mean_entropy: float) -> float:
    """ReVisionLLM's R = 1 / mean token entropy (finite even for a certain answer)."""
    return 1.0 / max(mean_entropy, 1e-6) if math.isfinite(mean_entropy) else 0.0
