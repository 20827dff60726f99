"""``vidseek doctor``: check an archive end to end, and repair what can be repaired.

:func:`check` reads everything an archive is made of and returns a :class:`DoctorReport`,
a list of :class:`DoctorFinding`; :func:`repair` runs the same checks and then fixes what it
can from what is left. Both hold the archive's write lock while they read the archive (a
commit of another process waits; searches do not), and release it before looking at the
source videos (``deep`` hashes whole files).

Severities: an ``error`` is damage — something a search or an ingest relies on is missing,
unreadable or inconsistent; a ``warning`` is not — the archive answers correctly, but
something deserves attention (a source video changed or vanished, a leftover file, a stale
job, sparse tokens of another grounding checkpoint). :attr:`DoctorReport.healthy` is true
when no error is left unrepaired; warnings never make an archive unhealthy.

What :func:`repair` does, per kind (see :data:`KINDS`): indexes are rebuilt from the feature
files; a video whose feature file is missing, unreadable or disagrees with the catalog is
removed from the catalog and the indexes and, when its source file still exists, queued
for re-ingest as a job (source ``doctor``) that the ingest daemon or ``vidseek ingest``
carries out; a damaged sparse-token file is dropped and its video's pointer cleared
(``vidseek reindex`` computes them again); orphan and leftover temporary files are deleted;
running jobs whose worker is gone are recovered (:meth:`JobQueue.recover`). It never
deletes a video whose feature file is good, never touches a source video, and leaves a
damaged catalog alone (a catalog that fails SQLite's integrity check stops every repair).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
import socket
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from .archive_store import ArchiveStore
from .catalog import VideoRecord
from .frame_index import FrameIndex
from .jobs import Job, JobQueue, _process_alive, worker_id
from .patch_index import PatchIndex
from .sources import UNKNOWN, archive_file_name
from .streams import is_stream_path

__all__ = ["DoctorFinding", "DoctorReport", "KINDS", "SEVERITIES", "check", "repair"]

logger = logging.getLogger(__name__)

SEVERITIES = ("error", "warning")

KINDS = {
    # kind: (severity, what it means)
    "catalog-damaged": ("error", "catalog.db fails SQLite's integrity check"),
    "catalog-rows": ("error", "frame or window rows of a video the catalog no longer has"),
    "features-missing": ("error", "a video's feature file is gone"),
    "features-damaged": ("error", "a video's feature file cannot be read"),
    "features-mismatch": ("error", "a video's feature file disagrees with its catalog record"),
    # not repaired: the file may be fine (a share offline, no memory, permissions)
    "features-unreadable": ("error", "a video's feature file could not be read just now"),
    "frame-rows": ("error", "a video's frame rows disagree with its record (re-ingest it)"),
    "sparse-missing": ("error", "the sparse-token file a video names is gone"),
    "sparse-damaged": ("error", "the sparse-token file a video names cannot be read"),
    "sparse-stale": ("warning", "videos without sparse tokens of the grounding checkpoint"),
    "index-missing": ("error", "an index has no manifest while the catalog has videos"),
    "index-damaged": ("error", "an index's manifest or a segment file cannot be read"),
    "index-generation": ("error", "an index is at another generation than the catalog"),
    "index-count": ("error", "an index holds another number of vectors than the catalog"),
    "orphan-file": ("warning", "a feature, sparse-token or segment file nothing references"),
    "temporary-file": ("warning", "a temporary file left by an interrupted write"),
    "job-stale": ("warning", "a running job whose worker is gone"),
    "job-video-missing": ("warning", "a job indexed a video the archive no longer holds"),
    "job-source-missing": ("warning", "a pending job's file is gone"),
    "source-changed": ("warning", "a video's source file changed since it was indexed"),
    "source-missing": ("warning", "a video's source file is gone or unreadable"),
}

# Unreferenced files younger than this may belong to an ingest in progress (its feature file
# is written before its commit): the same grace as ArchiveStore.collect_garbage.
ORPHAN_AGE_S = 3600.0
# Running jobs whose heartbeat is older than this are stale (the daemon's default).
STALE_JOB_S = 600.0

# vidseek.atomic.temporary_path: ".{stem}.tmp{pid}{suffix}"
_TEMPORARY = re.compile(r"^\..*\.tmp(\d+)(\.[A-Za-z0-9]+)?$")


@dataclass(frozen=True)
class DoctorFinding:
    """One problem found in an archive."""

    kind: str  # one of KINDS
    severity: str  # "error" (damage) or "warning"
    subject: str  # what it is about: a video ("name (video ID)"), a file, an index, a job
    message: str
    repaired: bool = False
    action: str = ""  # what repair did about it ("" if nothing)
    video_id: int | None = None
    path: str = ""  # the file concerned, if one

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class DoctorReport:
    """What :func:`check` or :func:`repair` found (and did)."""

    archive: Path
    findings: list[DoctorFinding]
    videos: int  # videos in the catalog when checked
    repair: bool = False  # True when repair ran
    deep: bool = False  # True when source files were hashed

    @property
    def healthy(self) -> bool:
        """True when every error found was repaired (warnings do not count)."""
        return not self.remaining_errors

    @property
    def remaining_errors(self) -> list[DoctorFinding]:
        return [f for f in self.findings if f.severity == "error" and not f.repaired]

    @property
    def errors(self) -> list[DoctorFinding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[DoctorFinding]:
        return [f for f in self.findings if f.severity == "warning"]

    def to_dict(self) -> dict[str, Any]:
        return {"archive": str(self.archive), "healthy": self.healthy, "repair": self.repair,
                "deep": self.deep, "videos": self.videos,
                "findings": [f.to_dict() for f in self.findings]}


def _finding(kind: str, subject: str, message: str, **extra: Any) -> DoctorFinding:
    return DoctorFinding(kind, KINDS[kind][0], subject, message, **extra)


def _video_subject(video: VideoRecord) -> str:
    return f"{video.name} (video {video.id})"


def _describe(exc: BaseException, path: Path | None = None) -> str:
    """The error's class and message, without the file's path when the finding names it."""
    text = str(exc).replace(f"{path}: ", "") if path is not None else str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass
class _State:
    """What the archive checks learned, for the repairs."""

    videos: list[VideoRecord] = field(default_factory=list)
    catalog_ok: bool = True
    damaged_videos: dict[int, VideoRecord] = field(default_factory=dict)
    indexes_to_rebuild: set[str] = field(default_factory=set)  # "frames", "patches"
    listed_segments: dict[str, set[str] | None] = field(default_factory=dict)


class _Checker:
    """The checks of the archive itself (the caller holds the write lock)."""

    def __init__(self, store: ArchiveStore, orphan_age: float, stale_after: float) -> None:
        self.store, self.orphan_age, self.stale_after = store, orphan_age, stale_after
        self.state = _State()
        self.findings: list[DoctorFinding] = []

    def run(self) -> list[DoctorFinding]:
        self._catalog()
        if self.state.catalog_ok:
            kept = self._features()
            self._sparse()
            self._indexes(kept)
            self._orphans()
            self._jobs()
        return self.findings

    # -- catalog ------------------------------------------------------------------------
    def _catalog(self) -> None:
        db = self.store.catalog.db
        try:
            rows = [r[0] for r in db.execute("PRAGMA integrity_check").fetchall()]
            if rows != ["ok"]:
                raise sqlite3.DatabaseError("; ".join(map(str, rows[:5])))
            self.state.videos = self.store.catalog.videos()
        except sqlite3.DatabaseError as exc:
            self.state.catalog_ok = False
            self.findings.append(_finding(
                "catalog-damaged", "catalog.db", f"integrity check failed ({exc}); nothing "
                "else was checked: restore it from a backup or ingest into a new archive",
                path=str(self.store.catalog.path)))
            return
        known = {v.id for v in self.state.videos}
        for table in ("frames", "windows"):
            dangling = [r[0] for r in db.execute(f"SELECT DISTINCT video_id FROM {table}")
                        if r[0] not in known]
            if dangling:
                self.findings.append(_finding(
                    "catalog-rows", f"{table} table", f"rows of {len(dangling)} video(s) the "
                    f"catalog no longer has (ids {', '.join(map(str, dangling[:10]))})"))

    # -- feature files ------------------------------------------------------------------
    def _features(self) -> dict[int, int] | None:
        """Read every video's feature file; return its stored dense tokens per video id
        (None if any file could not be read: the patch count cannot be checked then)."""
        manifest = self.store.manifest or {}
        encoder = manifest.get("encoder", {})
        rows = dict(self.store.catalog.db.execute(
            "SELECT video_id, COUNT(*) FROM frames GROUP BY video_id").fetchall())
        kept: dict[int, int] | None = {}
        for video in self.state.videos:
            path = self.store.files.path(video.features_key)
            subject = _video_subject(video)
            problem = None
            if not path.exists():
                self._damaged(video, _finding("features-missing", subject, f"feature file "
                              f"{self._rel(path)} is gone", video_id=video.id, path=str(path)))
                kept = None
                continue
            try:
                features = self.store.files.load(video.features_key)
            except ValueError as exc:  # DamagedFileError among them: the file itself is bad
                self._damaged(video, _finding("features-damaged", subject, f"feature file "
                              f"{self._rel(path)} unreadable ({_describe(exc, path)})",
                              video_id=video.id, path=str(path)))
                kept = None
                continue
            except (OSError, MemoryError) as exc:  # maybe passing: never a reason to delete
                self.findings.append(_finding("features-unreadable", subject, f"feature file "
                                     f"{self._rel(path)} could not be read ({_describe(exc, path)}); "
                                     "run the check again", video_id=video.id, path=str(path)))
                kept = None
                continue
            count, emb = len(features.times), features.embeddings
            if count == video.frames and rows.get(video.id, 0) != video.frames:
                # the file agrees with its record: the catalog rows are wrong, not the features
                self.findings.append(_finding("frame-rows", subject, f"{rows.get(video.id, 0)} "
                                     f"frame rows for {video.frames} frames", video_id=video.id))
                kept = None
            if count != video.frames:
                problem = (f"{count} frames in {self._rel(path)}, {video.frames} in its catalog "
                           f"record, {rows.get(video.id, 0)} frame rows")
            elif encoder and (emb.ndim != 2 or emb.shape[1] != encoder.get("embed_dim")):
                problem = f"embeddings of shape {emb.shape} (the encoder's are {encoder.get('embed_dim')}-d)"
            elif encoder and features.dense.tokens.shape[1:] != (encoder.get("vision_width"),):
                problem = f"dense tokens of shape {features.dense.tokens.shape}"
            elif not (np.isfinite(emb).all() and np.isfinite(features.dense.tokens).all()):
                problem = "non-finite values in the embeddings or dense tokens"
            if problem is not None:
                self._damaged(video, _finding("features-mismatch", subject, problem,
                                              video_id=video.id, path=str(path)))
                kept = None
            elif kept is not None:
                kept[video.id] = int(features.dense.kept.sum())
        return kept

    def _damaged(self, video: VideoRecord, finding: DoctorFinding) -> None:
        self.state.damaged_videos[video.id] = video
        self.findings.append(finding)

    # -- sparse tokens ------------------------------------------------------------------
    def _sparse(self) -> None:
        grounder = self.store.catalog.get_meta("grounder") or {}
        wanted = grounder.get("adapter_fingerprint")
        stale = []
        for video in self.state.videos:
            if video.sparse_key:
                path = self.store.sparse.path(video.sparse_key)
                kind, message = "", ""
                if not path.exists():
                    kind, message = "sparse-missing", f"sparse-token file {self._rel(path)} is gone"
                else:
                    try:
                        tokens = self.store.sparse.load(video.sparse_key)
                        if tokens.fingerprint != video.sparse_fingerprint:
                            kind, message = "sparse-damaged", (
                                f"{self._rel(path)} holds tokens of adapter {tokens.fingerprint}, "
                                f"the catalog says {video.sparse_fingerprint}")
                    except Exception as exc:  # noqa: BLE001 - any failure to read means damaged
                        kind, message = "sparse-damaged", f"{self._rel(path)} unreadable ({_describe(exc, path)})"
                if kind:
                    self.findings.append(_finding(kind, _video_subject(video), message,
                                                  video_id=video.id, path=str(path)))
                    continue
            if wanted and video.sparse_fingerprint != wanted:
                stale.append(video)
        if stale:
            names = ", ".join(v.name for v in stale[:5]) + (", …" if len(stale) > 5 else "")
            self.findings.append(_finding(
                "sparse-stale", f"{len(stale)} video(s)", f"no sparse tokens of the grounding "
                f"checkpoint {grounder.get('path', '')} ({names}): grounded searches compute "
                "them on the fly; `vidseek reindex` stores them"))

    # -- indexes ------------------------------------------------------------------------
    def _indexes(self, kept: dict[int, int] | None) -> None:
        manifest = self.store.manifest
        if manifest is None:  # nothing ingested yet: no index to check
            return
        encoder = manifest["encoder"]
        frames = sum(v.frames for v in self.state.videos)
        patches = None if kept is None else sum(kept.values())
        self._index("frames", FrameIndex(self.store.root / "frames.faiss", encoder["embed_dim"]), frames)
        self._index("patches", PatchIndex(self.store.root / "patches.faiss", encoder["vision_width"]),
                    patches)

    def _index(self, name: str, index: FrameIndex, expected: int | None) -> None:
        """Load a fresh copy of one index with its own loading code (the store's copy, if
        any, stays as it is) and compare it with the catalog."""
        subject = f"{name} index"
        generation = self.store.catalog.generation
        self.state.listed_segments[name] = None

        def found(kind: str, message: str, path: Path | None = None) -> None:
            self.state.indexes_to_rebuild.add(name)
            self.findings.append(_finding(kind, subject, message, path=str(path or "")))

        if not index.sidecar.exists():
            if self.state.videos:
                found("index-missing", f"no manifest ({index.sidecar.name}): the next search "
                      "rebuilds it from the feature files", index.sidecar)
            return
        try:
            meta = index._read_manifest()
        except Exception as exc:  # noqa: BLE001 - any failure to read means damaged
            found("index-damaged", f"manifest {index.sidecar.name} unreadable ({_describe(exc, index.sidecar)})",
                  index.sidecar)
            return
        if meta is None:
            found("index-damaged", f"manifest {index.sidecar.name} is of an older format or "
                  "another width", index.sidecar)
            return
        try:
            listed = [meta["base"], meta["trained"], *meta["logs"]]
        except (KeyError, TypeError) as exc:
            found("index-damaged", f"manifest {index.sidecar.name} incomplete ({_describe(exc)})",
                  index.sidecar)
            return
        self.state.listed_segments[name] = {n for n in listed if n}
        missing = [n for n in listed if n and not (index.segments / n).exists()]
        if missing:
            found("index-damaged", f"segment file(s) {', '.join(missing)} listed by "
                  f"{index.sidecar.name} are gone", index.segments / missing[0])
            return
        try:
            index._load_manifest(meta)
        except Exception as exc:  # noqa: BLE001 - any failure to read means damaged
            bad = self._failing_segment(index, meta)
            where = index.segments / bad if bad else index.sidecar
            found("index-damaged", f"{where.name} unreadable ({_describe(exc, where)})", where)
            return
        if index.generation != generation:
            found("index-generation", f"at generation {index.generation}, the catalog at "
                  f"{generation} (a commit was interrupted?): the next search rebuilds it")
        elif expected is not None and index.ntotal != expected:
            found("index-count", f"holds {index.ntotal} vectors, the catalog's videos "
                  f"{expected}")

    @staticmethod
    def _failing_segment(index: FrameIndex, meta: dict) -> str | None:
        """The first segment the index's loading code cannot read, in loading order."""
        probe = type(index)(index.path, index.dim)
        steps: list[tuple[str, Callable[[], object]]] = []
        if meta["base"]:
            steps.append((meta["base"], lambda: probe._map(meta["base"], meta["base_kind"])))
        if meta["trained"]:
            steps.append((meta["trained"], lambda: probe._empty_delta(meta["trained"])))
        steps += [(log, functools.partial(probe._replay, [log])) for log in meta["logs"]]
        for name, step in steps:
            try:
                step()
            except Exception:  # noqa: BLE001
                return name
        return None

    # -- orphans ------------------------------------------------------------------------
    def _orphans(self) -> None:
        root, now = self.store.root, time.time()
        referenced = {
            self.store.files.root: {v.features_key + ".npz" for v in self.state.videos},
            self.store.sparse.root: {v.sparse_key + ".npz" for v in self.state.videos if v.sparse_key},
        }
        for folder, names in referenced.items():
            for path in _files(folder):
                if _TEMPORARY.match(path.name):
                    self._temporary(path, now)
                elif path.suffix == ".npz" and path.name not in names and self._old(path, now):
                    what = "feature" if folder == self.store.files.root else "sparse-token"
                    self.findings.append(_finding("orphan-file", self._rel(path), f"{what} "
                                                  "file no video references", path=str(path)))
        for name in ("frames", "patches"):
            listed = self.state.listed_segments.get(name)
            for path in _files(root / f"{name}.d"):
                if _TEMPORARY.match(path.name):
                    self._temporary(path, now)
                elif listed is not None and path.name not in listed:
                    self.findings.append(_finding("orphan-file", self._rel(path), "segment file "
                                                  f"{name}.json does not list", path=str(path)))
            legacy = root / f"{name}.faiss"  # the single-file index of older versions
            if listed is not None and legacy.is_file():
                self.findings.append(_finding("orphan-file", legacy.name, "index file of an "
                                              "older format, replaced by the segments", path=str(legacy)))
        for path in _files(root):
            if _TEMPORARY.match(path.name):
                self._temporary(path, now)

    def _temporary(self, path: Path, now: float) -> None:
        """A temporary file of a write: leftover once its writer is gone, or old."""
        pid = int(_TEMPORARY.match(path.name).group(1))  # type: ignore[union-attr]
        if (pid != os.getpid() and not _process_alive(pid)) or self._old(path, now):
            self.findings.append(_finding("temporary-file", self._rel(path), "left by an "
                                          "interrupted write", path=str(path)))

    def _old(self, path: Path, now: float) -> bool:
        try:
            return now - path.stat().st_mtime >= self.orphan_age
        except OSError:  # removed meanwhile
            return False

    # -- jobs ---------------------------------------------------------------------------
    def _jobs(self) -> None:
        if "jobs" not in self.store.catalog.db.table_names():
            return
        queue = JobQueue(self.store.catalog)
        now, host, me = time.time(), socket.gethostname(), worker_id()
        for job in queue.list(status="running"):
            if _worker_gone(job, now, host, me, self.stale_after):
                self.findings.append(_finding(
                    "job-stale", f"job {job.id}", f"running {job.path} under worker "
                    f"{job.worker}, which is gone (last heartbeat {now - job.heartbeat_at:.0f}s ago)",
                    path=job.path))
        by_id = {v.id: v for v in self.state.videos}
        at_path = {v.path for v in self.state.videos}
        newest: dict[str, Job] = {}
        for job in queue.list():  # newest first
            newest.setdefault(job.path, job)
        for job in newest.values():
            if (job.status == "done" and job.video_id and job.video_id not in by_id
                    and job.path not in at_path):
                self.findings.append(_finding(
                    "job-video-missing", f"job {job.id}", f"indexed {job.path} as video "
                    f"{job.video_id}, which the archive no longer holds (removed on purpose? "
                    "else `vidseek ingest` it again)", path=job.path))
            elif job.status == "pending" and not os.path.exists(job.path):
                self.findings.append(_finding(
                    "job-source-missing", f"job {job.id}", f"{job.path} is gone: the job "
                    "will fail", path=job.path))

    def _rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.store.root))
        except ValueError:
            return str(path)


