"""The numbers behind every verdict: exact intervals, tests, power.

Thin, typed wrappers over scipy and statsmodels. Each function takes plain counts
or samples and returns a frozen record or a float, so a decision rule can say what
it compares without knowing which library computes it. Nothing here is specific to
any paper, and nothing imports torch.

Conventions:
- ``alternative`` for two-group tests follows scipy: ``"greater"`` means group a's
  rate (or location) is above group b's; ``"less"`` below.
- Counts are validated up front; bad input raises ``ValueError`` naming the
  argument and what a valid value looks like.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass
from typing import Iterator, Literal, Sequence

import numpy as np
from scipy import stats as _st

Alternative = Literal["two-sided", "greater", "less"]
OneSided = Literal["greater", "less"]
TrendAlternative = Literal["two-sided", "increasing", "decreasing"]

# Monte Carlo resamples and seed of the permutation fallbacks: fixed so that a
# verdict is reproducible; 9,999 gives a p-value resolution of 1e-4.
PERMUTATION_RESAMPLES = 9_999
PERMUTATION_SEED = 20251122
# Cochran's rule: the chi-square / normal approximation is trusted when every
# expected cell count is at least this; otherwise an exact test is used.
MIN_EXPECTED_COUNT = 5.0
# Two-proportion difference tests and intervals use Agresti-Caffo (one success and
# one failure added to each group): unlike Wald it does not collapse at 0% or 100%,
# and unlike the score interval statsmodels can invert it at those boundaries.
DIFF_METHOD = "agresti-caffo"
# Differences of rates closer than this count as equal: 0.95 - 0.8 is not exactly 0.15.
_RATE_TOL = 1e-9


@dataclass(frozen=True)
class Interval:
    """A confidence interval; ``estimate`` is the point it was built around."""

    low: float
    high: float
    method: str
    estimate: float | None = None

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class TestResult:
    """One hypothesis test. ``statistic`` is the test's own (odds ratio, U, chi2, z)."""

    __test__ = False  # not a pytest test class despite the name

    p_value: float
    statistic: float
    method: str
    alternative: str


@dataclass(frozen=True)
class Tost:
    """Two one-sided tests of ``low < p_a - p_b < high``.

    ``p_value`` is the larger of the two one-sided p-values; equivalence is shown at
    alpha when it is below alpha, which is the same as the ``1 - 2*alpha`` interval
    (``ci_low``, ``ci_high``) lying inside the margin.
    """

    p_value: float
    lower_p: float  # H0: diff <= -margin
    upper_p: float  # H0: diff >= +margin
    diff: float
    ci_low: float
    ci_high: float
    margin: float
    level: float
    method: str


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------


