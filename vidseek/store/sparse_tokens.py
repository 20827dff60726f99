"""Per-video sparse token files: the level-1 windows compressed by a grounding checkpoint.

``sparse/KEY.npz`` holds ``tokens`` (float16 ``[windows, n, hidden]``), the window size in
frames and the fingerprint of the adapter that computed them. Written to a temporary name
and renamed; the catalog row that names a file is updated only after the rename.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .frame_index import fsync_directory

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
        self.root.mkdir(parents=True, exist_ok=True)
        key = uuid.uuid4().hex
        final = self.path(key)
        tmp = final.with_suffix(".tmp.npz")
        with open(tmp, "wb") as fh:
            np.savez(fh, tokens=sparse.tokens.astype(np.float16), window=np.int64(sparse.window),
                     fingerprint=np.array(sparse.fingerprint))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        fsync_directory(self.root)
        return key

    def load(self, key: str) -> SparseTokens:
        with np.load(self.path(key)) as data:
            return SparseTokens(data["tokens"], int(data["window"]), str(data["fingerprint"]))

    def remove_unreferenced(self, referenced: set[str], min_age_s: float = 3600.0) -> int:
        import time

        if not self.root.exists():
            return 0
        removed = 0
        now = time.time()
        for path in self.root.glob("*.npz"):
            if path.name.split(".")[0] not in referenced and now - path.stat().st_mtime >= min_age_s:
                path.unlink(missing_ok=True)
                removed += 1
        return removed