def _files(folder: Path) -> Iterable[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file())


def _worker_gone(job: Job, now: float, host: str, me: str, stale_after: float) -> bool:
    """JobQueue.recover's test, read-only, except that this process's own jobs are left to
    its own daemon (which knows which of them its workers are running)."""
    if job.worker == me:
        return False
    worker_host, pid, _token = (job.worker.split(":") + ["", "", ""])[:3]
    if now - job.heartbeat_at > stale_after:
        return True
    return worker_host == host and pid.isdigit() and (
        int(pid) == os.getpid() or not _process_alive(int(pid)))


# -- source videos ------------------------------------------------------------------------
def _check_sources(root: Path, videos: list[VideoRecord],
                   digest: Callable[[Path], str] | None) -> list[DoctorFinding]:
    """Source files gone or changed: size, and modification since indexing (the recorded
    mtime, or the indexing time for rows older than it); with ``digest``, the content hash
    (reads every file whole; a path leading to an archive file is never opened)."""
    findings = []
    for video in videos:
        if is_stream_path(video.path):  # a live stream's part: no source file behind it
            continue
        path, subject = Path(video.path), _video_subject(video)
        try:
            st = path.stat()
        except FileNotFoundError:
            findings.append(_finding("source-missing", subject, f"{path} is gone; the archive "
                                     "still answers searches from its features",
                                     video_id=video.id, path=str(path)))
            continue
        except OSError as exc:
            findings.append(_finding("source-missing", subject, f"{path} unreadable "
                                     f"({_describe(exc)})", video_id=video.id, path=str(path)))
            continue
        changed = None
        own = archive_file_name(root, path)
        if own is not None:
            changed = f"the path now leads to the archive's own file {own}"
        elif st.st_size != video.size_bytes:
            changed = f"its size is {st.st_size} bytes, {video.size_bytes} when indexed"
        elif digest is not None:
            try:
                if digest(path) != video.content_hash:
                    changed = "its content hash differs from the indexed one"
            except OSError as exc:
                findings.append(_finding("source-missing", subject, f"{path} unreadable "
                                         f"({_describe(exc)})", video_id=video.id, path=str(path)))
                continue
        elif (st.st_mtime_ns != video.source_mtime_ns if video.source_mtime_ns != UNKNOWN
              else st.st_mtime > video.indexed_at):
            changed = "modified after it was indexed (same size; --deep compares contents)"
        if changed:
            findings.append(_finding("source-changed", subject, f"{path}: {changed}; "
                                     "re-ingest it to index the new content",
                                     video_id=video.id, path=str(path)))
    return findings