def check_counts(successes: int, n: int, what: str = "") -> None:
    """Raise ValueError unless 0 <= successes <= n, n >= 1, both whole numbers."""
    label = f" for {what}" if what else ""
    for value, arg in ((successes, "successes"), (n, "n")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{arg}{label} must be a whole number, got {value!r}")
    if n <= 0:
        raise ValueError(f"n{label} must be at least 1 (got n={n}): there is no rate without samples")
    if not 0 <= successes <= n:
        raise ValueError(f"successes{label} must lie in 0..n, got {successes}/{n}")


def check_probability(value: float, arg: str, *, open_interval: bool = False) -> None:
    """Raise ValueError unless ``value`` lies in [0, 1] (or (0, 1))."""
    ok = 0 < value < 1 if open_interval else 0 <= value <= 1
    if not (isinstance(value, (int, float, np.floating)) and ok):
        bounds = "(0, 1)" if open_interval else "[0, 1]"
        raise ValueError(f"{arg} must lie in {bounds}, got {value!r}")


@contextlib.contextmanager
def _quiet_zero_division() -> Iterator[None]:
    """statsmodels also computes the ratio and odds ratio, which divide by zero at 0%
    or 100%; the difference we use is unaffected, so those RuntimeWarnings are noise."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _check_alternative(value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"alternative must be one of {', '.join(map(repr, allowed))}; got {value!r}")


# ---------------------------------------------------------------------------
# one proportion
# ---------------------------------------------------------------------------


def proportion_ci(
    successes: int, n: int, level: float = 0.95, method: Literal["exact", "wilson"] = "exact"
) -> Interval:
    """Two-sided interval for a binomial rate.

    ``"exact"`` is Clopper-Pearson (scipy ``binomtest(...).proportion_ci``): it
    never undercovers, which is what a pre-registered threshold needs. ``"wilson"``
    (statsmodels ``proportion_confint``) is shorter and near nominal on average.
    """
    check_counts(successes, n)
    check_probability(level, "level", open_interval=True)
    if method == "exact":
        ci = _st.binomtest(int(successes), int(n)).proportion_ci(confidence_level=level, method="exact")
        low, high, name = float(ci.low), float(ci.high), "Clopper-Pearson"
    elif method == "wilson":
        from statsmodels.stats.proportion import proportion_confint

        low, high = proportion_confint(int(successes), int(n), alpha=1 - level, method="wilson")
        low, high, name = float(low), float(high), "Wilson"
    else:
        raise ValueError(f"method must be 'exact' or 'wilson', got {method!r}")
    estimate = successes / n
    # Wilson's bound at x = n can come out as 0.9999999999999999: snap rounding back
    # so the interval always holds its estimate.
    low, high = max(0.0, min(low, estimate)), min(1.0, max(high, estimate))
    return Interval(low, high, f"{name} {100 * level:g}%", estimate=estimate)


def binomial_test(successes: int, n: int, p0: float, alternative: Alternative = "two-sided") -> TestResult:
    """Exact binomial test of the rate against ``p0`` (scipy ``binomtest``).

    It is the test the Clopper-Pearson interval inverts, so "the exact lower bound
    is above p0" and "the one-sided test rejects at alpha/2" agree.
    """
    check_counts(successes, n)
    check_probability(p0, "p0")
    _check_alternative(alternative, ("two-sided", "greater", "less"))
    res = _st.binomtest(int(successes), int(n), p=p0, alternative=alternative)
    return TestResult(float(res.pvalue), successes / n, "exact binomial", alternative)


# ---------------------------------------------------------------------------
# two proportions
# ---------------------------------------------------------------------------


def fisher(
    a_successes: int, a_n: int, b_successes: int, b_n: int, alternative: Alternative = "two-sided"
) -> TestResult:
    """Fisher's exact test on the 2x2 table; ``"greater"`` means rate a > rate b.

    The statistic is the sample odds ratio (inf or nan when a cell is zero).
    """
    check_counts(a_successes, a_n, "group a")
    check_counts(b_successes, b_n, "group b")
    _check_alternative(alternative, ("two-sided", "greater", "less"))
    table = [[a_successes, a_n - a_successes], [b_successes, b_n - b_successes]]
    res = _st.fisher_exact(table, alternative=alternative)
    return TestResult(float(res.pvalue), float(res.statistic), "Fisher exact", alternative)


def diff_ci(a_successes: int, a_n: int, b_successes: int, b_n: int, level: float = 0.95) -> Interval:
    """Interval for ``p_a - p_b`` by the same method as the TOST below (clipped to [-1, 1])."""
    from statsmodels.stats.proportion import confint_proportions_2indep

    check_counts(a_successes, a_n, "group a")
    check_counts(b_successes, b_n, "group b")
    check_probability(level, "level", open_interval=True)
    with _quiet_zero_division():
        low, high = confint_proportions_2indep(
            a_successes, a_n, b_successes, b_n, method=DIFF_METHOD, compare="diff", alpha=1 - level
        )
    return Interval(
        max(-1.0, float(low)),
        min(1.0, float(high)),
        f"{DIFF_METHOD} {100 * level:g}%",
        estimate=a_successes / a_n - b_successes / b_n,
    )


def equivalence_two_proportions(
    a_successes: int, a_n: int, b_successes: int, b_n: int, margin: float, alpha: float = 0.05
) -> Tost:
    """TOST of ``|p_a - p_b| < margin`` (statsmodels ``tost_proportions_2indep``, compare='diff')."""
    from statsmodels.stats.proportion import tost_proportions_2indep

    check_counts(a_successes, a_n, "group a")
    check_counts(b_successes, b_n, "group b")
    check_probability(margin, "margin", open_interval=True)
    check_probability(alpha, "alpha", open_interval=True)
    with _quiet_zero_division():
        res = tost_proportions_2indep(
            a_successes, a_n, b_successes, b_n, -margin, margin, method=DIFF_METHOD, compare="diff"
        )
    ci = diff_ci(a_successes, a_n, b_successes, b_n, level=1 - 2 * alpha)
    return Tost(
        p_value=float(res.pvalue),
        lower_p=float(res.results_larger.pvalue),
        upper_p=float(res.results_smaller.pvalue),
        diff=a_successes / a_n - b_successes / b_n,
        ci_low=ci.low,
        ci_high=ci.high,
        margin=float(margin),
        level=1 - 2 * alpha,
        method=f"TOST ({DIFF_METHOD})",
    )


def superiority_by_margin(
    a_successes: int, a_n: int, b_successes: int, b_n: int, margin: float
) -> TestResult:
    """One-sided test that ``p_b - p_a > margin`` (statsmodels ``test_proportions_2indep``).

    Used for "a is significantly below b by more than the margin". The statistic
    is the z value of ``p_b - p_a - margin``.
    """
    from statsmodels.stats.proportion import test_proportions_2indep

    check_counts(a_successes, a_n, "group a")
    check_counts(b_successes, b_n, "group b")
    check_probability(margin, "margin")
    with _quiet_zero_division():
        res = test_proportions_2indep(
            b_successes, b_n, a_successes, a_n, value=margin, method=DIFF_METHOD,
            compare="diff", alternative="larger",
        )
    return TestResult(float(res.pvalue), float(res.statistic), f"superiority by margin ({DIFF_METHOD})", "greater")


# ---------------------------------------------------------------------------
# multiplicity
# ---------------------------------------------------------------------------


def holm(p_values: Sequence[float], alpha: float = 0.05) -> list[float]:
    """Holm step-down adjusted p-values, in input order: what statsmodels' ``multipletests(method="holm")`` returns.

    Compare each adjusted p-value with alpha; it controls the family-wise error
    rate without assuming independence between the tests. Computed here (sorted
    p times the hypotheses left, running maximum, capped at 1) because statsmodels'
    Holm branch runs ``gc.collect()`` on every call: a quarter of a second each in a
    process holding a model, seconds per claim suite. tests/test_stats.py checks
    both give the same values. `alpha` is only validated: adjusted p-values do not
    depend on it (statsmodels uses it for its reject flags, which are not returned).
    """
    values = [float(p) for p in p_values]
    if not values:
        return []
    for i, p in enumerate(values):
        if not 0 <= p <= 1:
            raise ValueError(f"p_values[{i}] must lie in [0, 1], got {p!r}")
    check_probability(alpha, "alpha", open_interval=True)
    raw = np.asarray(values)
    order = np.argsort(raw, kind="stable")
    stepped = np.maximum.accumulate(raw[order] * np.arange(len(raw), 0, -1))
    adjusted = np.empty_like(raw)
    adjusted[order] = np.minimum(stepped, 1.0)
    return [float(p) for p in adjusted]


# ---------------------------------------------------------------------------
# power and sample size (normal approximations)
# ---------------------------------------------------------------------------


def detectable_difference(
    p_ref: float,
    n_per_group: int,
    alpha: float = 0.05,
    power: float = 0.8,
    alternative: OneSided = "less",
    *,
    ratio: float = 1.0,
) -> float:
    """Smallest shift from ``p_ref`` that a one-sided test at alpha detects with ``power``.

    ``"less"``: how far below ``p_ref`` the other rate must be; ``"greater"``: above.
    For a two-sided test pass ``alpha/2``. Uses Cohen's arcsine effect size and
    statsmodels ``NormalIndPower``; ``ratio`` is n_other/n_per_group (0 for a test
    against a known ``p_ref``). Returns ``math.inf`` when no rate in [0, 1] on that
    side is far enough away.
    """
    from statsmodels.stats.power import NormalIndPower

    check_probability(p_ref, "p_ref")
    check_probability(alpha, "alpha", open_interval=True)
    check_probability(power, "power", open_interval=True)
    _check_alternative(alternative, ("greater", "less"))
    if n_per_group < 1:
        raise ValueError(f"n_per_group must be at least 1, got {n_per_group}")
    h = float(
        NormalIndPower().solve_power(
            effect_size=None, nobs1=n_per_group, alpha=alpha, power=power, ratio=ratio, alternative="larger"
        )
    )
    phi = math.asin(math.sqrt(p_ref))  # h = 2*asin(sqrt(p1)) - 2*asin(sqrt(p2))
    target = phi - h / 2 if alternative == "less" else phi + h / 2
    if not 0 <= target <= math.pi / 2:
        return math.inf
    return abs(math.sin(target) ** 2 - p_ref)


def n_per_group_for(
    p_a: float,
    p_b: float,
    alpha: float = 0.05,
    power: float = 0.8,
    alternative: Alternative = "two-sided",
    *,
    ratio: float = 1.0,
) -> int | None:
    """Samples per group for a test of p_a vs p_b to reach ``power`` at these true rates.

    Cohen's arcsine effect size with statsmodels ``NormalIndPower``; ``ratio`` as in
    `detectable_difference`. ``None`` when no n suffices: equal rates, or a one-sided
    alternative that points away from the true difference.
    """
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    check_probability(p_a, "p_a")
    check_probability(p_b, "p_b")
    check_probability(alpha, "alpha", open_interval=True)
    check_probability(power, "power", open_interval=True)
    _check_alternative(alternative, ("two-sided", "greater", "less"))
    h = float(proportion_effectsize(p_a, p_b))
    if h == 0 or (alternative == "greater" and h < 0) or (alternative == "less" and h > 0):
        return None
    analysis = NormalIndPower()
    tail = "two-sided" if alternative == "two-sided" else "larger"
    with warnings.catch_warnings():  # the NaN case below is handled, not an accident to warn about
        warnings.simplefilter("ignore")
        n = float(np.asarray(analysis.solve_power(effect_size=abs(h), nobs1=None, alpha=alpha, power=power, ratio=ratio, alternative=tail)).item())
    if math.isnan(n):
        # The root finder fails when the answer lies below its bracket: a huge effect
        # that two samples already detect. Anything else is genuinely unsolvable.
        reached = analysis.power(effect_size=abs(h), nobs1=2, alpha=alpha, ratio=ratio, alternative=tail)
        return 2 if reached >= power else None
    return max(2, math.ceil(n))


def n_for_equivalence(
    p_a: float, p_b: float, margin: float, alpha: float = 0.05, power: float = 0.8
) -> int | None:
    """Samples per group for a TOST of ``|p_a - p_b| < margin`` to succeed with ``power``.

    Normal approximation of Chow, Shao & Wang, *Sample Size Calculations in
    Clinical Research* (2nd ed., 2008), section 4.2, test for equivalence:

        n = (z_{1-alpha} + z_{1-beta/2})^2 * (p_a(1-p_a) + p_b(1-p_b)) / (margin - |p_a - p_b|)^2

    (z_{1-beta/2} is exact at p_a = p_b and conservative otherwise). ``None`` when
    ``|p_a - p_b| >= margin``: equivalence cannot be shown at those true rates.
    """
    check_probability(p_a, "p_a")
    check_probability(p_b, "p_b")
    check_probability(margin, "margin", open_interval=True)
    check_probability(alpha, "alpha", open_interval=True)
    check_probability(power, "power", open_interval=True)
    gap = margin - abs(p_a - p_b)
    if gap <= _RATE_TOL:
        return None
    z = _st.norm.ppf(1 - alpha) + _st.norm.ppf(1 - (1 - power) / 2)
    variance = p_a * (1 - p_a) + p_b * (1 - p_b)
    # Both rates at 0 or 1: the binomial variance vanishes; one sample each decides.
    variance = max(variance, 1e-12)
    return max(2, math.ceil(z**2 * variance / gap**2))


def n_for_superiority_by_margin(
    p_a: float, p_b: float, margin: float, alpha: float = 0.05, power: float = 0.8
) -> int | None:
    """Samples per group for the one-sided test of ``p_b - p_a > margin`` to reach ``power``.

    Chow, Shao & Wang (2008), section 4.2, test for non-inferiority/superiority:
    ``n = (z_{1-alpha} + z_{1-beta})^2 (p_a q_a + p_b q_b) / (p_b - p_a - margin)^2``.
    ``None`` when ``p_b - p_a <= margin``.
    """
    check_probability(p_a, "p_a")
    check_probability(p_b, "p_b")
    check_probability(margin, "margin")
    check_probability(alpha, "alpha", open_interval=True)
    check_probability(power, "power", open_interval=True)
    gap = (p_b - p_a) - margin
    if gap <= _RATE_TOL:
        return None
    z = _st.norm.ppf(1 - alpha) + _st.norm.ppf(power)
    variance = max(p_a * (1 - p_a) + p_b * (1 - p_b), 1e-12)
    return max(2, math.ceil(z**2 * variance / gap**2))


# ---------------------------------------------------------------------------
# continuous samples
# ---------------------------------------------------------------------------


def _as_sample(values: Sequence[float], arg: str) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    if array.size < 2:
        raise ValueError(f"{arg} needs at least 2 values, got {array.size}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{arg} contains NaN or infinite values; drop or fix them first")
    return array


def bootstrap_mean_ci(
    values: Sequence[float], level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> Interval:
    """BCa bootstrap interval for the mean (scipy ``bootstrap``, method='BCa').

    BCa corrects the percentile interval for bias and skew, which matters for
    activation magnitudes and probe confidences piled up near a bound. A sample
    with no spread gets the degenerate interval [mean, mean].
    """
    array = _as_sample(values, "values")
    check_probability(level, "level", open_interval=True)
    mean = float(array.mean())
    if np.ptp(array) == 0:
        return Interval(mean, mean, "degenerate (no spread)", estimate=mean)
    res = _st.bootstrap(
        (array,), np.mean, n_resamples=resamples, confidence_level=level,
        method="BCa", rng=np.random.default_rng(seed),
    )
    return Interval(
        float(res.confidence_interval.low), float(res.confidence_interval.high),
        f"bootstrap BCa {100 * level:g}% ({resamples} resamples)", estimate=mean,
    )


def _ratio_of_means(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a, axis=axis) / np.mean(b, axis=axis)


def bootstrap_ratio_ci(
    a: Sequence[float], b: Sequence[float], level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> Interval:
    """BCa bootstrap interval for mean(a) / mean(b) of two independent samples.

    Each sample is resampled on its own (scipy ``bootstrap`` with two samples,
    ``paired=False``); BCa's jackknife runs over both samples.
    """
    xa, xb = _as_sample(a, "a"), _as_sample(b, "b")
    check_probability(level, "level", open_interval=True)
    if xb.mean() == 0:
        raise ValueError("mean of b is 0: the ratio mean(a)/mean(b) is undefined")
    ratio = float(xa.mean() / xb.mean())
    if np.ptp(xa) == 0 and np.ptp(xb) == 0:
        return Interval(ratio, ratio, "degenerate (no spread)", estimate=ratio)
    with warnings.catch_warnings():
        # A resample of b with mean 0 gives inf; scipy warns and BCa handles it.
        warnings.simplefilter("ignore", RuntimeWarning)
        res = _st.bootstrap(
            (xa, xb), _ratio_of_means, n_resamples=resamples, confidence_level=level,
            method="BCa", vectorized=True, paired=False, rng=np.random.default_rng(seed),
        )
    return Interval(
        float(res.confidence_interval.low), float(res.confidence_interval.high),
        f"bootstrap BCa {100 * level:g}% ({resamples} resamples)", estimate=ratio,
    )


def mann_whitney(a: Sequence[float], b: Sequence[float], alternative: Alternative = "two-sided") -> TestResult:
    """Mann-Whitney U test (scipy ``mannwhitneyu``); ``"greater"``: a tends to exceed b.

    The statistic is U of sample a; scipy picks the exact null distribution for
    small samples without ties and the normal approximation otherwise.
    """
    xa, xb = _as_sample(a, "a"), _as_sample(b, "b")
    _check_alternative(alternative, ("two-sided", "greater", "less"))
    res = _st.mannwhitneyu(xa, xb, alternative=alternative)
    return TestResult(float(res.pvalue), float(res.statistic), "Mann-Whitney U", alternative)


# ---------------------------------------------------------------------------
# k proportions: homogeneity and trend
# ---------------------------------------------------------------------------


def _table(successes: Sequence[int], ns: Sequence[int], min_groups: int) -> tuple[np.ndarray, np.ndarray]:
    if len(successes) != len(ns):
        raise ValueError(f"successes and ns must have the same length, got {len(successes)} and {len(ns)}")
    if len(ns) < min_groups:
        raise ValueError(f"need at least {min_groups} groups, got {len(ns)}")
    for i, (s, n) in enumerate(zip(successes, ns)):
        check_counts(s, n, f"group {i}")
    return np.asarray(successes, dtype=np.int64), np.asarray(ns, dtype=np.int64)


def _expected_min(s: np.ndarray, n: np.ndarray) -> float:
    share = s.sum() / n.sum()
    return float(min((n * share).min(), (n * (1 - share)).min()))


def _binary_samples(s: np.ndarray, n: np.ndarray) -> list[np.ndarray]:
    """Each group as its 0/1 outcomes: permuting them keeps every margin of the table."""
    return [np.r_[np.ones(si), np.zeros(ni - si)] for si, ni in zip(s, n)]


def _pearson(n: np.ndarray, share: float, counts: np.ndarray) -> np.ndarray:
    """Pearson's chi-square of a 2 x k table from its success counts (last axis)."""
    expected = n * share
    return (((counts - expected) ** 2) / (expected * (1 - share))).sum(axis=-1)


def heterogeneity(successes: Sequence[int], ns: Sequence[int]) -> TestResult:
    """Do k groups (e.g. seeds) share one rate? Test of homogeneity on the 2 x k table.

    - every expected count >= 5: Pearson chi-square, no continuity correction
      (scipy ``chi2_contingency``);
    - otherwise, k = 2: Fisher's exact test, two-sided (scipy ``fisher_exact``);
    - otherwise, k > 2: exact conditional test of Pearson's statistic by Monte Carlo
      permutation (scipy ``permutation_test``, 9,999 resamples, fixed seed), as R's
      ``chisq.test(simulate.p.value=TRUE)``.
    All successes or all failures: the rates are identical, p = 1.
    """
    s, n = _table(successes, ns, min_groups=2)
    total, total_n = int(s.sum()), int(n.sum())
    if total in (0, total_n):
        return TestResult(1.0, 0.0, "homogeneity: all outcomes identical", "two-sided")
    if _expected_min(s, n) >= MIN_EXPECTED_COUNT:
        res = _st.chi2_contingency(np.vstack([s, n - s]), correction=False)
        method = f"Pearson chi-square (df={res.dof})"
        return TestResult(float(res.pvalue), float(res.statistic), method, "two-sided")
    if len(n) == 2:
        res = fisher(int(s[0]), int(n[0]), int(s[1]), int(n[1]), "two-sided")
        return TestResult(res.p_value, res.statistic, "Fisher exact (small expected counts)", "two-sided")
    share = total / total_n
    observed = float(_pearson(n, share, s.astype(float)))
    res = _st.permutation_test(
        _binary_samples(s, n),
        lambda *xs, axis: _pearson(n, share, np.stack([g.sum(axis=axis) for g in xs], axis=-1)),
        permutation_type="independent", vectorized=True, n_resamples=PERMUTATION_RESAMPLES,
        alternative="greater", rng=np.random.default_rng(PERMUTATION_SEED),
    )
    return TestResult(
        float(res.pvalue), observed,
        f"permutation test of Pearson chi-square (small expected counts; {PERMUTATION_RESAMPLES} resamples)",
        "two-sided",
    )


def trend(
    successes: Sequence[int],
    ns: Sequence[int],
    scores: Sequence[float] | None = None,
    alternative: TrendAlternative = "two-sided",
) -> TestResult:
    """Cochran-Armitage test for a trend in rates across ordered groups.

    - every expected count >= 5: statsmodels ``Table.test_ordinal_association``
      (linear-by-linear association; its docstring: with default scores it is the
      Cochran-Armitage test). It uses the exact permutation variance, so its chi-square
      ``z**2`` is (N-1)/N times R's ``prop.trend.test``; the statistic returned is z,
      positive when rates rise with the scores;
    - otherwise: exact conditional test of the same statistic by Monte Carlo
      permutation (scipy ``permutation_test``, 9,999 resamples, fixed seed); the
      statistic returned is the z of the observed table.
    Default scores are 0, 1, ..., k-1 in the order given.
    """
    s, n = _table(successes, ns, min_groups=2)
    _check_alternative(alternative, ("two-sided", "increasing", "decreasing"))
    x = np.arange(len(n), dtype=float) if scores is None else np.asarray(scores, dtype=float)
    if x.shape != n.shape or not np.all(np.isfinite(x)):
        raise ValueError(f"scores must be {len(n)} finite numbers, one per group; got {scores!r}")
    if np.ptp(x) == 0:
        raise ValueError("scores must not all be equal: a trend needs at least two distinct scores")
    total, total_n = int(s.sum()), int(n.sum())
    if total in (0, total_n):
        return TestResult(1.0, 0.0, "Cochran-Armitage: all outcomes identical", alternative)
    from statsmodels.stats.contingency_tables import Table

    # rows = groups (scored x), columns = (success, failure) scored (1, 0)
    res = Table(np.vstack([s, n - s]).T.astype(float)).test_ordinal_association(
        row_scores=x, col_scores=np.array([1.0, 0.0])
    )
    z = float(res.zscore)
    if _expected_min(s, n) >= MIN_EXPECTED_COUNT:
        p = {"two-sided": 2 * _st.norm.sf(abs(z)), "increasing": _st.norm.sf(z), "decreasing": _st.norm.cdf(z)}
        return TestResult(float(p[alternative]), z, "Cochran-Armitage (linear-by-linear, normal)", alternative)
    perm = _st.permutation_test(
        _binary_samples(s, n),
        lambda *xs, axis: sum(xi * g.sum(axis=axis) for xi, g in zip(x, xs)),
        permutation_type="independent", vectorized=True, n_resamples=PERMUTATION_RESAMPLES,
        alternative={"two-sided": "two-sided", "increasing": "greater", "decreasing": "less"}[alternative],
        rng=np.random.default_rng(PERMUTATION_SEED),
    )
    return TestResult(
        float(perm.pvalue), z,
        f"Cochran-Armitage, exact permutation (small expected counts; {PERMUTATION_RESAMPLES} resamples)",
        alternative,
    )
