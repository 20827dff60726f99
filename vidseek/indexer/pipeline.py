"""Feature extraction for one video: decode and encode overlapped in a pipeline.

A producer thread decodes and resizes frames (PyAV releases the GIL while decoding) into a
small bounded queue; the calling thread encodes batches (torch releases it too) and prunes
dense tokens. On a CPU both stages share the cores, so ingest speed is bounded by their
summed CPU time per frame: the levers are doing less work in each (:mod:`.decode` skips
frames that cannot be sampled; ``IngestConfig.precision`` makes the encoder cheaper) and
keeping their thread pools from fighting (``decode_threads``, ``torch_threads``).
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ..models.encoder import IMAGE_PRECISIONS, FrameEncoder, default_device, default_image_precision
from ..store.files import VideoFeatures
from .decode import FrameBatch, FrameSampler
from .dense import DensePruner
from ..errors import ConfigError

__all__ = ["INGEST_PRECISIONS", "IngestConfig", "extract_features", "prefetch", "thread_split",
           "torch_threads"]

logger = logging.getLogger(__name__)

# What IngestConfig.precision accepts: "auto" (IngestConfig.resolved) or an image precision.
INGEST_PRECISIONS = ("auto", *IMAGE_PRECISIONS)


@dataclass(frozen=True)
class IngestConfig:
    """How videos are turned into features."""

    fps: float = 1.0  # frames sampled per second of video
    batch_size: int = 16  # frames per encoder forward pass
    prune_threshold: float = 0.1  # mean |Δpixel| (0–255) under which a dense token is dropped
    prefetch_batches: int = 4  # decoded batches buffered ahead of the encoder
    # How the image tower computes (FrameEncoder.set_image_precision); an archive records
    # it, and refuses another (embeddings of two precisions are not compared silently).
    # "auto": the archive's own, else the device's (see resolved).
    precision: str = "auto"
    # Thread pools. 0 keeps each library's own choice (FFmpeg: about one per core; torch: one
    # per core), which makes the two pools fight over the cores. None (the default) is
    # decided per video by thread_split: with an int8, onnx-int8 or bf16 image tower on a CPU, one
    # FFmpeg thread decodes (more do not speed up decoding at 1 fps) and torch gets the
    # other cores; that split measured fastest on 2 cores. Otherwise (fp32, where the
    # encoder is the slower stage and wants every core, or a GPU) each library's choice.
    decode_threads: int | None = None  # FFmpeg threads per video
    torch_threads: int | None = None  # torch intra-op threads while encoding
    skip_nonref: bool = True  # decode no frame that sampling cannot pick (decode.FrameSampler)
    # False: decode H.264/HEVC without the deblocking filter (FrameSampler's deblock), faster
    # and not exact. Live streams (indexer.stream_reader) honour it, skip_nonref and
    # decode_threads too.
    # Not recorded by an archive: like a re-encode of the source, it moves embeddings
    # slightly without changing what they are comparable with.
    deblock: bool = True

    def __post_init__(self) -> None:
        # NaN compares false with everything, so finiteness is checked first
        if not math.isfinite(self.fps) or self.fps <= 0:
            raise ConfigError(f"fps must be a positive number, got {self.fps}")
        if self.batch_size <= 0 or self.prefetch_batches <= 0:
            raise ConfigError("batch_size and prefetch_batches must be positive")
        if not math.isfinite(self.prune_threshold) or self.prune_threshold < 0:
            raise ConfigError(f"prune_threshold must be a number >= 0, got {self.prune_threshold}")
        if self.precision not in INGEST_PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(INGEST_PRECISIONS)}, "
                              f"got {self.precision!r}")
        if any(n is not None and n < 0 for n in (self.decode_threads, self.torch_threads)):
            raise ConfigError("decode_threads and torch_threads must be >= 0 (0: the library's "
                              "choice) or None (decided per video)")

    def resolved(self, device: str | None, recorded: str | None = None) -> "IngestConfig":
        """This config with precision ``auto`` replaced: by ``recorded`` (the precision an
        existing archive was built with) when given, else by the default for ``device``
        (None: :func:`~vidseek.models.encoder.default_device`; on a CPU bf16 where it has AMX/AVX-512 BF16, else int8; fp32 on a GPU:
        :func:`~vidseek.models.encoder.default_image_precision`). Any other precision is
        kept as it is."""
        if self.precision != "auto":
            return self
        return replace(self, precision=recorded or default_image_precision(device or default_device()))


def thread_split(config: IngestConfig, precision: str, device: str, cores: int | None = None) -> tuple[int, int]:
    """``(decode_threads, torch_threads)`` for encoding at ``precision`` on ``device``: the
    config's own counts, and for each left at None, the split described in
    :class:`IngestConfig` (0: the library's choice). ``cores``: the CPUs this process may use
    (None: counted)."""
    decode, encode = 0, 0
    if precision in ("int8", "bf16", "onnx-int8") and not str(device).startswith("cuda"):
        if cores is None:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        decode, encode = 1, max(1, cores - 1)
    return (decode if config.decode_threads is None else config.decode_threads,
            encode if config.torch_threads is None else config.torch_threads)


_DONE = object()


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch intra-op threads (0: unchanged), then restore them.
    Process-wide: torch has one pool, so a search running meanwhile uses the same count."""
    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if count:
            torch.set_num_threads(before)


def prefetch(batches: Iterator[FrameBatch], depth: int) -> Iterator[FrameBatch]:
    """Run ``batches`` in a background thread, ``depth`` items ahead; re-raise its errors."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not put(batch):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)

    thread = threading.Thread(target=produce, name="vidseek-decode", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5.0)


def extract_features(
    path: str | Path,
    encoder: FrameEncoder,
    config: IngestConfig = IngestConfig(),
    on_progress: Callable[[float], None] | None = None,
) -> tuple[VideoFeatures, FrameSampler]:
    """Decode, encode and prune one video. ``on_progress(seconds_done)`` after each batch.

    Returns the features and the sampler (its ``duration`` and ``frames_decoded``).
    Raises :class:`~vidseek.errors.VideoError` subclasses for unusable files. Precision
    ``auto`` (no archive here) is the default for the encoder's device: on CPU that
    quantises ``encoder`` to int8 for good.
    """
    side = encoder.info.image_size
    precision = config.resolved(encoder.device).precision
    encoder.set_image_precision(precision)
    decode_threads, encode_threads = thread_split(config, precision, str(encoder.device))
    sampler = FrameSampler(path, fps=config.fps, size=(side, side), batch_size=config.batch_size,
                           skip_nonref=config.skip_nonref, threads=decode_threads,
                           deblock=config.deblock)
    pruner = DensePruner(encoder.info.grid, threshold=config.prune_threshold)
    times, embeddings = [], []
    with torch_threads(encode_threads):
        for batch in prefetch(iter(sampler), config.prefetch_batches):
            out = encoder.encode_frames(batch.pixels)
            pruner.add(batch.pixels, out.patches)
            times.append(batch.times)
            embeddings.append(out.embeddings)
            if on_progress is not None:
                on_progress(float(batch.times[-1]))
    features = VideoFeatures(
        times=np.concatenate(times),
        embeddings=np.concatenate(embeddings).astype(np.float32),
        dense=pruner.result(),
    )
    return features, sampler