# -- entry points ---------------------------------------------------------------------------
def check(store: ArchiveStore, digest: Callable[[Path], str] | None = None, *,
          orphan_age: float = ORPHAN_AGE_S, stale_after: float = STALE_JOB_S) -> DoctorReport:
    """Check the archive; ``digest`` (a file → content hash function, the one ingest uses)
    also compares every source file's content hash (``--deep``). Changes nothing (opening
    an archive from an older version adds its newer catalog columns, as any open does)."""
    with store.lock:
        checker = _Checker(store, orphan_age, stale_after)
        findings = checker.run()
    findings += _check_sources(store.root, checker.state.videos, digest)
    return DoctorReport(store.root, findings, len(checker.state.videos), deep=digest is not None)


def repair(store: ArchiveStore, digest: Callable[[Path], str] | None = None, *,
           orphan_age: float = ORPHAN_AGE_S, stale_after: float = STALE_JOB_S) -> DoctorReport:
    """Check the archive, then repair what can be repaired (see the module's docstring);
    the report's findings say which were repaired and how."""
    with store.lock:
        checker = _Checker(store, orphan_age, stale_after)
        findings = checker.run()
        if checker.state.catalog_ok:
            findings = _Repairer(store, checker, stale_after).run(findings)
    findings += _check_sources(store.root, checker.state.videos, digest)
    return DoctorReport(store.root, findings, len(checker.state.videos), repair=True,
                        deep=digest is not None)


