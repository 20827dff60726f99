"""Frame, image and text encoding with any CLIP or SigLIP checkpoint (transformers).

One forward pass of the vision tower gives both what ingest stores: the projected,
L2-normalised image embedding (searched with FAISS) and the last-layer patch grid
(pooled and pruned into dense tokens).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ..errors import ModelError
from .quantize import quantize_linear_layers

__all__ = ["DEFAULT_MODEL", "IMAGE_PRECISIONS", "EncoderInfo", "FrameFeatures", "FrameEncoder",
           "default_device", "default_image_precision", "cpu_has_native_bf16"]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "openai/clip-vit-base-patch32"
# How the image tower computes (FrameEncoder.set_image_precision): float32, bfloat16 autocast,
# or int8 weights in its linear layers (dynamic quantisation, CPU only).
IMAGE_PRECISIONS = ("fp32", "bf16", "int8", "onnx-int8")
_SUPPORTED = ("clip", "siglip")
# Used when a checkpoint ships no preprocessor config.
_DEFAULT_NORMALISATION = {
    "clip": ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]),
    "siglip": ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
}


def default_device() -> str:
    """``cuda`` when a GPU is visible to torch, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AMX-BF16 or AVX-512 BF16, read from
    /proc/cpuinfo's flags; False where that file does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return bool({"amx_bf16", "avx512_bf16"} & set(line.partition(":")[2].split()))
    return False


def default_image_precision(device: str) -> str:
    """The image-tower precision for ``device`` when none is asked for: on a CPU ``bf16``
    where it computes bf16 in hardware (:func:`cpu_has_native_bf16`), else ``int8``;
    ``fp32`` elsewhere."""
    # Both keep CLIP-mode recall within a point of fp32 (docs/benchmarks.md). On a CPU with
    # AMX, bf16 autocast ran the tower 1.4x faster than int8 (2.7x fp32); with AVX-512 BF16
    # but no AMX (AMD EPYC) about as fast as int8 (3.1-3.5x fp32; faster in two runs of
    # three, int8 varying most); with neither it ran 2.9x slower than fp32, while int8
    # (dynamic quantisation, float32 model only) ran 1.7x faster. A GPU already runs the
    # model in half precision.
    if torch.device(device).type != "cpu":
        return "fp32"
    return "bf16" if cpu_has_native_bf16() else "int8"


@dataclass(frozen=True)
class EncoderInfo:
    """What an archive must know about the encoder that built it."""

    name: str  # hub id or absolute local directory
    fingerprint: str  # changes when the weights or the architecture change
    kind: str  # "clip" or "siglip"
    embed_dim: int  # size of the projected image/text embedding
    image_size: int  # square input side in pixels
    patch_size: int
    vision_width: int  # channels of a patch token
    max_text_tokens: int
    # the fingerprint recorded before it left the model's location out (it hashed the
    # config's path too): archives made then still match it
    path_fingerprint: str = ""

    @property
    def grid(self) -> tuple[int, int]:
        side = self.image_size // self.patch_size
        return side, side

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "EncoderInfo":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class FrameFeatures:
    """Encoder outputs for a batch of frames."""

    embeddings: np.ndarray  # float32 [B, D], L2-normalised
    patches: np.ndarray  # float32 [B, gh, gw, C], last-layer patch tokens


# Config keys that say where, how and with what the model was loaded, not what it is: a
# model directory copied elsewhere, or loaded in float16 on a GPU, is the same encoder.
_LOAD_KEYS = ("_name_or_path", "transformers_version", "dtype", "torch_dtype")


def _portable_config(config: dict) -> dict:
    return {k: _portable_config(v) if isinstance(v, dict) else v
            for k, v in config.items() if k not in _LOAD_KEYS}


def _fingerprint(model: torch.nn.Module, with_location: bool = False) -> str:
    """Hash of the architecture and a sample of every weight tensor: cheap, and
    different for any two checkpoints in practice. The same weights loaded from another
    folder or in float16 hash alike (samples are rounded to float16 first).
    ``with_location``: the earlier fingerprint, which also hashed where and in what dtype
    the model was loaded."""
    config = model.config.to_json_string(use_diff=False)
    if not with_location:
        config = json.dumps(_portable_config(json.loads(config)), sort_keys=True)
    digest = hashlib.sha256(config.encode())
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 64)][:64]
        if not with_location and sample.is_floating_point():
            sample = sample.to(torch.float16)
        sample = sample.to(torch.float32).cpu().numpy()
        digest.update(name.encode())
        digest.update(np.round(sample, 5).tobytes())
    return digest.hexdigest()[:16]


def _read_normalisation(source: str, kind: str) -> tuple[list[float], list[float]]:
    """Image mean/std from the checkpoint's preprocessor config, else the family default."""
    from transformers.utils import cached_file

    try:
        path = cached_file(source, "preprocessor_config.json")
    except OSError:
        path = None
    if path:
        config = json.loads(Path(path).read_text())
        if "image_mean" in config and "image_std" in config:
            return list(config["image_mean"]), list(config["image_std"])
    logger.info("no preprocessor config for %s; using %s normalisation defaults", source, kind)
    return _DEFAULT_NORMALISATION[kind]


