"""Wall time of the whole claim suite on a profile: once with an empty artifact cache, once again warm.

    python bench/gpu_suite.py --profile smollm2-135m --workers 4 --cache /tmp/ck-cache
    python bench/gpu_suite.py --profile organism --marker "not gpu" --workers 2   # the CPU suite

Runs `pytest claims/ -m <marker> --claimkit-profile <profile> -n <workers>` twice
in a subprocess: the first run builds every artifact into `--cache` (emptied
first unless `--keep-cache`), the second finds them all there. Several workers
may share one GPU: claimkit pins worker gwK to GPU K mod #GPUs, and workers build
different artifacts first (claimkit.experiment.worker_order), so the small
model's launch-bound fine-tunes and samplings overlap. Prints both wall times,
their ratio, and each run's verdicts, and whether the warm run (or each run, against
`--against`) reproduced the earlier one number for number; the pytest output goes
to a log beside the reports. Asserts nothing.

It also says whether Python may cache bytecode. Where it may not
(PYTHONDONTWRITEBYTECODE, as on the lent GPU machines, whose torch ships without
.pyc files), every worker compiles the source of everything it imports, and on an
H200 that made a warm run 47.4 s instead of 18.8-21.8 s (reports/gpu-20261201-strict).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Mapping

from gpu_common import children_stopped_on_exit, stop_child

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smollm2-135m")
    parser.add_argument("--marker", default="gpu", help="pytest -m expression (default gpu)")
    parser.add_argument("--workers", type=int, default=1, help="xdist workers; 0 runs in-process (default 1)")
    parser.add_argument("--cache", type=Path, default=ROOT / ".claimkit-bench-cache", help="artifact cache of both runs")
    parser.add_argument("--keep-cache", action="store_true", help="do not empty --cache before the cold run")
    parser.add_argument("--reports", type=Path, default=ROOT / "reports" / "bench-suite", help="where both runs' reports go")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds before a run is stopped (default 3600)")
    parser.add_argument("--only", choices=("cold", "warm"), help="one run: cold (empties --cache) or warm (uses it as it is)")
    parser.add_argument("--against", type=Path, metavar="VERDICTS",
                        help="an earlier run's verdicts.json (or its directory) to compare each run with, number for "
                             "number (default: the warm run is compared with the cold run under --reports)")  # fmt: skip
    args = parser.parse_args()
    if args.against is not None:
        from claimkit.report import ReportError, resolve_verdicts_file

        try:
            args.against = resolve_verdicts_file(args.against)  # a run directory, "latest" or a verdicts.json
        except ReportError as exc:
            parser.error(f"--against: {exc}")

    if args.cache.exists() and not args.keep_cache and args.only != "warm":
        shutil.rmtree(args.cache)
    args.reports.mkdir(parents=True, exist_ok=True)
    print(f"suite: claims/ -m {args.marker!r}, profile {args.profile}, {args.workers} xdist worker(s), "
          f"GPUs {os.environ.get('CUDA_VISIBLE_DEVICES', 'all visible')}; cache {args.cache}", flush=True)
    print(f"python bytecode: {bytecode_caching(os.environ)}", flush=True)
    if args.only == "warm":
        run_suite(args, "warm")
        return
    cold = run_suite(args, "cold")
    if cold is None or args.only == "cold":
        return
    warm = run_suite(args, "warm")
    if warm is not None:
        print(f"\nwall time: cold {cold:.1f} s, warm {warm:.1f} s; warm / cold = {100 * warm / cold:.1f}%")


def run_suite(args: argparse.Namespace, label: str) -> float | None:
    """One pytest run; its wall time, or None if it failed to finish."""
    report_dir = args.reports / label
    log = args.reports / f"{label}.log"
    command = [sys.executable, "-m", "pytest", "claims/", "-m", args.marker, "--claimkit-profile", args.profile,
               "--claimkit-fail-on=never", "--claimkit-report-dir", str(report_dir), "-p", "no:cacheprovider", "-q",
               "--durations=12", "--durations-min=1"]  # fmt: skip
    if not plugin_installed():
        command[3:3] = ["-p", "claimkit.plugin"]  # run from a source tree: no entry point registered
    if args.workers > 0:
        command += ["-n", str(args.workers)]
    env = {**os.environ, "CLAIMKIT_CACHE": str(args.cache), "TQDM_DISABLE": "1"}
    print(f"\n{label}: {' '.join(command)}  (output: {log})", flush=True)
    started = time.perf_counter()
    with log.open("w") as out, children_stopped_on_exit() as children:
        # its own session: a stop reaches pytest's xdist workers too
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        children.append(process)
        try:
            rc = process.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            stop_child(process)
            print(f"{label}: stopped after {args.timeout:.0f} s without finishing; the last lines of its output:")
            print("\n".join(log.read_text(errors="replace").splitlines()[-5:]))
            return None
    seconds = time.perf_counter() - started
    tail = log.read_text(errors="replace").splitlines()[-1:] or [""]
    print(f"{label}: exit {rc} after {seconds:.1f} s; pytest: {tail[0].strip()}")
    print_durations(log)
    verdicts = report_dir / "latest" / "verdicts.json"
    print_verdicts(verdicts)
    earlier = args.against or (args.reports / "cold" / "latest" / "verdicts.json" if label == "warm" else None)
    if earlier is not None:
        print_reproduction(verdicts, earlier)
    return seconds if rc == 0 else None


def bytecode_caching(env: Mapping[str, str]) -> str:
    """Whether the runs' Python processes reuse and write .pyc files, in words."""
    prefix = env.get("PYTHONPYCACHEPREFIX")
    if env.get("PYTHONDONTWRITEBYTECODE"):
        where = f" under PYTHONPYCACHEPREFIX={prefix}" if prefix else " that already exist"
        return (f"not written (PYTHONDONTWRITEBYTECODE is set): each process reads only .pyc files{where} "
                "and compiles the rest of what it imports, which a warm run pays in every worker")
    return "cached" + (f" under PYTHONPYCACHEPREFIX={prefix}" if prefix else " in __pycache__ beside the sources")


