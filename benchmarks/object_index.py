"""Size and speed of the dense patch-token index (object queries), exact vs IVF-PQ.

    python benchmarks/object_index.py [--hours 1,4] [--dim 768] [--cells 16] [--kept 1.0]

For each size, builds the index straight from synthetic tokens (clustered unit vectors, as
patch tokens are: most cells show background, objects recur), with 20 noisy copies of a
planted object token, exactly as `PatchIndex` would hold them at 1 fps with ``--cells``
pooled cells per frame (16 for ViT-B/32) and ``--kept`` of them kept by pruning. Prints
bytes per hour of video on disk, build time, query p50 and the recall of the planted copies
among the top 256 candidates (what an object query re-scores exactly), against the exact
index. Writes benchmarks/results/object_index.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vidseek.store.frame_index import ArraySource  # noqa: E402
from vidseek.store.patch_index import PatchIndex, pq_bytes  # noqa: E402


def synthetic_tokens(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    centres = rng.normal(size=(256, dim)).astype(np.float32)
    tokens = centres[rng.integers(0, 256, n)] + 0.6 * rng.normal(size=(n, dim)).astype(np.float32)
    return tokens / np.linalg.norm(tokens, axis=1, keepdims=True)


def measure(kind: str, vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray,
            planted: set[int], hours: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        threshold = 1 << 62 if kind == "flat" else PatchIndex.MIN_COMPRESS_THRESHOLD
        index = PatchIndex(Path(tmp) / "p.faiss", vectors.shape[1], compress_threshold=threshold,
                           source=ArraySource(ids, vectors))
        t0 = time.perf_counter()
        index.rebuild(generation=1)
        build = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in (Path(tmp) / "p.d").glob("base-*"))
        latencies, found = [], []
        for q in queries:
            t0 = time.perf_counter()
            _, got = index.search(q[None], 256)
            latencies.append(time.perf_counter() - t0)
            found.append(len(planted & set(got[0].tolist())) / len(planted))
    return {"kind": index.kind, "vectors": len(ids), "bytes_per_hour": size / hours,
            "build_s": build, "query_p50_ms": 1000 * float(np.median(latencies)),
            "recall_planted_at_256": float(np.mean(found))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", default="1,4")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--cells", type=int, default=16)
    parser.add_argument("--kept", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "object_index.json")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for hours in (float(h) for h in args.hours.split(",")):
        n = int(hours * 3600 * args.cells * args.kept)
        vectors = synthetic_tokens(n, args.dim, rng)
        target = rng.normal(size=args.dim).astype(np.float32)
        target /= np.linalg.norm(target)
        where = rng.choice(n, 20, replace=False)
        copies = target + 0.35 * rng.normal(size=(20, args.dim)).astype(np.float32) / np.sqrt(args.dim) * 4
        vectors[where] = copies / np.linalg.norm(copies, axis=1, keepdims=True)
        ids = np.arange(n, dtype=np.int64)
        queries = np.stack([target] * 5)
        for kind in ("flat", "ivfpq"):
            row = measure(kind, vectors, ids, queries, set(where.tolist()), hours)
            row["hours"] = hours
            rows.append(row)
            print(f"  {hours:g} h {row['kind']}: {row['bytes_per_hour'] / 1e6:.1f} MB/h", flush=True)
    print(f"\nPatch index, {args.cells} cells/frame at 1 fps, {args.dim}-d tokens, "
          f"{100 * args.kept:.0f}% kept; IVF-PQ at {pq_bytes(args.dim)} bytes/vector\n")
    print("| hours | index | vectors | MB per hour | build s | query p50 ms | planted recall@256 |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['hours']:g} | {r['kind']} | {r['vectors']:,} | {r['bytes_per_hour'] / 1e6:.1f} | "
              f"{r['build_s']:.1f} | {r['query_p50_ms']:.1f} | {r['recall_planted_at_256']:.2f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)}, "rows": rows}, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
