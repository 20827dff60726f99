"""The HTTP server: search results, validation, media, metrics, path safety, a live archive."""

from __future__ import annotations

import io
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

import vidseek  # noqa: E402
import vidseek.indexer  # noqa: E402
import vidseek.service  # noqa: E402
from vidseek.server import create_app  # noqa: E402
from conftest import LiveServer  # noqa: E402

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def archive_dir(tmp_path_factory, trained_encoder_dir, media) -> Path:
    root = tmp_path_factory.mktemp("served")
    with vidseek.Archive.open(root / "archive", model=trained_encoder_dir, device="cpu") as archive:
        report = archive.ingest([media / "bikes.mp4", media / "carphone_pristine.mp4"])
        assert len(report.indexed) == 2
    return root / "archive"


def settings(archive: Path, **extra) -> vidseek.service.ServiceSettings:
    return vidseek.service.ServiceSettings(archive=archive, device="cpu", **extra)


@pytest.fixture(scope="module")
def client(archive_dir):
    with TestClient(create_app(settings(archive_dir, admin_token=TOKEN, max_upload_bytes=200_000))) as c:
        yield c


def frame_png(video: Path, t: float) -> bytes:
    out = io.BytesIO()
    vidseek.indexer.read_frame(video, t).save(out, "PNG")
    return out.getvalue()


def test_text_and_image_search_return_cards_data(client, media):
    body = client.get("/api/search", params={"q": "bikes on a street", "top_k": 3}).json()
    assert body["mode"] == "clip" and 1 <= len(body["moments"]) <= 3
    assert set(body["timings_ms"]) == {"encode_query", "retrieve"}
    for m in body["moments"]:
        assert {"video", "video_id", "start", "end", "score", "peak", "thumbnail", "media"} <= set(m)
        assert 0 <= m["start"] <= m["peak"] <= m["end"]
        assert "path" not in m  # the server does not reveal its file system
    response = client.post("/api/search/image", files={"image": ("shot.png", frame_png(media / "bikes.mp4", 6.0))},
                           data={"top_k": "2"})
    assert response.status_code == 200, response.text
    top = response.json()["moments"][0]
    assert top["video"] == "bikes.mp4" and top["start"] <= 6.0 <= top["end"] + 1.0
    only = client.get("/api/search", params={"q": "a man", "video": "carphone_pristine.mp4"}).json()
    assert {m["video"] for m in only["moments"]} == {"carphone_pristine.mp4"}


@pytest.mark.parametrize("url, status, says", [
    ("/api/search?q=x&top_k=0", 422, "top_k"),
    ("/api/search?q=x&top_k=100000", 422, "top_k"),
    ("/api/search?q=x&mode=magic", 422, "mode"),
    ("/api/search", 422, "q: Field required"),
    ("/api/search?q=%20%20", 422, "blank"),
    ("/api/search?q=x&levels=4", 422, "levels"),
    ("/api/search?q=x&mode=grounded", 422, "grounding checkpoint"),
    ("/api/search?q=x&min_presence=0.5", 422, "min_presence: only for mode=grounded"),
    ("/api/search?q=x&level1=answer", 422, "level1: only for mode=grounded"),
    ("/api/search?q=x&refine=clips", 422, "refine: only for mode=grounded"),
    ("/api/search?q=x&mode=grounded&refine=spans", 422, "refine"),
    ("/api/search?q=x&mode=grounded&min_presence=2", 422, "min_presence"),
    ("/api/search?q=x&video=missing.mp4", 404, "missing.mp4"),
    ("/api/videos/999", 404, "999"),
    ("/api/videos/abc", 422, "video_id"),
    ("/api/videos/99999999999999999999999", 422, "video_id"),
    ("/api/videos/0/media", 422, "video_id"),
    ("/api/videos/1/thumbnail?t=-1", 422, "t:"),
    ("/api/videos/1/thumbnail?t=500", 422, "past the end"),
    ("/api/videos/1/thumbnail?width=5", 422, "width"),
    ("/api/jobs?status=stuck", 422, "status"),
    ("/api/jobs?limit=0", 422, "limit"),
])
def test_invalid_requests_get_clear_errors(client, url, status, says):
    response = client.get(url)
    assert response.status_code == status, response.text
    assert says in response.json()["error"]


