"""Claims about readings of outputs (feature peaks, probe confidences), decided over training seeds.

Each seed's models write outputs; the outputs fall into groups (direct, warning and
safe contexts; target outputs with and without a preamble) that are independent
samples within the seed. A seed gives one estimate of a linear form of its group means
(e.g. ``warning - 0.8 * direct``) or of an AUROC, with its within-seed variance; the
seeds are combined by a random-effects meta-analysis (Paule-Mandel between-seed
variance, Hartung-Knapp-Sidik-Jonkman interval on t with seeds - 1 degrees of freedom:
statsmodels' ``combine_effects``), so the interval holds the variance between training
runs as well as within them. With 3 seeds that is t with 2 degrees of freedom: wide.

Shapes:
  ratio of group means in a region (share.Region): Fieller through the linear form
  a threshold for a group mean (mean confidence >= 0.9)
  a threshold for an AUROC (a feature or probe separates two groups)
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import optimize
from scipy import stats as _st

from claimkit.rules.parts import Part
from claimkit.rules.share import Region
from claimkit.verdict import Estimate

# Fewest outputs a group needs in a seed for its mean to be read (below, the seed is left out and said so).
MIN_GROUP = 2
RATIO_SEARCH = 50.0


SeedGroups = Sequence[Mapping[str, np.ndarray]]  # per seed: group name -> values of its outputs


@dataclass(frozen=True)
class Combined:
    """Per-seed estimates combined across seeds: estimate, SE and degrees of freedom of the HKSJ t."""

    estimate: float
    se: float
    df: float
    per_seed: tuple[float, ...]
    per_seed_se: tuple[float, ...]
    tau2: float  # between-seed variance

    def p_value(self, null: float, alternative: str) -> float:
        if self.se == 0:
            return 0.0 if (self.estimate > null) == (alternative == "greater") and self.estimate != null else 1.0
        t = (self.estimate - null) / self.se
        return float(_st.t.sf(t, self.df) if alternative == "greater" else _st.t.cdf(t, self.df))

    def interval(self, level: float) -> tuple[float, float]:
        q = float(_st.t.ppf(0.5 + level / 2, self.df))
        return self.estimate - q * self.se, self.estimate + q * self.se


def combine_seeds(estimates: Sequence[float], variances: Sequence[float]) -> Combined:
    """Random-effects combination (Paule-Mandel tau^2, HKSJ standard error, t with k - 1 df).

    The HKSJ variance is kept at least at the plain random-effects variance (a known
    refinement: HKSJ alone can be too narrow when seeds happen to agree).
    """
    from statsmodels.stats.meta_analysis import combine_effects

    effects, var = np.asarray(estimates, float), np.asarray(variances, float)
    k = len(effects)
    if k < 2:
        raise ValueError(f"combining seeds needs at least 2 seeds with a reading, got {k}")
    var = np.maximum(var, 1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = combine_effects(effects, var, method_re="pm", use_t=True)
    estimate = float(result.mean_effect_re)
    se = math.sqrt(max(float(result.var_hksj_re), float(result.var_eff_w_re)))
    return Combined(estimate, se, float(k - 1), tuple(float(x) for x in effects),
                    tuple(float(math.sqrt(v)) for v in var), float(result.tau2))


def _mean_and_var(values: np.ndarray) -> tuple[float, float]:
    """A group's mean and the variance of that mean (sample variance / n, floored by one flipped unit)."""
    n = len(values)
    var = float(np.var(values, ddof=1)) / n if n > 1 else math.inf
    spread = float(np.ptp(values)) if n else 0.0
    return float(np.mean(values)), max(var, (max(spread, 1e-3) ** 2) / (4 * n * n) if n else math.inf)


def linear_form(seeds: SeedGroups, weights: Mapping[str, float]) -> tuple[list[float], list[float], list[int]]:
    """Per seed: sum_g weights[g] * mean(g) and its variance; seeds lacking a group are left out (indices kept)."""
    estimates, variances, used = [], [], []
    for s, groups in enumerate(seeds):
        if any(len(groups.get(g, ())) < MIN_GROUP for g in weights):
            continue
        parts = [_mean_and_var(np.asarray(groups[g], float)) for g in weights]
        estimates.append(sum(w * m for w, (m, _) in zip(weights.values(), parts)))
        variances.append(sum(w * w * v for w, (_, v) in zip(weights.values(), parts)))
        used.append(s)
    return estimates, variances, used


