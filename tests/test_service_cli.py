"""`vidseek serve` as a process, and the VIDSEEK_* settings."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import vidseek


import vidseek.service
def test_settings_come_from_the_environment_and_are_validated(monkeypatch, tmp_path):
    monkeypatch.setenv("VIDSEEK_ARCHIVE", str(tmp_path / "a"))
    monkeypatch.setenv("VIDSEEK_WORKERS", "3")
    monkeypatch.setenv("VIDSEEK_SETTLE_SECONDS", "0.5")
    monkeypatch.setenv("VIDSEEK_INGEST_ROOTS", json.dumps([str(tmp_path)]))
    monkeypatch.setenv("VIDSEEK_ADMIN_TOKEN", "t")
    settings = vidseek.service.ServiceSettings()
    assert settings.archive == tmp_path / "a" and settings.ingest_roots == [tmp_path]
    config = settings.daemon_config()
    assert (config.workers, config.settle_seconds, config.max_attempts) == (3, 0.5, 3)
    monkeypatch.setenv("VIDSEEK_WORKERS", "0")
    with pytest.raises(ValueError, match="workers"):
        vidseek.service.ServiceSettings()
    from typer.testing import CliRunner

    from vidseek.cli import app

    result = CliRunner().invoke(app, ["watch", str(tmp_path)])  # bad environment: exit 2
    assert result.exit_code == 2 and "invalid setting" in result.output and "workers" in result.output
    assert not (tmp_path / "a").exists()
    monkeypatch.delenv("VIDSEEK_WORKERS")
    result = CliRunner().invoke(app, ["watch", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "not a folder" in result.output


def test_serve_process_answers_then_stops_on_sigterm(tmp_path, tiny_clip_dir, media):
    archive = tmp_path / "archive"
    with vidseek.Archive.open(archive, model=tiny_clip_dir, device="cpu") as arch:
        arch.ingest([media / "carphone_pristine.mp4"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VIDSEEK_DEVICE": "cpu"}
    process = subprocess.Popen([sys.executable, "-m", "vidseek", "serve", "--archive", str(archive),
                                "--port", str(port)], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, process.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "server did not start"
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/api/search?q=a%20man%20in%20a%20car&top_k=2")
                response = conn.getresponse()
                break
            except OSError:
                time.sleep(0.2)
        body = json.loads(response.read())
        assert response.status == 200 and body["moments"][0]["video"] == "carphone_pristine.mp4"
    finally:
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status tells why
    assert process.returncode in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in errors


def test_serve_refuses_a_missing_archive(tmp_path):
    from typer.testing import CliRunner

    from vidseek.cli import app

    result = CliRunner().invoke(app, ["serve", "--archive", str(tmp_path / "nothing")])
    assert result.exit_code == 1 and "no archive here" in result.output
    assert not (tmp_path / "nothing").exists()
