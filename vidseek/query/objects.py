"""Object queries (VideoRefer): a region on a frame → one object token → where it appears.

The region (a box or a mask) is resized to the dense-token grid (2×2-pooled patches) and
binarised: a cell belongs to the object when at least half of it lies inside the region
(the most-covered cell when none does). The object token is the mean of the in-mask cell
tokens. A frame's match is its best cell by cosine similarity; moments are runs of frames
around the best matches, and each frame of a moment reports its matching cell as a box.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
from PIL import Image

from ..errors import QueryError
from ..models.encoder import FrameEncoder
from ..models.pooling import pool_2x2
from ..store.dense_tokens import DenseTokens
from ..store.archive_store import ArchiveStore
from ..store.catalog import VideoRecord
from ..store.files import DamagedFileError
from .moments import runs_around_peaks
from .search import SearchWarning, note_damaged

__all__ = ["Region", "TrackPoint", "ObjectHit", "object_token", "region_of", "image_cells",
           "frame_cells", "patch_grid", "region_token", "cell_box", "find_object", "score_video_cells"]

logger = logging.getLogger(__name__)

# Candidate tokens pulled from the patch index per requested hit (several cells and frames
# of one appearance match at once).
_TOKENS_PER_HIT = 64
_MIN_TOKENS = 256
_MAX_TOKENS = 65_536
_CHUNK_FRAMES = 512  # frames scored at once (bounds memory on long videos)


@dataclass(frozen=True)
class Region:
    """A region of a ``width`` × ``height`` picture: a box in pixels, or a boolean mask."""

    width: int
    height: int
    box: tuple[float, float, float, float] | None = None  # x0, y0, x1, y1 in pixels
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)  # bool [H, W]

    def __post_init__(self) -> None:
        if (self.box is None) == (self.mask is None):
            raise QueryError("give a region as exactly one of a box or a mask")
        if self.width <= 0 or self.height <= 0:
            raise QueryError(f"the picture has no area ({self.width}x{self.height})")
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            if not (0 <= x0 < x1 <= self.width and 0 <= y0 < y1 <= self.height):
                raise QueryError(f"box {x0:g},{y0:g},{x1:g},{y1:g} must satisfy 0 <= x0 < x1 <= "
                                 f"{self.width} and 0 <= y0 < y1 <= {self.height} (the frame's size)")
        else:
            mask = self.mask
            assert mask is not None  # exactly one of box and mask, checked above
            if mask.shape != (self.height, self.width) or not mask.any():
                raise QueryError(f"the mask must be {self.width}x{self.height} (the frame's size) "
                                 f"with at least one pixel set; got {mask.shape[1::-1]} "
                                 f"with {int(mask.sum())} set")

    @classmethod
    def parse_box(cls, text: str, width: int, height: int) -> "Region":
        """``"x0,y0,x1,y1"`` in pixels."""
        try:
            values = tuple(float(v) for v in text.split(","))
        except ValueError:
            values = ()
        if len(values) != 4:
            raise QueryError(f"box {text!r}: expected four numbers x0,y0,x1,y1 in pixels")
        return cls(width, height, box=values)

    @classmethod
    def from_mask_image(cls, path: str | os.PathLike, width: int, height: int) -> "Region":
        """A binary mask picture (pixels above mid-grey are inside), resized to the frame if needed."""
        try:
            with Image.open(path) as opened:
                grey = opened.convert("L")
        except (OSError, ValueError) as exc:
            raise QueryError(f"{path}: cannot read the mask image: {exc}") from exc
        if grey.size != (width, height):
            grey = grey.resize((width, height), Image.Resampling.NEAREST)
        return cls(width, height, mask=np.asarray(grey) > 127)

    def coverage(self, cells: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
        """Share of each dense-token cell ``[h2, w2]`` inside the region.

        ``grid`` is the encoder's patch grid; a cell pools 2×2 patches (the last row or
        column of an odd grid pools one), and the frame is resized to the square input
        without cropping, so fractions of the frame map straight onto patches.
        """
        gh, gw = grid
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            inside = np.zeros((gh, gw))
            # overlap of [x0, x1) with each patch column, as a fraction of the patch
            col = np.clip(np.minimum(x1 / self.width * gw, np.arange(1, gw + 1))
                          - np.maximum(x0 / self.width * gw, np.arange(gw)), 0, 1)
            row = np.clip(np.minimum(y1 / self.height * gh, np.arange(1, gh + 1))
                          - np.maximum(y0 / self.height * gh, np.arange(gh)), 0, 1)
            inside = np.outer(row, col)
        else:
            assert self.mask is not None  # exactly one of box and mask
            resized = Image.fromarray(self.mask.astype(np.uint8) * 255).resize(
                (gw * 8, gh * 8), Image.Resampling.BILINEAR)
            inside = (np.asarray(resized, np.float64) / 255).reshape(gh, 8, gw, 8).mean(axis=(1, 3))
        h2, w2 = cells
        padded = np.zeros((2 * h2, 2 * w2))
        weight = np.zeros((2 * h2, 2 * w2))
        padded[:gh, :gw] = inside
        weight[:gh, :gw] = 1.0
        summed = padded.reshape(h2, 2, w2, 2).sum(axis=(1, 3))
        counts = weight.reshape(h2, 2, w2, 2).sum(axis=(1, 3))
        return summed / counts

    def cell_mask(self, cells: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
        """The region on the dense-token grid, binarised at half coverage (never empty)."""
        cover = self.coverage(cells, grid)
        mask = cover >= 0.5
        if not mask.any():
            mask.reshape(-1)[int(np.argmax(cover))] = True
        return mask


def object_token(cells: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The L2-normalised mean of the in-mask cell tokens (``cells``: ``[h2, w2, C]``)."""
    token = np.asarray(cells, np.float32)[mask].mean(axis=0)
    norm = float(np.linalg.norm(token))
    if norm == 0:
        raise QueryError("the selected region has no features (all-zero tokens)")
    return token / norm


