"""The grounded mode's options and results: what a caller passes and gets back
(:mod:`vidseek.query.grounded` runs the recursion)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from ..errors import ConfigError
from ..models.adapter import COARSE, DENSE, FINE
from ..store.catalog import VideoRecord
from .moments import Moment

__all__ = ["GroundingOptions", "GroundingNode", "GroundingResult", "LEVEL1_MODES", "REFINE_MODES",
           "RANKINGS", "LEVEL_KINDS"]

LEVEL_KINDS = {COARSE: "coarse", FINE: "fine", DENSE: "dense"}
RANKINGS = ("presence", "entropy", "time")
LEVEL1_MODES = ("presence", "answer")
REFINE_MODES = ("windows", "clips")


@dataclass(frozen=True)
class GroundingOptions:
    # 1: level 1 only; 2: level 1 then the verified clips; 3: then dense (refine="windows":
    # 2: level 1 then dense; 3: level 1, fine, dense)
    levels: int = 3
    top_k: int = 3  # spans kept at every level (a search asking for more keeps more)
    # How level 1 chooses where to look. "presence": every coarse window gets a calibrated
    # probability that the event happens in it (the LM's yes/no over its sparse tokens fused
    # with the stored frame similarities, models/presence.py), all windows of all candidate
    # videos in one batched pass; the top_k windows are kept. "answer": the paper's level 1,
    # the LM answers a window span over segments of coarse_per_call windows.
    level1: str = "presence"
    # What refines the kept level-1 windows (level1="presence" only). "clips" (the default):
    # level 2 is the clip verifier's clips that touch each kept window (already judged at
    # level 1, so no LM call and no new dense reads), best verdict first, and level 3 the
    # LM's frame span over each kept clip; a kept window no clip touches (every window, for a
    # checkpoint without a verifier) stands as its own clip. "windows": the whole window
    # goes down the levels (3: the LM answers a fine-window span, then a frame span; 2: a
    # frame span over the window). With level1="answer" it is always "windows" (that level 1
    # answers spans; it keeps no windows to find clips in).
    refine: str = "clips"
    # level1="presence": the LM's yes/no is asked about this many coarse windows per query,
    # across all candidate videos, those the frame similarities and the clip verifier rank
    # best (the rest get the lowest logit it gave; presence_level.level1_passes); 0: every
    # window. The LM pass is most of level 1's time with a real-sized LM.
    presence_shortlist: int = 16
    # Moments whose presence (the calibrated probability of their level-1 window) is below
    # this are dropped: abstention. 0 keeps everything; None: the checkpoint's default,
    # chosen on held-out queries (PresenceCalibration.threshold; 0 if not calibrated).
    min_presence: float | None = None
    # Moments each video returns, best first (None: top_k). Beyond the spans the levels
    # kept, the list is filled with coarser spans they kept, then with level-1 windows by
    # presence, so that asking for 5 gives 5 when the video has room for them.
    moments: int | None = None
    # How candidates are ranked at every level: "presence" = R × (1 − P(Not)), the entropy
    # confidence weighted by how sure the model is the event is there at all (calibrated
    # abstention); "entropy" = R alone (the paper); "time" = first top_k in time order.
    ranking: str = "presence"
    # Fewer than top_k answers starting a span at a level: the calls least sure of "Not
    # Present." (lowest P(Not) at the first answer token) are made to answer "From ...".
    force_spans: bool = True
    dense_margin: int = 3  # frames added on each side of a span before the dense level
    max_new_tokens: int = 12

    def __post_init__(self) -> None:
        if self.levels not in (1, 2, 3):
            raise ConfigError(f"levels must be 1, 2 or 3, not {self.levels}")
        if self.top_k < 1:
            raise ConfigError(f"top_k must be at least 1, not {self.top_k}")
        if self.ranking not in RANKINGS:
            raise ConfigError(f"ranking must be one of {', '.join(RANKINGS)}, not {self.ranking!r}")
        if self.level1 not in LEVEL1_MODES:
            raise ConfigError(f"level1 must be one of {', '.join(LEVEL1_MODES)}, not {self.level1!r}")
        if self.refine not in REFINE_MODES:
            raise ConfigError(f"refine must be one of {', '.join(REFINE_MODES)}, not {self.refine!r}")
        if self.presence_shortlist < 0:
            raise ConfigError(f"presence_shortlist must be 0 (every window) or more, not {self.presence_shortlist}")
        if self.min_presence is not None and not 0.0 <= self.min_presence <= 1.0:  # NaN fails too
            raise ConfigError(f"min_presence must be between 0 and 1, not {self.min_presence}")
        if self.moments is not None and self.moments < 1:
            raise ConfigError(f"moments must be at least 1, not {self.moments}")

    @property
    def refines_clips(self) -> bool:
        """Level 2 is the verified clips: ``refine="clips"`` with the presence level 1 (the
        paper's level 1 answers spans, which are refined as windows)."""
        return self.refine == "clips" and self.level1 == "presence"

    def with_results(self, k: int) -> "GroundingOptions":
        """These options for a search that shows ``k`` moments: every level keeps up to
        ``min(k, 5)`` spans (at least ``top_k``; more costs time at every level) and each
        video returns ``k`` moments."""
        return replace(self, top_k=max(self.top_k, min(k, 5)), moments=k)


@dataclass
class GroundingNode:
    """One LLM call (or, kind "clip", one verified clip: no call; its confidence is the
    verifier's probability): what it was shown, what it answered, how sure it was."""

    level: int
    kind: str  # "coarse", "fine", "clip" (a verified clip, refine="clips") or "dense"
    shown: tuple[float, float]  # seconds of video shown to the LLM
    answer: str  # the generated text
    verdict: str  # parsed: "span", "absent" or "invalid" (+ the parser's note)
    span: tuple[float, float] | None  # the answered span in seconds
    confidence: float  # R
    p_absent: float
    kept: bool = False
    children: list["GroundingNode"] = field(default_factory=list)
    frames: tuple[int, int] | None = None  # the answered span in frames [a, b)
    # level1="presence": the calibrated probability that the event is in the level-1 window
    # this node is (or descends from)
    presence: float | None = None
    window: int | None = None  # index of that level-1 window in its video

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("frames")
        data["children"] = [c.to_dict() for c in self.children]
        return data


@dataclass
class GroundingResult:
    video: VideoRecord
    query: str
    moments: list[Moment]
    tree: list[GroundingNode]  # level-1 calls (or dense calls for a short video)
    frames: int  # sampled frames of the video
    dense_frames_read: int  # frames whose dense tokens the recursion read
    seconds_per_level: dict[int, float]

    @property
    def dense_fraction(self) -> float:
        return self.dense_frames_read / self.frames if self.frames else 0.0

    def to_dict(self) -> dict:
        return {"video": self.video.name, "video_id": self.video.id, "query": self.query,
                "moments": [m.to_dict() for m in self.moments],
                "tree": [n.to_dict() for n in self.tree], "frames": self.frames,
                "dense_frames_read": self.dense_frames_read,
                "seconds_per_level": self.seconds_per_level}
