"""claimkit.crossed against independently computed values (statsmodels' ANOVA, scipy's t)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from claimkit import crossed


def table(seed: int = 0, s: int = 4, n: int = 30, seed_sd: float = 0.3, prompt_sd: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0, seed_sd, s)[:, None] + rng.normal(0, prompt_sd, n)[None, :] + rng.normal(0, 1, (s, n))


def anova_mean_squares(values: np.ndarray) -> dict[str, float]:
    """Two-way ANOVA without interaction from statsmodels: the mean squares of seed, prompt, residual."""
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    s, n = values.shape
    frame = pd.DataFrame({"y": values.ravel(), "seed": np.repeat(np.arange(s), n), "prompt": np.tile(np.arange(n), s)})
    fit = smf.ols("y ~ C(seed) + C(prompt)", data=frame).fit()
    aov = anova_lm(fit)
    ms = aov["sum_sq"] / aov["df"]
    return {"seed": float(ms["C(seed)"]), "prompt": float(ms["C(prompt)"]), "residual": float(ms["Residual"])}


def test_the_mean_squares_are_statsmodels_two_way_anova():
    values = table()
    m = crossed.crossed_mean(values)
    expected = anova_mean_squares(values)
    for key in ("seed", "prompt", "residual"):
        assert m.components[key] == pytest.approx(expected[key], rel=1e-9)


def test_the_standard_error_is_the_conservative_sum_of_the_seed_and_prompt_mean_squares():
    for values in (table(seed=3, seed_sd=1.0), np.random.default_rng(1).normal(0, 1, (3, 40))):
        ms = anova_mean_squares(values)
        s, n = values.shape
        m = crossed.crossed_mean(values)
        assert m.estimate == pytest.approx(values.mean())
        assert m.se == pytest.approx(math.sqrt((ms["seed"] + ms["prompt"]) / (s * n)))
        satterthwaite = (ms["seed"] + ms["prompt"]) ** 2 / (ms["seed"] ** 2 / (s - 1) + ms["prompt"] ** 2 / (n - 1))
        assert m.df == pytest.approx(max(s - 1, satterthwaite))
        # never narrower than the unbiased combination it replaces
        assert m.se ** 2 * s * n >= ms["seed"] + ms["prompt"] - ms["residual"]


def test_one_seed_is_the_plain_mean_with_its_t_interval():
    values = np.array([[0.0, 1.0, 1.0, 0.0, 1.0, 1.0]])
    m = crossed.crossed_mean(values)
    assert m.se == pytest.approx(st.sem(values[0]))
    assert m.df == 5
    low, high = m.interval(0.95)
    ref = st.t.interval(0.95, 5, loc=values.mean(), scale=st.sem(values[0]))
    assert (low, high) == pytest.approx(ref)


def test_a_constant_table_is_not_taken_as_exact():
    m = crossed.crossed_mean(np.zeros((3, 50)))
    assert m.estimate == 0 and m.se > 0
    assert m.p_value(0.05, "less") > 0


def test_the_p_value_is_scipys_t():
    m = crossed.crossed_mean(table(seed=4))
    t = (m.estimate - 0.2) / m.se
    assert m.p_value(0.2, "greater") == pytest.approx(st.t.sf(t, m.df))
    assert m.p_value(0.2, "less") == pytest.approx(st.t.cdf(t, m.df))


def test_a_contrast_is_the_crossed_mean_of_the_combined_table():
    a, b = table(seed=5), table(seed=6)
    direct = crossed.crossed_mean(a - 0.75 * b, continuity=1.0)
    via = crossed.contrast({"a": a, "b": b}, {"a": 1.0, "b": -0.75})
    assert (via.estimate, via.se, via.df) == pytest.approx((direct.estimate, direct.se, direct.df))


def test_a_contrast_refuses_unpaired_or_missing_arms():
    with pytest.raises(ValueError, match="same shape"):
        crossed.contrast({"a": np.zeros((3, 10)), "b": np.zeros((2, 10))}, {"a": 1, "b": -1})
    with pytest.raises(ValueError, match="no outcomes"):
        crossed.contrast({"a": np.zeros((3, 10))}, {"a": 1, "c": -1})


def test_a_ratio_is_tested_through_its_linear_form_and_fieller_bounds_invert_that_test():
    rng = np.random.default_rng(7)
    arms = {"T": 0.6 + table(8) * 0.1, "R": 0.8 + table(9) * 0.1, "C": 0.1 + table(10) * 0.1}
    num, den = {"T": 1.0, "C": -1.0}, {"R": 1.0, "C": -1.0}
    result = crossed.ratio_of_contrasts(arms, num, den, null=0.5, alternative="greater", alpha=0.05)
    assert result.estimate == pytest.approx((arms["T"].mean() - arms["C"].mean()) / (arms["R"].mean() - arms["C"].mean()))
    linear = crossed.contrast(arms, {"T": 1.0, "C": -1.0 + 0.5, "R": -0.5})
    assert result.p_value == pytest.approx(linear.p_value(0.0, "greater"))
    low, high = result.interval
    for bound, side in ((low, 1.0), (high, -1.0)):
        m = crossed.contrast(arms, {"T": 1.0, "C": -1.0 + bound, "R": -bound})
        assert m.estimate / m.se == pytest.approx(side * st.t.ppf(0.95, m.df), abs=1e-4)
    assert low < result.estimate < high
    del rng


def test_a_ratio_whose_denominator_is_not_shown_is_unbounded():
    rng = np.random.default_rng(11)
    arms = {"T": rng.normal(0, 1, (3, 30)), "R": rng.normal(0, 1, (3, 30)), "C": rng.normal(0, 1, (3, 30))}
    result = crossed.ratio_of_contrasts(arms, {"T": 1, "C": -1}, {"R": 1, "C": -1}, null=0.75, alternative="greater")
    assert math.isinf(result.interval[0]) or math.isinf(result.interval[1])