def region_of(box: str | Sequence[float] | None, mask: str | os.PathLike | np.ndarray | None,
              width: int, height: int) -> Region:
    """A region given as exactly one of a box (``"x0,y0,x1,y1"`` or four numbers, pixels) or
    a mask (an image path or a boolean array), on a ``width`` × ``height`` picture."""
    if (box is None) == (mask is None):
        raise QueryError("give the region as exactly one of a box or a mask")
    if isinstance(box, str):
        return Region.parse_box(box, width, height)
    if box is not None:
        if len(box) != 4:
            raise QueryError(f"a box is four numbers x0,y0,x1,y1 in pixels, got {list(box)}")
        x0, y0, x1, y1 = (float(v) for v in box)
        return Region(width, height, box=(x0, y0, x1, y1))
    if isinstance(mask, np.ndarray):
        return Region(width, height, mask=mask.astype(bool))
    assert mask is not None  # exactly one of box and mask, checked above
    return Region.from_mask_image(mask, width, height)


def image_cells(encoder: FrameEncoder, picture: Image.Image) -> np.ndarray:
    """The dense-token cells ``[h2, w2, C]`` of a picture, pooled as ingest pools frames."""
    patches = encoder.encode_frames(encoder.prepare_images([picture])).patches
    return pool_2x2(patches)[0]


def frame_cells(store: ArchiveStore, record: VideoRecord, time: float | None) -> np.ndarray:
    """The stored dense-token cells ``[h2, w2, C]`` of the sampled frame of ``record``
    nearest ``time`` (dense tokens exist per sampled frame)."""
    if time is None or not 0 <= time <= record.duration + 1e-6:
        raise QueryError(f"give a time between 0 and {record.duration:.2f}s of {record.name} "
                         f"for the region's frame (got {time})")
    try:
        features = store.video_features(record)
    except DamagedFileError as exc:
        raise QueryError(f"{record.name}: its features are damaged, so no region can be drawn "
                         "on it (re-ingest it, or run vidseek doctor --repair)") from exc
    except (OSError, ValueError) as exc:  # replaced or removed meanwhile
        raise QueryError(f"{record.name}: its features are unavailable ({exc}); try again") from exc
    frame = int(np.argmin(np.abs(features.times - time)))
    return features.dense.grid(frame, frame + 1)[0]


def patch_grid(store: ArchiveStore) -> tuple[int, int]:
    """The archive encoder's patch grid (rows, columns)."""
    manifest = store.manifest
    if manifest is None:
        raise QueryError(f"{store.root}: the archive is empty")
    side = manifest["encoder"]["image_size"] // manifest["encoder"]["patch_size"]
    return side, side


def region_token(cells: np.ndarray, region: Region, grid: tuple[int, int]) -> np.ndarray:
    """The object token of ``region`` over a picture's cells (``grid``: the encoder's patch grid)."""
    return object_token(cells, region.cell_mask(cells.shape[:2], grid))


def cell_box(cell: int, cells: tuple[int, int], grid: tuple[int, int], width: int,
             height: int) -> tuple[int, int, int, int]:
    """Pixel box ``(x0, y0, x1, y1)`` of flat cell index ``cell`` in a ``width``×``height`` frame."""
    h2, w2 = cells
    gh, gw = grid
    r, c = divmod(int(cell), w2)
    x0, x1 = 2 * c / gw, min(2 * c + 2, gw) / gw
    y0, y1 = 2 * r / gh, min(2 * r + 2, gh) / gh
    return (round(x0 * width), round(y0 * height), round(x1 * width), round(y1 * height))


@dataclass(frozen=True)
class TrackPoint:
    time: float  # seconds
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the video's pixels: the matching cell
    score: float  # cosine similarity of that cell to the object token


