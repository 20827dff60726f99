"""Shared fixtures: the real clips, generated videos and a tiny trained encoder.

Nothing here downloads: HF_HUB_OFFLINE is forced and every model is built from a config.
"""

from __future__ import annotations

import atexit
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# exported ONNX towers (precision onnx-int8) go to a throwaway folder, not ~/.cache
os.environ["VIDSEEK_CACHE_DIR"] = tempfile.mkdtemp(prefix="vidseek-test-cache-")
atexit.register(shutil.rmtree, os.environ["VIDSEEK_CACHE_DIR"], ignore_errors=True)

from pathlib import Path

import pytest

from vidseek.synth import Segment, noise_frames, splice_videos, static_scene_frames

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
CLIPS = {  # file: (seconds, fps) from shared/media/README.md
    "bigbuckbunny.mp4": (5.3, 25.0),
    "bikes.mp4": (10.0, 25.0),
    "carphone_pristine.mp4": (4.0, 29.97),
}


@pytest.fixture(scope="session")
def media() -> Path:
    if not MEDIA.is_dir():
        pytest.fail(f"shared media folder missing: {MEDIA}")
    return MEDIA


@pytest.fixture(scope="session")
def generated(tmp_path_factory) -> dict[str, Path]:
    """Small generated videos: a static scene, pure noise, and a faststart MP4."""
    root = tmp_path_factory.mktemp("generated")
    videos = {
        "static": root / "static.mp4",
        "noise": root / "noise.mp4",
    }
    splice_videos(videos["static"], [Segment(frames=static_scene_frames(100, (320, 240)))],
                  size=(320, 240), fps=25)
    splice_videos(videos["noise"], [Segment(frames=noise_frames(100, (320, 240)))],
                  size=(320, 240), fps=25)
    return videos


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    """A randomly initialised tiny CLIP checkpoint (plumbing only, not for ranking)."""
    from vidseek.models.tiny import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip") / "model")


@pytest.fixture(scope="session")
def trained_encoder_dir(tmp_path_factory, media, generated, tiny_clip_dir) -> Path:
    """The tiny CLIP trained contrastively on the shared clips and generated videos (~20 s).

    Use it for any test that ranks frames: a random encoder embeds all images alike.
    """
    from vidseek.models import FrameEncoder
    from vidseek.train.encoder import EncoderTrainingConfig, FrameDataset, train_encoder

    out = tmp_path_factory.mktemp("trained-clip") / "model"
    encoder = FrameEncoder.load(tiny_clip_dir, device="cpu")
    sources = sorted(media.glob("*.mp4")) + [generated["static"], generated["noise"]]
    data = FrameDataset.from_videos(sources, encoder.info.image_size, fps=4.0)
    report = train_encoder(encoder, out, footage=data, config=EncoderTrainingConfig(steps=200))
    assert sum(report.losses[-20:]) / 20 < 0.6 * sum(report.losses[:20]) / 20, "encoder did not train"
    return out


@contextmanager
def one_torch_thread():
    """Bitwise-reproducible training: with several threads, CPU kernels such as the embedding
    backward add in a varying order, and the rounding differences grow over a training run."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# The world encoder trains in a child process started as soon as the session knows it needs
# it (one torch thread, so bit for bit what the same call in this process gives): its 2-4
# minutes of training overlap the tests that run before the first one that uses it.
_WORLD_ENCODER = """
import pickle, sys, torch
import vidseek.train
torch.set_num_threads(1)
report = vidseek.train.train_world_encoder(sys.argv[1], steps=500, clips=2000, seed=0)
with open(sys.argv[2], "wb") as fh:
    pickle.dump(report, fh)
"""
_world_encoder_job: tuple[subprocess.Popen, Path] | None = None


def _stop_child(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _start_world_encoder() -> tuple[subprocess.Popen, Path]:
    global _world_encoder_job
    if _world_encoder_job is None:
        root = Path(tempfile.mkdtemp(prefix="vidseek-world-clip-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        with open(root / "log.txt", "w") as log:
            proc = subprocess.Popen([sys.executable, "-c", _WORLD_ENCODER, str(root / "model"),
                                     str(root / "report.pickle")], stdout=log, stderr=subprocess.STDOUT)
        atexit.register(_stop_child, proc)  # registered last, so it runs before the rmtree
        _world_encoder_job = (proc, root)
    return _world_encoder_job


def pytest_collection_finish(session: pytest.Session) -> None:
    if not session.config.option.collectonly and any(
            "world_encoder" in getattr(item, "fixturenames", ()) for item in session.items):
        _start_world_encoder()


@pytest.fixture(scope="session")
def world_encoder():
    """A tiny CLIP trained on the procedural world's captions (500 steps, one thread: 80-225 s
    by the machine): text queries work. Trained in the background from the session's start
    (pytest_collection_finish)."""
    proc, root = _start_world_encoder()  # started already, unless requested dynamically
    try:
        code = proc.wait(timeout=1800)
    except subprocess.TimeoutExpired:
        _stop_child(proc)
        code = None
    if code != 0:
        pytest.fail(f"training the world encoder failed (exit {code}):\n"
                    f"{(root / 'log.txt').read_text()[-3000:]}")
    with open(root / "report.pickle", "rb") as fh:
        return pickle.load(fh)


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory) -> Path:
    """A randomly initialised tiny Llama with a word-level tokenizer (world captions)."""
    from vidseek.models.llm import build_tiny_llm
    from vidseek.synth.world import COLOURS, EVENT_KINDS, SHAPES, SIZES

    words = {*COLOURS, *SHAPES, *SIZES, "a", "meets", "turns", "moves", "left", "right", "up",
             "down", "appears", "disappears", "bounces", "when", "can", "we", "see", "the",
             "happening", "Does", "happen", "From", "to", "Not", "Present", "yes", "no"}
    assert all(w in words for k in EVENT_KINDS for w in k.split())
    return build_tiny_llm(tmp_path_factory.mktemp("tiny-llm") / "llm", sorted(words),
                          hidden=48, layers=2, heads=2)


@pytest.fixture(scope="session")
def tiny_grounder(tiny_llm_dir):
    """An untrained grounder small enough for plumbing tests (16-d embeddings, 2x2 cells)."""
    from vidseek.models.adapter import AdapterConfig
    from vidseek.models.grounder import Grounder, GrounderConfig

    config = GrounderConfig(llm=str(tiny_llm_dir), tuning="full", adapter=AdapterConfig(
        embed_dim=16, cells=4, cell_width=8, hidden=32, heads=2, fine_tokens=2, coarse_tokens=4))
    return Grounder.create(config)


class LiveServer:
    """uvicorn in a thread, on a free loopback port (``with LiveServer(app) as server:``)."""

    def __init__(self, app) -> None:
        import socket

        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def raw_get(self, path: str) -> tuple[int, bytes]:
        """GET with the path sent exactly as written (no client-side normalisation)."""
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.putrequest("GET", path, skip_accept_encoding=True)
            conn.endheaders()
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()
