"""What abstention costs at each presence threshold, from a predictions file.

    python benchmarks/abstention.py PREDICTIONS [--modes grounded-3,grounded-windows-3]
                                    [--thresholds 0,0.05,0.1,...] [--out FILE]

Reads the JSON lines ``benchmarks/grounding.py --predictions`` writes (each grounded row has
its moments and the ones the checkpoint's threshold dropped, each with its presence) and,
per grounded mode on one video (archive-wide rows are left out), re-applies every threshold as the grounded mode does (a moment whose
presence is below it is dropped; a query left with none is rejected): the share of
absent-event queries rejected, and R1@0.5 and R5@0.1 on the present ones. The evaluation
video picks no default: this is the curve the default (chosen on calibration videos) sits
on. Before the curve it prints how well the signal separates at all: the AUC of each query's
best presence, present against absent events (1: a threshold exists that rejects every
absent event and keeps every present one; 0.5: no better than chance, so every threshold
costs present events as many as it rejects absent ones). Writes
benchmarks/results/abstention.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vidseek.evaluation import temporal_iou  # noqa: E402

DEFAULT_THRESHOLDS = "0,0.02,0.05,0.08,0.1,0.15,0.2,0.25,0.3,0.4,0.5"


def _moments(row: dict) -> list[tuple[float, float, float, float]]:
    """(start, end, score, presence) of every moment before the threshold, best first."""
    kept = [(s, e, score, p) for (s, e, score), p in zip(row["moments"], row.get("presence", []))]
    return sorted(kept + [tuple(d) for d in row.get("dropped", [])], key=lambda m: -m[2])[:5]


def scores_at(rows: list[dict], threshold: float) -> dict[str, float]:
    present = [r for r in rows if r["truth"] is not None]
    absent = [r for r in rows if r["truth"] is None]
    r1 = r5 = 0
    for row in present:
        left = [m for m in _moments(row) if m[3] >= threshold]
        truth = tuple(row["truth"])
        r1 += bool(left) and temporal_iou(left[0][:2], truth) >= 0.5
        r5 += any(temporal_iou(m[:2], truth) >= 0.1 for m in left[:5])
    rejected = sum(all(m[3] < threshold for m in _moments(row)) for row in absent)
    return {"threshold": threshold, "absent_rejected": 100 * rejected / max(1, len(absent)),
            "r1_05": 100 * r1 / max(1, len(present)), "r5_01": 100 * r5 / max(1, len(present)),
            "present": len(present), "absent": len(absent)}


def separability(rows: list[dict]) -> float:
    """AUC of each query's best presence (0 when it has no moment), present events against
    absent ones: the chance that a random present query's best presence is above a random
    absent one's (ties count half). NaN without both kinds."""
    def best(row: dict) -> float:
        return max((m[3] for m in _moments(row)), default=0.0)

    present = [best(r) for r in rows if r["truth"] is not None]
    absent = [best(r) for r in rows if r["truth"] is None]
    if not present or not absent:
        return float("nan")
    wins = sum((p > a) + 0.5 * (p == a) for p in present for a in absent)
    return wins / (len(present) * len(absent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("predictions", type=Path)
    parser.add_argument("--modes", help="grounded modes, comma-separated (default: every one with presence)")
    parser.add_argument("--thresholds", default=DEFAULT_THRESHOLDS)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "abstention.json")
    args = parser.parse_args()
    by_mode: dict[str, list[dict]] = {}
    with_presence: set[str] = set()
    for line in args.predictions.read_text().splitlines():
        row = json.loads(line)
        by_mode.setdefault(row["mode"], []).append(row)  # a query with no moments counts too
        if "presence" in row or "dropped" in row:
            with_presence.add(row["mode"])
    # archive-wide rows are left out: their dropped moments do not say which video they are in
    modes = args.modes.split(",") if args.modes else sorted(
        m for m in with_presence if not m.endswith("-archive"))
    thresholds = [float(t) for t in args.thresholds.split(",")]
    results = {}
    for mode in modes:
        rows = by_mode.get(mode)
        if not rows or mode not in with_presence or mode.endswith("-archive"):
            raise SystemExit(f"error: {args.predictions}: no single-video rows with presence for mode {mode!r}")
        table = [scores_at(rows, t) for t in thresholds]
        auc = separability(rows)
        results[mode] = {"best_presence_auc": None if auc != auc else auc, "thresholds": table}  # NaN: not JSON
        print(f"\n### {mode} ({table[0]['present']} present queries, {table[0]['absent']} absent)\n")
        print(f"best presence, present against absent events: AUC {auc:.3f}\n")
        print("| min presence | absent rejected (%) | R1@0.5 | R5@0.1 |")
        print("|---|---|---|---|")
        for r in table:
            print(f"| {r['threshold']:.3f} | {r['absent_rejected']:.1f} | {r['r1_05']:.1f} | {r['r5_01']:.1f} |")
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"predictions": str(args.predictions), "modes": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