class _Repairer:
    """The repairs, under the write lock the checks were made under."""

    def __init__(self, store: ArchiveStore, checker: _Checker, stale_after: float) -> None:
        self.store, self.state, self.stale_after = store, checker.state, stale_after
        self.done: dict[int, str] = {}  # id(finding) → action

    def run(self, findings: list[DoctorFinding]) -> list[DoctorFinding]:
        by_kind: dict[str, list[DoctorFinding]] = {}
        for f in findings:
            by_kind.setdefault(f.kind, []).append(f)
        steps: list[tuple[tuple[str, ...], Callable[[list[DoctorFinding]], None]]] = [
            (("job-stale",), self._jobs),
            (("catalog-rows",), self._rows),
            (("features-missing", "features-damaged", "features-mismatch"), self._videos),
            (("sparse-missing", "sparse-damaged"), self._sparse),
            (("index-missing", "index-damaged", "index-generation", "index-count"), self._indexes),
            (("orphan-file", "temporary-file"), self._files),
        ]
        for kinds, step in steps:
            chosen = [f for k in kinds for f in by_kind.get(k, [])]
            # the indexes also need rebuilding once damaged videos have left the catalog
            if not chosen and not (kinds[0].startswith("index") and self.state.indexes_to_rebuild):
                continue
            try:
                step(chosen)
            except Exception as exc:  # noqa: BLE001 - report it; the other repairs go on
                logger.error("%s: repair of %s failed: %s", self.store.root, ", ".join(kinds),
                             _describe(exc))
        return [dataclasses.replace(f, repaired=True, action=self.done[id(f)])
                if id(f) in self.done else f for f in findings]

    def _jobs(self, findings: list[DoctorFinding]) -> None:
        queue = JobQueue(self.store.catalog)
        me = worker_id()
        mine = frozenset(j.id for j in queue.list(status="running") if j.worker == me)
        recovered = {f"job {j.id}": j for j in queue.recover(self.stale_after, keep=mine)}
        for f in findings:
            if f.subject in recovered:
                job = recovered[f.subject]
                self.done[id(f)] = ("handed back: pending again" if job.status == "pending"
                                    else "marked failed: that was its last attempt")

    def _rows(self, findings: list[DoctorFinding]) -> None:
        with self.store.catalog.transaction() as conn:
            for table in ("frames", "windows"):
                conn.execute(f"DELETE FROM {table} WHERE video_id NOT IN (SELECT id FROM videos)")
        for f in findings:
            self.done[id(f)] = "rows deleted"

    def _videos(self, findings: list[DoctorFinding]) -> None:
        """Damaged videos leave the catalog (the indexes are rebuilt next) and, when their
        source is still there, are queued for re-ingest."""
        queue = JobQueue(self.store.catalog)
        actions: dict[int, str] = {}
        for video in self.state.damaged_videos.values():
            self.store.catalog.delete_video(video)
            self.store.files.path(video.features_key).unlink(missing_ok=True)
            if video.sparse_key:
                self.store.sparse.path(video.sparse_key).unlink(missing_ok=True)
            self.state.indexes_to_rebuild.update(("frames", "patches"))
            if os.path.isfile(video.path):
                # size and time unknown (-1): a finished job for the same file state would
                # otherwise count as "already handled" and nothing would be queued
                job, _ = queue.enqueue(video.path, source="doctor")
                actions[video.id] = (f"removed from the archive; queued for re-ingest as job "
                                     f"{job.id} (`vidseek watch` or `vidseek ingest` runs it)")
            else:
                actions[video.id] = "removed from the archive; its source is gone, so it cannot be re-ingested"
            logger.warning("%s: removed damaged video %s (id %d): %s", self.store.root,
                           video.path, video.id, actions[video.id])
        self.state.videos = [v for v in self.state.videos if v.id not in self.state.damaged_videos]
        for f in findings:
            if f.video_id in actions:
                self.done[id(f)] = actions[f.video_id]

    def _sparse(self, findings: list[DoctorFinding]) -> None:
        by_id = {v.id: v for v in self.state.videos}
        for f in findings:
            video = by_id.get(f.video_id)  # type: ignore[arg-type]
            if video is None:  # removed with its damaged features
                if f.video_id in self.state.damaged_videos:
                    self.done[id(f)] = "removed with its video"
                continue
            if self.store.catalog.set_sparse(video, "", "", []):
                self.store.sparse.path(video.sparse_key).unlink(missing_ok=True)
                self.done[id(f)] = "dropped; `vidseek reindex` computes them again"

    def _indexes(self, findings: list[DoctorFinding]) -> None:
        """Rebuild each index that needs it from the feature files, with the store's own
        index objects (so this process goes on with the rebuilt ones)."""
        if self.store.manifest is None:
            return
        generation = self.store.catalog.generation
        rebuilt = set()
        for name, open_index in (("frames", self.store._frame_index),
                                 ("patches", self.store._patch_index)):
            if name not in self.state.indexes_to_rebuild:
                continue
            try:
                index = open_index()
            except Exception as exc:  # noqa: BLE001 - damage its load() does not absorb
                # Unreadable as it is: without the manifest it opens empty, to be rebuilt.
                logger.warning("%s: %s.json unreadable (%s); rebuilding without it",
                               self.store.root, name, _describe(exc))
                (self.store.root / f"{name}.json").unlink(missing_ok=True)
                index = open_index()
            index.rebuild(generation)  # also deletes the segment files it does not list
            rebuilt.add(name)
            logger.info("%s: %s index rebuilt (%d vectors)", self.store.root, name, index.ntotal)
        for f in findings:
            if f.subject.split()[0] in rebuilt:
                self.done[id(f)] = "rebuilt from the feature files"
        self.state.listed_segments.update({name: None for name in rebuilt})

    def _files(self, findings: list[DoctorFinding]) -> None:
        segment_dirs = {self.store.root / f"{name}.d": name for name in ("frames", "patches")}
        for f in findings:
            path = Path(f.path)
            rebuilt = (segment_dirs.get(path.parent) in self.state.indexes_to_rebuild
                       and f.kind == "orphan-file")
            if rebuilt and not path.exists():
                self.done[id(f)] = "deleted by the index rebuild"
                continue
            path.unlink(missing_ok=True)
            self.done[id(f)] = "deleted"

