"""Archives of 10, 100 and 1,000 hours of frame features, written straight into the store.

    python benchmarks/archive_scale.py [--hours 10,100,1000] [--video-minutes 60]
                                       [--queries 200] [--dir .cache/bench/scale]

No video is decoded: each hour of footage is 3,600 frame embeddings (1 fps, 512-d, as
CLIP ViT-B/32) drawn by :class:`vidseek.synth.features.SceneFeatures` — scenes of a few to
tens of seconds around 4,096 recurring themes, plus the query texts' own embeddings as
themes — committed video by video through ``ArchiveStore.commit_video`` exactly as ingest
commits (feature file, catalog, index log, compaction/retraining when due). Each video
also gets two planted events (5 frames at cosine 0.9 to one query's embedding).

At each size a fresh process reads the archive's files once (a server that has answered
queries for a while has them in the page cache), opens the archive and measures, for
``--queries`` distinct text queries, ``Archive.search(text, top_k=10)`` end to end (text
encoding with a randomly initialised ViT-B/32-shaped text tower and a word-level tokenizer,
index search, moment building) with float32 text encoding and again with int8
(``int8_text``), and the frame index's recall@10 against an exact search, for the
planted text queries and for as many queries drawn from the archive's own distribution
(whose neighbours compete closely). Prints a table; writes
benchmarks/results/archive_scale.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "bench"
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ADJECTIVES = ["red", "small", "old", "tall", "young", "dark", "bright", "wet"]
SUBJECTS = ["goalkeeper", "dog", "car", "woman", "boat", "bird", "child", "horse"]
ACTIONS = ["drops the ball", "runs", "turns left", "jumps", "stops", "falls", "waves"]
PLACES = ["on the beach", "in the rain", "at night", "in a field", "on a street"]


def query_texts(count: int) -> list[str]:
    combos = list(itertools.product(ADJECTIVES, SUBJECTS, ACTIONS, PLACES))
    rng = np.random.default_rng(0)
    return [f"a {a} {s} {v} {p}" for a, s, v, p in
            (combos[i] for i in rng.choice(len(combos), count, replace=False))]


def build_model() -> Path:
    """CLIP ViT-B/32's shape (text tower 512 wide, 12 layers), random weights."""
    out = CACHE / "model-vit-b32-words"
    if not (out / "config.json").exists():
        from vidseek.models.tiny import build_tiny_clip

        words = sorted({w for phrase in ADJECTIVES + SUBJECTS + ACTIONS + PLACES + ["a"]
                        for w in phrase.split()})
        build_tiny_clip(out, image_size=224, patch_size=32, width=768, layers=12,
                        embed_dim=512, max_text_tokens=77, text_width=512, words=words)
    return out


def disk_bytes(path: Path) -> dict[str, int]:
    sizes = {"features": 0, "index": 0, "catalog": 0}
    for p in path.rglob("*"):
        if p.is_file():
            part = ("features" if p.parent.name in ("features", "sparse")
                    else "catalog" if p.name.startswith("catalog.db") else "index")
            sizes[part] += p.stat().st_size
    return sizes


