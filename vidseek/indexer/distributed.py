"""Feature extraction spread over a Ray cluster (Ray Data); results committed by one writer.

Each Ray worker is an actor holding the encoder once; it decodes, encodes and prunes whole
videos (one per task, so a worker's memory holds one video's features) and sends back the
features. The caller — the only process writing the archive — commits each video as it
arrives, with local ingest's guarantees (atomic per video; a crash leaves the archive
consistent). The worker code is the same :func:`~vidseek.indexer.pipeline.extract_features`
local ingest runs, so both produce the same vectors.

Results arrive in the order of ``paths`` (Ray Data's ``preserve_order``): the archive's
video ids then match a local ingest of the same files.
"""

from __future__ import annotations

import logging
import pickle
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import MissingDependencyError, ModelError, VideoError
from ..store.files import VideoFeatures
from .pipeline import IngestConfig, extract_features

__all__ = ["RayOptions", "RemoteFeatures", "extract_on_ray"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to run."""

    address: str | None = None  # a cluster ("ray://host:10001", "auto"); None: a local instance
    workers: int | None = None  # encoder actors; None: one per CPU (or GPU) of the cluster
    num_cpus: int | None = None  # CPUs of a local instance started here; None: all
    device: str | None = None  # the workers' torch device; None: cuda where they have one


@dataclass
class RemoteFeatures:
    """What a worker sends back for one video."""

    features: VideoFeatures
    duration: float  # seconds of video decoded
    seconds: float  # wall time of the extraction on the worker


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("distributed ingest needs Ray: pip install 'vidseek[ray]'") from exc
    return ray


class _FeatureWorker:
    """A Ray Data actor: loads the encoder once, then extracts one video per call."""

    def __init__(self, model: str, fingerprint: str, config: dict[str, Any], device: str | None) -> None:
        from ..models.encoder import FrameEncoder

        self.encoder = FrameEncoder.load(model, device=device)
        if self.encoder.info.fingerprint != fingerprint:  # other weights on this node
            raise ModelError(f"worker's {model!r} has fingerprint {self.encoder.info.fingerprint}, "
                             f"the archive's encoder {fingerprint}: install the same model on every node")
        self.config = IngestConfig(**config)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        results = []
        for path in batch["path"]:
            t0 = time.perf_counter()
            try:
                features, sampler = extract_features(path, self.encoder, self.config)
                result: Any = RemoteFeatures(features, sampler.duration, time.perf_counter() - t0)
            except VideoError as exc:
                result = ("error", exc.problem)
            except OSError as exc:
                result = ("error", f"cannot read the file: {exc.strerror or exc}")
            results.append(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
        return {"path": [str(p) for p in batch["path"]], "result": results}


def extract_on_ray(paths: list[Path], model: str, fingerprint: str, config: IngestConfig,
                   options: RayOptions = RayOptions()) -> Iterator[tuple[Path, RemoteFeatures | VideoError]]:
    """``(path, features or error)`` for each of ``paths``, in order, computed on Ray.

    Connects to ``options.address`` (or starts a local instance, shut down at the end)
    unless Ray is already initialised in this process. ``model`` must load on every
    worker (a hub id in each node's cache, or a path on shared storage).
    """
    if not paths:
        return
    ray = _import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=options.address, num_cpus=options.num_cpus, log_to_driver=False,
                 include_dashboard=False)
    context = ray.data.DataContext.get_current()
    keep_order = context.execution_options.preserve_order
    try:
        context.execution_options.preserve_order = True
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        gpu = options.device.startswith("cuda") if options.device else gpus > 0
        if gpu and not gpus:
            raise ModelError(f"device {options.device!r} asked for, but the Ray cluster has no GPU")
        slots = gpus if gpu else int(resources.get("CPU", 1))
        workers = max(1, min(options.workers or slots, len(paths)))
        logger.info("extracting %d videos on Ray with %d %s workers", len(paths), workers,
                    "GPU" if gpu else "CPU")
        dataset = ray.data.from_items([{"path": str(p)} for p in paths],
                                      override_num_blocks=len(paths))
        dataset = dataset.map_batches(
            _FeatureWorker, batch_size=1, concurrency=workers,
            num_gpus=1 if gpu else 0, num_cpus=0 if gpu else 1,
            fn_constructor_kwargs=dict(model=model, fingerprint=fingerprint,
                                       config=asdict(config), device="cuda" if gpu else "cpu"))
        for row in _rows(ray, dataset):
            path = Path(row["path"])
            result = pickle.loads(row["result"])
            if isinstance(result, tuple):
                yield path, VideoError(path, result[1])
            else:
                yield path, result
    finally:
        context.execution_options.preserve_order = keep_order
        if started_here:
            ray.shutdown()


def _rows(ray, dataset) -> Iterator[dict[str, Any]]:
    """The dataset's rows; a worker that could not start (a model that does not load or
    does not match) raises its own :class:`ModelError`, not Ray's wrapper of it."""
    try:
        yield from dataset.iter_rows()
    except ray.exceptions.RayError as exc:
        cause = exc
        while cause is not None and not isinstance(cause, ModelError):
            cause = getattr(cause, "cause", None) or cause.__cause__
        if isinstance(cause, ModelError):
            raise cause from exc
        raise ModelError(f"distributed ingest failed on the Ray cluster: {exc}") from exc
