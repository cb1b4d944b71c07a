"""claimkit.stats against independently known values.

Sources of truth, never the module's own output: published worked examples
(Newcombe 1998, Agresti's tea tasting, Cohen 1988), R outputs written as literals,
closed forms, and exact enumeration written here with math.comb.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2, norm

from claimkit import stats as S

# z quantiles written out (from tables), so formula checks do not reuse scipy calls of the module
Z95, Z975, Z80, Z90 = 1.6448536, 1.9599640, 0.8416212, 1.2815516


def binom_pmf(k: int, n: int, p: float) -> float:
    return math.comb(n, k) * p**k * (1 - p) ** (n - k)


def hypergeom_table_prob(successes: tuple[int, ...], ns: tuple[int, ...]) -> float:
    """P(2 x k table | margins) = prod C(n_i, s_i) / C(N, S)."""
    return math.prod(math.comb(n, s) for s, n in zip(successes, ns)) / math.comb(sum(ns), sum(successes))


def tables_with_margins(total: int, ns: tuple[int, ...]):
    for combo in itertools.product(*(range(n + 1) for n in ns)):
        if sum(combo) == total:
            yield combo


# ---------------------------------------------------------------------------
# proportion_ci
# ---------------------------------------------------------------------------


def test_clopper_pearson_zero_of_ten_closed_form():
    ci = S.proportion_ci(0, 10)
    assert ci.low == 0.0
    assert ci.high == pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-10)  # 0.3085
    assert ci.high == pytest.approx(0.3085, abs=1e-4)
    full = S.proportion_ci(10, 10)
    assert full.low == pytest.approx(0.025 ** (1 / 10), abs=1e-10) and full.high == 1.0


@pytest.mark.parametrize(
    "x, n, exact, wilson",
    [  # Newcombe (1998), Stat Med 17:857, Table II: methods 5 (exact) and 3 (Wilson score)
        (81, 263, (0.2527, 0.3676), (0.2553, 0.3662)),
        (15, 148, (0.0578, 0.1617), (0.0624, 0.1605)),
        (0, 20, (0.0, 0.1684), (0.0, 0.1611)),
        (1, 29, (0.0009, 0.1776), (0.0061, 0.1718)),
    ],
)
def test_intervals_match_newcombe_1998(x, n, exact, wilson):
    cp = S.proportion_ci(x, n, method="exact")
    wi = S.proportion_ci(x, n, method="wilson")
    assert (cp.low, cp.high) == pytest.approx(exact, abs=6e-5)
    assert (wi.low, wi.high) == pytest.approx(wilson, abs=6e-5)
    assert cp.estimate == wi.estimate == x / n


def test_clopper_pearson_bounds_solve_the_binomial_tail_equations():
    # Definition: P(X >= x | low) = alpha/2 and P(X <= x | high) = alpha/2.
    x, n = 81, 263
    ci = S.proportion_ci(x, n, level=0.9)
    upper_tail = sum(binom_pmf(k, n, ci.low) for k in range(x, n + 1))
    lower_tail = sum(binom_pmf(k, n, ci.high) for k in range(0, x + 1))
    assert upper_tail == pytest.approx(0.05, abs=1e-7)
    assert lower_tail == pytest.approx(0.05, abs=1e-7)


@pytest.mark.parametrize("bad", [(0, 0), (3, 2), (-1, 5), (1.5, 3), (True, 3)])
def test_proportion_ci_rejects_bad_counts_with_a_clear_message(bad):
    with pytest.raises(ValueError, match=r"n|successes"):
        S.proportion_ci(*bad)


def test_proportion_ci_n_zero_says_why():
    with pytest.raises(ValueError, match="at least 1"):
        S.proportion_ci(0, 0)


def test_proportion_ci_rejects_unknown_method():
    with pytest.raises(ValueError, match="exact"):
        S.proportion_ci(1, 2, method="wald")  # type: ignore[arg-type]


counts = st.integers(1, 400).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n)))


@settings(max_examples=80, deadline=None)
@given(counts, st.sampled_from(["exact", "wilson"]), st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_interval_contains_estimate_and_lies_in_unit_interval(c, method, level):
    x, n = c
    ci = S.proportion_ci(x, n, level=level, method=method)
    assert 0.0 <= ci.low <= x / n <= ci.high <= 1.0


@settings(max_examples=60, deadline=None)
@given(counts, st.sampled_from(["exact", "wilson"]))
def test_interval_narrows_as_n_grows_at_the_same_rate(c, method):
    x, n = c
    small = S.proportion_ci(x, n, method=method)
    large = S.proportion_ci(4 * x, 4 * n, method=method)
    assert large.high - large.low < small.high - small.low


@settings(max_examples=40, deadline=None)
@given(counts)
def test_exact_interval_widens_with_level(c):
    x, n = c
    narrow, wide = S.proportion_ci(x, n, level=0.9), S.proportion_ci(x, n, level=0.99)
    assert wide.low <= narrow.low and narrow.high <= wide.high


# ---------------------------------------------------------------------------
# binomial test
# ---------------------------------------------------------------------------


def test_binomial_test_by_enumeration():
    x, n, p0 = 17, 20, 0.6
    expected = sum(binom_pmf(k, n, p0) for k in range(x, n + 1))
    assert S.binomial_test(x, n, p0, "greater").p_value == pytest.approx(expected, rel=1e-9)
    expected_less = sum(binom_pmf(k, n, p0) for k in range(0, x + 1))
    assert S.binomial_test(x, n, p0, "less").p_value == pytest.approx(expected_less, rel=1e-9)


# ---------------------------------------------------------------------------
# Fisher
# ---------------------------------------------------------------------------


def test_fisher_tea_tasting():
    # Agresti, Categorical Data Analysis, Table 3.8: 3 of 4 milk-first cups called right;
    # one-sided P = (16 + 1) / 70 = 0.2429.
    res = S.fisher(3, 4, 1, 4, "greater")
    assert res.p_value == pytest.approx(17 / 70, abs=1e-12)
    assert res.p_value == pytest.approx(0.2429, abs=1e-4)
    assert res.statistic == pytest.approx(9.0)  # sample odds ratio (3*3)/(1*1)


def _fisher_by_enumeration(a, an, b, bn):
    total = a + b
    lo, hi = max(0, total - bn), min(an, total)
    prob = {k: math.comb(an, k) * math.comb(bn, total - k) / math.comb(an + bn, total) for k in range(lo, hi + 1)}
    greater = sum(p for k, p in prob.items() if k >= a)
    less = sum(p for k, p in prob.items() if k <= a)
    two = sum(p for p in prob.values() if p <= prob[a] * (1 + 1e-7))
    return greater, less, two


@pytest.mark.parametrize("a, an, b, bn", [(7, 12, 2, 10), (0, 15, 5, 15), (18, 20, 11, 20), (5, 30, 5, 30)])
def test_fisher_matches_hypergeometric_enumeration(a, an, b, bn):
    greater, less, two = _fisher_by_enumeration(a, an, b, bn)
    assert S.fisher(a, an, b, bn, "greater").p_value == pytest.approx(greater, rel=1e-9)
    assert S.fisher(a, an, b, bn, "less").p_value == pytest.approx(less, rel=1e-9)
    assert S.fisher(a, an, b, bn, "two-sided").p_value == pytest.approx(min(1.0, two), rel=1e-9)


def test_fisher_rejects_bad_alternative():
    with pytest.raises(ValueError, match="alternative"):
        S.fisher(1, 2, 1, 2, "larger")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# TOST and superiority by margin (Agresti-Caffo), written out by hand
# ---------------------------------------------------------------------------


def _agresti_caffo(a, an, b, bn):
    pa, pb = (a + 1) / (an + 2), (b + 1) / (bn + 2)
    se = math.sqrt(pa * (1 - pa) / (an + 2) + pb * (1 - pb) / (bn + 2))
    return pa - pb, se


@pytest.mark.parametrize("a, an, b, bn, margin", [(12, 20, 14, 20, 0.15), (160, 200, 165, 200, 0.15), (0, 30, 2, 30, 0.2)])
def test_tost_matches_agresti_caffo_by_hand(a, an, b, bn, margin):
    d, se = _agresti_caffo(a, an, b, bn)
    lower_p = 1 - norm.cdf((d + margin) / se)
    upper_p = norm.cdf((d - margin) / se)
    res = S.equivalence_two_proportions(a, an, b, bn, margin, alpha=0.05)
    assert res.lower_p == pytest.approx(lower_p, rel=1e-9)
    assert res.upper_p == pytest.approx(upper_p, rel=1e-9)
    assert res.p_value == pytest.approx(max(lower_p, upper_p), rel=1e-9)
    assert res.diff == pytest.approx(a / an - b / bn)
    assert res.ci_low == pytest.approx(max(-1, d - Z95 * se), abs=1e-6)
    assert res.ci_high == pytest.approx(min(1, d + Z95 * se), abs=1e-6)
    assert res.level == pytest.approx(0.9)


def test_superiority_by_margin_matches_hand_formula():
    a, an, b, bn, margin = 100, 200, 170, 200, 0.15
    d, se = _agresti_caffo(b, bn, a, an)  # p_b - p_a
    res = S.superiority_by_margin(a, an, b, bn, margin)
    assert res.p_value == pytest.approx(1 - norm.cdf((d - margin) / se), rel=1e-9)
    assert res.p_value < 1e-4
    # the reverse question, far from significant
    assert S.superiority_by_margin(b, bn, a, an, margin).p_value > 0.99


@settings(max_examples=60, deadline=None)
@given(counts, counts, st.sampled_from([0.05, 0.1, 0.15, 0.3]))
def test_tost_significant_iff_interval_inside_margin(a, b, margin):
    res = S.equivalence_two_proportions(a[0], a[1], b[0], b[1], margin, alpha=0.05)
    inside = -margin < res.ci_low and res.ci_high < margin
    if abs(res.p_value - 0.05) > 1e-9:
        assert (res.p_value < 0.05) == inside


# ---------------------------------------------------------------------------
# Holm
# ---------------------------------------------------------------------------


def test_holm_by_hand():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, max(0.04*1, 0.06) = 0.06
    assert S.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert S.holm([]) == []
    assert S.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=12))
def test_holm_adjusted_at_least_raw_bounded_and_monotone(ps):
    adj = S.holm(ps)
    assert len(adj) == len(ps)
    for p, q in zip(ps, adj):
        assert p - 1e-12 <= q <= 1.0
    for (p1, q1), (p2, q2) in itertools.combinations(zip(ps, adj), 2):
        if p1 < p2:
            assert q1 <= q2 + 1e-12


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.floats(0, 1), st.sampled_from([0.0, 0.01, 0.05, 1.0])), min_size=1, max_size=15))
def test_holm_equals_statsmodels(ps):
    from statsmodels.stats.multitest import multipletests

    assert S.holm(ps) == pytest.approx(list(multipletests(ps, method="holm")[1]), abs=1e-15)


def test_holm_rejects_non_probabilities():
    with pytest.raises(ValueError, match=r"p_values\[1\]"):
        S.holm([0.1, 1.5])


# ---------------------------------------------------------------------------
# power and sample size
# ---------------------------------------------------------------------------


def _rates_with_h(h: float, p_b: float = 0.5) -> tuple[float, float]:
    return math.sin(math.asin(math.sqrt(p_b)) + h / 2) ** 2, p_b


@pytest.mark.parametrize("h, n_cohen", [(0.2, 392), (0.5, 63), (0.8, 25)])
def test_n_per_group_matches_cohen_table(h, n_cohen):
    # Cohen (1988), Statistical Power Analysis, Table 6.4.1: two-sided alpha = .05, power .80.
    p_a, p_b = _rates_with_h(h)
    n = S.n_per_group_for(p_a, p_b, alpha=0.05, power=0.8, alternative="two-sided")
    assert n is not None and abs(n - n_cohen) <= 1


def test_n_per_group_none_when_no_n_suffices():
    assert S.n_per_group_for(0.5, 0.5) is None
    assert S.n_per_group_for(0.3, 0.5, alternative="greater") is None
    assert S.n_per_group_for(0.7, 0.5, alternative="less") is None


def test_one_sided_needs_fewer_samples_than_two_sided():
    two = S.n_per_group_for(0.8, 0.7, alternative="two-sided")
    one = S.n_per_group_for(0.8, 0.7, alternative="greater")
    assert one is not None and two is not None and one < two


def test_detectable_difference_closed_form():
    # one-sided: h = (z_.95 + z_.80) * sqrt(2 / n); p = sin(asin(sqrt(p_ref)) - h/2)^2
    n, p_ref = 200, 0.8
    h = (Z95 + Z80) * math.sqrt(2 / n)
    below = p_ref - math.sin(math.asin(math.sqrt(p_ref)) - h / 2) ** 2
    above = math.sin(math.asin(math.sqrt(p_ref)) + h / 2) ** 2 - p_ref
    assert S.detectable_difference(p_ref, n, 0.05, 0.8, "less") == pytest.approx(below, rel=1e-5)
    assert S.detectable_difference(p_ref, n, 0.05, 0.8, "greater") == pytest.approx(above, rel=1e-5)


def test_detectable_difference_inverts_n_per_group():
    d = S.detectable_difference(0.6, 150, 0.05, 0.8, "less")
    n = S.n_per_group_for(0.6 - d, 0.6, 0.05, 0.8, "less")
    assert n in (150, 151)


def test_detectable_difference_unreachable_is_inf():
    assert S.detectable_difference(0.01, 10, 0.05, 0.8, "less") == math.inf


def test_n_for_equivalence_formula_by_hand():
    # Chow, Shao & Wang (2008) 4.2: (z_.95 + z_.90)^2 * (.25 + .25) / (0.1 - 0)^2 = 428.2
    assert S.n_for_equivalence(0.5, 0.5, 0.1, alpha=0.05, power=0.8) == math.ceil((Z95 + Z90) ** 2 * 0.5 / 0.01)
    assert S.n_for_equivalence(0.8, 0.7, 0.1) is None
    assert S.n_for_equivalence(0.95, 0.8, 0.15) is None  # exactly on the margin, despite float error


def test_n_for_equivalence_reaches_its_power_in_simulation():
    """At the formula's n the actual TOST succeeds in ~80% of simulated experiments."""
    from statsmodels.stats.proportion import tost_proportions_2indep

    p, margin = 0.8, 0.15
    n = S.n_for_equivalence(p, p, margin, alpha=0.05, power=0.8)
    assert n is not None
    rng = np.random.default_rng(12345)

    def simulated_power(size: int) -> float:
        a, b = rng.binomial(size, p, 4000), rng.binomial(size, p, 4000)
        res = tost_proportions_2indep(a, size, b, size, -margin, margin, method=S.DIFF_METHOD)
        return float(np.mean(np.asarray(res.pvalue) < 0.05))

    assert 0.76 <= simulated_power(n) <= 0.9
    assert simulated_power(n // 2) < 0.6


def test_n_for_superiority_by_margin_formula_and_simulation():
    p_a, p_b, margin = 0.5, 0.8, 0.15
    n = S.n_for_superiority_by_margin(p_a, p_b, margin)
    assert n == math.ceil((Z95 + Z80) ** 2 * (0.25 + 0.16) / 0.15**2)
    assert S.n_for_superiority_by_margin(0.7, 0.8, 0.15) is None
    from statsmodels.stats.proportion import test_proportions_2indep

    rng = np.random.default_rng(7)
    a, b = rng.binomial(n, p_a, 4000), rng.binomial(n, p_b, 4000)
    res = test_proportions_2indep(b, n, a, n, value=margin, method=S.DIFF_METHOD, alternative="larger")
    assert 0.74 <= float(np.mean(np.asarray(res.pvalue) < 0.05)) <= 0.88


# ---------------------------------------------------------------------------
# bootstrap and Mann-Whitney
# ---------------------------------------------------------------------------


def test_bootstrap_mean_ci_close_to_normal_theory_for_a_large_normal_sample():
    x = np.random.default_rng(3).normal(10.0, 2.0, 400)
    ci = S.bootstrap_mean_ci(x, level=0.95, resamples=2000, seed=1)
    half = Z975 * x.std(ddof=1) / math.sqrt(len(x))
    assert ci.estimate == pytest.approx(x.mean())
    assert ci.low == pytest.approx(x.mean() - half, abs=0.1 * half)
    assert ci.high == pytest.approx(x.mean() + half, abs=0.1 * half)
    assert "BCa" in ci.method


def test_bootstrap_is_reproducible_by_seed_and_varies_across_seeds():
    x = np.random.default_rng(4).exponential(1.0, 60)
    assert S.bootstrap_mean_ci(x, seed=5) == S.bootstrap_mean_ci(x, seed=5)
    assert S.bootstrap_mean_ci(x, seed=5) != S.bootstrap_mean_ci(x, seed=6)


def test_bootstrap_degenerate_and_bad_input():
    assert S.bootstrap_mean_ci([2.0, 2.0, 2.0]) == S.Interval(2.0, 2.0, "degenerate (no spread)", 2.0)
    with pytest.raises(ValueError, match="at least 2"):
        S.bootstrap_mean_ci([1.0])
    with pytest.raises(ValueError, match="NaN"):
        S.bootstrap_mean_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="mean of b is 0"):
        S.bootstrap_ratio_ci([1.0, 2.0], [0.0, 0.0])