class ExactTopK:
    """Running exact top-10 frame ids per query over every committed vector."""

    def __init__(self, queries: np.ndarray, k: int = 10) -> None:
        self.queries, self.k = queries, k
        self.scores = np.full((len(queries), k), -np.inf, np.float32)
        self.ids = np.full((len(queries), k), -1, np.int64)

    def update(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        sims = self.queries @ vectors.T
        scores = np.concatenate([self.scores, sims], axis=1)
        all_ids = np.concatenate([self.ids, np.broadcast_to(ids, sims.shape)], axis=1)
        top = np.argpartition(-scores, self.k, axis=1)[:, :self.k]
        self.scores = np.take_along_axis(scores, top, 1)
        self.ids = np.take_along_axis(all_ids, top, 1)


def build(archive: Path, model: Path, texts: list[str], hours_list: list[int],
          video_minutes: int, measure) -> list[dict]:
    from vidseek.models import FrameEncoder
    from vidseek.store.archive_store import ArchiveStore
    from vidseek.store.catalog import frame_ids
    from vidseek.synth.features import SceneFeatures, commit_features

    encoder = FrameEncoder.load(model, device="cpu")
    text_vectors = encoder.encode_text(texts)
    shutil.rmtree(archive, ignore_errors=True)
    store = ArchiveStore(archive)
    store.set_manifest({"encoder": encoder.info.to_dict(),
                        "ingest": {"fps": 1.0, "prune_threshold": 0.0},
                        "vidseek_version": "benchmark", "created": time.time()})
    gen = SceneFeatures(512, themes=4096, seed=0)
    gen.add_themes(text_vectors)
    native = gen.queries(len(texts))
    exact_text, exact_native = ExactTopK(text_vectors), ExactTopK(native)
    frames_per_video = video_minutes * 60
    rows, built_s, video = [], 0.0, 0
    for hours in hours_list:
        while video * video_minutes < hours * 60:
            emb = gen.video(frames_per_video)
            for _ in range(2):
                q = int(gen.rng.integers(len(texts)))
                gen.plant(emb, int(gen.rng.integers(0, frames_per_video - 5)), 5, text_vectors[q])
            t0 = time.perf_counter()
            record = commit_features(store, f"/synthetic/video-{video:06d}.mp4", emb)
            built_s += time.perf_counter() - t0
            ids = frame_ids(record.id, len(emb))
            exact_text.update(ids, emb)
            exact_native.update(ids, emb)
            video += 1
            if video % 50 == 0:
                print(f"  {video * video_minutes / 60:.0f} h committed, {built_s:.0f} s", flush=True)
        np.savez(archive.parent / "scale-queries.npz", text=text_vectors, native=native,
                 exact_text=exact_text.ids, exact_native=exact_native.ids)
        index = store.refresh_index()
        row = {"hours": hours, "vectors": index.ntotal, "kind": index.kind,
               "delta_vectors": index.delta_ntotal, "build_s": built_s,
               "disk": disk_bytes(archive)}
        row.update(measure(archive, model, texts))
        rows.append(row)
        print_row(row)
    return rows


def measure_in_fresh_process(archive: Path, model: Path, texts: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--measure", str(archive), "--model", str(model),
                          "--queries", str(len(texts))], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def exact_scores(store, query: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Exact cosine similarities of frame ids, from the feature files."""
    from vidseek.store.catalog import FRAME_ID_BITS

    scores = []
    for i in ids.tolist():
        video = store.catalog.video_by_id(i >> FRAME_ID_BITS)
        row = np.array([i & ((1 << FRAME_ID_BITS) - 1)])
        scores.append(float(store.video_frames(video).embeddings(row)[0] @ query))
    return np.array(scores)


def rss_mb(kind: str = "Rss") -> float:
    """Resident memory in MB: "RssAnon" (the process's own), "RssFile" (mapped file pages:
    the page cache of the memory-mapped index, evictable), or both ("Rss")."""
    with open("/proc/self/status") as fh:
        fields = dict(line.split(":", 1) for line in fh)
    if kind == "Rss":
        return rss_mb("RssAnon") + rss_mb("RssFile")
    return int(fields[kind].split()[0]) / 1e3


def warm_page_cache(archive: Path) -> float:
    """Read every file of the archive once (as a server that has been answering queries for
    a while has them in the page cache); returns the seconds it took."""
    t0 = time.perf_counter()
    for path in sorted(archive.rglob("*")):
        if path.is_file():
            with open(path, "rb") as fh:
                while fh.read(1 << 24):
                    pass
    return time.perf_counter() - t0


def timed_queries(arch, texts: list[str]) -> tuple[list[float], list[float]]:
    """Seconds per end-to-end search and per text encoding (measured separately)."""
    for text in texts[:10]:
        arch.search(text, top_k=10)
    latencies, encode = [], []
    for text in texts:
        t0 = time.perf_counter()
        arch.encoder.encode_text([text])
        t1 = time.perf_counter()
        arch.search(text, top_k=10)
        t2 = time.perf_counter()
        encode.append(t1 - t0)
        latencies.append(t2 - t1)
    return latencies, encode


def measure(archive: Path, model: Path, count: int, nprobe: int | None = None) -> dict:
    import vidseek

    texts = query_texts(count)
    saved = np.load(archive.parent / "scale-queries.npz")
    warm_s = warm_page_cache(archive)
    t0 = time.perf_counter()
    arch = vidseek.Archive.open(archive, model=model, device="cpu", create=False)
    arch.encoder.encode_text(["warm up"])
    rss_model, anon_model = rss_mb(), rss_mb("RssAnon")
    index = arch._store.refresh_index()
    if nprobe:
        index.set_nprobe(nprobe)
    open_s = time.perf_counter() - t0
    rss_open = rss_mb()
    latencies, encode = timed_queries(arch, texts)
    arch.encoder.quantize_text()
    latencies_int8, encode_int8 = timed_queries(arch, texts)
    recall, strict, search = {}, {}, []
    for name in ("text", "native"):
        found, overlap = [], []
        for q, truth in zip(saved[name], saved[f"exact_{name}"]):
            t0 = time.perf_counter()
            _, ids = index.search(q[None], 10)
            search.append(time.perf_counter() - t0)
            # ann-benchmarks' recall: a result counts when its exact score reaches the exact
            # 10th best (minus 1e-3), so ties among equally good frames are not misses
            kth = exact_scores(arch._store, q, truth).min()
            got = exact_scores(arch._store, q, ids[0][ids[0] >= 0])
            found.append(float((got >= kth - 1e-3).sum()) / 10)
            overlap.append(len(set(ids[0].tolist()) & set(truth.tolist())) / 10)
        recall[name], strict[name] = float(np.mean(found)), float(np.mean(overlap))
    ms = lambda xs, p: 1000 * float(np.percentile(xs, p))  # noqa: E731
    return {"open_s": open_s, "page_cache_warm_s": warm_s, "base_mapped": index.base_is_mapped,
            "query_p50_ms": ms(latencies, 50), "query_p99_ms": ms(latencies, 99),
            "encode_p50_ms": ms(encode, 50),
            "query_int8_p50_ms": ms(latencies_int8, 50), "query_int8_p99_ms": ms(latencies_int8, 99),
            "encode_int8_p50_ms": ms(encode_int8, 50), "index_search_p50_ms": ms(search, 50),
            "recall10_text": recall["text"], "recall10_native": recall["native"],
            "same_ids10_text": strict["text"], "same_ids10_native": strict["native"],
            "nprobe": index.nprobe,
            "rss_index_mb": rss_open - rss_model, "rss_after_queries_mb": rss_mb() - rss_model,
            "anon_after_queries_mb": rss_mb("RssAnon") - anon_model,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def print_row(row: dict) -> None:
    h = row["hours"]
    disk = row["disk"]
    print(f"{h:>6} h | {row['vectors']:>9,} vectors {row['kind']:>6} | build {row['build_s']:7.0f} s | "
          f"disk {sum(disk.values()) / h / 1e6:6.2f} MB/h (index {disk['index'] / h / 1e6:5.2f}) | "
          f"RAM {row['anon_after_queries_mb'] / h:5.2f} MB/h (+ mapped {(row['rss_after_queries_mb'] - row['anon_after_queries_mb']) / h:5.2f}) | query p50 {row['query_p50_ms']:6.1f} "
          f"p99 {row['query_p99_ms']:6.1f} ms (encode p50 {row['encode_p50_ms']:5.1f}) | int8 text: "
          f"p50 {row['query_int8_p50_ms']:6.1f} p99 {row['query_int8_p99_ms']:6.1f} ms (encode p50 "
          f"{row['encode_int8_p50_ms']:5.1f}; index "
          f"{row['index_search_p50_ms']:5.2f}) | recall@10 text {row['recall10_text']:.3f} "
          f"native {row['recall10_native']:.3f} (same ids {row['same_ids10_text']:.2f} / "
          f"{row['same_ids10_native']:.2f}; nprobe {row['nprobe']})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", default="10,100,1000")
    parser.add_argument("--video-minutes", type=int, default=60)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--dir", type=Path, default=CACHE / "scale")
    parser.add_argument("--measure", type=Path,
                        help="only measure an archive built before (e.g. with another --nprobe)")
    parser.add_argument("--nprobe", type=int, help="IVF lists searched (default: the index's, 32)")
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "archive_scale.json")
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.model or build_model(), args.queries, args.nprobe)))
        return
    model = build_model()
    texts = query_texts(args.queries)
    args.dir.mkdir(parents=True, exist_ok=True)
    rows = build(args.dir / "archive", model, texts, [int(h) for h in args.hours.split(",")],
                 args.video_minutes, measure_in_fresh_process)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "video_minutes": args.video_minutes,
                                    "queries": args.queries}, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
