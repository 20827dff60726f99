"""``vidseek ingest URL``: index a live stream while it airs, until it ends or is stopped."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import vidseek
from vidseek.indexer import StreamOptions, StreamProgress

from .options import console, err, fail


def ingest_stream(url: str, arch: Any, options: StreamOptions) -> None:
    """Run one stream ingest into ``arch`` (opened, its settings checked; closed here) in the
    foreground; Ctrl-C and SIGTERM stop it cleanly (what aired is committed, exit 0)."""
    stop = threading.Event()
    previous: dict = {}
    last = [0.0]

    def progress(event: StreamProgress) -> None:
        now = time.monotonic()
        if event.state == "failed":  # the error line says it
            return
        if event.state == "committed" and now - last[0] < 30 and event.frames > 1:
            return  # a line every 30 s is enough on a terminal
        last[0] = now
        detail = f" ({event.error})" if event.state == "reconnecting" and event.error else ""
        err.print(f"{event.state:<12} {event.source}  session {event.session}  "
                  f"{event.indexed:.0f}s indexed, {event.lag:.1f}s behind live{detail}", markup=False)

    try:
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        report = arch.ingest_stream(url, options=options, progress=progress, stop=stop)
    except vidseek.VidseekError as exc:
        raise fail(exc)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        arch.close()
    how = "ended" if report.ended == "end" else "stopped"
    gaps = sum(b - a for a, b in report.gaps)
    console.print(f"{how}  {report.source}  session {report.session}"
                  f"{' (continued after an interruption)' if report.resumed else ''}: "
                  f"{report.seconds:.1f}s indexed, {report.frames} frames this run, "
                  f"{len(report.parts)} parts, {report.reconnects} reconnects, "
                  f"{gaps:.1f}s of gaps", markup=False)