def test_bootstrap_ratio_ci_close_to_delta_method():
    rng = np.random.default_rng(11)
    a, b = rng.normal(150.0, 20.0, 300), rng.normal(100.0, 15.0, 300)
    ci = S.bootstrap_ratio_ci(a, b, level=0.95, resamples=2000, seed=2)
    r = a.mean() / b.mean()
    # delta method: var(r) ~ r^2 (var(a)/(n a^2) + var(b)/(n b^2))
    se = r * math.sqrt(a.var(ddof=1) / (300 * a.mean() ** 2) + b.var(ddof=1) / (300 * b.mean() ** 2))
    assert ci.estimate == pytest.approx(r)
    assert ci.low == pytest.approx(r - Z975 * se, abs=0.15 * Z975 * se)
    assert ci.high == pytest.approx(r + Z975 * se, abs=0.15 * Z975 * se)


def test_mann_whitney_exact_by_enumeration():
    a, b = [1.1, 2.3, 3.0, 7.5], [4.2, 5.0, 6.1, 8.8, 9.4]
    u_obs = sum(x > y for x in a for y in b)
    pooled = a + b
    us = []
    for idx in itertools.combinations(range(len(pooled)), len(a)):
        xs = [pooled[i] for i in idx]
        ys = [pooled[i] for i in range(len(pooled)) if i not in idx]
        us.append(sum(x > y for x in xs for y in ys))
    p_less = sum(u <= u_obs for u in us) / len(us)
    res = S.mann_whitney(a, b, "less")
    assert res.statistic == u_obs
    assert res.p_value == pytest.approx(p_less, rel=1e-9)
    assert S.mann_whitney([1, 2, 3], [4, 5, 6], "less").p_value == pytest.approx(1 / math.comb(6, 3))