def test_object_search_over_http(client, archive_dir, media):
    with vidseek.Archive.open(archive_dir, create=False) as archive:
        bikes = archive.find_video("bikes.mp4")
    params = {"video_id": bikes.id, "t": 4.0, "box": "200,60,440,260", "top_k": 3}
    response = client.get("/api/search/object", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mode"] == "object" and body["moments"][0]["video"] == "bikes.mp4"
    top = body["moments"][0]
    assert top["width"] == bikes.width and len(top["box"]) == 4 and top["track"]
    assert all(0 <= p["box"][0] < p["box"][2] <= bikes.width for p in top["track"])
    own = client.get("/api/search/object", params={**params, "within_id": bikes.id}).json()
    assert {m["video"] for m in own["moments"]} == {"bikes.mp4"}
    picture = client.post("/api/search/object", files={"image": ("f.png", frame_png(media / "bikes.mp4", 4.0))},
                          data={"box": "200,60,440,260", "top_k": "2"})
    assert picture.status_code == 200 and picture.json()["moments"][0]["video"] == "bikes.mp4"
    for bad, status, says in [({"box": "1,2,3"}, 422, "box"), ({"box": "0,0,9999,10"}, 422, "box"),
                              ({"t": 99}, 422, "time"), ({"within_id": 999}, 404, "within_id"),
                              ({"video_id": 999}, 404, "999")]:
        response = client.get("/api/search/object", params={**params, **bad})
        assert response.status_code == status and says in response.json()["error"], (bad, response.text)
    assert 'vidseek_stage_seconds_count{stage="object"}' in client.get("/metrics").text


def test_uploads_are_checked(client):
    big = client.post("/api/search/image", files={"image": ("big.png", b"\0" * 300_000)})
    assert big.status_code == 413 and "limit" in big.json()["error"]
    junk = client.post("/api/search/image", files={"image": ("x.png", b"not an image at all")})
    assert junk.status_code == 422 and "image" in junk.json()["error"]
    missing = client.post("/api/search/image", data={"top_k": "3"})
    assert missing.status_code == 422 and "image" in missing.json()["error"]


def test_oversized_bodies_and_image_bombs_are_refused_before_decoding(client):
    def chunks():  # no Content-Length: refused before any of it is read
        for _ in range(40):
            yield b"\0" * 10_000

    chunked = client.post("/api/search/image", content=chunks(),
                          headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert chunked.status_code == 411 and "Content-Length" in chunked.json()["error"]
    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (8000, 6000)).save(out, "PNG")  # 48 MP of black: a few KB on the wire
    assert len(out.getvalue()) < 200_000
    bomb = client.post("/api/search/image", files={"image": ("bomb.png", out.getvalue())})
    assert bomb.status_code == 413 and "pixels" in bomb.json()["error"]


def test_jobs_hide_server_paths_unless_the_admin_asks(client, archive_dir):
    with vidseek.Archive.open(archive_dir, create=False) as archive:
        archive.jobs.enqueue("/secret/place/clip.mp4", 1, 1)
    public = client.get("/api/jobs").json()["jobs"][0]
    assert public["name"] == "clip.mp4" and "path" not in public and "worker" not in public
    admin = client.get("/api/jobs", headers={"Authorization": f"Bearer {TOKEN}"}).json()["jobs"][0]
    assert admin["path"] == "/secret/place/clip.mp4"


def test_ingest_requests_need_the_token_and_an_allowed_path(client, media):
    body = {"paths": [str(media / "bikes.mp4")]}
    assert client.post("/api/ingest", json=body).status_code == 401
    assert client.post("/api/ingest", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    outside = client.post("/api/ingest", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert outside.status_code == 403 and "outside" in outside.json()["error"]  # no roots configured
    empty = client.post("/api/ingest", json={"paths": []}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert empty.status_code == 422


def test_media_supports_range_requests_and_thumbnails_are_jpeg(client, media, archive_dir):
    data = (media / "bikes.mp4").read_bytes()
    with vidseek.Archive.open(archive_dir, create=False) as archive:
        video_id = archive.find_video("bikes.mp4").id
    whole = client.get(f"/api/videos/{video_id}/media")
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-type"] == "video/mp4" and whole.headers["accept-ranges"] == "bytes"
    part = client.get(f"/api/videos/{video_id}/media", headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == data[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    tail = client.get(f"/api/videos/{video_id}/media", headers={"Range": "bytes=-500"})
    assert tail.status_code == 206 and tail.content == data[-500:]
    beyond = client.get(f"/api/videos/{video_id}/media", headers={"Range": f"bytes={len(data) + 10}-"})
    assert beyond.status_code == 416
    thumb = client.get(f"/api/videos/{video_id}/thumbnail", params={"t": 4.0, "width": 200})
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    from PIL import Image

    assert Image.open(io.BytesIO(thumb.content)).size[0] == 224  # rounded up to a multiple of 32
    detail = client.get(f"/api/videos/{video_id}").json()
    assert detail["name"] == "bikes.mp4" and detail["frames"] == 10 and detail["available"]
    names = [v["name"] for v in client.get("/api/videos").json()["videos"]]
    assert sorted(names) == ["bikes.mp4", "carphone_pristine.mp4"]


def test_metrics_health_docs_and_page(client):
    client.get("/api/search", params={"q": "a bike"})
    text = client.get("/metrics").text
    assert 'vidseek_stage_seconds_bucket{le="0.1",stage="encode_query"}' in text
    assert 'vidseek_stage_seconds_count{stage="retrieve"}' in text
    assert 'vidseek_http_request_seconds_count{method="GET",route="/api/search",status="200"}' in text
    assert "vidseek_videos 2.0" in text and 'vidseek_jobs{status="failed"}' in text
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/docs").status_code == 200
    assert "/api/search" in client.get("/openapi.json").json()["paths"]
    page = client.get("/")
    assert page.status_code == 200 and 'id="search-form"' in page.text
    assert client.get("/static/app.js").status_code == 200


@pytest.fixture(scope="module")
def live(archive_dir):
    with LiveServer(create_app(settings(archive_dir))) as server:
        yield server


@pytest.mark.parametrize("path", [
    "/static/../catalog.db", "/static/..%2Fcatalog.db", "/static/%2e%2e/%2e%2e/catalog.db",
    "/static/..%2F..%2F..%2F..%2Fetc%2Fpasswd", "/static//etc/passwd",
    "/api/videos/..%2Fcatalog.db/media", "/api/videos/1%2F..%2F..%2Fcatalog.db/media",
    "/api/videos/%2Fetc%2Fpasswd/media", "/../../etc/passwd", "/catalog.db", "/frames.faiss",
])
def test_no_path_outside_the_archive_videos_can_be_read(live, path):
    status, body = live.raw_get(path)
    assert status in (400, 404, 422), (path, status)
    assert b"SQLite format 3" not in body and b"root:" not in body


def test_a_video_swapped_for_a_symlink_is_not_served(tmp_path, trained_encoder_dir, media):
    video = tmp_path / "clip.mp4"
    shutil.copy(media / "carphone_pristine.mp4", video)
    with vidseek.Archive.open(tmp_path / "archive", model=trained_encoder_dir, device="cpu") as archive:
        archive.ingest([video])
    with TestClient(create_app(settings(tmp_path / "archive"))) as client:
        assert client.get("/api/videos/1/media").status_code == 200
        video.unlink()
        video.symlink_to(tmp_path / "archive" / "catalog.db")  # someone with the drop folder
        for url in ("/api/videos/1/media", "/api/videos/1/thumbnail?t=1"):
            response = client.get(url)
            assert response.status_code == 404 and b"SQLite format 3" not in response.content


def test_ingest_paths_are_confined_to_the_roots(tmp_path, trained_encoder_dir, media, archive_dir):
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "escape.mp4").symlink_to(media / "bikes.mp4")  # a link out of the allowed folder
    app = create_app(settings(archive_dir, admin_token=TOKEN, ingest_roots=[drop]))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(app) as client:
        linked = client.post("/api/ingest", json={"paths": [str(drop)]}, headers=auth)
        assert linked.status_code == 403 and "escape.mp4" in linked.json()["error"]
        dotted = client.post("/api/ingest", json={"paths": [f"{drop}/../../etc/passwd"]}, headers=auth)
        assert dotted.status_code == 403
        nul = client.post("/api/ingest", json={"paths": [f"{drop}/a\u0000b.mp4"]}, headers=auth)
        assert nul.status_code == 422 and "paths" in nul.json()["error"]
        missing = client.post("/api/ingest", json={"paths": [str(drop / "nope.mp4")]}, headers=auth)
        assert missing.status_code == 422 and "does not exist" in missing.json()["error"]


def test_new_videos_become_searchable_without_restart_while_queries_keep_answering(
        tmp_path, trained_encoder_dir, media):
    drop = tmp_path / "drop"
    drop.mkdir()
    archive_path = tmp_path / "archive"
    with vidseek.Archive.open(archive_path, model=trained_encoder_dir, device="cpu") as archive:
        archive.ingest([media / "carphone_pristine.mp4"])
    app = create_app(settings(archive_path, admin_token=TOKEN, ingest_roots=[drop],
                              poll_seconds=0.1, settle_seconds=0.2), ingest=True)
    bikes_frame = frame_png(media / "bikes.mp4", 6.0)
    with TestClient(app) as client:
        assert client.get("/api/status").json()["daemon"]["running"]
        before = client.post("/api/search/image", files={"image": ("s.png", bikes_frame)}).json()
        assert {m["video"] for m in before["moments"]} == {"carphone_pristine.mp4"}
        shutil.copy(media / "bikes.mp4", drop / "bikes.mp4")
        queued = client.post("/api/ingest", json={"paths": [str(drop)]},
                             headers={"Authorization": f"Bearer {TOKEN}"})
        assert queued.status_code == 202, queued.text
        assert [j["name"] for j in queued.json()["jobs"]] == ["bikes.mp4"]

        failures: list[str] = []
        stop = threading.Event()

        def keep_searching() -> int:  # queries during the ingest: every one answers
            n = 0
            while not stop.is_set():
                r = client.get("/api/search", params={"q": "a car", "top_k": 3})
                if r.status_code != 200:
                    failures.append(r.text)
                n += 1
            return n

        with ThreadPoolExecutor(2) as pool:
            searches = [pool.submit(keep_searching) for _ in range(2)]
            deadline = time.monotonic() + 90
            while client.get("/api/jobs").json()["counts"]["done"] < 1:
                assert time.monotonic() < deadline, client.get("/api/jobs").json()
                time.sleep(0.1)
            # a second writer, another process's style: a separate Archive on the same directory
            with vidseek.Archive.open(archive_path, device="cpu") as writer:
                writer.ingest([media / "bigbuckbunny.mp4"])
            stop.set()
            answered = sum(f.result() for f in searches)
        assert not failures and answered > 0
        after = client.post("/api/search/image", files={"image": ("s.png", bikes_frame)}).json()
        assert after["moments"][0]["video"] == "bikes.mp4"
        names = sorted(v["name"] for v in client.get("/api/videos").json()["videos"])
        assert names == ["bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"]
        bunny = client.post("/api/search/image", files={
            "image": ("b.png", frame_png(media / "bigbuckbunny.mp4", 2.0))}).json()
        assert bunny["moments"][0]["video"] == "bigbuckbunny.mp4"


def test_openapi_declares_the_answers_and_they_match(client):
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]

    def ref(schema: dict) -> dict:
        return schemas[schema["$ref"].rsplit("/", 1)[1]] if "$ref" in schema else schema

    def answer(path: str, method: str = "get", status: str = "200") -> dict:
        return ref(spec["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"])

    def items(schema: dict, field: str) -> dict:
        return ref(schema["properties"][field]["items"])

    search = answer("/api/search")
    assert {"query", "mode", "took_ms", "timings_ms", "moments", "warnings",
            "explain"} == set(search["properties"])
    assert answer("/api/search/image", "post") == search
    moment = items(search, "moments")
    assert {"video", "video_id", "width", "height", "start", "end", "score", "peak", "presence",
            "thumbnail", "media", "aired_at", "media_offset"} == set(moment["properties"])
    assert all(p.get("description") for p in moment["properties"].values())
    hit = items(answer("/api/search/object"), "moments")
    assert {"box", "track"} <= set(hit["properties"]) and "time" in items(hit, "track")["properties"]
    video = items(answer("/api/videos"), "videos")
    assert {"id", "name", "duration", "width", "height", "thumbnail", "media"} <= set(video["properties"])
    assert "path" not in video["properties"]  # no server paths
    jobs = answer("/api/jobs")
    assert {"counts", "jobs"} == set(jobs["properties"])
    assert {"id", "name", "status", "error", "path", "worker"} <= set(items(jobs, "jobs")["properties"])
    status = answer("/api/status")
    assert {"videos", "hours", "encoder", "modes", "jobs", "daemon"} <= set(status["properties"])
    assert {"status", "generation"} == set(answer("/healthz")["properties"])
    assert set(answer("/api/ingest", "post", "202")["properties"]) == {"jobs", "workers"}
    assert "error" in answer("/api/search", status="422")["properties"]
    assert "error" in answer("/api/videos/{video_id}", status="404")["properties"]

    # what the server answers is what it declares
    body = client.get("/api/search", params={"q": "bikes", "top_k": 2}).json()
    assert set(body) == set(search["required"]) and set(body["moments"][0]) == set(moment["properties"])
    first = client.get("/api/videos").json()["videos"][0]
    assert set(first) == set(video["properties"])
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and isinstance(health["generation"], int)
