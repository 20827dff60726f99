"""Per-video feature files: frame times, frame embeddings and dense tokens.

One ``.npz`` file per indexed video, written to a temporary name and renamed into place,
so a reader never sees a half-written file. The file is the source of truth for the
vectors: the FAISS index can always be rebuilt from these files and the catalog.
"""

from __future__ import annotations

import functools
import os
import struct
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..indexer.dense import DenseTokens
from .frame_index import fsync_directory

__all__ = ["VideoFeatures", "FeatureFileStore", "save_npz_atomically", "remove_unreferenced",
           "map_npz_member"]


def _member_header(fh, info: zipfile.ZipInfo, path: Path) -> tuple[tuple, bool, np.dtype, int]:
    """``(shape, fortran, dtype, data offset)`` of an uncompressed ``.npy`` member."""
    fh.seek(info.header_offset)
    header = fh.read(30)  # zip local file header
    if header[:4] != b"PK\x03\x04":
        raise ValueError(f"{path}: damaged zip header of {info.filename}")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    fh.seek(info.header_offset + 30 + name_len + extra_len)
    version = np.lib.format.read_magic(fh)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    shape, fortran, dtype = read_header(fh)
    return shape, fortran, dtype, fh.tell()


def map_npz_member(path: Path, name: str, load_below: int = 0) -> np.ndarray:
    """A read-only memory map of one array of an uncompressed ``.npz`` (``np.savez``).

    The member's ``.npy`` bytes lie contiguously in the zip file; mapping them lets a query
    read the few frames it needs of a long video instead of the whole array. Arrays under
    ``load_below`` bytes are read instead (a map costs a file descriptor). Falls back to
    reading the array when the member is compressed.
    """
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(f"{name}.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            with zf.open(info) as fh:
                return np.lib.format.read_array(fh)
        with open(path, "rb") as fh:
            shape, fortran, dtype, offset = _member_header(fh, info, path)
            count = int(np.prod(shape))
            if count * dtype.itemsize < max(load_below, 1):
                array = np.fromfile(fh, dtype=dtype, count=count)
                return array.reshape(shape, order="F" if fortran else "C")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                     order="F" if fortran else "C")


def save_npz_atomically(folder: Path, **arrays: np.ndarray) -> str:
    """Write ``folder/KEY.npz`` under a temporary name, fsync, rename; return the new key."""
    folder.mkdir(parents=True, exist_ok=True)
    key = uuid.uuid4().hex
    final = folder / f"{key}.npz"
    tmp = final.with_suffix(".tmp.npz")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    fsync_directory(folder)
    return key


def remove_unreferenced(folder: Path, referenced: set[str], min_age_s: float) -> int:
    """Delete ``KEY.npz`` files of ``folder`` whose key is not referenced.

    Files younger than ``min_age_s`` are kept: another process may be about to commit them.
    """
    if not folder.exists():
        return 0
    removed = 0
    now = time.time()
    for path in folder.glob("*.npz"):
        if path.name.split(".")[0] not in referenced and now - path.stat().st_mtime >= min_age_s:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


@dataclass
class VideoFeatures:
    """Everything ingest computes for one video."""

    times: np.ndarray  # float64 [T], seconds
    embeddings: np.ndarray  # float32 [T, D], L2-normalised
    dense: DenseTokens

    def __post_init__(self) -> None:
        if not (len(self.times) == len(self.embeddings) == self.dense.num_frames):
            raise ValueError("times, embeddings and dense tokens disagree on the frame count")


class FeatureFileStore:
    """A directory of per-video feature files, named by opaque random keys."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._mapped = functools.lru_cache(maxsize=128)(self._map)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.npz"

    def save(self, features: VideoFeatures) -> str:
        """Write atomically; return the new file's key."""
        return save_npz_atomically(self.root, times=features.times.astype(np.float64),
                                   embeddings=features.embeddings.astype(np.float32),
                                   dense_tokens=features.dense.tokens, dense_kept=features.dense.kept)

    def load(self, key: str) -> VideoFeatures:
        with np.load(self.path(key)) as data:
            return VideoFeatures(data["times"], data["embeddings"],
                                 DenseTokens(data["dense_tokens"], data["dense_kept"]))

    def load_embeddings(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """Only ``(times, embeddings)``: npz members load lazily, tokens stay on disk."""
        with np.load(self.path(key)) as data:
            return data["times"], data["embeddings"]

    def map_embeddings(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """``(times, embeddings)``, the embeddings memory-mapped: pages are read as rows are
        touched. The last 128 maps are kept open (files never change under a key)."""
        return self._mapped(key)

    def _map(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        path = self.path(key)
        return map_npz_member(path, "times", load_below=1 << 20), map_npz_member(path, "embeddings")

    def load_tokens(self, key: str) -> np.ndarray:
        """Only the stored dense tokens ``[K, C]`` (float16)."""
        with np.load(self.path(key)) as data:
            return data["dense_tokens"]

    def load_token_layout(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """``(times, kept mask)``: which frame each stored dense token belongs to."""
        with np.load(self.path(key)) as data:
            return data["times"], data["dense_kept"]

    def keys(self) -> set[str]:
        return {p.name[: -len(".npz")] for p in self.root.glob("*.npz") if ".tmp" not in p.name}

    def remove_unreferenced(self, referenced: set[str], min_age_s: float = 3600.0) -> int:
        """Delete files no catalog row names (left by a crash or a replaced video)."""
        return remove_unreferenced(self.root, referenced, min_age_s)