@dataclass(frozen=True)
class ObjectHit:
    """A moment where the object appears, with where it is in each sampled frame."""

    video: str
    video_id: int
    start: float
    end: float
    score: float  # best cell similarity in the moment
    peak: float  # time of the best frame
    track: list[TrackPoint]

    @property
    def box_at_peak(self) -> tuple[int, int, int, int] | None:
        """The matching box in the frame nearest the peak (None for an empty track)."""
        return min(self.track, key=lambda p: abs(p.time - self.peak)).box if self.track else None

    def to_dict(self) -> dict:
        return asdict(self)


def score_video_cells(dense: DenseTokens, token: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: the best cell's cosine similarity to ``token`` and that cell's flat index."""
    t = dense.num_frames
    best = np.zeros(t, np.float32)
    where = np.zeros(t, np.int64)
    for start in range(0, t, _CHUNK_FRAMES):
        grid = dense.grid(start, min(t, start + _CHUNK_FRAMES)).astype(np.float32)
        flat = grid.reshape(len(grid), -1, grid.shape[-1])
        norms = np.linalg.norm(flat, axis=-1)
        sims = (flat @ token) / np.maximum(norms, 1e-6)
        where[start:start + len(grid)] = sims.argmax(axis=1)
        best[start:start + len(grid)] = sims.max(axis=1)
    return best, where


def _video_hits(store: ArchiveStore, video: VideoRecord, token: np.ndarray, grid: tuple[int, int],
                seed_times: list[float] | None, n_seeds: int,
                warnings: list[SearchWarning] | None) -> list[ObjectHit]:
    try:
        features = store.video_features(video)
    except FileNotFoundError:  # replaced or removed since the lookup
        return []
    except DamagedFileError as exc:
        note_damaged(warnings, video, exc)
        return []
    dense = features.dense
    best, where = score_video_cells(dense, token)
    times = features.times
    if seed_times is not None:
        seeds = np.clip(np.searchsorted(times, np.asarray(seed_times) - 1e-6), 0, len(times) - 1)
    else:
        seeds = np.argsort(-best)[:n_seeds]
    cells = dense.kept.shape[1:]
    hits = []
    for start, end, score, peak in runs_around_peaks(times, best, seeds, 1.0 / video.fps, video.duration):
        frames = np.flatnonzero((times >= start - 1e-6) & (times < end - 1e-6))
        track = [TrackPoint(float(times[i]), cell_box(where[i], cells, grid, video.width, video.height),
                            float(best[i])) for i in frames]
        hits.append(ObjectHit(video.name, video.id, start, end, score, peak, track))
    return hits


def _candidates(store: ArchiveStore, token: np.ndarray, top_k: int,
                warnings: list[SearchWarning] | None) -> dict[int, list[float]]:
    """Candidate frame times per video from the patch index. The search deepens (×4, up to
    ``_MAX_TOKENS``) while its tokens name fewer than ``top_k`` videos: one long appearance
    (every cell of every frame of the source video) must not crowd out the others."""
    k = max(_MIN_TOKENS, _TOKENS_PER_HIT * top_k)
    stored = store.refresh_patch_index().ntotal
    while True:
        by_video: dict[int, list[float]] = defaultdict(list)
        damaged: list[tuple[VideoRecord, DamagedFileError]] = []
        for video_id, time in store.search_patches(token, k, damaged):
            by_video[video_id].append(time)
        for video, exc in damaged:
            note_damaged(warnings, video, exc)
        # (a compressed index returns fewer than k when its probed lists run out: deepening
        # still helps up to the cap, so the test is against what is stored, not what came back)
        if len(by_video) >= top_k or k >= min(stored, _MAX_TOKENS):
            return by_video
        k *= 4


def find_object(store: ArchiveStore, token: np.ndarray, grid: tuple[int, int], top_k: int = 10,
                videos: list[VideoRecord] | None = None,
                warnings: list[SearchWarning] | None = None) -> list[ObjectHit]:
    """Rank moments where the object of ``token`` appears.

    Without ``videos`` the archive's patch index supplies candidate frames (approximate when
    compressed); each candidate video is then scored exactly from its stored dense tokens.
    With ``videos`` those are scanned exactly. A video whose feature file is damaged is left
    out and reported in ``warnings``.
    """
    if top_k <= 0:
        return []
    token = np.asarray(token, np.float32).reshape(-1)
    n_seeds = max(_MIN_TOKENS // 8, 4 * top_k)
    hits: list[ObjectHit] = []
    if videos is not None:
        for video in videos:
            hits += _video_hits(store, video, token, grid, None, n_seeds, warnings)
    else:
        by_video = _candidates(store, token, top_k, warnings)
        for video_id, seed_times in by_video.items():
            record = store.catalog.video_by_id(video_id)
            if record is not None:
                hits += _video_hits(store, record, token, grid, seed_times, n_seeds, warnings)
    hits.sort(key=lambda h: -h.score)
    return hits[:top_k]
