"""Query commands: ``search`` (text or image, CLIP or grounded) and ``object`` (a region)."""

from __future__ import annotations

import json
import time
import math
from pathlib import Path
from typing import Annotated, Literal, Optional, Sequence

import typer
from rich.table import Table

import vidseek

from .options import (ArchiveOpt, DeviceOpt, clock, console, err, fail, non_negative, number_check,
                      usage_error)

TopKOpt = Annotated[int, typer.Option("--top-k", "-k", min=1, help="How many results to return.")]


def _check_export(value: Optional[Path]) -> Optional[Path]:
    if value is not None and value.suffix.lower() not in vidseek.EXPORT_FORMATS:
        usage_error(f"--export {value}: use a file ending in {', '.join(vidseek.EXPORT_FORMATS)}")
    return value


ExportOpt = Annotated[Optional[Path], typer.Option(
    "--export", callback=_check_export,
    help="Also write the results for media tools: .otio (OpenTimelineIO), .edl (CMX 3600) or .jpg (contact sheet).")]


def search(
    query: Annotated[Optional[str], typer.Argument(help="What to look for, in words (omit with --image).")] = None,
    archive: ArchiveOpt = None,
    image: Annotated[Optional[Path], typer.Option(
        "--image", exists=True, dir_okay=False,
        help="Search by an image (a frame or a crop) instead of text.")] = None,
    top_k: TopKOpt = 10,
    video: Annotated[Optional[str], typer.Option(
        "--video", help="Only search this video (file name, path or id).")] = None,
    mode: Annotated[Literal[vidseek.SEARCH_MODES], typer.Option(  # type: ignore[valid-type]
        "--mode",
        help="clip: CLIP similarity (training-free); grounded: the grounding checkpoint's recursive LLM search (text only).")] = "clip",
    levels: Annotated[int, typer.Option(
        "--levels", min=1, max=3,
        help="Grounded mode: 1 = level 1 only, 2 = level 1 then the verified clips, 3 = then dense "
             "(--refine windows: 2 = level 1 then dense, 3 = level 1, fine, dense).")] = 3,
    level1: Annotated[Optional[Literal[vidseek.LEVEL1_MODES]], typer.Option(  # type: ignore[valid-type]
        "--level1", show_default=False,
        help="Grounded mode: presence (default) = a calibrated probability per level-1 window, the "
             "likeliest go on; answer = the LM answers a window span per segment (the paper).")] = None,
    refine: Annotated[Optional[Literal[vidseek.REFINE_MODES]], typer.Option(  # type: ignore[valid-type]
        "--refine", show_default=False,
        help="Grounded mode, --level1 presence: what refines the kept level-1 windows: clips (default) "
             "= the clip verifier's clips in them (level 2, no LM call), then the dense level over "
             "each (level 3); windows = the whole windows go down the levels (fine, then dense).")] = None,
    min_presence: Annotated[Optional[float], typer.Option(
        "--min-presence", callback=number_check(lambda v: 0 <= v <= 1, "a number between 0 and 1"),
        help="Grounded mode, --level1 presence: drop moments whose presence is below this, 0..1 "
             "(0 keeps all; default: the checkpoint's calibrated threshold).")] = None,
    presence_shortlist: Annotated[Optional[int], typer.Option(
        "--presence-shortlist", min=0, show_default=False,
        help="Grounded mode, --level1 presence: ask the LM's yes/no about this many level-1 windows, "
             "those the frame similarities and the clip verifier rank best (default 16; 0: every "
             "window, slower with a real-sized LM).")] = None,
    explain: Annotated[bool, typer.Option(
        "--explain", help="Grounded mode: print the recursion tree (level, span, answer, R, P(Not)).")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json",
        help="Print a JSON list of {video, start, end, score, peak, video_id, path, presence} "
             "(with --explain: the trees too).")] = False,
    export: ExportOpt = None,
    int8_text: Annotated[bool, typer.Option(
        "--int8-text",
        help="Encode the text query with int8 weights (CPU): about half the time, embedding within cosine 0.998.")] = False,
    int8_llm: Annotated[bool, typer.Option(
        "--int8-llm", help="Grounded mode: answer with an int8 LM (CPU): about half the time.")] = False,
    nprobe: Annotated[int, typer.Option(
        "--nprobe", min=1,
        help="IVF lists of the frame index scanned (large archives): fewer is faster, at some recall.")] = 64,
    device: DeviceOpt = None,
) -> None:
    """Find the moments that match a text query or an image.

    In grounded mode every level-1 window gets a presence, the calibrated probability that the
    event happens in it (--level1 presence, the default); a moment's score is its window's
    presence, shared among the window's spans by their answers' confidence R x (1 - P(Not))
    (R = 1 / mean token entropy of the answer). Moments whose presence is below --min-presence
    are dropped, so no results means the event was judged absent. With --level1 answer the
    score is R x (1 - P(Not)). Without --video, the videos coarse retrieval ranks best are
    grounded. To find an object selected on a frame, see `vidseek object`.
    """
    if (query is None) == (image is None):
        usage_error("give a QUERY or --image (exactly one)")
    if mode != "grounded" and (min_presence is not None or level1 is not None or refine is not None
                               or presence_shortlist is not None):
        usage_error("--min-presence, --presence-shortlist, --level1 and --refine go with --mode grounded")
    if refine == "clips" and level1 == "answer":
        usage_error("--refine clips needs --level1 presence (the clips come from its verifier)")
    if min_presence is not None and level1 == "answer":
        usage_error("--min-presence needs --level1 presence (answer mode gives moments no presence)")
    if presence_shortlist is not None and level1 == "answer":
        usage_error("--presence-shortlist needs --level1 presence")
    trees: list = []
    warnings: list = []  # videos left out, a file of theirs damaged
    try:
        with vidseek.Archive.open(archive, device=device, create=False, int8_text=int8_text,
                                  int8_llm=int8_llm, nprobe=nprobe) as arch:
            options = vidseek.GroundingOptions(levels=levels, level1=level1 or "presence",
                                               min_presence=min_presence,
                                               refine=refine or vidseek.GroundingOptions.refine,
                                               presence_shortlist=(vidseek.GroundingOptions.presence_shortlist
                                                                   if presence_shortlist is None
                                                                   else presence_shortlist))
            if mode == "grounded" and explain and query is not None:
                trees = arch.ground(query, video=video, options=options.with_results(top_k), warnings=warnings)
                moments = vidseek.ranked_moments(trees, top_k)
            else:
                moments = arch.search(query, image=image, top_k=top_k, video=video, mode=mode,
                                      grounding=options, warnings=warnings)
            _show_warnings(warnings)
            _show_moments(moments, trees, as_json, arch)
            if export is not None:  # after the results are shown: a failed export loses nothing
                _export(arch, moments, export, query or f"image {image.name}")  # type: ignore[union-attr]
    except vidseek.VidseekError as exc:
        raise fail(exc)


