"""Prometheus metrics of one server: request and per-stage latency histograms, archive gauges.

Each app has its own registry, so several apps in one process (tests) do not collide.
"""

from __future__ import annotations

from typing import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

__all__ = ["ServerMetrics", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _ArchiveCollector:
    """Gauges read at scrape time: the archive's size and the job queue."""

    def __init__(self, read: Callable[[], dict]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = self._read()
        yield GaugeMetricFamily("vidseek_videos", "Videos in the archive.", value=state["videos"])
        yield GaugeMetricFamily("vidseek_video_seconds", "Seconds of video in the archive.",
                                value=state["seconds"])
        yield GaugeMetricFamily("vidseek_catalog_generation", "Catalog generation (bumped per commit).",
                                value=state["generation"])
        jobs = GaugeMetricFamily("vidseek_jobs", "Ingest jobs by status.", labels=["status"])
        for status, count in state["jobs"].items():
            jobs.add_metric([status], count)
        yield jobs
        lag = GaugeMetricFamily("vidseek_stream_lag_seconds", "Live streams being ingested: "
                                "seconds between the airing of the newest searchable frame and now.",
                                labels=["stream"])
        indexed = GaugeMetricFamily("vidseek_stream_indexed_seconds", "Live streams being "
                                    "ingested: seconds of the session searchable.", labels=["stream"])
        rate = GaugeMetricFamily("vidseek_stream_frames_per_second", "Live streams being "
                                 "ingested: frames indexed per second over the last commit "
                                 "interval (falling toward 0 while no commit comes; absent "
                                 "until an ingest's second commit).", labels=["stream"])
        for stream, (behind, seconds, frames_per_s) in state.get("streams", {}).items():
            lag.add_metric([stream], behind)
            indexed.add_metric([stream], seconds)
            if frames_per_s is not None:
                rate.add_metric([stream], frames_per_s)
        yield lag
        yield indexed
        yield rate


class ServerMetrics:
    def __init__(self, read_archive_state: Callable[[], dict]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "vidseek_http_request_seconds", "HTTP request latency by route.",
            ["method", "route", "status"], buckets=_BUCKETS, registry=self.registry)
        self.stages = Histogram(
            "vidseek_stage_seconds", "Latency of each query stage: encode_query and "
            "retrieve (clip mode); ground, level1, level2, level3 (grounded mode); object; "
            "thumbnail.", ["stage"], buckets=_BUCKETS, registry=self.registry)
        self.searches = Counter("vidseek_searches", "Searches answered, by mode and kind.",
                                ["mode", "kind"], registry=self.registry)
        # exported as vidseek_damaged_files_total
        self.damaged = Counter("vidseek_damaged_files", "Damaged archive files that searches "
                               "met and left out (each time), by kind of file.", ["kind"],
                               registry=self.registry)
        self.registry.register(_ArchiveCollector(read_archive_state))

    def observe_stages(self, timings: dict[str, float]) -> None:
        for stage, seconds in timings.items():
            self.stages.labels(stage).observe(seconds)

    def count_damaged(self, warnings: list) -> list[str]:
        """Count a search's warnings (``SearchWarning``: ``kind``, ``str()``); their messages."""
        for warning in warnings:
            self.damaged.labels(warning.kind).inc()
        return [str(w) for w in warnings]

    def render(self) -> bytes:
        return generate_latest(self.registry)
