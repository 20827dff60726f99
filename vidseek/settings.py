"""Service settings (daemon and server), read from ``VIDSEEK_*`` environment variables.

Command-line options override them; :class:`ServiceSettings` is what the library's daemon
and server factory take. ``VIDSEEK_ARCHIVE=/data/archive VIDSEEK_WORKERS=2 vidseek watch
/footage`` is the same as ``vidseek watch /footage --archive /data/archive --workers 2``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .daemon import DaemonConfig

__all__ = ["ServiceSettings"]


class ServiceSettings(BaseSettings):
    """Settings of ``vidseek watch`` and ``vidseek serve`` (env prefix ``VIDSEEK_``)."""

    model_config = SettingsConfigDict(env_prefix="VIDSEEK_", extra="ignore")

    archive: Path = Field(Path("vidseek-archive"), description="Archive directory.")
    model: Optional[str] = Field(None, description="Encoder of a new archive (hub id or directory); an existing archive uses its own.")
    device: Optional[str] = Field(None, description="Torch device (default: cuda if available).")
    int8_text: bool = Field(False, description="Encode text queries with int8 weights (CPU: about half the time; embeddings within cosine 0.998).")
    int8_llm: bool = Field(False, description="Answer grounded queries with an int8 LM (CPU: about half the time).")
    nprobe: int = Field(64, ge=1, description="IVF lists of the frame index a search scans (large archives): fewer is faster, at some recall.")
    log_level: str = Field("INFO", description="Logging level of the service (to stderr).")
    # daemon
    workers: int = Field(1, ge=1, le=64, description="Files indexed at once.")
    poll_seconds: float = Field(2.0, gt=0, description="Seconds between folder scans.")
    settle_seconds: float = Field(5.0, ge=0, description="A file must keep its size this long before it is indexed.")
    max_attempts: int = Field(3, ge=1, description="Attempts per job before it is marked failed.")
    backoff_seconds: float = Field(10.0, ge=0, description="Retry n waits backoff x 2^(n-1) seconds (a failed stream: up to 5 minutes).")
    streams: list[str] = Field(default_factory=list, description="Live streams vidseek watch keeps indexed, [NAME=]URL (JSON list).")
    # server
    host: str = Field("127.0.0.1", description="Address the server listens on.")
    port: int = Field(8000, ge=0, le=65535, description="Port the server listens on.")
    admin_token: Optional[str] = Field(None, description="Bearer token for ingest requests; unset disables them.")
    ingest_roots: list[Path] = Field(default_factory=list, description="Folders ingest requests may name files under (JSON list); default: the watched folders.")
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="Largest image upload accepted.")
    max_top_k: int = Field(100, ge=1, description="Largest top_k a search may ask for.")
    max_image_pixels: int = Field(25_000_000, ge=1, description="Most pixels (width x height) an uploaded image may have; checked from its header, before decoding.")
    max_concurrent_decodes: int = Field(2, ge=1, le=64, description="Uploaded images decoded (and searched with) at once; more wait up to 10 s, then get 503.")

    def daemon_config(self) -> DaemonConfig:
        return DaemonConfig(workers=self.workers, poll_seconds=self.poll_seconds,
                            settle_seconds=self.settle_seconds, max_attempts=self.max_attempts,
                            backoff_seconds=self.backoff_seconds)