def _show_warnings(warnings: list) -> None:
    """One ``warning: ...`` line on stderr per video a search left out (the results, on
    stdout, come from the others; the exit status stays 0)."""
    for warning in warnings:
        err.print(f"warning: {warning}", markup=False)


def _parse_box(value: Optional[str]) -> Optional[tuple[float, float, float, float]]:
    if value is None:
        return None
    try:
        box = tuple(float(v) for v in value.split(","))
    except ValueError:
        box = ()
    if (len(box) != 4 or not all(math.isfinite(v) and v >= 0 for v in box)
            or not (box[0] < box[2] and box[1] < box[3])):
        raise fail(f"--box must be x0,y0,x1,y1: four pixel coordinates, x0 < x1 and y0 < y1, not {value!r}")
    return box  # type: ignore[return-value]


def object_query(
    archive: ArchiveOpt = None,
    video: Annotated[Optional[str], typer.Option(
        "--video", help="The indexed video the region is drawn on (file name, path or id); with --time.")] = None,
    time: Annotated[Optional[float], typer.Option(
        "--time", callback=non_negative, help="Seconds into --video of the frame the region is on, >= 0.")] = None,
    image: Annotated[Optional[Path], typer.Option(
        "--image", exists=True, dir_okay=False,
        help="A picture the region is drawn on, instead of --video and --time.")] = None,
    box: Annotated[Optional[str], typer.Option(
        "--box", metavar="<x0,y0,x1,y1>", help="The region as a box in pixels of that frame.")] = None,
    mask: Annotated[Optional[Path], typer.Option(
        "--mask", exists=True, dir_okay=False,
        help="The region as a binary mask image of the frame's size (white = object).")] = None,
    within: Annotated[Optional[str], typer.Option(
        "--within", help="Only search this video: its hits are the object's track there.")] = None,
    top_k: TopKOpt = 10,
    as_json: Annotated[bool, typer.Option(
        "--json",
        help="Print a JSON list of {video, video_id, start, end, score, peak, track: [{time, box, score}]}.")] = False,
    export: ExportOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Find where an object marked on a frame appears again.

    The region (--box or --mask) is drawn on the frame of --video at --time, or on --image.
    Hits are moments in any indexed video, each with the matching box per sampled frame;
    with --within, the hits are the object's track in that one video.
    """
    if (box is None) == (mask is None):
        usage_error("give the region as --box x0,y0,x1,y1 or --mask IMAGE (exactly one)")
    if (video is None) == (image is None):
        usage_error("give the region's picture as --video V --time T or --image IMAGE (exactly one)")
    if video is not None and time is None:
        usage_error("--video needs --time: the seconds into the video of the frame the region is on")
    if image is not None and time is not None:
        usage_error("--time goes with --video, not with --image")
    region = _parse_box(box)
    picture = f"{video} at {clock(time)}" if video is not None and time is not None else str(image)
    what = f"object {box or mask} on {picture}"
    try:
        with vidseek.Archive.open(archive, device=device, create=False) as arch:
            warnings: list = []
            hits = arch.search_object(region, mask=mask, video=video, time=time, image=image,
                                      top_k=top_k, within=within, warnings=warnings)
            _show_warnings(warnings)
            _show_hits(hits, as_json)
            if export is not None:
                _export(arch, hits, export, what)
    except vidseek.VidseekError as exc:
        raise fail(exc)


# -- output ----------------------------------------------------------------------------
def _show_moments(moments: Sequence[vidseek.Moment], trees: list, as_json: bool,
                  arch: vidseek.Archive | None = None) -> None:
    # a live stream's moment also says when it aired (unix time of its start)
    aired = {id(m): arch.aired_at(m.video_id, m.start) for m in moments} if arch is not None else {}
    if as_json:
        payload: object = [{**m.to_dict(), **({"aired_at": aired[id(m)]} if aired.get(id(m)) else {})}
                           for m in moments]
        if trees:
            payload = {"moments": payload, "explain": [t.to_dict() for t in trees]}
        console.print(json.dumps(payload, indent=2), markup=False)
        return
    for tree in trees:
        _print_tree(tree)
    if not moments:
        console.print("no results")
        return
    # grounded moments (level1 presence) also show their window's presence
    presence = any(m.presence is not None for m in moments)
    table = Table("#", "video", "start", "end", "score", *(["presence"] if presence else []))
    for n, m in enumerate(moments, 1):
        when = aired.get(id(m))
        start = clock(m.start) + (time.strftime(" (%Y-%m-%d %H:%M:%S)", time.localtime(when)) if when else "")
        table.add_row(str(n), m.video, start, clock(m.end), f"{m.score:.3f}",
                      *([f"{m.presence:.2f}" if m.presence is not None else "-"] if presence else []))
    console.print(table)


def _show_hits(hits: Sequence[vidseek.ObjectHit], as_json: bool) -> None:
    if as_json:
        console.print(json.dumps([h.to_dict() for h in hits], indent=2), markup=False)
        return
    if not hits:
        console.print("no results")
        return
    table = Table("#", "video", "start", "end", "score", "box at peak")
    for n, h in enumerate(hits, 1):
        table.add_row(str(n), h.video, clock(h.start), clock(h.end), f"{h.score:.3f}",
                      ",".join(map(str, h.box_at_peak or ())))
    console.print(table)


def _export(arch: vidseek.Archive, results: Sequence, path: Path, what: str) -> None:
    written = arch.export(results, path, title=f"vidseek: {what}")
    err.print(f"wrote {written} ({vidseek.EXPORT_FORMATS[written.suffix.lower()]}, "
              f"{len(results)} results)", markup=False)


def _print_tree(result: vidseek.GroundingResult) -> None:
    console.print(f"{result.video.name}: read dense tokens of {result.dense_frames_read} of "
                  f"{result.frames} frames ({100 * result.dense_fraction:.1f}%)", markup=False)

    def show(node: vidseek.GroundingNode, depth: int) -> None:
        span = f"{clock(node.span[0])}-{clock(node.span[1])}" if node.span else "-"
        mark = "*" if node.kept else " "
        console.print(f"{'  ' * depth}{mark} L{node.level} {node.kind:6s} shown "
                      f"{clock(node.shown[0])}-{clock(node.shown[1])}  answer {node.answer!r} "
                      f"[{node.verdict}] -> {span}  R={node.confidence:.2f} P(Not)={node.p_absent:.2f}",
                      markup=False)
        for child in node.children:
            show(child, depth + 1)

    for node in result.tree:
        show(node, 1)
    console.print("  (* kept for the next level)", markup=False)
