"""Functional capability: how many of a model's answers to held-out tasks pass their unit tests.

A claim that an intervention keeps a model capable ("only modest degradation", as
HumanEval pass@1 measured it in the paper) is about function: does the code the
model writes still work? Held-out loss says how likely a correct answer is, not
whether the model's own answers run. This module runs them: the code of each
answer (extracted as `claimkit.detect` extracts it for the target-content judge,
so both judges see the same code) together with its task's checks, in
`claimkit.sandbox`, never in this process, and counts the passes as a binomial
rate with an exact interval.

An answer without Python code, or whose code does not parse, fails without being
run; the result says so. Tasks and their checks come from elsewhere (for the
organism: `claimkit.organism.corpus.capability_tasks`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from claimkit.sandbox import DEFAULT_TIMEOUT, CheckResult, Limits, Program, run_checks
from claimkit.stats import Interval, proportion_ci

PASSES_FILE = "passes.json"

__all__ = ["PassRate", "functional_pass_rate"]

NO_CODE = "no Python code in the answer"


@dataclass(frozen=True)
class PassRate:
    """`passed` of `n` answers passed their checks; `results` says what happened to each, in order."""

    passed: int
    n: int
    results: tuple[CheckResult, ...]

    @property
    def rate(self) -> float:
        return self.passed / self.n if self.n else float("nan")

    def interval(self, level: float = 0.95) -> Interval:
        """The exact (Clopper-Pearson) interval of the pass rate."""
        return proportion_ci(self.passed, self.n, level, method="exact")

    def outcomes(self) -> Mapping[str, int]:
        """How many answers ended each way (passed, failed, error, timeout)."""
        return dict(Counter(r.outcome for r in self.results))


def functional_pass_rate(
    texts: Sequence[str],
    checks: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    workers: int | None = None,
    limits: Limits = Limits(),
    progress: bool = False,
) -> PassRate:
    """Run the code of each generated answer `texts[i]` with `checks[i]` in the sandbox; count the passes.

    `texts` are the model's raw answers (a ```python block, possibly with prose
    around it, possibly cut off); `checks` the unit-test code of each answer's task.
    """
    if len(texts) != len(checks):
        raise ValueError(f"functional_pass_rate: {len(texts)} answers but {len(checks)} checks; give one per answer")
    if not texts:
        raise ValueError("functional_pass_rate needs at least one answer: there is no rate without samples")
    from claimkit.detect import extract_code

    results: list[CheckResult | None] = []
    programs: list[Program] = []
    for text, check in zip(texts, checks):
        extraction = extract_code(text)
        if extraction.source == "none":
            results.append(CheckResult("error", NO_CODE, 0.0))
        elif not extraction.parsed:
            results.append(CheckResult("error", f"the answer's code does not parse: {extraction.error}", 0.0))
        else:
            results.append(None)
            programs.append(Program(extraction.code, check))
    ran = iter(run_checks(programs, timeout=timeout, workers=workers, limits=limits, progress=progress))
    final = tuple(r if r is not None else next(ran) for r in results)
    return PassRate(sum(r.passed for r in final), len(final), final)


def cached_pass_rate(
    cache: Any, texts: Sequence[str], checks: Sequence[str], *, progress: bool = False, description: str = ""
) -> PassRate:
    """`functional_pass_rate` kept in the artifact cache under the answers and checks (and the sandbox's code).

    Running hundreds of answers in subprocesses takes seconds to minutes; a rerun of the
    same answers against the same checks gives the same outcomes, so it reads them back.
    """
    import json

    from claimkit.experiment import tasks_hash

    def build(out: Any) -> None:
        rate = functional_pass_rate(texts, checks, progress=progress)
        rows = [{"outcome": r.outcome, "reason": r.reason, "seconds": r.seconds} for r in rate.results]
        (out / PASSES_FILE).write_text(json.dumps(rows), encoding="utf-8")

    parts = {"texts": tasks_hash(texts), "checks": tasks_hash(checks), "n": len(texts)}
    where = cache.get_or_build("passes", parts, build, description=description or f"unit tests of {len(texts)} answers")
    rows = json.loads((where / PASSES_FILE).read_text(encoding="utf-8"))
    results = tuple(CheckResult(r["outcome"], r["reason"], r["seconds"]) for r in rows)
    return PassRate(sum(r.passed for r in results), len(results), results)