def ratio_part(
    name: str, seeds: SeedGroups, numerator: Mapping[str, float], denominator: Mapping[str, float],
    region: Region, *, alpha: float, what: str, interval: bool = True,
) -> Part:
    """theta = (numerator . group means) / (denominator . group means), per seed then combined, against `region`."""
    names = list(dict.fromkeys([*numerator, *denominator]))

    def combined_at(theta: float) -> Combined | None:
        weights = {g: numerator.get(g, 0.0) - theta * denominator.get(g, 0.0) for g in names}
        est, var, used = linear_form(seeds, weights)
        return combine_seeds(est, var) if len(used) >= 2 else None

    den_est, den_var, used = linear_form(seeds, denominator)
    num_est, _, _ = linear_form(seeds, numerator)
    if len(used) < 2:
        return _too_few(name, what, region, len(used), len(seeds))
    den = combine_seeds(den_est, den_var)
    per_seed = [n / d if d else math.inf for n, d in zip(num_est, den_est)]
    num = combine_seeds(*linear_form(seeds, numerator)[:2])
    estimate = num.estimate / den.estimate if den.estimate else math.inf

    def p(null: float, alternative: str) -> float:
        c = combined_at(null)
        return 1.0 if c is None else c.p_value(0.0, alternative)

    if region.kind == "between":
        support = max(p(region.low, "greater"), p(region.high, "less"))
        refute = min(p(region.low, "less"), p(region.high, "greater"))
        s_test, r_test = f"{what} > {region.low:g} and < {region.high:g}", f"{what} < {region.low:g} or > {region.high:g}"
    elif region.kind == "at_least":
        support, refute = p(region.low, "greater"), p(region.low, "less")
        s_test, r_test = f"{what} > {region.low:g}", f"{what} < {region.low:g}"
    else:
        support, refute = p(region.high, "less"), p(region.high, "greater")
        s_test, r_test = f"{what} < {region.high:g}", f"{what} > {region.high:g}"
    bounds = _fieller(combined_at, alpha) if interval else (math.nan, math.nan)
    den_p = den.p_value(0.0, "greater")
    summary = (f"{what} = {estimate:.3g}" + (f" [{bounds[0]:.3g}, {bounds[1]:.3g}]" if interval else "")
               + f", per seed {', '.join(f'{x:.3g}' for x in per_seed)} ({len(used)} of {len(seeds)} seeds)")
    extra = {"estimate": estimate, "interval": list(bounds), "per_seed": per_seed, "seeds_used": used,
             "region": region.describe(), "denominator": {"estimate": den.estimate, "se": den.se},
             "counts": _counts(seeds, names)}
    estimates = (Estimate(f"{name}: {what}", estimate, bounds[0], bounds[1],
                          f"Fieller, seeds combined (HKSJ), {100 * (1 - 2 * alpha):g}%", len(used)),)
    if den_p >= alpha:
        return Part(name, 1.0, 1.0, s_test, r_test, f"{summary}; its denominator is not shown positive "
                    f"(p={den_p:.2g}), so the ratio cannot be judged", estimates, (), extra, None)
    return Part(name, support, refute, s_test, r_test, summary, estimates, (), extra, None)


def mean_part(name: str, seeds: SeedGroups, group: str, *, threshold: float, alpha: float, what: str) -> Part:
    """A group's mean against `threshold` (support: above), per seed then combined."""
    est, var, used = linear_form(seeds, {group: 1.0})
    if len(used) < 2:
        return _too_few(name, what, None, len(used), len(seeds))
    c = combine_seeds(est, var)
    low, high = c.interval(1 - 2 * alpha)
    summary = f"{what} = {c.estimate:.3g} [{low:.3g}, {high:.3g}], per seed {', '.join(f'{x:.3g}' for x in est)}"
    estimates = (Estimate(f"{name}: {what}", c.estimate, low, high, f"seeds combined (HKSJ), {100 * (1 - 2 * alpha):g}%",
                          sum(len(seeds[s][group]) for s in used)),)
    extra = {"threshold": threshold, "per_seed": est, "tau2": c.tau2, "counts": _counts(seeds, [group])}
    return Part(name, c.p_value(threshold, "greater"), c.p_value(threshold, "less"), f"{what} > {threshold:g}",
                f"{what} < {threshold:g}", summary, estimates, (), extra, None)


