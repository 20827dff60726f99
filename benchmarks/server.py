"""Search server under concurrent load on loopback, with and without ingest running.

    python benchmarks/server.py [--model vit-b32|tiny|DIR] [--minutes 10] [--requests 400]
                                [--seconds 30] [--concurrency 1,4,16]

Builds (once, cached in .cache/bench/) an archive of a ≥10-minute 720p video plus the shared
clips, starts ``vidseek serve`` in a subprocess, and fires CLIP-mode text searches
(``GET /api/search``) from C client threads, each on its own keep-alive connection, until
``--requests`` answers or ``--seconds`` have passed, for each C. The last phase repeats the
highest C while a ``vidseek watch`` process ingests two more copies of the long video into
the same archive. Prints queries/s and p50/p95/p99 latency per phase; writes
benchmarks/results/server.json.

``vit-b32`` is a randomly initialised CLIP with the architecture of
openai/clip-vit-base-patch32: real text-encoding cost, meaningless rankings.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import CACHE, MEDIA, ROOT, build_model, build_video  # noqa: E402

QUERIES = ["a man talking in a car", "bikes parked on a street", "a big rabbit in a meadow",
           "a red car drives past", "someone opens a door", "a bird flies over the grass",
           "a goalkeeper drops the ball", "close-up of a face", "a bicycle wheel turns",
           "trees in the wind"]


def env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "VIDSEEK_LOG_LEVEL": "WARNING"}


def build_archive(model: Path, model_name: str, video: Path) -> Path:
    archive = CACHE / f"server-archive-{model_name}-{video.stem}"
    if not (archive / "catalog.db").exists():
        print(f"building {archive.name} (ingest of {video.name} and the shared clips)...", flush=True)
        tmp = archive.with_name(archive.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "vidseek", "ingest", str(video), str(MEDIA),
                        "--archive", str(tmp), "--model", str(model)], env=env(), check=True)
        tmp.rename(archive)
    return archive


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port: int, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited: {process.stderr.read()[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("server did not become healthy")


def load(port: int, concurrency: int, requests: int, seconds: float) -> dict:
    """C clients, each sequential on one keep-alive connection; bounded in count and time."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    issued = iter(range(requests))
    deadline = time.monotonic() + seconds

    def client(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.monotonic() < deadline:
            with lock:
                i = next(issued, None)
            if i is None:
                break
            path = "/api/search?" + urlencode({"q": QUERIES[i % len(QUERIES)], "top_k": 10})
            t0 = time.perf_counter()
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                body = response.read()
                ok = response.status == 200 and b'"moments"' in body
            except OSError as exc:
                ok, body = False, str(exc).encode()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            elapsed = time.perf_counter() - t0
            with lock:
                (latencies if ok else errors).append(elapsed if ok else body[:200].decode(errors="replace"))
        conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000 if latencies else np.zeros(1)
    return {"concurrency": concurrency, "answered": len(latencies), "errors": len(errors),
            "error_samples": errors[:3], "seconds": wall, "qps": len(latencies) / wall,
            "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max())}


def jobs_done(archive: Path) -> int:
    import sqlite3

    with sqlite3.connect(f"file:{archive / 'catalog.db'}?mode=ro", uri=True) as conn:
        try:
            return conn.execute("SELECT COUNT(*) FROM jobs WHERE status = 'done'").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def indexed_seconds(archive: Path, folder: Path) -> float:
    import sqlite3

    with sqlite3.connect(f"file:{archive / 'catalog.db'}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT COALESCE(SUM(duration), 0) FROM videos WHERE path LIKE ?",
                           [f"{folder}/%"]).fetchone()
    return float(row[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit-b32")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--requests", type=int, default=400, help="Per phase, at most.")
    parser.add_argument("--seconds", type=float, default=30.0, help="Per phase, at most.")
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--ingest-copies", type=int, default=8,
                        help="Copies of each shared clip the ingest phase indexes.")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "server.json")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    model = build_model(args.model)
    video = build_video(args.minutes)
    source = build_archive(model, args.model, video)
    work = CACHE / "server-run"
    shutil.rmtree(work, ignore_errors=True)
    archive = work / "archive"
    shutil.copytree(source, archive)  # the ingest phase writes into a copy
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "vidseek", "serve", "--archive", str(archive),
                               "--port", str(port)], env=env(), stderr=subprocess.PIPE, text=True)
    phases = []
    try:
        wait_healthy(port, server)
        load(port, 2, 10, 30)  # warm-up
        for c in levels:
            result = load(port, c, args.requests, args.seconds)
            result["ingest"] = False
            phases.append(result)
            print(f"  C={c}: {result['qps']:.1f} q/s, p50 {result['p50_ms']:.1f} ms", flush=True)
        watch = work / "incoming"
        watch.mkdir()
        for n in range(args.ingest_copies):  # many short videos: progress shows within a phase
            for clip in sorted(MEDIA.glob("*.mp4")):
                shutil.copy(clip, watch / f"{clip.stem}_{n}{clip.suffix}")
        done_before = jobs_done(archive)
        ingest = subprocess.Popen([sys.executable, "-m", "vidseek", "watch", str(watch),
                                   "--archive", str(archive), "--settle", "0.5", "--poll", "0.2"],
                                  env=env(), stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        try:
            time.sleep(5)  # model loaded, first job running
            result = load(port, levels[-1], args.requests, args.seconds)
            result["ingest"] = True
            result["videos_indexed_during"] = jobs_done(archive) - done_before
            result["video_seconds_indexed_during"] = indexed_seconds(archive, watch)
            result["videos_queued"] = len(list(watch.iterdir()))
            phases.append(result)
        finally:
            ingest.terminate()
            ingest.wait(timeout=60)
    finally:
        server.terminate()
        server.wait(timeout=60)
    summary = {"model": args.model, "archive_hours": None, "cpu_count": os.cpu_count(),
               "phases": phases}
    import vidseek

    with vidseek.Archive.open(source, create=False) as arch:
        summary["archive_hours"] = arch.totals()["seconds"] / 3600
        summary["archive_frames"] = arch.totals()["frames"]
    print(f"\nCLIP-mode text search over loopback, model {args.model}, archive "
          f"{summary['archive_hours'] * 60:.1f} min / {summary['archive_frames']} frames, "
          f"{os.cpu_count()} CPU cores\n")
    print("| clients | ingest running | answered | errors | queries/s | p50 ms | p95 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for p in phases:
        print(f"| {p['concurrency']} | {'yes' if p['ingest'] else 'no'} | {p['answered']} | "
              f"{p['errors']} | {p['qps']:.1f} | {p['p50_ms']:.1f} | {p['p95_ms']:.1f} | {p['p99_ms']:.1f} |")
    last = phases[-1]
    print(f"\nduring the last phase the daemon indexed {last['videos_indexed_during']} of "
          f"{last['videos_queued']} queued clips ({last['video_seconds_indexed_during']:.0f} s of "
          f"video in {last['seconds']:.0f} s)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