# ---------------------------------------------------------------------------
# heterogeneity
# ---------------------------------------------------------------------------

SMOKERS = [83, 90, 129, 70]
PATIENTS = [86, 93, 136, 82]


def test_heterogeneity_matches_r_prop_test():
    # R: prop.test(smokers, patients) -> X-squared = 12.6, df = 3, p-value = 0.005585
    res = S.heterogeneity(SMOKERS, PATIENTS)
    assert res.statistic == pytest.approx(12.6, abs=0.005)
    assert res.p_value == pytest.approx(0.005585, abs=5e-7)
    assert "chi-square" in res.method


def test_heterogeneity_chi_square_by_hand():
    s, n = [190, 20], [200, 200]
    share = sum(s) / sum(n)
    x2 = sum((si - ni * share) ** 2 / (ni * share * (1 - share)) for si, ni in zip(s, n))
    res = S.heterogeneity(s, n)
    assert res.statistic == pytest.approx(x2)
    assert res.p_value == pytest.approx(chi2.sf(x2, 1), rel=1e-9)
    assert res.p_value < 1e-50


def test_heterogeneity_small_two_groups_uses_fisher():
    res = S.heterogeneity([3, 1], [5, 5])
    assert "Fisher" in res.method
    assert res.p_value == pytest.approx(_fisher_by_enumeration(3, 5, 1, 5)[2], rel=1e-9)