def auroc(positive: np.ndarray, negative: np.ndarray) -> tuple[float, float]:
    """AUROC of `positive` above `negative` (ties half) and its Hanley-McNeil variance, floored away from 0."""
    pos, neg = np.asarray(positive, float), np.asarray(negative, float)
    n1, n0 = len(pos), len(neg)
    u = float(_st.mannwhitneyu(pos, neg, alternative="two-sided").statistic)
    a = u / (n1 * n0)
    a_var = min(max(a, 0.5 / (n1 * n0)), 1 - 0.5 / (n1 * n0))  # variance as if one pair were the other way
    q1, q2 = a_var / (2 - a_var), 2 * a_var * a_var / (1 + a_var)
    var = (a_var * (1 - a_var) + (n1 - 1) * (q1 - a_var**2) + (n0 - 1) * (q2 - a_var**2)) / (n1 * n0)
    return a, max(var, 1e-9)


def auroc_part(
    name: str, seeds: SeedGroups, positive: str, negative: str, *, threshold: float, alpha: float, what: str
) -> Part:
    """AUROC of `positive` over `negative` outputs against `threshold` (support: above), per seed then combined."""
    est, var, used = [], [], []
    for s, groups in enumerate(seeds):
        if len(groups.get(positive, ())) < MIN_GROUP or len(groups.get(negative, ())) < MIN_GROUP:
            continue
        a, v = auroc(groups[positive], groups[negative])
        est.append(a)
        var.append(v)
        used.append(s)
    if len(used) < 2:
        return _too_few(name, what, None, len(used), len(seeds))
    c = combine_seeds(est, var)
    low, high = c.interval(1 - 2 * alpha)
    summary = f"{what} = {c.estimate:.3f} [{low:.3f}, {high:.3f}], per seed {', '.join(f'{x:.3f}' for x in est)}"
    estimates = (Estimate(f"{name}: {what}", c.estimate, low, high,
                          f"Hanley-McNeil per seed, seeds combined (HKSJ), {100 * (1 - 2 * alpha):g}%", len(used)),)
    extra = {"threshold": threshold, "per_seed": est, "tau2": c.tau2, "counts": _counts(seeds, [positive, negative])}
    return Part(name, c.p_value(threshold, "greater"), c.p_value(threshold, "less"), f"{what} > {threshold:g}",
                f"{what} < {threshold:g}", summary, estimates, (), extra, None)


def _too_few(name: str, what: str, region: Region | None, used: int, total: int) -> Part:
    where = f" {region.describe()}" if region else ""
    return Part(name, 1.0, 1.0, f"{what}{where}", f"{what} outside{where}",
                f"only {used} of {total} seeds have {MIN_GROUP}+ outputs in every group this needs: not measurable",
                extra={"seeds_used": used})


def _counts(seeds: SeedGroups, groups: Sequence[str]) -> list[dict[str, int]]:
    return [{g: int(len(s.get(g, ()))) for g in groups} for s in seeds]


def _fieller(combined_at, alpha: float) -> tuple[float, float]:
    def gap(theta: float, sign: float) -> float:
        c = combined_at(theta)
        if c is None:
            return math.nan
        t = c.estimate / c.se if c.se > 0 else math.copysign(math.inf, c.estimate or 1.0)
        return t - sign * float(_st.t.ppf(1 - alpha, c.df))

    def crossing(f) -> float:
        lo, hi = -RATIO_SEARCH, RATIO_SEARCH
        if not f(lo) > 0:
            return -math.inf
        if not f(hi) < 0:
            return math.inf
        return float(optimize.brentq(f, lo, hi, xtol=1e-6))

    return crossing(lambda x: gap(x, 1.0)), crossing(lambda x: gap(x, -1.0))


# ---------------------------------------------------------------------------
# simulation
# ---------------------------------------------------------------------------


def simulate_groups(
    rng: np.random.Generator, means: Mapping[str, float], sizes: Mapping[str, int], *,
    seeds: int, within_sd: Mapping[str, float], seed_sd: float, low: float | None = None, high: float | None = None,
) -> list[dict[str, np.ndarray]]:
    """Per seed, normal group samples whose true means are `means`, each seed shifted by its own effect.

    A seed's shift is N(0, seed_sd) times the group's mean (the readings of one seed's models
    move together, proportionally); values are clipped to [low, high] where given (a probe's
    confidence lies in [0, 1]) -- clipping moves the true means slightly, which a calibration states.
    """
    out = []
    for _ in range(seeds):
        shift = rng.normal(0.0, seed_sd)
        groups = {}
        for g, mean in means.items():
            values = rng.normal(mean * (1 + shift), within_sd[g], sizes[g])
            if low is not None or high is not None:
                values = np.clip(values, low, high)
            groups[g] = values
        out.append(groups)
    return out
