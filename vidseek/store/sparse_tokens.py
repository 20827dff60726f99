"""Per-video sparse token files: the level-1 windows compressed by a grounding checkpoint.

``sparse/KEY.npz`` holds ``tokens`` (float16 ``[windows, n, hidden]``), the window size in
frames and the fingerprint of the adapter that computed them. Written to a temporary name
and renamed; the catalog row that names a file is updated only after the rename.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .files import reading, remove_unreferenced, save_npz_atomically

__all__ = ["SparseTokens", "SparseTokenFiles"]


@dataclass
class SparseTokens:
    tokens: np.ndarray  # float16 [windows, n, hidden]
    window: int  # frames per window
    fingerprint: str  # adapter fingerprint of the grounding checkpoint


class SparseTokenFiles:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.npz"

    def save(self, sparse: SparseTokens) -> str:
        return save_npz_atomically(self.root, tokens=sparse.tokens.astype(np.float16),
                                   window=np.int64(sparse.window),
                                   fingerprint=np.array(sparse.fingerprint))

    def load(self, key: str) -> SparseTokens:
        """DamagedFileError for a truncated or garbled file."""
        with reading(self.path(key)), np.load(self.path(key)) as data:
            return SparseTokens(data["tokens"], int(data["window"]), str(data["fingerprint"]))

    def remove_unreferenced(self, referenced: set[str], min_age_s: float = 3600.0) -> int:
        return remove_unreferenced(self.root, referenced, min_age_s)