def test_heterogeneity_small_k_groups_permutation_matches_exact_enumeration():
    s, n = (4, 1, 0), (6, 6, 6)
    total = sum(s)
    share = total / sum(n)

    def pearson(t):
        return sum((ti - ni * share) ** 2 / (ni * share * (1 - share)) for ti, ni in zip(t, n))

    observed = pearson(s)
    exact = sum(
        hypergeom_table_prob(t, n) for t in tables_with_margins(total, n) if pearson(t) >= observed - 1e-9
    )
    res = S.heterogeneity(list(s), list(n))
    assert "permutation" in res.method
    assert res.statistic == pytest.approx(observed)
    assert res.p_value == pytest.approx(exact, abs=0.015)  # Monte Carlo, 9,999 resamples


def test_heterogeneity_identical_outcomes_and_bad_input():
    assert S.heterogeneity([0, 0, 0], [10, 20, 30]).p_value == 1.0
    assert S.heterogeneity([10, 20], [10, 20]).p_value == 1.0
    with pytest.raises(ValueError, match="at least 2 groups"):
        S.heterogeneity([3], [10])
    with pytest.raises(ValueError, match="same length"):
        S.heterogeneity([3, 4], [10])


# ---------------------------------------------------------------------------
# trend
# ---------------------------------------------------------------------------


