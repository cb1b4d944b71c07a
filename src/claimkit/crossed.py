"""Means and contrasts over training seeds x prompts: what a claim about training is decided on.

Each fine-tuned arm is trained under S seeds and answers the same n prompts, so an
outcome ``y[s, i]`` is crossed: seed s's model (its training run and its sampling) and
prompt i (its difficulty) both vary. A claim about what training does speaks of new
training runs and new prompts, so its interval must hold both variances, and one
adapter decides nothing.

Under the two-way random-effects model without replication,
``y[s, i] = mu + a_s + b_i + e_si``, the grand mean's variance is
``(MS_seed + MS_prompt - MS_resid) / (S n)`` in expectation, from the two-way ANOVA mean
squares (Searle, Casella & McCulloch, *Variance Components*, 1992, ch. 4; the same
"pigeonhole" design as Owen 2007). claimkit uses ``(MS_seed + MS_prompt) / (S n)``, with
Satterthwaite's degrees of freedom for that sum: it counts the residual once more, which
errs on the safe side. The unbiased combination was simulated first (claimkit.calibration):
with three seeds a low MS_seed estimate left it falsely precise, refuting true shares 0.02
of the time at alpha 0.01 and supporting false ones 0.08 of the time at alpha 0.05 at low
rates; the conservative sum stayed at its level and cost little power (0.85 -> 0.82 for the
first claim on smollm2-135m). A
contrast of arms answered on the same prompts by models of the same seeds
(``L1 - L0``, ``L1 - 0.75 L0 - 0.25 filler``) is the same computation on the per-(seed,
prompt) contrast, so the pairing by seed and by prompt is used. A ratio of two
contrasts (a share of a learned effect) is tested by its linear form and its interval
is Fieller's, found by inverting that test.

With S = 3 seeds a seed effect leaves 2 degrees of freedom: intervals are wide, and
that is the honest price of few training runs. The error rates of every rule built on
this are simulated (claimkit.calibration), not assumed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

import numpy as np
from scipy import optimize
from scipy import stats as _st

OneSided = Literal["greater", "less"]
# A ratio's Fieller interval is searched within +-RATIO_SEARCH; beyond it the bound is reported as infinite.
RATIO_SEARCH = 50.0


@dataclass(frozen=True)
class CrossedMean:
    """The grand mean of a seeds x prompts table, with its standard error and degrees of freedom.

    ``components`` are the ANOVA mean squares (seed, prompt, residual) behind the
    variance, so a report can say which source dominated.
    """

    estimate: float
    se: float
    df: float
    seeds: int
    prompts: int
    per_seed: tuple[float, ...]
    components: Mapping[str, float]

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """Two-sided t interval at `level`."""
        q = _st.t.ppf(0.5 + level / 2, self.df) if math.isfinite(self.df) else _st.norm.ppf(0.5 + level / 2)
        return self.estimate - q * self.se, self.estimate + q * self.se

    def p_value(self, null: float, alternative: OneSided) -> float:
        """One-sided p of the mean being above ("greater") or below ("less") `null`."""
        if self.se == 0:
            side = self.estimate > null if alternative == "greater" else self.estimate < null
            return 0.0 if side else 1.0
        t = (self.estimate - null) / self.se
        return float(_st.t.sf(t, self.df) if alternative == "greater" else _st.t.cdf(t, self.df))


def as_table(values: Sequence[Sequence[float]] | np.ndarray, what: str = "outcomes") -> np.ndarray:
    """A 2-D float array [seeds, prompts]; errors say what was wrong."""
    table = np.asarray(values, dtype=float)
    if table.ndim != 2 or table.shape[0] < 1 or table.shape[1] < 2:
        raise ValueError(f"{what} must be a table of seeds x prompts with at least 2 prompts, got shape {table.shape}")
    if not np.isfinite(table).all():
        raise ValueError(f"{what} hold non-finite values")
    return table


def crossed_mean(values: Sequence[Sequence[float]] | np.ndarray, *, continuity: float = 1.0) -> CrossedMean:
    """The mean of a seeds x prompts table and its standard error under crossed seed and prompt effects.

    The variance is ``(MS_seed + MS_prompt) / (S n)`` with Satterthwaite's degrees of
    freedom (module docstring: conservative by one residual mean square). A table with no
    spread at all (every outcome equal) gets the variance one flipped cell of size
    `continuity` would give, so a constant sample is never taken as exact.
    """
    table = as_table(values)
    s, n = table.shape
    seed_means, prompt_means, grand = table.mean(axis=1), table.mean(axis=0), float(table.mean())
    if s == 1:
        ms_seed, ms_resid = 0.0, 0.0
        ms_prompt = float(np.var(table[0], ddof=1))
        variance, df = ms_prompt, float(n - 1)
    else:
        ms_seed = n * float(np.sum((seed_means - grand) ** 2)) / (s - 1)
        ms_prompt = s * float(np.sum((prompt_means - grand) ** 2)) / (n - 1)
        resid = table - seed_means[:, None] - prompt_means[None, :] + grand
        ms_resid = float(np.sum(resid**2)) / ((s - 1) * (n - 1))
        variance = ms_seed + ms_prompt
        df = _satterthwaite(ms_seed, ms_prompt, s, n)
    floor = continuity**2 / (s * n)
    if variance < floor and np.ptp(table) == 0:
        variance, df = floor, float(s * n - 1)
    return CrossedMean(
        estimate=grand, se=math.sqrt(max(variance, 0.0) / (s * n)), df=df, seeds=s, prompts=n,
        per_seed=tuple(float(x) for x in seed_means),
        components={"seed": ms_seed, "prompt": ms_prompt, "residual": ms_resid},
    )


def _satterthwaite(ms_seed: float, ms_prompt: float, s: int, n: int) -> float:
    """Satterthwaite's degrees of freedom of MS_seed + MS_prompt (at least S - 1, the seeds' own)."""
    denominator = ms_seed**2 / (s - 1) + ms_prompt**2 / (n - 1)
    if denominator == 0:
        return float(s * n - 1)
    return float(max(s - 1, min((ms_seed + ms_prompt) ** 2 / denominator, s * n - 1)))


def contrast(arms: Mapping[str, np.ndarray], weights: Mapping[str, float], *, continuity: float | None = None) -> CrossedMean:
    """The crossed mean of ``sum_a weights[a] * arms[a]``: arms are seeds x prompts tables of the same shape.

    Arms must be paired: row s of every arm comes from seed s, column i from prompt i.
    The continuity floor defaults to the largest absolute weight (one flipped outcome).
    """
    missing = sorted(set(weights) - set(arms))
    if missing:
        raise ValueError(f"contrast weights name arms {missing} that have no outcomes (arms: {sorted(arms)})")
    tables = {name: as_table(arms[name], f"outcomes of {name}") for name in weights}
    shapes = {name: t.shape for name, t in tables.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"arms of a contrast must share seeds and prompts (the same shape), got {shapes}")
    combined = sum(float(w) * tables[name] for name, w in weights.items())
    floor = max(abs(float(w)) for w in weights.values()) if continuity is None else continuity
    return crossed_mean(combined, continuity=floor)


@dataclass(frozen=True)
class RatioTest:
    """theta = (numerator . means) / (denominator . means), tested against a null value.

    ``p_value`` is one-sided, for theta above ("greater") or below ("less") ``null``;
    ``interval`` is Fieller's (1 - 2 * alpha two-sided, i.e. the two one-sided bounds
    at alpha), with infinite ends where the data do not bound it.
    """

    estimate: float
    null: float
    alternative: str
    p_value: float
    interval: tuple[float, float]
    level: float
    linear: CrossedMean  # the linear form (numerator - null * denominator) that was tested
    denominator: CrossedMean
    per_seed: tuple[float | None, ...]


def ratio_of_contrasts(
    arms: Mapping[str, np.ndarray],
    numerator: Mapping[str, float],
    denominator: Mapping[str, float],
    *,
    null: float,
    alternative: OneSided,
    alpha: float = 0.05,
    interval: bool = True,
) -> RatioTest:
    """Test theta = N/D against `null` through the linear form N - null * D (Fieller), and bound theta.

    Example, the share of L0's learning that L1 shows, against the filler comparator F:
    numerator {"L1": 1, "F": -1}, denominator {"L0": 1, "F": -1}. D must be positive for
    the ratio to mean a share; callers check that first (a manipulation check).
    """
    names = sorted(set(numerator) | set(denominator))

    def linear(theta: float) -> CrossedMean:
        weights = {a: numerator.get(a, 0.0) - theta * denominator.get(a, 0.0) for a in names}
        return contrast(arms, {a: w for a, w in weights.items() if w != 0.0} or {names[0]: 0.0})

    den = contrast(arms, denominator)
    num_est = contrast(arms, numerator).estimate
    estimate = num_est / den.estimate if den.estimate != 0 else math.copysign(math.inf, num_est or 1.0)
    at_null = linear(null)
    p = at_null.p_value(0.0, alternative)
    bounds = _fieller(linear, alpha) if interval else (math.nan, math.nan)
    tables = {a: as_table(arms[a]) for a in names}
    per_seed = []
    for s in range(next(iter(tables.values())).shape[0]):
        n_s = sum(w * float(tables[a][s].mean()) for a, w in numerator.items())
        d_s = sum(w * float(tables[a][s].mean()) for a, w in denominator.items())
        per_seed.append(n_s / d_s if d_s != 0 else None)
    return RatioTest(estimate, null, alternative, p, bounds, 1 - 2 * alpha, at_null, den, tuple(per_seed))


def _fieller(linear, alpha: float) -> tuple[float, float]:
    """The thetas whose linear form neither one-sided test rejects at alpha.

    With a clearly positive denominator the t statistic of the linear form falls as
    theta grows, so each bound is one crossing; the decision never rests on these
    bounds (it rests on the test at the null), they are reported.
    """

    def gap(theta: float, sign: float) -> float:
        m = linear(theta)
        t = m.estimate / m.se if m.se > 0 else math.copysign(math.inf, m.estimate or 1.0)
        return t - sign * float(_st.t.ppf(1 - alpha, m.df))

    return _crossing(lambda x: gap(x, 1.0)), _crossing(lambda x: gap(x, -1.0))


def _crossing(gap) -> float:
    """Where a falling gap(theta) crosses zero in [-RATIO_SEARCH, RATIO_SEARCH]; infinite when it does not."""
    lo, hi = -RATIO_SEARCH, RATIO_SEARCH
    if gap(lo) <= 0:
        return -math.inf
    if gap(hi) >= 0:
        return math.inf
    return float(optimize.brentq(gap, lo, hi, xtol=1e-6))
