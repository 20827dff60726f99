"""The JSON bodies the server answers with, as pydantic models (they make the OpenAPI schema).

Times are seconds, rounded to milliseconds; scores are cosine similarities (or the grounded
mode's own score). No model carries a server path except a job's and the status's
watched folders and local encoder, which only the admin sees.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ErrorBody", "ValidationErrorBody", "ValidationProblem", "IngestRequest",
    "MomentOut", "TrackPointOut", "ObjectHitOut", "SearchAnswer", "ObjectSearchAnswer",
    "ExplainMoment", "ExplainNode", "ExplainTree", "VideoOut", "VideoDetail", "VideoList",
    "JobOut", "JobList", "IngestAnswer", "DaemonOut", "StatusOut", "HealthOut",
]

Box = tuple[int, int, int, int]


class _Out(BaseModel):
    # unknown keys are dropped, never answered: an answer shows only what is declared here
    model_config = ConfigDict(extra="ignore")


# -- errors ------------------------------------------------------------------------
class ErrorBody(_Out):
    """Every error answer."""

    error: str = Field(..., description="What went wrong, as 'parameter: problem' where one is to blame.",
                       examples=["top_k: Input should be greater than or equal to 1"])


class ValidationProblem(_Out):
    loc: list[str | int] = Field(..., description="Where: source (query, body, path, header) and field.")
    msg: str = Field(..., description="What is wrong with it.")
    type: str = Field(..., description="Pydantic's error type.")


class ValidationErrorBody(ErrorBody):
    """A request whose parameters failed validation (422)."""

    detail: Optional[list[ValidationProblem]] = Field(
        None, description="Each problem found (absent for problems found after parsing).")


# -- requests ------------------------------------------------------------------------
class IngestRequest(BaseModel):
    paths: list[str] = Field(..., min_length=1, max_length=1000,
                             description="Files or folders to index, on the server's disks.")


# -- search ----------------------------------------------------------------------------
class MomentOut(_Out):
    """A time range of one video that matches the query: a result card."""

    video: str = Field(..., description="File name of the video.")
    video_id: int = Field(..., description="Catalog id of the video (for /api/videos/{id}...).")
    width: Optional[int] = Field(..., description="Stored frame width in pixels (null if the video was just removed).")
    height: Optional[int] = Field(..., description="Stored frame height in pixels (null if the video was just removed).")
    start: float = Field(..., description="Start of the moment, seconds (of a live stream: from its session's start).")
    aired_at: Optional[float] = Field(None, description="Live stream moments: when the start aired (unix time); null for files.")
    end: float = Field(..., description="End of the moment, seconds.")
    score: float = Field(..., description="How well it matches (higher is better).")
    peak: float = Field(..., description="Time of the best-matching frame, seconds.")
    presence: Optional[float] = Field(None, description="Grounded mode (level1=presence): the calibrated probability that the event happens in the moment's level-1 window; null otherwise.")
    thumbnail: str = Field(..., description="URL of a JPEG of the peak frame.")
    media: Optional[str] = Field(..., description="URL of the video file (HTTP Range supported); null for a live stream moment that was not recorded (no media).")
    media_offset: float = Field(0.0, description="Time in the media file of second 0 of start/end: a live stream part's recording starts at the part's offset (0 for files).")


class TrackPointOut(_Out):
    time: float = Field(..., description="Seconds into the video.")
    box: Box = Field(..., description="x0, y0, x1, y1 of the best-matching cell, in the video's pixels.")
    score: float = Field(..., description="Similarity of that cell to the object.")


class ObjectHitOut(MomentOut):
    """A moment where the queried object appears, and where it is."""

    box: Optional[Box] = Field(..., description="x0, y0, x1, y1 of the object at the peak frame, video pixels.")
    track: list[TrackPointOut] = Field(..., description="Where the object is in each sampled frame of the moment.")


class ExplainMoment(_Out):
    video: str = Field(..., description="File name of the video.")
    video_id: int = Field(..., description="Catalog id of the video.")
    start: float = Field(..., description="Seconds.")
    end: float = Field(..., description="Seconds.")
    score: float = Field(..., description="Grounded score (entropy-ranked confidence).")
    peak: float = Field(..., description="Seconds.")
    presence: Optional[float] = Field(None, description="Presence of the moment's level-1 window (level1=presence; else null).")


class ExplainNode(_Out):
    """One LLM call of the grounded recursion (kind "clip": one verified clip, no call)."""

    level: int = Field(..., description="Recursion level (1 = coarse).")
    kind: str = Field(..., description="coarse, fine, clip (a clip the verifier judged at level 1) or dense.")
    shown: tuple[float, float] = Field(..., description="Seconds of video shown to the LLM.")
    answer: str = Field(..., description="The generated text.")
    verdict: str = Field(..., description="span, absent or invalid (with the parser's note).")
    span: Optional[tuple[float, float]] = Field(..., description="The answered span, seconds (null if none).")
    confidence: float = Field(..., description="Confidence of the answer.")
    p_absent: float = Field(..., description="Probability the LLM gave to 'absent'.")
    kept: bool = Field(..., description="Whether the span was refined further or kept as a result.")
    presence: Optional[float] = Field(None, description="level1=presence: the calibrated probability of the event in the level-1 window this call is (or lies in); else null.")
    window: Optional[int] = Field(None, description="level1=presence: index of that level-1 window in the video.")
    children: list["ExplainNode"] = Field(..., description="Calls made inside this span at the next level.")


class ExplainTree(_Out):
    """The grounded recursion over one video."""

    video: str = Field(..., description="File name of the video.")
    video_id: int = Field(..., description="Catalog id of the video.")
    query: str = Field(..., description="The text query.")
    moments: list[ExplainMoment] = Field(..., description="Moments found in this video.")
    tree: list[ExplainNode] = Field(..., description="Level-1 calls (dense calls for a short video).")
    frames: int = Field(..., description="Sampled frames of the video.")
    dense_frames_read: int = Field(..., description="Frames whose dense tokens the recursion read.")
    seconds_per_level: dict[int, float] = Field(..., description="Seconds spent per level.")


class SearchAnswer(_Out):
    """Moments matching a text or image query, best first."""

    query: str = Field(..., description="The text query, or the uploaded image's file name.")
    mode: Literal["clip", "grounded"] = Field(..., description="The search mode that answered.")
    took_ms: float = Field(..., description="Time to answer, milliseconds.")
    timings_ms: dict[str, float] = Field(
        ..., description="Milliseconds per stage: encode_query, retrieve (clip); ground, level1..3 (grounded).")
    moments: list[MomentOut] = Field(..., description="The moments found, best first.")
    warnings: list[str] = Field(
        ..., description="Videos left out because a file of theirs is damaged, "
                         "one message each (the moments come from the others).")
    explain: Optional[list[ExplainTree]] = Field(
        None, description="Grounded mode with explain=true only: the recursion tree per video.")


class ObjectSearchAnswer(_Out):
    """Where the object in a box appears, best first."""

    query: str = Field(..., description="The query, described: video, time and box, or image and box.")
    mode: Literal["object"] = Field("object", description="Always 'object'.")
    took_ms: float = Field(..., description="Time to answer, milliseconds.")
    moments: list[ObjectHitOut] = Field(..., description="The hits, best first.")
    warnings: list[str] = Field(
        ..., description="Videos left out because a file of theirs is damaged, "
                         "one message each (the hits come from the others).")


# -- videos ------------------------------------------------------------------------------
class VideoOut(_Out):
    """An indexed video."""

    id: int = Field(..., description="Catalog id.")
    name: str = Field(..., description="File name.")
    duration: float = Field(..., description="Seconds decoded.")
    frames: int = Field(..., description="Sampled frames stored.")
    fps: float = Field(..., description="Sampling rate used at ingest.")
    width: int = Field(..., description="Frame width in pixels.")
    height: int = Field(..., description="Frame height in pixels.")
    codec: str = Field(..., description="Codec of the source file.")
    size_bytes: int = Field(..., description="Size of the file at ingest.")
    indexed_at: float = Field(..., description="When it was indexed, unix time.")
    kept_fraction: float = Field(..., description="Share of dense tokens kept by pruning.")
    grounding_tokens: bool = Field(..., description="Whether sparse tokens for grounded search are stored.")
    thumbnail: str = Field(..., description="URL of a JPEG of the middle frame.")
    media: str = Field(..., description="URL of the video file (HTTP Range supported).")


class VideoDetail(VideoOut):
    native_fps: float = Field(..., description="Frame rate of the source file.")
    ingest_seconds: float = Field(..., description="Wall time the ingest took.")
    available: bool = Field(..., description="Whether the file is still at the path it was indexed from.")


class VideoList(_Out):
    videos: list[VideoOut] = Field(..., description="Every indexed video.")


# -- jobs ----------------------------------------------------------------------------------
class JobOut(_Out):
    """One request to index one file."""

    id: int = Field(..., description="Job id.")
    name: str = Field(..., description="File name.")
    path: Optional[str] = Field(None, description="Absolute path on the server (admin token only).")
    worker: Optional[str] = Field(None, description="host:pid:token of the worker that ran it (admin token only).")
    size: int = Field(..., description="File size when queued (-1 if unknown).")
    mtime_ns: int = Field(..., description="Modification time when queued (-1 if unknown).")
    source: str = Field(..., description="Who asked: watch, api or cli.")
    status: str = Field(..., description="pending, running, done or failed.")
    attempts: int = Field(..., description="Runs started so far.")
    max_attempts: int = Field(..., description="Runs allowed before the job fails.")
    error: str = Field(..., description="The last failure ('' if none).")
    outcome: str = Field(..., description="indexed, or skipped (file unchanged), once done.")
    video_id: int = Field(..., description="The catalog's video once done (0 otherwise).")
    created_at: float = Field(..., description="Unix time queued.")
    started_at: float = Field(..., description="Unix time of the latest attempt (0 if never run).")
    finished_at: float = Field(..., description="Unix time done or failed (0 until then).")
    next_attempt_at: float = Field(..., description="A pending job is not run before this unix time.")
    heartbeat_at: float = Field(..., description="Last sign of life of its worker, unix time.")
    seconds: float = Field(..., description="Wall time of the latest attempt.")


class JobList(_Out):
    counts: dict[str, int] = Field(..., description="Jobs per status (pending, running, done, failed).")
    jobs: list[JobOut] = Field(..., description="Jobs, newest first.")


class IngestAnswer(_Out):
    jobs: list[JobOut] = Field(..., description="The jobs queued, one per video file found.")
    workers: bool = Field(..., description="Whether this server runs workers (else a separate vidseek watch does).")


# -- service ---------------------------------------------------------------------------------
class DaemonOut(_Out):
    running: bool = Field(..., description="Whether an ingest daemon runs inside this server.")
    folders: Optional[list[str]] = Field(None, description="Folders it watches (admin token only).")


class StatusOut(_Out):
    """The archive, the models and ingest."""

    version: str = Field(..., description="vidseek version.")
    videos: int = Field(..., description="Indexed videos.")
    hours: float = Field(..., description="Hours of video indexed.")
    frames: int = Field(..., description="Sampled frames indexed.")
    encoder: str = Field(..., description="The archive's encoder: a hub id, or a local checkpoint "
                                          "(its full path with the admin token, else its folder name).")
    modes: list[str] = Field(..., description="Search modes available: clip, and grounded with a checkpoint.")
    jobs: dict[str, int] = Field(..., description="Jobs per status.")
    daemon: DaemonOut = Field(..., description="The in-process ingest daemon.")
    uptime_s: float = Field(..., description="Seconds since the server started.")


class HealthOut(_Out):
    status: str = Field(..., description="'ok' while the server answers.")
    generation: int = Field(..., description="The catalog's commit counter (changes on every ingest).")