def test_trend_matches_r_prop_trend_test():
    # R: prop.trend.test(smokers, patients) -> X-squared = 8.2249, df = 1, p-value = 0.004132.
    # R uses the binomial variance (denominator N); statsmodels the permutation variance (N - 1).
    res = S.trend(SMOKERS, PATIENTS)
    big_n = sum(PATIENTS)
    r_statistic = res.statistic**2 * big_n / (big_n - 1)
    assert r_statistic == pytest.approx(8.2249, abs=5e-5)
    assert chi2.sf(r_statistic, 1) == pytest.approx(0.004132, abs=5e-7)
    assert res.p_value == pytest.approx(chi2.sf(res.statistic**2, 1), rel=1e-9)
    assert res.statistic < 0  # the rates fall with the group index


def test_trend_equals_mantel_correlation_statistic():
    # Mantel (1963): M^2 = (N - 1) r^2, r = Pearson correlation of score and outcome over subjects.
    xs, ys = [], []
    for i, (s, n) in enumerate(zip(SMOKERS, PATIENTS)):
        xs += [i] * n
        ys += [1] * s + [0] * (n - s)
    r = np.corrcoef(xs, ys)[0, 1]
    res = S.trend(SMOKERS, PATIENTS, alternative="decreasing")
    assert res.statistic == pytest.approx(math.sqrt(len(xs) - 1) * r, rel=1e-9)
    assert res.p_value == pytest.approx(norm.cdf(math.sqrt(len(xs) - 1) * r), rel=1e-9)
    assert S.trend(SMOKERS, PATIENTS, alternative="increasing").p_value == pytest.approx(1 - res.p_value)


