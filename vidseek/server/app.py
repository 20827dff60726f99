"""The HTTP server: JSON search API, media, metrics and the web page (FastAPI).

Models are loaded once, at start-up. The archive stays live: every search checks the
catalog's generation and reloads the FAISS index when a daemon (in this process or another)
has committed, so new videos are searchable without a restart. Only videos in the catalog
are ever read from disk, looked up by id, so no request can name another path.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Callable, Literal, Optional, TypeVar

from fastapi import Depends, FastAPI, File, Form, Header, HTTPException, Query, Request, UploadFile
from fastapi import Path as FastPath
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

import vidseek

import vidseek.errors
import vidseek.indexer
import vidseek.service
from .media import media_type, servable, servable_path, thumbnail_jpeg
from .metrics import CONTENT_TYPE, ServerMetrics
from .schemas import (
    ErrorBody,
    HealthOut,
    IngestAnswer,
    IngestRequest,
    JobList,
    ObjectSearchAnswer,
    SearchAnswer,
    StatusOut,
    ValidationErrorBody,
    VideoDetail,
    VideoList,
)
from .redact import looks_like_path, public_encoder, public_text
from .uploads import DecodeSlots, UploadLimit, decode_upload_image, open_upload_image

__all__ = ["create_app"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

STATIC = Path(__file__).resolve().parent / "static"
# A grounded query waiting longer than this for the one before it gets 503 instead of
# holding a request thread (the pool also serves media and health checks).
_GROUND_WAIT_SECONDS = 30.0
_MAX_VIDEO_ID = 2**63 - 1

_ERRORS = {
    401: "A missing or wrong admin token.",
    403: "Ingest requests disabled, or a path outside the allowed folders.",
    404: "No such video.",
    411: "An upload without Content-Length.",
    413: "A body over the upload limit, or an image over the pixel limit (25 megapixels by default).",
    422: "Invalid parameters.",
    503: "Busy: the archive's write lock is held too long, or grounded queries or image decodes are queued.",
}


def _errors(*codes: int) -> dict:
    """OpenAPI entries for the error answers of a route (all ``{"error": ...}``)."""
    return {code: {"model": ValidationErrorBody if code == 422 else ErrorBody,
                   "description": _ERRORS[code]} for code in codes}


class ServerState:
    """What the request handlers share: the archive, the settings, the optional daemon."""

    def __init__(self, settings: vidseek.service.ServiceSettings, watch: list[Path], ingest: bool) -> None:
        self.settings = settings
        self.watch = watch
        self.ingest = ingest or bool(watch)
        self.archive: vidseek.Archive | None = None
        self.daemon: vidseek.service.IngestDaemon | None = None
        self.daemon_thread: threading.Thread | None = None
        self.stop = threading.Event()
        self.ground_lock = threading.Lock()  # one grounded query at a time: it uses every core
        self.decodes = DecodeSlots(settings.max_concurrent_decodes)
        self.started = time.time()

    def open(self) -> None:
        s = self.settings
        self.archive = vidseek.Archive.open(s.archive, model=s.model, device=s.device,
                                            create=bool(self.watch), int8_text=s.int8_text,
                                            int8_llm=s.int8_llm, nprobe=s.nprobe)
        self.archive.warm_up()  # load the models and the index now, not on the first request
        if self.ingest:
            self.daemon = vidseek.service.IngestDaemon(self.archive, self.watch, s.daemon_config())
            self.daemon_thread = threading.Thread(target=self.daemon.run, args=(self.stop,),
                                                  name="vidseek-daemon", daemon=True)
            self.daemon_thread.start()

    def close(self) -> None:
        self.stop.set()
        if self.daemon_thread is not None:
            self.daemon_thread.join(timeout=30)
        if self.archive is not None:
            self.archive.close()

    def archive_state(self) -> dict:
        arch = self.archive
        assert arch is not None, "the server has not started"
        totals = arch.totals()
        return {"videos": totals["videos"], "seconds": totals["seconds"],
                "frames": totals["frames"], "generation": arch.generation,
                "jobs": arch.jobs.counts(),
                "streams": {s.source: (s.lag, s.indexed, s.frames_per_s)
                            for s in arch.live_streams()}}

    def ingest_roots(self) -> list[Path]:
        roots = self.settings.ingest_roots or self.watch
        return [Path(r).expanduser().resolve() for r in roots]

    def server_paths(self) -> list[Path]:
        """Folders of this server that messages may name (cut short for anonymous clients)."""
        return [self.settings.archive, Path(self.settings.archive).resolve(), *self.watch,
                *self.settings.ingest_roots, *self.ingest_roots()]


def _moment_json(m: vidseek.Moment, record: vidseek.VideoRecord | None = None,
                 stream: tuple[float | None, float, bool] = (None, 0.0, True)) -> dict:
    aired_at, media_offset, has_media = stream  # live streams: aired, recording's time 0, recorded
    presence = getattr(m, "presence", None)  # grounded moments only (an object hit has none)
    return {"video": m.video, "video_id": m.video_id, "start": round(m.start, 3),
            "aired_at": aired_at, "media_offset": round(media_offset, 3),
            "width": record.width if record else None, "height": record.height if record else None,
            "end": round(m.end, 3), "score": round(float(m.score), 6), "peak": round(m.peak, 3),
            "presence": None if presence is None else round(float(presence), 6),
            "thumbnail": f"/api/videos/{m.video_id}/thumbnail?t={m.peak:.3f}",
            "media": f"/api/videos/{m.video_id}/media" if has_media else None}


def _hit_json(hit: vidseek.ObjectHit, record: vidseek.VideoRecord | None) -> dict:
    # an object hit is a moment (same fields) plus where the object is
    return {**_moment_json(hit, record), "box": hit.box_at_peak,  # type: ignore[arg-type]
            "track": [{"time": round(p.time, 3), "box": p.box, "score": round(p.score, 6)}
                      for p in hit.track]}


def _tree_json(result: vidseek.GroundingResult) -> dict:
    data = result.to_dict()
    for moment in data["moments"]:
        moment.pop("path", None)
    return data


def _video_json(v: vidseek.VideoRecord) -> dict:
    return {"id": v.id, "name": v.name, "duration": v.duration, "frames": v.frames, "fps": v.fps,
            "width": v.width, "height": v.height, "codec": v.codec, "size_bytes": v.size_bytes,
            "indexed_at": v.indexed_at, "kept_fraction": v.kept_fraction,
            "grounding_tokens": bool(v.sparse_key),
            "thumbnail": f"/api/videos/{v.id}/thumbnail?t={v.duration / 2:.3f}",
            "media": f"/api/videos/{v.id}/media"}


def _job_json(job: vidseek.service.Job, full: bool, known: tuple[Path, ...] = ()) -> dict:
    data = job.to_dict()
    data["name"] = Path(job.path).name
    if not full:
        for key in ("path", "worker"):
            data.pop(key)
        data["error"] = public_text(data["error"], [job.path, *known])
    return data


def create_app(settings: vidseek.service.ServiceSettings | None = None,
               watch: list[Path] | None = None, ingest: bool = False) -> FastAPI:
    """The server for ``settings.archive``.

    With ``watch`` folders, or ``ingest``, it also runs the ingest daemon in-process (with
    ``settings.workers`` workers): watching those folders and working off queued jobs, such
    as those ``POST /api/ingest`` adds. Without, a separate ``vidseek watch`` does the work.
    """
    settings = settings or vidseek.service.ServiceSettings()
    state = ServerState(settings, [Path(w).expanduser().resolve() for w in (watch or [])], ingest)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.open()
        try:
            yield
        finally:
            state.close()

    app = FastAPI(title="vidseek", version=vidseek.__version__, lifespan=lifespan,
                  description="Search a video archive by text or image; stream the moments found.")
    app.state.vidseek = state
    metrics = ServerMetrics(state.archive_state)

    # -- errors as {"error": message}, with server paths cut short for anonymous clients ----
    def error_text(request: Request, text: str) -> str:
        if is_admin(request.headers.get("authorization")):
            return text
        return public_text(text, state.server_paths())

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("query", "body", "path", "header"))
            problems.append(f"{where or 'request'}: {e.get('msg', 'invalid')}")
        return JSONResponse({"error": error_text(request, "; ".join(problems)),
                             "detail": jsonable_errors(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": error_text(request, str(exc.detail))}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(vidseek.QueryError)
    async def query_error(request: Request, exc: vidseek.QueryError) -> JSONResponse:
        return JSONResponse({"error": error_text(request, str(exc))}, status_code=422)

    @app.exception_handler(vidseek.ConfigError)  # an option out of range, e.g. levels=4
    async def config_error(request: Request, exc: vidseek.ConfigError) -> JSONResponse:
        return JSONResponse({"error": error_text(request, str(exc))}, status_code=422)

    @app.exception_handler(vidseek.errors.ArchiveLockedError)
    async def archive_busy(request: Request, exc: vidseek.errors.ArchiveLockedError) -> JSONResponse:
        return JSONResponse({"error": error_text(request, f"busy: {exc}")}, status_code=503,
                            headers={"Retry-After": "5"})

    @app.middleware("http")
    async def time_requests(request: Request, call_next):
        t0 = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        label = getattr(route, "path", "unmatched")
        metrics.requests.labels(request.method, label, str(response.status_code)).observe(
            time.perf_counter() - t0)
        return response

    def archive() -> vidseek.Archive:
        return state.archive  # type: ignore[return-value]

    def find_video(video_id: int = FastPath(..., ge=1, le=_MAX_VIDEO_ID),
                   arch: vidseek.Archive = Depends(archive)) -> vidseek.VideoRecord:
        record = arch.video(video_id)
        if record is None:
            raise HTTPException(404, f"no video with id {video_id}")
        return record

    def is_admin(authorization: str | None) -> bool:
        """Whether the request carries ``Authorization: Bearer TOKEN`` (the only form accepted)."""
        token = settings.admin_token
        scheme, _, given = (authorization or "").strip().partition(" ")
        return (token is not None and token != "" and scheme.lower() == "bearer"
                and hmac.compare_digest(given.strip().encode(), token.encode()))

    def check_video_name(arch: vidseek.Archive, video: str | None, admin: bool) -> None:
        """404 unless ``video`` names an indexed video. Anonymous clients name videos by file
        name or id only: a path gets the same 404 whether or not it is indexed."""
        if video is None:
            return
        if not admin and looks_like_path(video):
            raise HTTPException(404, "video: no indexed video by that name (name a video by its "
                                     "file name or id; paths need the admin token)")
        found = arch.find_videos(video)
        if not admin:
            found = [r for r in found if video in (r.name, str(r.id), Path(r.name).stem)]
        if not found:
            raise HTTPException(404, f"no indexed video named {video!r}")

    async def with_upload(image: UploadFile, use: Callable[[Image.Image], T]) -> T:
        """``use(picture)`` for an uploaded image, off the event loop. Its header is checked
        before anything is decoded (413 over the pixel limit), and only
        ``max_concurrent_decodes`` pictures are decoded and in use at once (else 503)."""
        data = await image.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise HTTPException(413, f"image: larger than the limit of {settings.max_upload_bytes} bytes")

        def decode_and_use() -> T:
            opened = open_upload_image(data, settings.max_image_pixels)
            with opened, state.decodes.held():
                return use(decode_upload_image(opened))

        return await run_in_threadpool(decode_and_use)

    # -- search ------------------------------------------------------------------------
    @app.get("/api/search", summary="Search by text", response_model=SearchAnswer,
             response_model_exclude_unset=True, responses=_errors(404, 422, 503))
    def search_text(
        q: str = Query(..., min_length=1, max_length=1000, description="What to look for."),
        mode: Literal["clip", "grounded"] = Query("clip", description="clip or grounded."),
        top_k: int = Query(10, ge=1, le=settings.max_top_k, description="Moments to return."),
        video: Optional[str] = Query(None, max_length=4096, description="Only this video (name or id)."),
        levels: int = Query(3, ge=1, le=3, description="Grounded mode: recursion depth."),
        explain: bool = Query(False, description="Grounded mode: include the recursion trees."),
        level1: Optional[Literal["presence", "answer"]] = Query(
            None, description="Grounded mode: how level 1 chooses windows (default presence)."),
        refine: Optional[Literal["windows", "clips"]] = Query(
            None, description="Grounded mode, level1=presence: what refines the kept level-1 windows, "
                              "the clip verifier's clips in them (default: clips) or the whole windows."),
        min_presence: Optional[float] = Query(
            None, ge=0, le=1, description="Grounded mode, level1=presence: drop moments whose presence "
                                          "is below this (default: the checkpoint's calibrated threshold)."),
        authorization: Optional[str] = Header(None),
        arch: vidseek.Archive = Depends(archive),
    ) -> dict:
        if not q.strip():
            raise HTTPException(422, "q: the text query is blank")
        if mode != "grounded" and (level1 is not None or min_presence is not None or refine is not None):
            name = "level1" if level1 is not None else "min_presence" if min_presence is not None else "refine"
            raise HTTPException(422, f"{name}: only for mode=grounded")
        if refine == "clips" and level1 == "answer":
            raise HTTPException(422, "refine: clips needs level1=presence (the clips come from its verifier)")
        if min_presence is not None and level1 == "answer":
            raise HTTPException(422, "min_presence: needs level1=presence (answer mode gives "
                                     "moments no presence)")
        check_video_name(arch, video, is_admin(authorization))
        timings: dict[str, float] = {}
        warnings: list = []  # SearchWarning: videos left out, their files damaged
        t0 = time.perf_counter()
        extra: dict = {}
        if mode == "grounded":
            if arch.grounder is None:
                raise HTTPException(422, "mode: the grounded mode needs a grounding checkpoint "
                                         "(vidseek reindex --grounder CKPT)")
            if not state.ground_lock.acquire(timeout=_GROUND_WAIT_SECONDS):
                raise HTTPException(503, "busy: grounded queries are queued; try again shortly",
                                    headers={"Retry-After": "5"})
            try:
                options = vidseek.GroundingOptions(
                    levels=levels, level1=level1 or "presence", min_presence=min_presence,
                    refine=refine or vidseek.GroundingOptions.refine).with_results(top_k)
                results = arch.ground(q, video=video, options=options, warnings=warnings)
            finally:
                state.ground_lock.release()
            timings["ground"] = time.perf_counter() - t0
            for result in results:  # per-level stages, summed over the videos grounded
                for level, seconds in result.seconds_per_level.items():
                    timings[f"level{level}"] = timings.get(f"level{level}", 0.0) + seconds
            moments = vidseek.ranked_moments(results, top_k)
            if explain:
                extra["explain"] = [_tree_json(r) for r in results]
        else:
            moments = arch.search(q, top_k=top_k, video=video, timings=timings, warnings=warnings)
        metrics.observe_stages(timings)
        metrics.searches.labels(mode, "text").inc()
        return {"query": q, "mode": mode, "took_ms": round(1000 * (time.perf_counter() - t0), 2),
                "timings_ms": {k: round(1000 * v, 2) for k, v in timings.items()},
                "moments": moments_json(arch, moments), "warnings": metrics.count_damaged(warnings),
                **extra}

    @app.post("/api/search/image", summary="Search by an uploaded image", response_model=SearchAnswer,
              response_model_exclude_unset=True, responses=_errors(404, 411, 413, 422, 503))
    async def search_image(
        image: UploadFile = File(..., description="A frame or crop (JPEG, PNG, WebP...)."),
        top_k: int = Form(10, ge=1, le=settings.max_top_k),
        video: Optional[str] = Form(None, max_length=4096),
        authorization: Optional[str] = Header(None),
        arch: vidseek.Archive = Depends(archive),
    ) -> dict:
        await run_in_threadpool(check_video_name, arch, video, is_admin(authorization))
        timings: dict[str, float] = {}
        warnings: list = []
        t0 = time.perf_counter()
        moments = await with_upload(image, lambda picture: arch.search(
            image=picture, top_k=top_k, video=video, timings=timings, warnings=warnings))
        metrics.observe_stages(timings)
        metrics.searches.labels("clip", "image").inc()
        return {"query": image.filename or "image", "mode": "clip",
                "took_ms": round(1000 * (time.perf_counter() - t0), 2),
                "timings_ms": {k: round(1000 * v, 2) for k, v in timings.items()},
                "moments": moments_json(arch, moments), "warnings": metrics.count_damaged(warnings)}

    # -- videos --------------------------------------------------------------------------
    def moments_json(arch: vidseek.Archive, moments: list[vidseek.Moment]) -> list[dict]:
        records = {m.video_id: arch.video(m.video_id) for m in moments}
        streams = {}
        for video_id, record in records.items():
            part = arch.stream_part(record) if record is not None else None
            if part is not None:
                try:
                    has_media = bool(arch.media_path(record))  # type: ignore[arg-type]
                except vidseek.VideoError:  # not recorded: no player, the page says so
                    has_media = False
                streams[video_id] = (part, has_media)
        return [_moment_json(m, records[m.video_id], (
            streams[m.video_id][0].wall_clock(m.start), streams[m.video_id][0].offset,
            streams[m.video_id][1]) if m.video_id in streams else (None, 0.0, True))
            for m in moments]

    def object_answer(arch: vidseek.Archive, hits: list[vidseek.ObjectHit], t0: float, query: str,
                      warnings: list) -> dict:
        seconds = time.perf_counter() - t0
        metrics.observe_stages({"object": seconds})
        metrics.searches.labels("object", "region").inc()
        records = {h.video_id: arch.video(h.video_id) for h in hits}
        return {"query": query, "mode": "object", "took_ms": round(1000 * seconds, 2),
                "moments": [_hit_json(h, records[h.video_id]) for h in hits],
                "warnings": metrics.count_damaged(warnings)}

    def within_video(arch: vidseek.Archive, within_id: int | None) -> int | None:
        if within_id is not None and arch.video(within_id) is None:
            raise HTTPException(404, f"within_id: no video with id {within_id}")
        return within_id

    @app.get("/api/search/object", summary="Where does the object in a box on a frame appear?",
             response_model=ObjectSearchAnswer, responses=_errors(404, 422, 503))
    def search_object(
        video_id: int = Query(..., ge=1, le=_MAX_VIDEO_ID, description="The video the box is drawn on."),
        t: float = Query(..., ge=0, description="Seconds into that video."),
        box: str = Query(..., max_length=100, description="x0,y0,x1,y1 in the video's pixels."),
        top_k: int = Query(10, ge=1, le=settings.max_top_k),
        within_id: Optional[int] = Query(None, ge=1, le=_MAX_VIDEO_ID, description="Only this video (its track)."),
        arch: vidseek.Archive = Depends(archive),
    ) -> dict:
        record = find_video(video_id, arch)
        t0 = time.perf_counter()
        warnings: list = []
        hits = arch.search_object(box, video=record.id, time=t, top_k=top_k,
                                  within=within_video(arch, within_id), warnings=warnings)
        return object_answer(arch, hits, t0, f"{record.name} at {t:g}s, box {box}", warnings)

    @app.post("/api/search/object", summary="Where does the object in a box on an uploaded image appear?",
              response_model=ObjectSearchAnswer, responses=_errors(411, 413, 422, 503))
    async def search_object_image(
        image: UploadFile = File(...),
        box: str = Form(..., max_length=100, description="x0,y0,x1,y1 in the image's pixels."),
        top_k: int = Form(10, ge=1, le=settings.max_top_k),
        arch: vidseek.Archive = Depends(archive),
    ) -> dict:
        t0 = time.perf_counter()
        warnings: list = []
        hits = await with_upload(image, lambda picture: arch.search_object(
            box, image=picture, top_k=top_k, warnings=warnings))
        return object_answer(arch, hits, t0, f"{image.filename or 'image'}, box {box}", warnings)

    @app.get("/api/videos", summary="Indexed videos", response_model=VideoList)
    def list_videos(arch: vidseek.Archive = Depends(archive)) -> dict:
        return {"videos": [_video_json(v) for v in arch.videos()]}

    @app.get("/api/videos/{video_id}", summary="One indexed video", response_model=VideoDetail,
             responses=_errors(404, 422))
    def video_detail(record: vidseek.VideoRecord = Depends(find_video),
                     arch: vidseek.Archive = Depends(archive)) -> dict:
        return {**_video_json(record), "native_fps": record.native_fps,
                "ingest_seconds": record.ingest_seconds, "available": servable(arch, record)}

    @app.get("/api/videos/{video_id}/thumbnail", summary="A frame as JPEG",
             response_class=Response,
             responses={200: {"content": {"image/jpeg": {}}}, **_errors(404, 422)})
    def thumbnail(
        t: float = Query(0.0, ge=0, description="Time in seconds."),
        width: int = Query(320, ge=16, le=1920, description="Width in pixels."),
        record: vidseek.VideoRecord = Depends(find_video),
        arch: vidseek.Archive = Depends(archive),
    ) -> Response:
        if t > record.duration + 0.5:
            raise HTTPException(422, f"t: {t:g}s is past the end of {record.name} ({record.duration:.1f}s)")
        path = servable_path(arch, record)
        t0 = time.perf_counter()
        width = min(1920, -(-width // 32) * 32)  # a few sizes and 0.1 s steps keep the cache useful
        try:
            data = thumbnail_jpeg(str(path), record.content_hash, round(min(t, record.duration), 1), width)
        except vidseek.VideoError as exc:
            raise HTTPException(422, f"t: cannot decode a frame there ({exc.problem})")
        metrics.observe_stages({"thumbnail": time.perf_counter() - t0})
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/videos/{video_id}/media", summary="The video file (HTTP Range supported)",
             response_class=FileResponse,
             responses={200: {"content": {"video/mp4": {}}, "description": "The file, whole or a range (206)."},
                        **_errors(404, 422)})
    def media(record: vidseek.VideoRecord = Depends(find_video),
              arch: vidseek.Archive = Depends(archive)) -> FileResponse:
        path = servable_path(arch, record)
        return FileResponse(path, media_type=media_type(path), filename=record.name,
                            content_disposition_type="inline")

    # -- jobs and ingest -------------------------------------------------------------
    @app.get("/api/jobs", summary="Ingest jobs, newest first", response_model=JobList,
             response_model_exclude_unset=True, responses=_errors(422))
    def list_jobs(
        status: Optional[Literal["pending", "running", "done", "failed"]] = Query(None),
        limit: int = Query(50, ge=1, le=1000),
        authorization: Optional[str] = Header(None),
        arch: vidseek.Archive = Depends(archive),
    ) -> dict:
        full = is_admin(authorization)  # server paths and worker names only for the admin
        return {"counts": arch.jobs.counts(),
                "jobs": [_job_json(j, full, tuple(state.server_paths()))
                         for j in arch.jobs.list(status=status, limit=limit)]}

    @app.post("/api/ingest", status_code=202, summary="Queue files for indexing (admin token)",
              response_model=IngestAnswer, response_model_exclude_unset=True,
              responses=_errors(401, 403, 411, 413, 422))
    def ingest(
        request: IngestRequest,
        authorization: Optional[str] = Header(None),
        arch: vidseek.Archive = Depends(archive),
    ) -> dict:
        if not settings.admin_token:
            raise HTTPException(403, "ingest requests are disabled: set VIDSEEK_ADMIN_TOKEN")
        if not is_admin(authorization):
            raise HTTPException(401, "a valid admin token is required (Authorization: Bearer TOKEN)",
                                headers={"WWW-Authenticate": "Bearer"})
        roots = state.ingest_roots()

        def allowed(path: Path) -> bool:
            return any(path == root or path.is_relative_to(root) for root in roots)

        files: list[Path] = []
        for raw in request.paths:
            try:
                path = Path(raw).resolve()
                if not allowed(path):
                    raise HTTPException(403, f"paths: {raw} is outside the folders ingest may read "
                                             "(VIDSEEK_INGEST_ROOTS)")
                if not path.exists():
                    raise HTTPException(422, f"paths: {raw} does not exist")
                # real_path never raises: a link loop inside the folder is queued and its
                # job fails naming it, instead of refusing the whole request
                found = {f: vidseek.indexer.real_path(f) for f in vidseek.indexer.discover_videos([path])}
            except (ValueError, OSError, RuntimeError) as exc:  # NUL bytes, loops, permissions
                raise HTTPException(422, f"paths: {raw!r} is not a usable path ({exc})")
            outside = [f for f, real in found.items() if not allowed(real)]  # symlinks out
            if outside:
                raise HTTPException(403, f"paths: {outside[0].name} under {raw} links outside the "
                                         "folders ingest may read")
            files += found.values()
        queued = []
        for path in files:
            try:
                st = path.stat()
            except OSError:  # removed since it was listed
                continue
            job, _ = arch.jobs.enqueue(str(path), st.st_size, st.st_mtime_ns, source="api",
                                       max_attempts=settings.max_attempts)
            queued.append(_job_json(job, True))
        return {"jobs": queued, "workers": bool(state.daemon)}

    # -- service -----------------------------------------------------------------------
    @app.get("/api/status", summary="Archive, models and ingest status", response_model=StatusOut,
             response_model_exclude_unset=True)
    def status(authorization: Optional[str] = Header(None),
               arch: vidseek.Archive = Depends(archive)) -> dict:
        admin = is_admin(authorization)  # the encoder's location and the folders: admin only
        archive_state = state.archive_state()
        running = state.daemon_thread is not None and state.daemon_thread.is_alive()
        daemon: dict[str, object] = {"running": running}
        if admin:
            daemon["folders"] = [str(p) for p in state.watch]
        return {"version": vidseek.__version__, "videos": archive_state["videos"],
                "hours": archive_state["seconds"] / 3600, "frames": archive_state["frames"],
                "encoder": arch.encoder_name if admin else public_encoder(arch.encoder_name),
                "modes": ["clip", "grounded"] if arch.grounder is not None else ["clip"],
                "jobs": archive_state["jobs"], "daemon": daemon,
                "uptime_s": round(time.time() - state.started, 1)}

    @app.get("/healthz", summary="Liveness", response_model=HealthOut)
    def healthz(arch: vidseek.Archive = Depends(archive)) -> dict:
        return {"status": "ok", "generation": arch.generation}

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    # multipart framing around the largest image upload
    app.add_middleware(UploadLimit, max_bytes=settings.max_upload_bytes + 64 * 1024)
    return app


def jsonable_errors(exc: RequestValidationError) -> list[dict]:
    return [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()]
