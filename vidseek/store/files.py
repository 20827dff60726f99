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
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import numpy.typing as npt

from ..atomic import atomic_write
from ..errors import ArchiveError
from .dense_tokens import DenseTokens

__all__ = ["VideoFeatures", "FeatureFileStore", "FrameReader", "save_npz_atomically",
           "remove_unreferenced", "npz_row_layout", "read_rows", "DamagedFileError", "reading"]


class DamagedFileError(ArchiveError, ValueError):
    """A file of the archive (feature, sparse-token or index file) exists but cannot be
    parsed: truncated or garbled. ``path`` names it. A ``ValueError`` too, so the store's
    "unreadable counts as missing" handlers catch it with the other failures to read."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: damaged file ({problem})")


# What parsing a truncated or garbled .npz raises: zipfile's own errors are not OSErrors
# or ValueErrors, and a cut member ends in EOFError or a zlib error.
_PARSE_ERRORS = (zipfile.BadZipFile, EOFError, zlib.error, struct.error, ValueError, KeyError,
                 IndexError)


@contextmanager
def reading(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn a failure to parse the stored file ``path`` into :class:`DamagedFileError`.

    A missing file stays ``FileNotFoundError`` (a video replaced or removed meanwhile), and
    other ``OSError``\ s (permissions, I/O errors) stay what they are."""
    try:
        yield
    except DamagedFileError:
        raise
    except _PARSE_ERRORS as exc:
        raise DamagedFileError(path, f"{type(exc).__name__}: {exc}") from exc


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


@dataclass(frozen=True)
class RowLayout:
    """Where the rows of a C-order array member of an uncompressed ``.npz`` lie."""

    offset: int
    shape: tuple
    dtype: np.dtype

    @functools.cached_property
    def row_bytes(self) -> int:  # computed once: a query reads rows of many files
        return int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize


def npz_row_layout(path: Path, name: str) -> RowLayout | None:
    """The layout of member ``name``, or None when it is compressed or Fortran-ordered."""
    with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
        info = zf.getinfo(f"{name}.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            return None
        shape, fortran, dtype, offset = _member_header(fh, info, path)
    return None if fortran and len(shape) > 1 else RowLayout(offset, tuple(shape), dtype)


def read_rows(fd: int, layout: RowLayout, rows: np.ndarray | slice) -> np.ndarray:
    """Rows of an array member by positional reads: one read for a slice (step 1), one per
    run of consecutive rows for an array of row indices (each in range), in their order."""
    width, size = layout.shape[1:], layout.row_bytes
    if isinstance(rows, slice):
        start, stop, step = rows.indices(layout.shape[0])
        if step != 1:
            raise ValueError("read_rows reads contiguous slices only")
        count = max(0, stop - start)
        buf = os.pread(fd, count * size, layout.offset + start * size)
        return np.frombuffer(buf, layout.dtype).reshape((count, *width))
    indices = np.asarray(rows)
    if indices.dtype.kind not in "iu" or (len(indices) and not (
            0 <= indices.min() and indices.max() < layout.shape[0])):
        raise ValueError(f"row indices must be integers in [0, {layout.shape[0]})")
    if len(indices) == 0:
        return np.zeros((0, *width), layout.dtype)
    wanted = np.unique(indices)
    breaks = np.flatnonzero(np.diff(wanted) != 1) + 1
    chunks = [os.pread(fd, len(run) * size, layout.offset + int(run[0]) * size)
              for run in np.split(wanted, breaks)]
    data = np.frombuffer(b"".join(chunks), layout.dtype).reshape((len(wanted), *width))
    return data[np.searchsorted(wanted, indices)]


def save_npz_atomically(folder: Path, **arrays: npt.ArrayLike) -> str:
    """Write ``folder/KEY.npz`` under a temporary name, fsync, rename; return the new key."""
    folder.mkdir(parents=True, exist_ok=True)
    key = uuid.uuid4().hex

    # typed Any: mypy would match the values against savez's ``allow_pickle: bool`` too
    members: dict[str, Any] = arrays

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **members)

    atomic_write(folder / f"{key}.npz", write)
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
        try:
            age = now - path.stat().st_mtime
        except FileNotFoundError:  # renamed or removed meanwhile by another process
            continue
        if path.name.split(".")[0] not in referenced and age >= min_age_s:
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
        # Layouts of feature files: a few hundred bytes each, and files never change under a key
        self._layouts = functools.lru_cache(maxsize=1 << 16)(self._layout)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.npz"

    def save(self, features: VideoFeatures) -> str:
        """Write atomically; return the new file's key."""
        return save_npz_atomically(self.root, times=features.times.astype(np.float64),
                                   embeddings=features.embeddings.astype(np.float32),
                                   dense_tokens=features.dense.tokens, dense_kept=features.dense.kept)

    # Every read raises DamagedFileError for a truncated or garbled file (see reading()).
    def load(self, key: str) -> VideoFeatures:
        with reading(self.path(key)), np.load(self.path(key)) as data:
            return VideoFeatures(data["times"], data["embeddings"],
                                 DenseTokens(data["dense_tokens"], data["dense_kept"]))

    def load_embeddings(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """Only ``(times, embeddings)``: npz members load lazily, tokens stay on disk."""
        with reading(self.path(key)), np.load(self.path(key)) as data:
            return data["times"], data["embeddings"]

    def frames(self, key: str) -> "FrameReader":
        """Reads chosen frames' times and embeddings without loading the whole file."""
        return FrameReader(*self._layouts(key))

    def _layout(self, key: str) -> tuple[Path, RowLayout | None, RowLayout | None]:
        path = self.path(key)
        with reading(path):
            return path, npz_row_layout(path, "times"), npz_row_layout(path, "embeddings")

    def load_tokens(self, key: str) -> np.ndarray:
        """Only the stored dense tokens ``[K, C]`` (float16)."""
        with reading(self.path(key)), np.load(self.path(key)) as data:
            return data["dense_tokens"]

    def load_token_layout(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """``(times, kept mask)``: which frame each stored dense token belongs to."""
        with reading(self.path(key)), np.load(self.path(key)) as data:
            return data["times"], data["dense_kept"]

    def keys(self) -> set[str]:
        return {p.name[: -len(".npz")] for p in self.root.glob("*.npz") if ".tmp" not in p.name}

    def remove_unreferenced(self, referenced: set[str], min_age_s: float = 3600.0) -> int:
        """Delete files no catalog row names (left by a crash or a replaced video)."""
        return remove_unreferenced(self.root, referenced, min_age_s)


class FrameReader:
    """Times and embeddings of chosen frames of one feature file (a query reads kilobytes of
    an hour-long video, not megabytes); falls back to loading a file written compressed."""

    def __init__(self, path: Path, times: RowLayout | None, embeddings: RowLayout | None) -> None:
        self.path, self._times, self._emb = path, times, embeddings
        self._loaded: tuple[np.ndarray, np.ndarray] | None = None
        if times is None or embeddings is None:
            with reading(path), np.load(path) as data:
                self._loaded = (data["times"], data["embeddings"])

    def __len__(self) -> int:
        if self._loaded is not None:
            return len(self._loaded[0])
        assert self._times is not None  # both layouts are known when nothing was loaded
        return self._times.shape[0]

    def times(self, rows: slice = slice(None)) -> np.ndarray:
        """Frame times (8 bytes a frame: one read), of every frame or of a slice."""
        if self._loaded is not None:
            return self._loaded[0][rows]
        assert self._times is not None
        return self._read(self._times, rows)

    def embeddings(self, rows: slice | np.ndarray) -> np.ndarray:
        """Embeddings of ``rows`` (a slice, or frame indices)."""
        if self._loaded is not None:
            return self._loaded[1][rows]
        assert self._emb is not None
        return self._read(self._emb, rows)

    def _read(self, layout: RowLayout, rows: slice | np.ndarray) -> np.ndarray:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            with reading(self.path):  # a file cut since its layout was read: short reads
                return read_rows(fd, layout, rows)
        finally:
            os.close(fd)
