"""The server under attack (issue 17): media only from the indexed file, nothing internal
shown to anonymous clients, bounded memory for image uploads."""

from __future__ import annotations

import io
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

import vidseek  # noqa: E402
import vidseek.indexer  # noqa: E402
import vidseek.service  # noqa: E402
from vidseek.server import create_app  # noqa: E402

TOKEN = "s3cret-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def settings(archive: Path, **extra) -> vidseek.service.ServiceSettings:
    return vidseek.service.ServiceSettings(archive=archive, device="cpu", **extra)


def frame_png(video: Path, t: float) -> bytes:
    out = io.BytesIO()
    vidseek.indexer.read_frame(video, t).save(out, "PNG")
    return out.getvalue()


def flat_png(width: int, height: int) -> bytes:
    """A valid greyscale PNG of one flat colour, compressed row by row (never held decoded)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then black pixels
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


# -- item 1: media only from the file that was indexed ------------------------------------
@pytest.fixture()
def dropped(tmp_path, trained_encoder_dir, media):
    """An archive of two videos copied into a drop folder (the server's ingest root)."""
    drop = tmp_path / "drop"
    drop.mkdir()
    for name in ("carphone_pristine.mp4", "bikes.mp4"):
        shutil.copy(media / name, drop / name)
    with vidseek.Archive.open(tmp_path / "archive", model=trained_encoder_dir, device="cpu") as archive:
        report = archive.ingest([drop])
        assert len(report.indexed) == 2
        ids = {v.name: v.id for v in archive.videos()}
    return tmp_path / "archive", drop, ids


def test_a_hard_link_to_the_catalog_is_refused_and_the_catalog_keeps_its_locks(dropped):
    archive_path, drop, ids = dropped
    app = create_app(settings(archive_path, admin_token=TOKEN, ingest_roots=[drop]), ingest=True)
    with TestClient(app) as client:
        clip = drop / "carphone_pristine.mp4"
        clip.unlink()
        os.link(archive_path / "catalog.db", clip)  # someone with write access to the drop folder
        for url in (f"/api/videos/{ids['carphone_pristine.mp4']}/media",
                    f"/api/videos/{ids['carphone_pristine.mp4']}/thumbnail?t=1"):
            response = client.get(url)
            assert response.status_code in (404, 410), (url, response.status_code)
            assert b"SQLite format 3" not in response.content
            assert "carphone_pristine.mp4" in response.json()["error"]
            assert str(drop) not in response.text
        # The server never opened the catalog through the link, so its SQLite locks hold: another
        # process closing its connection sees it is not the last one and keeps the WAL.
        subprocess.run([sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
                        "c.execute('SELECT COUNT(*) FROM videos').fetchone(); c.close()",
                        str(archive_path / "catalog.db")], check=True)
        assert (archive_path / "catalog.db-wal").exists()
        for _ in range(20):
            assert client.get("/api/search", params={"q": "a car", "top_k": 2}).status_code == 200
            assert len(client.get("/api/videos").json()["videos"]) == 2
        bikes = client.get(f"/api/videos/{ids['bikes.mp4']}/media")
        assert bikes.status_code == 200 and bikes.content == (drop / "bikes.mp4").read_bytes()
    with vidseek.Archive.open(archive_path, create=False) as archive:
        assert sorted(v.name for v in archive.videos()) == ["bikes.mp4", "carphone_pristine.mp4"]


def test_a_replaced_or_touched_file_is_refused_an_untouched_one_is_served(dropped, media):
    archive_path, drop, ids = dropped
    bikes = drop / "bikes.mp4"
    data = bikes.read_bytes()
    with TestClient(create_app(settings(archive_path))) as client:
        url = f"/api/videos/{ids['bikes.mp4']}/media"
        whole = client.get(url)
        assert whole.status_code == 200 and whole.content == data
        part = client.get(url, headers={"Range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == data[100:200]
        assert client.get(f"/api/videos/{ids['bikes.mp4']}/thumbnail?t=2").status_code == 200

        shutil.copy(media / "bigbuckbunny.mp4", drop / "carphone_pristine.mp4")  # another video
        refused = client.get(f"/api/videos/{ids['carphone_pristine.mp4']}/media")
        assert refused.status_code in (404, 410) and "changed" in refused.json()["error"]
        assert client.get(f"/api/videos/{ids['carphone_pristine.mp4']}").json()["available"] is False

        stat = bikes.stat()  # same bytes, same size, another modification time
        os.utime(bikes, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
        assert client.get(url).status_code in (404, 410)
        os.utime(bikes, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert client.get(url).status_code == 200

        bikes.unlink()  # gone
        gone = client.get(url)
        assert gone.status_code in (404, 410) and "bikes.mp4" in gone.json()["error"]


def test_media_path_checks_identity_and_archive_files(dropped):
    archive_path, drop, ids = dropped
    with vidseek.Archive.open(archive_path, create=False) as archive:
        record = archive.video(ids["bikes.mp4"])
        assert record.source_ino == (drop / "bikes.mp4").stat().st_ino
        assert archive.media_path(record) == drop / "bikes.mp4"
        feature = next((archive_path / "features").iterdir())
        (drop / "bikes.mp4").unlink()
        os.link(feature, drop / "bikes.mp4")  # an archive file, whatever its identity says
        with pytest.raises(vidseek.VideoError, match="archive"):
            archive.media_path(record)


def test_an_unchanged_reingest_records_the_identity_anew(dropped):
    archive_path, drop, ids = dropped
    bikes = drop / "bikes.mp4"
    data = bikes.read_bytes()
    bikes.unlink()
    bikes.write_bytes(data)  # the same bytes: another file, another time
    with vidseek.Archive.open(archive_path, create=False) as archive:
        with pytest.raises(vidseek.VideoError, match="changed"):
            archive.media_path(archive.video(ids["bikes.mp4"]))
        report = archive.ingest([bikes])
        assert len(report.skipped) == 1 and not report.indexed  # not re-encoded
        assert archive.media_path(archive.video(ids["bikes.mp4"])) == bikes


def test_old_rows_without_identity_are_served_while_the_size_matches(dropped):
    archive_path, drop, ids = dropped
    import sqlite3

    with sqlite3.connect(archive_path / "catalog.db") as db:  # as an archive made before identity existed
        db.execute("UPDATE videos SET source_dev = -1, source_ino = -1, source_mtime_ns = -1")
    with vidseek.Archive.open(archive_path, create=False) as archive:
        record = archive.video(ids["bikes.mp4"])
        assert archive.media_path(record) == drop / "bikes.mp4"
        clip = archive.video(ids["carphone_pristine.mp4"])
        (drop / "carphone_pristine.mp4").unlink()
        os.link(archive_path / "catalog.db", drop / "carphone_pristine.mp4")
        with pytest.raises(vidseek.VideoError):
            archive.media_path(clip)


def test_an_archive_made_before_identity_gains_the_columns(tmp_path):
    import sqlite3

    root = tmp_path / "old"
    root.mkdir()
    with sqlite3.connect(root / "catalog.db") as db:
        db.execute("CREATE TABLE videos (id INTEGER PRIMARY KEY, path TEXT NOT NULL, name TEXT, "
                   "content_hash TEXT, size_bytes INTEGER, duration FLOAT, fps FLOAT, native_fps FLOAT, "
                   "width INTEGER, height INTEGER, codec TEXT, frames INTEGER, kept_fraction FLOAT, "
                   "features_key TEXT, status TEXT, indexed_at FLOAT, ingest_seconds FLOAT)")
        db.execute("INSERT INTO videos (path, name, content_hash, size_bytes, duration, fps, native_fps, "
                   "width, height, codec, frames, kept_fraction, features_key, status, indexed_at, "
                   "ingest_seconds) VALUES ('/x/a.mp4', 'a.mp4', 'h', 5, 1.0, 1.0, 25.0, 64, 64, "
                   "'h264', 1, 1.0, 'k', 'indexed', 0.0, 0.0)")
    with vidseek.Archive.open(root, create=False) as archive:
        (record,) = archive.videos()
        assert (record.source_dev, record.source_ino, record.source_mtime_ns) == (-1, -1, -1)
        assert record.sparse_key == ""


# -- item 7: what anonymous clients see ----------------------------------------------------
def test_anonymous_clients_see_names_and_ids_only(tmp_path, trained_encoder_dir, media):
    watched = tmp_path / "watched"
    watched.mkdir()
    shutil.copy(media / "carphone_pristine.mp4", watched / "clip.mp4")
    (watched / "broken.mp4").write_bytes(b"this is not a video " * 100)
    archive_path = tmp_path / "archive"
    host = socket.gethostname()
    with vidseek.Archive.open(archive_path, model=trained_encoder_dir, device="cpu") as archive:
        archive.ingest([watched / "clip.mp4"])
        job, _ = archive.jobs.enqueue("/secret/place/lost.mp4", 1, 1, max_attempts=1)
        archive.jobs.claim(worker=f"{host}:999999:deadbeef")  # a worker that died: recovered, failed
    app = create_app(settings(archive_path, admin_token=TOKEN, poll_seconds=0.1, settle_seconds=0.2),
                     watch=[watched])
    with TestClient(app) as client:
        deadline = time.monotonic() + 60
        while client.get("/api/jobs").json()["counts"]["failed"] < 2:
            assert time.monotonic() < deadline, client.get("/api/jobs", headers=ADMIN).json()
            time.sleep(0.1)
        indexed = client.get("/api/videos").json()["videos"][0]["id"]
        secrets = [str(tmp_path), str(trained_encoder_dir), "/secret/place", f"{host}:"]
        anonymous = {
            "/api/jobs": 200, "/api/status": 200, "/api/videos": 200, f"/api/videos/{indexed}": 200,
            "/api/search?q=a+car&top_k=3": 200, "/healthz": 200,
            f"/api/search?q=x&video={watched / 'clip.mp4'}": 404,  # indexed, named by path
            f"/api/search?q=x&video={watched / 'other.mp4'}": 404,  # not indexed
            "/api/search?q=x&video=nothing.mp4": 404,
            f"/api/videos/{indexed}/thumbnail?t=99": 422,
            "/api/videos/999/media": 404,
        }
        bodies = {}
        for url, status in anonymous.items():
            response = client.get(url)
            assert response.status_code == status, (url, response.text)
            bodies[url] = response.text
            for secret in secrets:
                assert secret not in response.text, (url, secret, response.text)
        assert "clip.mp4" in bodies["/api/videos"] and "broken.mp4" in bodies["/api/jobs"]
        # an indexed and an unindexed path are answered alike
        assert (bodies[f"/api/search?q=x&video={watched / 'clip.mp4'}"]
                == bodies[f"/api/search?q=x&video={watched / 'other.mp4'}"])
        assert client.get("/api/search", params={"q": "x", "video": "clip.mp4"}).status_code == 200
        # the same images uploaded: the video named by path is unknown to anonymous clients too
        upload = client.post("/api/search/image", data={"video": str(watched / "clip.mp4")},
                             files={"image": ("f.png", frame_png(media / "carphone_pristine.mp4", 1.0))})
        assert upload.status_code == 404 and str(watched) not in upload.text
        clip_file = watched / "clip.mp4"
        os.utime(clip_file, ns=(0, 10**18))  # changed: the refusal names the video, not its path
        gone = client.get(f"/api/videos/{indexed}/media")
        assert gone.status_code == 404 and str(watched) not in gone.text and "clip.mp4" in gone.text

        # the admin sees paths, folders, workers and the encoder's location
        admin_jobs = client.get("/api/jobs", headers=ADMIN).text
        assert str(watched / "broken.mp4") in admin_jobs and f"{host}:" in admin_jobs
        admin_status = client.get("/api/status", headers=ADMIN).json()
        assert admin_status["daemon"]["folders"] == [str(watched)]
        assert admin_status["encoder"] == str(trained_encoder_dir)
        by_path = client.get("/api/search", params={"q": "x", "video": str(watched / "clip.mp4")},
                             headers=ADMIN)
        assert by_path.status_code == 200

        # the token is accepted only as Authorization: Bearer
        for other in ({"params": {"token": TOKEN}}, {"params": {"access_token": TOKEN}},
                      {"headers": {"Authorization": TOKEN}}, {"headers": {"X-Admin-Token": TOKEN}},
                      {"headers": {"Authorization": f"Basic {TOKEN}"}},
                      {"headers": {"Cookie": f"token={TOKEN}"}}):
            assert str(watched) not in client.get("/api/jobs", **other).text, other
            assert client.post("/api/ingest", json={"paths": [str(watched)]}, **other).status_code == 401
        assert client.get("/api/jobs", headers={"Authorization": f"bearer {TOKEN}"}).text.count(str(watched)) > 0


# -- item 8: memory --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def upload_client(tmp_path_factory, trained_encoder_dir, media):
    root = tmp_path_factory.mktemp("uploads")
    with vidseek.Archive.open(root / "archive", model=trained_encoder_dir, device="cpu") as archive:
        archive.ingest([media / "bikes.mp4"])
    with TestClient(create_app(settings(root / "archive", max_concurrent_decodes=1))) as client:
        yield client


def test_a_40_megapixel_upload_is_refused_before_decoding(upload_client):
    psutil = pytest.importorskip("psutil")
    bomb = flat_png(8000, 5000)  # 40 MP
    assert len(bomb) < 200_000
    process = psutil.Process()
    before = process.memory_info().rss
    t0 = time.perf_counter()

    def post(_: int):
        return upload_client.post("/api/search/image", files={"image": ("big.png", bomb)})

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(post, range(12)))
    took = time.perf_counter() - t0
    grown = process.memory_info().rss - before
    assert [a.status_code for a in answers] == [413] * 12, answers[0].text
    assert "8000x5000" in answers[0].json()["error"] and "25000000" in answers[0].json()["error"]
    assert took < 10, took
    assert grown < 100 * 2**20, f"RSS grew by {grown / 2**20:.0f} MB"


def test_a_20000_square_png_is_413(upload_client):
    huge = upload_client.post("/api/search/image", files={"image": ("huge.png", flat_png(20000, 20000))})
    assert huge.status_code == 413 and "pixels" in huge.json()["error"]
    on_object = upload_client.post("/api/search/object", data={"box": "0,0,10,10"},
                                   files={"image": ("huge.png", flat_png(6000, 6000))})
    assert on_object.status_code == 413


def test_decodes_are_bounded_and_normal_images_work(upload_client, media):
    picture = frame_png(media / "bikes.mp4", 3.0)
    ok = upload_client.post("/api/search/image", files={"image": ("f.png", picture)})
    assert ok.status_code == 200 and ok.json()["moments"][0]["video"] == "bikes.mp4"
    slots = upload_client.app.state.vidseek.decodes
    slots.wait_seconds = 0.3
    assert slots.acquire(timeout=1)  # another upload is being decoded
    try:
        busy = upload_client.post("/api/search/image", files={"image": ("f.png", picture)})
        assert busy.status_code == 503 and busy.headers["Retry-After"]
    finally:
        slots.release()
    again = upload_client.post("/api/search/image", files={"image": ("f.png", picture)})
    assert again.status_code == 200
