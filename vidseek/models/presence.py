"""Level-1 presence: how likely a query's event happens inside each coarse window.

Three signals, fused by a logistic model fitted on held-out videos (so the result is a
probability, comparable across windows, calls and videos):

- ``lm_logit``: the grounder's own answer to ``Does the <event> happen?`` over the window's
  sparse tokens (stage 1B's question), as log P(yes) − log P(no) of its first answer token;
- what the stored frame embeddings already say (the relevance channel): the window's peak
  frame–query cosine (×10), and its peak and mean cosine standardised over the video's
  windows (how much it stands out from the rest of the video);
- ``verifier``: the clip verifier's best logit among the proposed clips touching the window
  (:mod:`vidseek.models.verifier`); a grounder without a verifier is calibrated on the first
  four features only.

A checkpoint without a fitted calibration uses :data:`UNCALIBRATED` (equal weights on the
LM logit, the standardised peak and the verifier): it ranks windows, but its numbers are not
probabilities, so thresholds on them mean little (``describe`` says so).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["PRESENCE_FEATURES", "PresenceCalibration", "UNCALIBRATED", "window_features",
           "fit_logistic", "abstention_threshold", "KEEP_PRESENT_TARGET"]

PRESENCE_FEATURES = ("lm_logit", "peak", "peak_z", "mean_z", "verifier")


def window_features(lm_logit: np.ndarray, similarity: np.ndarray, window: int,
                    verifier: np.ndarray | None = None) -> np.ndarray:
    """``[W, 5]`` features of a video's ``W`` coarse windows of ``window`` frames, from the LM's
    presence logits ``[W]``, the frame–query cosine similarities ``[T]`` and the verifier's
    best logit per window ``[W]`` (None: no verifier, zeros)."""
    t = len(similarity)
    n = -(-t // window)
    padded = np.full(n * window, np.nan, dtype=np.float64)
    padded[:t] = similarity
    chunks = padded.reshape(n, window)
    peak = np.nanmax(chunks, axis=1)
    mean = np.nanmean(chunks, axis=1)

    def standardise(x: np.ndarray) -> np.ndarray:
        return (x - x.mean()) / (x.std() + 1e-3)

    checked = np.zeros(n) if verifier is None else np.asarray(verifier, dtype=np.float64)[:n]
    return np.stack([np.asarray(lm_logit, dtype=np.float64)[:n], 10 * peak,
                     standardise(peak), standardise(mean), checked], axis=1)


@dataclass(frozen=True)
class PresenceCalibration:
    """P(event in window) = sigmoid(features · weights + bias), over the first
    ``len(weights)`` of :data:`PRESENCE_FEATURES` (4 in calibrations made before the verifier)."""

    weights: tuple[float, ...]
    bias: float
    calibrated: bool = True  # fitted on held-out data (False: the fixed fallback)
    fitted_on: str = ""  # what it was fitted on, for the record
    # The default abstention threshold (GroundingOptions.min_presence=None uses it): chosen on
    # the held-out calibration queries as the highest presence that still keeps the best
    # window of KEEP_PRESENT_TARGET of the present events there (abstention must not cost
    # real results). 0: no default abstention.
    threshold: float = 0.0

    def probability(self, features: np.ndarray) -> np.ndarray:
        x = np.asarray(features, dtype=np.float64)[..., :len(self.weights)]
        z = x @ np.asarray(self.weights) + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))

    def to_dict(self) -> dict:
        return {**asdict(self), "weights": list(self.weights),
                "features": list(PRESENCE_FEATURES[:len(self.weights)])}

    @classmethod
    def from_dict(cls, data: dict) -> "PresenceCalibration":
        names = tuple(data.get("features", PRESENCE_FEATURES[:len(data["weights"])]))
        if names != PRESENCE_FEATURES[:len(names)] or len(names) != len(data["weights"]):
            raise ValueError(f"presence calibration over unknown features {data.get('features')}")
        return cls(tuple(float(w) for w in data["weights"]), float(data["bias"]),
                   bool(data.get("calibrated", True)), str(data.get("fitted_on", "")),
                   float(data.get("threshold", 0.0)))

    def describe(self) -> str:
        terms = ", ".join(f"{n} {w:+.3f}" for n, w in zip(PRESENCE_FEATURES, self.weights))
        state = f"fitted on {self.fitted_on}" if self.calibrated else "NOT calibrated (fixed weights)"
        return f"{terms}, bias {self.bias:+.3f}; default min presence {self.threshold:.3f}; {state}"


KEEP_PRESENT_TARGET = 0.97  # share of present events whose best window the default keeps


def abstention_threshold(present_best: np.ndarray, keep: float = KEEP_PRESENT_TARGET) -> float:
    """The highest presence threshold under which at least ``keep`` of the present-event
    queries whose best window presence is ``present_best`` still have that window (a query
    is rejected when every moment falls below the threshold)."""
    values = np.sort(np.asarray(present_best, dtype=np.float64))
    if len(values) == 0:
        return 0.0
    # kept: best >= threshold; at most floor((1 - keep) * n) queries may fall below
    return float(values[int(np.floor((1.0 - keep) * len(values) + 1e-9))])


UNCALIBRATED = PresenceCalibration((1.0, 0.0, 1.0, 0.0, 1.0), -2.0, calibrated=False)


def fit_logistic(features: np.ndarray, labels: np.ndarray, l2: float = 1e-2,
                 iterations: int = 50) -> tuple[np.ndarray, float]:
    """Weights and bias of an L2-regularised logistic regression, by Newton's method (a few
    features and thousands of rows: exact and quick). Features are used as they are."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(y) or len(x) == 0:
        raise ValueError("features [N, F] and labels [N] are needed")
    if y.min() == y.max():
        raise ValueError("calibration needs both windows with the event and windows without")
    xb = np.hstack([x, np.ones((len(x), 1))])
    theta = np.zeros(xb.shape[1])
    reg = np.full(xb.shape[1], l2)
    reg[-1] = 0.0  # the bias is not shrunk
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ theta, -40, 40)))
        grad = xb.T @ (p - y) / len(y) + reg * theta
        hess = (xb * (p * (1 - p))[:, None]).T @ xb / len(y) + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.abs(step).max() < 1e-8:
            break
    return theta[:-1], float(theta[-1])
