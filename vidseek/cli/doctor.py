"""Archive health: ``doctor`` (checks, and with --repair repairs, through Archive.check/repair)."""

from __future__ import annotations

import json
import sqlite3
from typing import Annotated

import typer

import vidseek

from .options import ArchiveOpt, console, fail


def doctor(
    archive: ArchiveOpt = None,
    repair: Annotated[bool, typer.Option(
        "--repair", help="Repair what can be repaired from what is left (see above).")] = False,
    deep: Annotated[bool, typer.Option(
        "--deep", help="Also compare each source video's content hash (reads every file whole).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check an archive end to end: catalog, feature and sparse-token files, the frame and
    patch indexes, orphan and leftover files, jobs, and the source videos.

    One line per finding (severity, kind, what it is about, what is wrong), then a summary.
    An error is damage (a missing or unreadable file, an index out of step with the
    catalog); a warning is not (a source video changed or gone, an orphan file, a stale
    job, sparse tokens to recompute with `vidseek reindex`).

    --repair rebuilds the indexes from the feature files, deletes orphan and temporary
    files, hands stale jobs back to the queue, and removes each video whose feature file is
    missing or damaged, queueing it for re-ingest when its source still exists (`vidseek
    watch` or `vidseek ingest` redoes it). It never removes a video whose feature file is
    good and never touches source videos.

    Exit status 0 when no error remains (none found, or all repaired; warnings do not
    count), 1 when an error remains or the archive cannot be opened.
    """
    try:
        with vidseek.Archive.open(archive, create=False) as arch:
            report = arch.repair(deep=deep) if repair else arch.check(deep=deep)
    except vidseek.VidseekError as exc:
        raise fail(exc)
    except sqlite3.DatabaseError as exc:  # a catalog too damaged to open
        raise fail(f"{archive or vidseek.default_archive_path()}: catalog unreadable ({exc})")
    if as_json:
        console.print_json(json.dumps(report.to_dict()))
    else:
        for f in report.findings:
            done = f" [repaired: {f.action}]" if f.repaired else ""
            console.print(f"{f.severity:<7}  {f.kind:<17}  {f.subject}: {f.message}{done}", markup=False)
        console.print(_summary(report), markup=False)
    if not report.healthy:
        raise typer.Exit(code=1)


def _summary(report: vidseek.DoctorReport) -> str:
    errors, warnings = report.errors, report.warnings
    parts = [f"{report.archive}: {report.videos} video(s) checked",
             f"{len(errors)} error(s)" + (f", {len(errors) - len(report.remaining_errors)} repaired"
                                          if report.repair and errors else ""),
             f"{len(warnings)} warning(s)" + (f", {sum(w.repaired for w in warnings)} repaired"
                                              if report.repair and warnings else "")]
    if report.healthy:
        verdict = "healthy" if not errors else "repaired"
    else:
        verdict = "damaged" + ("" if report.repair else ": run `vidseek doctor --repair`")
    return "; ".join(parts) + f" — {verdict}"