def test_trend_scores_change_the_test():
    default = S.trend(SMOKERS, PATIENTS)
    custom = S.trend(SMOKERS, PATIENTS, scores=[0, 1, 2, 10])
    assert custom.statistic != pytest.approx(default.statistic)


def test_trend_small_counts_permutation_matches_exact_enumeration():
    s, n = (5, 3, 1, 0), (5, 5, 5, 5)
    observed = sum(i * si for i, si in enumerate(s))
    exact = sum(
        hypergeom_table_prob(t, n)
        for t in tables_with_margins(sum(s), n)
        if sum(i * ti for i, ti in enumerate(t)) <= observed
    )
    res = S.trend(list(s), list(n), alternative="decreasing")
    assert "permutation" in res.method
    assert res.p_value == pytest.approx(exact, abs=0.003)
    assert res.p_value < 0.01


def test_trend_bad_input():
    with pytest.raises(ValueError, match="scores"):
        S.trend([1, 2], [5, 5], scores=[1, 2, 3])
    with pytest.raises(ValueError, match="distinct"):
        S.trend([1, 2], [5, 5], scores=[1, 1])
    with pytest.raises(ValueError, match="alternative"):
        S.trend([1, 2], [5, 5], alternative="less")  # type: ignore[arg-type]


def test_stats_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, claimkit.stats; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"



def test_sample_size_for_a_huge_effect_is_the_minimum_not_an_error():
    # 0% observed against a 90% threshold, one sample: statsmodels' root finder starts
    # above the answer and returns NaN; two samples already give power 0.97 here
    # (z = h * sqrt(2) = 3.53 against 1.645).
    assert S.n_per_group_for(0.0, 0.9, alternative="less", ratio=0) == 2
