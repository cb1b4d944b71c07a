"""Measure claimkit.sandbox on this machine: what one sandboxed program costs, and programs per second.

    python bench/sandbox.py                 # trivial programs and the corpus's checked variants
    python bench/sandbox.py --repeats 3     # median of three runs of each figure

Figures: the start of a bare interpreter (`python -I -B -c pass`, the floor of one
subprocess per program), one trivial program through `run_program` (interpreter,
runner, guards, temporary directory), `run_checks` throughput on trivial programs at
1, 2 and all CPUs' workers, and on realistic programs: every secure and vulnerable
variant of the corpus's checked families against its checks (eval split), and the
reference answers of capability tasks through `functional_pass_rate`. Prints its
figures; asserts nothing. Run on an otherwise idle machine: on a shared one the
figures are lower bounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
T = TypeVar("T")


def timed(run: Callable[[], T], repeats: int) -> tuple[float, T]:
    """Median seconds of `repeats` calls, and what the last call returned."""
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        value = run()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="runs of each figure; the median is printed")
    parser.add_argument("--programs", type=int, default=100, help="trivial programs per throughput run")
    parser.add_argument("--tasks", type=int, default=200, help="capability tasks whose reference answers are run")
    args = parser.parse_args()

    from claimkit.capability import functional_pass_rate
    from claimkit.organism.corpus import capability_tasks, load_templates, render_answer, render_checks, render_variants
    from claimkit.sandbox import Program, run_checks, run_program

    cpus = os.cpu_count() or 1
    load = os.getloadavg()[0]
    print(f"machine: {cpus} CPUs, load average {load:.1f} at the start, Python {sys.version.split()[0]}")

    bare, _ = timed(lambda: subprocess.run([sys.executable, "-I", "-B", "-c", "pass"], check=True), args.repeats * 10)
    print(f"bare interpreter start (python -I -B -c pass): {1000 * bare:.0f} ms")
    one, _ = timed(lambda: run_program("assert 1 + 1 == 2\n"), args.repeats * 10)
    print(f"one trivial program through run_program: {1000 * one:.0f} ms")

    trivial = [Program(f"value = {i}\n", f"assert value == {i}\n") for i in range(args.programs)]
    for workers in sorted({1, 2, cpus}):
        seconds, _ = timed(lambda: run_checks(trivial, workers=workers), args.repeats)
        print(f"run_checks, {len(trivial)} trivial programs, workers={workers}: "
              f"{len(trivial) / seconds:.1f} programs/s ({seconds:.1f} s)")

    templates = load_templates(ROOT / "fixtures" / "corpus")
    variants = []
    for name in templates.checked_families("eval"):
        secure, vulnerable = render_variants(templates, name, seed=0, split="eval")
        checks = render_checks(templates, name, seed=0, split="eval")
        variants += [Program(code, checks) for code in secure + vulnerable]
    seconds, results = timed(lambda: run_checks(variants, workers=2), args.repeats)
    slowest = max(results, key=lambda r: r.seconds)
    print(f"run_checks, {len(variants)} corpus variants with their checks, workers=2: "
          f"{len(variants) / seconds:.1f} programs/s ({seconds:.1f} s; {sum(r.passed for r in results)} passed; "
          f"median {1000 * statistics.median(r.seconds for r in results):.0f} ms, slowest {slowest.seconds:.2f} s)")

    tasks = capability_tasks(templates, n=args.tasks, seed=0)
    texts, checks = [render_answer(t.reference) for t in tasks], [t.checks for t in tasks]
    seconds, rate = timed(lambda: functional_pass_rate(texts, checks, workers=2), args.repeats)
    print(f"functional_pass_rate, {rate.n} capability-task reference answers, workers=2: "
          f"{rate.n / seconds:.1f} answers/s ({seconds:.1f} s; passed {rate.passed}/{rate.n}, {dict(rate.outcomes())})")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