class FrameEncoder:
    """A loaded CLIP/SigLIP model with the encoding calls vidseek needs.

    Use :meth:`load`; the constructor takes already-built parts (tests do that).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        name: str,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        device: str = "cpu",
    ) -> None:
        kind = model.config.model_type
        if kind not in _SUPPORTED:
            raise ModelError(f"{name}: model type {kind!r} is not supported (use CLIP or SigLIP)")
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self._tokenizer_lock = threading.Lock()
        self.device = device
        vision = model.config.vision_config
        text = model.config.text_config
        self.info = EncoderInfo(
            name=name,
            fingerprint=_fingerprint(model),
            path_fingerprint=_fingerprint(model, with_location=True),
            kind=kind,
            embed_dim=int(getattr(model.config, "projection_dim", None) or text.hidden_size),
            image_size=int(vision.image_size),
            patch_size=int(vision.patch_size),
            vision_width=int(vision.hidden_size),
            max_text_tokens=int(text.max_position_embeddings),
        )
        dtype = next(model.parameters()).dtype
        self.text_int8 = False  # see quantize_text
        self.image_precision = "fp32"  # see set_image_precision
        # switches are serialised (a server's query threads and its ingest share one encoder)
        self._precision_lock = threading.Lock()
        self._onnx_tower: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]] | None = None
        self._mean = torch.tensor(image_mean, dtype=dtype, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(image_std, dtype=dtype, device=device).view(1, 3, 1, 1)

    @classmethod
    def load(cls, name_or_path: str | os.PathLike, device: str | None = None,
             dtype: torch.dtype | None = None) -> "FrameEncoder":
        """Load a CLIP or SigLIP checkpoint from a hub id or a local directory."""
        from transformers import AutoModel, AutoTokenizer

        source = str(name_or_path)
        if Path(source).is_dir():
            source = str(Path(source).resolve())
        device = device or default_device()
        if dtype is None:
            dtype = torch.float16 if device.startswith("cuda") else torch.float32
        try:
            model = AutoModel.from_pretrained(source, dtype=dtype)
            tokenizer = AutoTokenizer.from_pretrained(source)
        except (OSError, ValueError) as exc:
            hint = "" if Path(source).is_dir() else (
                " (not a local directory; if the model hub is unreachable, pass a local "
                "checkpoint directory)")
            raise ModelError(f"could not load encoder {source!r}{hint}: {exc}") from exc
        kind = model.config.model_type
        if kind not in _SUPPORTED:
            raise ModelError(f"{source}: model type {kind!r} is not supported (use CLIP or SigLIP)")
        mean, std = _read_normalisation(source, kind)
        logger.info("loaded encoder %s (%s) on %s", source, kind, device)
        return cls(model, tokenizer, source, mean, std, device)

    # -- images ---------------------------------------------------------------
    def _pixel_values(self, pixels: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(pixels)).to(self.device)
        return self.normalise(x.permute(0, 3, 1, 2).to(self._mean.dtype).div_(255.0))

    def normalise(self, pixels01: torch.Tensor) -> torch.Tensor:
        """The model's input from ``[B, 3, S, S]`` RGB in [0, 1] (differentiable; training uses it)."""
        return (pixels01 - self._mean) / self._std

    def _check_size(self, pixels: np.ndarray) -> None:
        side = self.info.image_size
        if pixels.ndim != 4 or pixels.shape[1:] != (side, side, 3):
            raise ValueError(f"expected uint8 frames [B, {side}, {side}, 3], got {pixels.shape}")

    def set_image_precision(self, precision: str) -> None:
        """Compute image embeddings in ``precision`` (one of :data:`IMAGE_PRECISIONS`) from now on.

        ``bf16``: bfloat16 autocast (fast on CPUs with AVX-512 BF16/AMX; embeddings within
        cosine 0.999 of float32). ``int8``: the image tower's linear layers get int8 weights
        (:mod:`vidseek.models.quantize`; CPU and float32 only, irreversible: going back needs
        a freshly loaded encoder, so asking for another precision afterwards is a
        :class:`ModelError`). ``onnx-int8``: the image tower runs in ONNX Runtime with int8
        weights (:mod:`vidseek.models.onnx_tower`; CPU, float32 model, the ``onnx`` extra;
        exported once per model and cached). :attr:`info` (the fingerprint) is unchanged: an
        archive records the precision next to it."""
        if precision not in IMAGE_PRECISIONS:
            raise ModelError(f"image precision must be one of {', '.join(IMAGE_PRECISIONS)}, "
                             f"got {precision!r}")
        with self._precision_lock:
            self._switch_image_precision(precision)

    def _switch_image_precision(self, precision: str) -> None:
        if precision == self.image_precision:
            return
        if self.image_precision == "int8":
            raise ModelError(f"{self.info.name}: the image tower is already quantised to int8; "
                             f"load the encoder again to encode images in {precision}")
        if precision == "int8":
            self._quantize_tower("vision_model", "visual_projection", "image")
        if precision == "onnx-int8" and self._onnx_tower is None:
            if torch.device(self.device).type != "cpu" or self._mean.dtype != torch.float32:
                raise ModelError(f"{self.info.name}: onnx-int8 runs a float32 model on a CPU")
            from .onnx_tower import OnnxImageTower

            self._onnx_tower = OnnxImageTower.build(self.model, self.info.image_size,
                                                    self.info.fingerprint, self.info.name)
        self.image_precision = precision
        logger.info("image encoder of %s now computes in %s", self.info.name, precision)

    def _quantize_tower(self, tower: str, projection_name: str, what: str) -> None:
        """int8 weights for the linear layers of ``self.model.<tower>`` and of its projection
        ``self.model.<projection_name>`` (``what``: "image" or "text", for errors)."""
        quantize_linear_layers(getattr(self.model, tower), f"{self.info.name} ({what} tower)")
        projection = getattr(self.model, projection_name, None)  # CLIP; SigLIP's is inside
        if isinstance(projection, torch.nn.Linear):
            # quantize_dynamic replaces children, not the module it is given: wrap the bare layer
            wrapped = torch.nn.Sequential(projection)
            quantize_linear_layers(wrapped, f"{self.info.name} ({what} projection)")
            setattr(self.model, projection_name, wrapped[0])

    @torch.inference_mode()
    def encode_frames(self, pixels: np.ndarray) -> FrameFeatures:
        """Embed frames already resized to ``image_size`` (uint8 RGB ``[B, S, S, 3]``), in
        :attr:`image_precision`."""
        self._check_size(pixels)
        if self.image_precision == "onnx-int8" and self._onnx_tower is not None:
            values = self._pixel_values(pixels).numpy()
            pooled, hidden = (torch.from_numpy(a) for a in self._onnx_tower(values, torch.get_num_threads()))
            return self._features(pooled, hidden, len(pixels))
        with torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16,
                            enabled=self.image_precision == "bf16"):
            out = self.model.get_image_features(pixel_values=self._pixel_values(pixels))
        return self._features(out.pooler_output, out.last_hidden_state, len(pixels))

    def _features(self, pooled: torch.Tensor, hidden: torch.Tensor, count: int) -> FrameFeatures:
        emb = torch.nn.functional.normalize(pooled.float(), dim=-1)
        gh, gw = self.info.grid
        tokens = hidden.float()[:, -gh * gw:]  # CLIP prepends a class token; SigLIP has none
        patches = tokens.reshape(count, gh, gw, -1)
        return FrameFeatures(emb.cpu().numpy(), patches.cpu().numpy())

    def prepare_images(self, images: Sequence[Image.Image | np.ndarray]) -> np.ndarray:
        """Resize arbitrary images (PIL or uint8 HxWx3 arrays) the way ingest resizes frames."""
        side = self.info.image_size
        out = []
        for image in images:
            if isinstance(image, np.ndarray):
                image = Image.fromarray(image)
            out.append(np.asarray(image.convert("RGB").resize((side, side), Image.BILINEAR)))
        return np.stack(out)

    def encode_images(self, images: Sequence[Image.Image | np.ndarray]) -> np.ndarray:
        """L2-normalised embeddings ``[N, D]`` of arbitrary images."""
        return self.encode_frames(self.prepare_images(images)).embeddings

    # -- text -----------------------------------------------------------------
    def quantize_text(self) -> None:
        """Encode text with 8-bit weights from now on (:mod:`vidseek.models.quantize`: the
        text tower's linear layers). On CPU it halves the time of a query (ViT-B/32's text
        tower, a 10-token query: 16 → 8.6 ms here); embeddings stay within cosine 0.998 of
        float32. Image encoding and :attr:`info` (the fingerprint) are unchanged. CPU and
        float32 only."""
        if self.text_int8:
            return
        self._quantize_tower("text_model", "text_projection", "text")
        self.text_int8 = True
        logger.info("text encoder of %s quantised to int8", self.info.name)

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised embeddings ``[N, D]`` of text queries."""
        padding = "max_length" if self.info.kind == "siglip" else True
        with self._tokenizer_lock:  # fast tokenizers raise "Already borrowed" when shared
            batch = self.tokenizer(list(texts), padding=padding, truncation=True,
                                   max_length=self.info.max_text_tokens, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
        if self.info.kind == "siglip":
            batch.pop("attention_mask", None)  # SigLIP was trained without one
        out = self.model.get_text_features(**batch)
        emb = out.pooler_output if hasattr(out, "pooler_output") else out
        return torch.nn.functional.normalize(emb.float(), dim=-1).cpu().numpy()
