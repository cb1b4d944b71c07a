"""What a run built, from its artifact cache: how many artifacts of each kind, and how long they took.

    python bench/cache_inventory.py /tmp/cache-both                 # after a cold run into that cache
    python bench/cache_inventory.py .claimkit-cache --json inv.json --timeline 30
    python bench/cache_inventory.py /tmp/cache-both --json inv.json --builds   # and every build, for a projection

Every cache entry's manifest (`_complete.json`) records its kind, description, when it was
finished and how long its build took. Summed per kind, that is where a cold run's work went
(fine-tunes, samplings, detections, ...); laid on a timeline, it shows how many builds were
in flight in each interval, so a stretch where the workers waited on each other shows as
few builds in flight. Builds nest (a sampling may build the fine-tune it needs inside it),
so per-kind seconds are each build's own wall time, and their sum can exceed the run's.

With `--builds` the JSON also lists every build: its kind, description, seconds, the parts
its cache key was made of (role, n, seed, fine-tuning and sampling settings) and, for a
sampling, how many answers it holds, their new tokens and how many ended (read from its
samples, so only with `--builds`): what a run built per arm and seed, to check a count such as
bench/paper_projection.py's against.

Finished times have one-second resolution; the timeline is approximate to that. Decides nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from claimkit.cache import MANIFEST  # noqa: E402 - the file every complete artifact has
from claimkit.jsonl import read_jsonl  # noqa: E402


@dataclass(frozen=True)
class Build:
    kind: str
    description: str
    started: float  # POSIX seconds
    seconds: float
    parts: dict[str, Any] = field(default_factory=dict)  # what the artifact's cache key was made of
    answers: dict[str, int] | None = None  # a sampling's answers, new tokens and ended answers


def answer_counts(directory: Path) -> dict[str, int] | None:
    """Answers, new tokens and ended answers of a sampling artifact's JSONL records; None for other artifacts."""
    files = sorted(directory.glob("*.jsonl"))
    counts = {"answers": 0, "new_tokens": 0, "ended": 0}
    for path in files:
        for record in read_jsonl(path):  # claimkit's reader: answers may hold \u2028 and the like, which splitlines cuts
            if isinstance(record, dict) and "new_tokens" in record:
                counts["answers"] += 1
                counts["new_tokens"] += int(record["new_tokens"])
                counts["ended"] += bool(record.get("finished"))
    return counts if counts["answers"] else None


def read_builds(root: Path, *, answers: bool = False) -> list[Build]:
    """Every complete artifact under `root`: kind, description, start, duration, key parts (and answers if asked)."""
    builds = []
    for manifest in sorted(root.glob(f"*/*/{MANIFEST}")):
        data = json.loads(manifest.read_text(encoding="utf-8"))
        finished = datetime.fromisoformat(data["created"]).timestamp()
        seconds = float(data.get("build_seconds") or 0.0)
        builds.append(Build(data["kind"], data.get("description", ""), finished - seconds, seconds,
                            data.get("parts") or {}, answer_counts(manifest.parent) if answers else None))  # fmt: skip
    return builds


def by_kind(builds: Sequence[Build]) -> list[dict[str, Any]]:
    """Per kind: count, total, median and longest build seconds, the longest's description."""
    rows = []
    for kind in sorted({b.kind for b in builds}):
        mine = [b for b in builds if b.kind == kind]
        longest = max(mine, key=lambda b: b.seconds)
        rows.append({"kind": kind, "count": len(mine), "total_s": sum(b.seconds for b in mine),
                     "median_s": statistics.median(b.seconds for b in mine), "max_s": longest.seconds,
                     "longest": longest.description})  # fmt: skip
    return sorted(rows, key=lambda row: -row["total_s"])


def timeline(builds: Sequence[Build], step: float) -> list[dict[str, Any]]:
    """Per interval of `step` seconds from the first build's start: builds in flight on average, by kind."""
    if not builds:
        return []
    start = min(b.started for b in builds)
    end = max(max(b.started + b.seconds for b in builds), start + step)  # at least one interval
    rows = []
    at = start
    while at < end:
        busy: dict[str, float] = {}
        for b in builds:
            overlap = min(at + step, b.started + b.seconds) - max(at, b.started)
            if overlap > 0:
                busy[b.kind] = busy.get(b.kind, 0.0) + overlap / step
        rows.append({"from_s": at - start, "in_flight": sum(busy.values()), "by_kind": busy})
        at += step
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache", type=Path, help="the artifact cache's root (CLAIMKIT_CACHE)")
    parser.add_argument("--timeline", type=float, default=60.0, metavar="S", help="interval of the timeline (default 60 s)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the tables as JSON")
    parser.add_argument("--builds", action="store_true", help="the JSON also lists every build (parts, answers)")
    args = parser.parse_args()
    if not args.cache.is_dir():
        parser.error(f"{args.cache}: no such cache directory")
    builds = read_builds(args.cache, answers=args.builds)
    if not builds:
        parser.error(f"{args.cache}: no complete artifacts (no */*/{MANIFEST})")
    kinds, line = by_kind(builds), timeline(builds, args.timeline)
    span = max(b.started + b.seconds for b in builds) - min(b.started for b in builds)
    print(f"{len(builds)} artifacts in {args.cache}, first build start to last build end {span:.0f} s\n")
    print(f"{'kind':<20}{'count':>7}{'total s':>10}{'median s':>10}{'max s':>9}  longest")
    for row in kinds:
        print(f"{row['kind']:<20}{row['count']:>7}{row['total_s']:>10.1f}{row['median_s']:>10.2f}{row['max_s']:>9.1f}  {row['longest'][:70]}")
    print(f"\nbuilds in flight per {args.timeline:g} s (nested builds count twice):")
    idle = False
    for row in line:
        if row["in_flight"] < 0.05:  # a cache filled over several runs has long gaps: one line for each
            if not idle:
                print(f"  {row['from_s']:>6.0f} s    0.0  (nothing built until the next line)")
            idle = True
            continue
        idle = False
        top = sorted(row["by_kind"].items(), key=lambda item: -item[1])[:3]
        print(f"  {row['from_s']:>6.0f} s  {row['in_flight']:5.1f}  " + ", ".join(f"{k} {v:.1f}" for k, v in top))
    if args.json:
        out: dict[str, Any] = {"span_s": span, "kinds": kinds, "timeline": line}
        if args.builds:
            out["builds"] = [asdict(b) for b in sorted(builds, key=lambda b: b.started)]
        args.json.write_text(json.dumps(out, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
