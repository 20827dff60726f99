"""Live-stream ingest: lag from airing to searchable, CPU per stream, concurrent streams.

    python benchmarks/stream.py [--minutes 5] [--streams 1,2] [--model vit-b32|tiny|DIR]
                                [--commit-every 10] [--fps 1] [--decode plan,full]

A 1280x720 H.264 25 fps video (the shared clips looped; cached in .cache/bench/, shared with
benchmarks/ingest.py) is aired in real time over loopback TCP, its packets remuxed (not
re-encoded, so the sender costs next to nothing), to ``vidseek ingest``-equivalent
processes (``Archive.ingest_stream``, at ``--fps`` (default 1), one archive per run, one
process per stream). ``--decode``: ``plan`` decodes what the sampling needs (the default:
non-reference frames and whole GOPs it cannot pick are skipped), ``full`` every frame
(``skip_nonref=False``); a comma-separated list runs each, to compare their CPU.

For each sampled second of a stream, *lag* is the wall time at which a commit made it
searchable minus the wall time at which it was sent. p50/p95 are over all seconds of all
streams; a run *keeps up* when the p95 of its last third is within 5 s of its first third's
(the lag does not grow). CPU per stream is the ingest process's user+system time per
wall-clock second. Prints a table, writes benchmarks/results/stream.json; note the machine's
load (``uptime``) printed beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from ingest import build_model, build_video  # noqa: E402

_INGEST = """
import json, sys, time, vidseek
from vidseek.indexer.pipeline import IngestConfig
archive, url, name, every, out, fps, skip = sys.argv[1:8]
log = open(out, "w")
def progress(event):
    if event.state == "committed":
        log.write(json.dumps({"indexed": event.indexed, "wall": time.time(),
                              "started_at": event.started_at, "fps": event.frames_per_s}) + "\\n")
        log.flush()
config = IngestConfig(fps=float(fps), skip_nonref=skip == "plan")
with vidseek.Archive.open(archive, device="cpu", config=config) as arch:
    arch.ingest_stream(url, name=name, commit_every=float(every), reconnect=False,
                       progress=progress)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def air(video: Path, url: str, seconds: float, sent: list[float]) -> None:
    """Remux ``video``'s packets to ``url`` at their pts pace, looping, for ``seconds``."""
    import av

    with av.open(str(video)) as source:
        template = source.streams.video[0]
        tb = template.time_base
        packets = [p for p in source.demux(template) if p.size]
        first = min(p.pts for p in packets)
        length = float((max(p.pts for p in packets) - first) * tb) + 1 / 25

        def copy_of(packet: av.Packet, shift: int, stream: av.VideoStream) -> av.Packet:
            copy = av.Packet(bytes(packet))
            copy.pts, copy.dts = packet.pts + shift, packet.dts + shift
            copy.time_base = tb
            copy.is_keyframe = packet.is_keyframe
            copy.stream = stream
            return copy

        for _ in range(150):  # the ingest may not listen yet: the connection opens on the first packet
            out = av.open(url, mode="w", format="mpegts")
            stream = out.add_stream_from_template(template)
            try:
                out.mux(copy_of(packets[0], 0, stream))
                break
            except av.error.FFmpegError:
                time.sleep(0.2)
        else:
            raise RuntimeError(f"nobody listens at {url}")
    start = time.time()
    sent.append(start)
    loop = 0
    try:
        while True:
            shift = round(loop * length / tb)
            for packet in packets:
                t = loop * length + float((packet.pts - first) * tb)
                if t >= seconds:
                    return
                delay = start + t - time.time()
                if delay > 0:
                    time.sleep(delay)
                if loop or packet is not packets[0]:
                    out.mux(copy_of(packet, shift, stream))
            loop += 1
    finally:
        out.close()


