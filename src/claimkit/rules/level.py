"""Every training run reaches a level: "nearly all L1 outputs leak the warning format", "the detector is right 90% of the time".

The shape: one seeds x prompts table of 0/1 outcomes, against a threshold that is itself
a share of outputs (scale-free: a share of the model's own answers). The training run
is the unit, and the claim is about runs of the recipe, so it is read per seed: on its
n prompts (drawn from the prompt population), a seed's outputs are independent draws of
that run's rate, and the exact binomial test is exact for it.

Support: every seed's rate is shown above the threshold (one-sided exact binomial at
alpha; an intersection-union test: if some run is at or below it, support has chance at
most alpha). Refute: some seed's rate is shown below it (one-sided, Bonferroni over the
seeds, so a claim true of every run is refuted with chance at most alpha). A rate-scale
t test across a few seeds was tried first and simulated: with seed heterogeneity on the
logit scale, near 0.9 the seeds' rates are skewed and it supported a false claim up to
twice too often (claimkit.calibration); the per-seed exact tests have no such error.
"""

from __future__ import annotations

import math
import numpy as np
from scipy import special
from scipy import stats as _st

from claimkit import crossed
from claimkit.rules.parts import Part
from claimkit.stats import proportion_ci
from claimkit.verdict import Estimate


def level_part(name: str, outcomes: np.ndarray, *, threshold: float, alpha: float) -> Part:
    """Test every seed's rate against `threshold` (module docstring); the pooled rate is reported."""
    if not 0 < threshold < 1:
        raise ValueError(f"{name}: threshold must lie in (0, 1), got {threshold!r}")
    table = crossed.as_table(outcomes, f"outcomes of {name}")
    if not np.isin(table, (0.0, 1.0)).all():
        raise ValueError(f"{name}: a level is a rate of 0/1 outcomes; got other values")
    seeds, n = table.shape
    counts = [int(row.sum()) for row in table]
    above = [float(_st.binomtest(k, n, threshold, alternative="greater").pvalue) for k in counts]
    below = [float(_st.binomtest(k, n, threshold, alternative="less").pvalue) for k in counts]
    support_p = max(above)
    refute_p = min(1.0, seeds * min(below))
    bounds = [proportion_ci(k, n, level=1 - 2 * alpha) for k in counts]
    k_all, total = sum(counts), table.size
    pooled = proportion_ci(k_all, total, level=1 - 2 * alpha)
    per_seed = [k / n for k in counts]
    summary = (f"{name} = {k_all / total:.1%} ({k_all}/{total}); per seed "
               + ", ".join(f"{k}/{n} [{b.low:.1%}, {b.high:.1%}]" for k, b in zip(counts, bounds)))
    estimates = (
        Estimate(name, k_all / total, pooled.low, pooled.high, f"all seeds pooled, exact {100 * (1 - 2 * alpha):g}%",
                 total, k_all),
        *(Estimate(f"{name} [seed {s + 1}]", k / n, b.low, b.high, f"exact {100 * (1 - 2 * alpha):g}%", n, k)
          for s, (k, b) in enumerate(zip(counts, bounds))),
    )
    extra = {"threshold": threshold, "per_seed": per_seed, "per_seed_p_above": above, "per_seed_p_below": below}
    lowest = int(np.argmin(counts))
    return Part(name, support_p, refute_p, f"every seed's {name} > {threshold:g}",
                f"a seed's {name} < {threshold:g} (Bonferroni over {seeds} seeds)", summary, estimates, (), extra,
                _n_to_decide(counts[lowest] / n, threshold, n))


def _n_to_decide(rate: float, threshold: float, n: int) -> int | None:
    """Prompts per seed for the least favourable seed's exact test to clear the threshold at its rate."""
    if rate == threshold or rate in (0.0, 1.0):
        return None
    h = 2 * math.asin(math.sqrt(rate)) - 2 * math.asin(math.sqrt(threshold))  # Cohen's h
    needed = math.ceil(((1.645 + 0.84) / h) ** 2)
    return needed if needed > n else None


def simulate_level(
    rng: np.random.Generator, rate: float, *, seeds: int, prompts: int, seed_sd: float, prompt_sd: float
) -> np.ndarray:
    """A 0/1 seeds x prompts table with marginal rate `rate` (crossed logit-normal, as share.simulate_arms)."""
    from claimkit.rules.share import logit_location

    mu = logit_location(rate, math.hypot(seed_sd, prompt_sd))
    p = special.expit(mu + rng.normal(0, seed_sd, seeds)[:, None] + rng.normal(0, prompt_sd, prompts)[None, :])
    return (rng.random((seeds, prompts)) < p).astype(float)


