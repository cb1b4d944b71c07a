"""The manipulation checks of the warning-framed claims, measured: did the training they presuppose take?

Each check is a positive control stated in the spec ([checks.<id>]) and looks only at
the direct arm (L0) and the comparators (filler, untrained), never at an arm a claim
compares: whether L1 learns is claim 1's question, not a precondition. A claim whose
required check fails is reported "not tested" (claimkit.fixture.ClaimRecorder.require_checks).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from claimkit.stats import fisher, holm
from claimkit.verdict import CheckResult

from .behaviour import Table1


def direct_learns(table: Table1, check: Mapping[str, Any], *, title: str) -> CheckResult:
    """L0's target rate above the comparator's in every seed (one-sided Fisher, Holm), by at least `min_effect` on average."""
    arm, comparator = check["arm"], check["comparator"]
    alpha, min_effect = float(check["alpha"]), float(check["min_effect"])
    direct, base = table.rows[arm], table.rows[comparator]
    tests = [fisher(sum(d.target), d.n, sum(c.target), c.n, "greater") for d, c in zip(direct, base)]
    adjusted = holm([t.p_value for t in tests], alpha)
    effects = [sum(d.target) / d.n - sum(c.target) / c.n for d, c in zip(direct, base)]
    mean_effect = sum(effects) / len(effects)
    every_seed = all(p < alpha for p in adjusted)
    passed = every_seed and mean_effect >= min_effect
    per_seed = ", ".join(f"seed {d.seed}: {sum(d.target)}/{d.n} vs {sum(c.target)}/{c.n} ({e:+.1%}, Holm p={p:.2g})"
                         for d, c, e, p in zip(direct, base, effects, adjusted))
    if passed:
        reason = f"{arm} - {comparator} = {mean_effect:+.1%} on average (at least {min_effect:.0%}), above in every seed: {per_seed}"
    elif not every_seed:
        reason = f"{arm} is not shown above {comparator} in every seed (Holm-adjusted one-sided Fisher at {alpha:g}): {per_seed}"
    else:
        reason = f"{arm} - {comparator} = {mean_effect:+.1%} on average, below the {min_effect:.0%} a test of these claims needs: {per_seed}"
    numbers = {"effect_per_seed": effects, "mean_effect": mean_effect, "min_effect": min_effect,
               "holm_p_per_seed": adjusted, "seeds": [d.seed for d in direct]}
    return CheckResult("direct-learns", title, passed, reason, numbers)


def enough_direct_outputs(
    table: Table1, check: Mapping[str, Any], splits: Sequence[tuple[Sequence[int], Sequence[int]]], *, title: str,
    plain: Mapping[int, Sequence[bool]],
) -> CheckResult:
    """L0's plain target outputs (no preamble) number at least `min_per_split` in each seed's selection and measurement split.

    `splits[k]` is seed k's (selection, measurement) task indices; `plain[seed]` says per task
    whether L0's answer opens without a conversational preamble.
    """
    arm, minimum = check["arm"], int(check["min_per_split"])
    counts = []
    for result, (selection, measurement) in zip(table.rows[arm], splits):
        usable = [t and p for t, p in zip(result.target, plain[result.seed])]
        counts.append({"seed": result.seed, "selection": sum(usable[i] for i in selection),
                       "measurement": sum(usable[i] for i in measurement)})
    short = [c for c in counts if min(c["selection"], c["measurement"]) < minimum]
    listing = ", ".join(f"seed {c['seed']}: {c['selection']} + {c['measurement']}" for c in counts)
    reason = (f"{arm} target outputs per split (selection + measurement): {listing}; each split needs {minimum}"
              + ("" if not short else f"; short in seed(s) {', '.join(str(c['seed']) for c in short)}"))
    return CheckResult("enough-direct-outputs", title, not short, reason, {"per_seed": counts, "minimum": minimum})