def run(video: Path, model: Path, streams: int, seconds: float, every: float, fps: float,
        decode: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "archive"
        import vidseek
        from vidseek.indexer.pipeline import IngestConfig

        with vidseek.Archive.open(archive, model=model, device="cpu", config=IngestConfig(fps=fps)) as arch:
            arch.encoder  # adopted before the streams start
        procs, logs, senders, starts = [], [], [], []
        for n in range(streams):
            port = free_port()
            log = Path(tmp) / f"s{n}.jsonl"
            proc = subprocess.Popen([sys.executable, "-c", _INGEST, str(archive),
                                     f"tcp://127.0.0.1:{port}?listen=1", f"cam{n}", str(every), str(log),
                                     str(fps), decode])
            sent: list[float] = []
            sender = threading.Thread(target=air, args=(video, f"tcp://127.0.0.1:{port}", seconds, sent))
            sender.start()
            procs.append(proc)
            logs.append(log)
            senders.append(sender)
            starts.append(sent)
        usage = []
        for proc in procs:
            _, status, rusage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            usage.append(rusage.ru_utime + rusage.ru_stime)
        for sender in senders:
            sender.join()
        lags, first_third, last_third = [], [], []
        for log, sent in zip(logs, starts):
            commits = [json.loads(line) for line in log.read_text().splitlines()]
            for k in range(int(seconds * fps)):  # sampled frame k aired at sent[0] + k / fps
                done = next((c["wall"] for c in commits if c["indexed"] > (k + 0.5) / fps), None)
                if done is None:
                    continue
                lag = done - (sent[0] + k / fps)
                lags.append(lag)
                k_s = k / fps
                (first_third if k_s < seconds / 3 else last_third if k_s >= 2 * seconds / 3 else []).append(lag)
        cpu = sum(usage) / streams / seconds
    p = lambda xs, q: sorted(xs)[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")  # noqa: E731
    return {"streams": streams, "seconds": seconds, "commit_every": every, "fps": fps, "decode": decode,
            "lag_p50": p(lags, 0.5), "lag_p95": p(lags, 0.95),
            "first_third_p95": p(first_third, 0.95), "last_third_p95": p(last_third, 0.95),
            "keeps_up": bool(lags) and p(last_third, 0.95) <= p(first_third, 0.95) + 5.0,
            "cpu_per_stream": cpu, "frames": len(lags),
            "load": os.getloadavg(), "exit_codes": [proc.returncode for proc in procs]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--streams", default="1,2", help="concurrent stream counts to run")
    parser.add_argument("--model", default="vit-b32")
    parser.add_argument("--commit-every", type=float, default=10.0)
    parser.add_argument("--fps", type=float, default=1.0, help="the archive's sampling rate")
    parser.add_argument("--decode", default="plan", help="plan, full, or both: plan,full")
    args = parser.parse_args()
    video = build_video(5)
    model = build_model(args.model)
    rows = []
    for decode in args.decode.split(","):
        if decode not in ("plan", "full"):
            parser.error(f"--decode: plan or full, got {decode!r}")
        for count in (int(c) for c in args.streams.split(",")):
            print(f"{count} stream(s) for {args.minutes:g} min at {args.fps:g} fps, {decode} decode...",
                  flush=True)
            rows.append(run(video, model, count, args.minutes * 60, args.commit_every, args.fps, decode))
            print(json.dumps(rows[-1]), flush=True)
    print("\n| streams | fps | decode | minutes | lag p50 | lag p95 | p95 first / last third | keeps up "
          "| CPU per stream | load (1 min) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['streams']} | {r['fps']:g} | {r['decode']} | {r['seconds'] / 60:g} | "
              f"{r['lag_p50']:.1f} s | {r['lag_p95']:.1f} s | "
              f"{r['first_third_p95']:.1f} / {r['last_third_p95']:.1f} s | {'yes' if r['keeps_up'] else 'no'} | "
              f"{100 * r['cpu_per_stream']:.0f} % of a core | {r['load'][0]:.2f} |")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "stream.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