def plugin_installed() -> bool:
    from importlib.metadata import entry_points

    return any(ep.value.startswith("claimkit") for ep in entry_points(group="pytest11"))


def print_durations(log: Path) -> None:
    """pytest's slowest phases (setup builds the fixtures: fine-tunes, samplings, studies)."""
    lines = log.read_text(errors="replace").splitlines()
    start = next((i for i, line in enumerate(lines) if "slowest" in line and "durations" in line), None)
    if start is None:
        return
    print("  slowest test phases (per worker; workers overlap):")
    for line in lines[start + 1 :]:
        if not line.strip() or line.startswith("="):
            break
        print(f"    {line.strip()[:150]}")


def print_verdicts(path: Path) -> None:
    if not path.is_file():
        print(f"  no report at {path}")
        return
    verdicts = json.loads(path.read_text())["verdicts"]
    print(f"  verdicts: {dict(Counter(v['outcome'] for v in verdicts))}")
    for v in sorted(verdicts, key=lambda v: v["claim_id"]):
        print(f"    {v['claim_id']:<22} {v['profile']:<14} {v['outcome']:<13} {v['reason'][:110]}")


def print_reproduction(path: Path, earlier: Path) -> None:
    """Whether this run reproduced an earlier one: outcomes (claimkit's compare), then every estimate and test."""
    from claimkit.report import compare, drifts, load_document

    if not path.is_file() or not earlier.is_file():
        print(f"  not compared: {earlier if path.is_file() else path} is missing")
        return
    before, after = load_document(earlier).verdicts, load_document(path).verdicts
    changes = compare(before, after)
    drifted, identical = drifts(before, after)
    print(f"  against {earlier}: {len(changes)} outcome change(s), {len(drifted)} verdict(s) with other numbers, "
          f"{identical} identical in every estimate, test and reason")
    for change in changes:
        print(f"    {change.kind}: {change.describe()}")
    for drift in drifted:
        print(f"    {drift.describe()[:300]}")


if __name__ == "__main__":
    main()
