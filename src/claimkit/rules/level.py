"""A rate reaches a level: "nearly all L1 outputs leak the warning format", "the detector is right 90% of the time".

The shape: the mean of one seeds x prompts table of 0/1 outcomes (`claimkit.crossed`)
against a threshold that is itself a share of outputs (scale-free: a share of the
model's own answers). Support: mean > threshold, one-sided at alpha; refute: mean <
threshold. The crossed t test holds seed and prompt variance; for 0/1 outcomes it is
never allowed to be more certain than the exact binomial test of the pooled counts
(the larger p-value is used), which is the limit when seeds and prompts do not vary.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
from scipy import special
from scipy import stats as _st

from claimkit import crossed
from claimkit.rules.parts import Part
from claimkit.stats import proportion_ci
from claimkit.verdict import Estimate


def level_part(name: str, outcomes: np.ndarray, *, threshold: float, alpha: float) -> Part:
    """Measure the mean of a 0/1 seeds x prompts table and test it against `threshold` (module docstring)."""
    if not 0 < threshold < 1:
        raise ValueError(f"{name}: threshold must lie in (0, 1), got {threshold!r}")
    table = crossed.as_table(outcomes, f"outcomes of {name}")
    if not np.isin(table, (0.0, 1.0)).all():
        raise ValueError(f"{name}: a level is a rate of 0/1 outcomes; got other values")
    m = crossed.crossed_mean(table)
    k, total = int(table.sum()), table.size
    exact_above = float(_st.binomtest(k, total, threshold, alternative="greater").pvalue)
    exact_below = float(_st.binomtest(k, total, threshold, alternative="less").pvalue)
    support_p = max(m.p_value(threshold, "greater"), exact_above)
    refute_p = max(m.p_value(threshold, "less"), exact_below)
    low, high = m.interval(1 - 2 * alpha)
    exact = proportion_ci(k, total, level=1 - 2 * alpha)
    low, high = max(0.0, min(low, exact.low)), min(1.0, max(high, exact.high))
    per_seed = [float(x) for x in m.per_seed]
    summary = (f"{name} = {m.estimate:.1%} [{low:.1%}, {high:.1%}] ({k}/{total}), per seed "
               f"{', '.join(f'{x:.1%}' for x in per_seed)}")
    estimate = Estimate(name, m.estimate, low, high, f"crossed seeds x prompts t, at least exact; "
                        f"{100 * (1 - 2 * alpha):g}%", total, k)
    extra = {"threshold": threshold, "per_seed": per_seed, "components": dict(m.components), "df": m.df}
    return Part(name, support_p, refute_p, f"{name} > {threshold:g}", f"{name} < {threshold:g}", summary,
                (estimate,), (), extra, _n_to_decide(m, threshold, table.shape[1]))


def _n_to_decide(m: crossed.CrossedMean, threshold: float, n: int) -> int | None:
    if m.estimate == threshold or m.se == 0 or m.components["seed"] > m.components["prompt"]:
        return None
    factor = ((1.645 + 0.84) * m.se / abs(m.estimate - threshold)) ** 2
    return int(math.ceil(n * factor)) if factor > 1 else None


def simulate_level(
    rng: np.random.Generator, rate: float, *, seeds: int, prompts: int, seed_sd: float, prompt_sd: float
) -> np.ndarray:
    """A 0/1 seeds x prompts table with marginal rate `rate` (crossed logit-normal, as share.simulate_arms)."""
    from claimkit.rules.share import logit_location

    mu = logit_location(rate, math.hypot(seed_sd, prompt_sd))
    p = special.expit(mu + rng.normal(0, seed_sd, seeds)[:, None] + rng.normal(0, prompt_sd, prompts)[None, :])
    return (rng.random((seeds, prompts)) < p).astype(float)


def describe(rule: Mapping[str, float]) -> str:
    return f"mean > {rule['threshold']:g}"
