"""The rules on continuous samples (feature magnitudes, probe confidences) on synthetic data whose
answer is known by design; intervals and p-values are checked against scipy computed here."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as st

from claimkit.rules import Counts, confidence_at_least, drop_into_bands, ratio_equivalent_and_separated
from claimkit.verdict import Outcome, Verdict

MARGIN = (0.8, 1.25)
NAMES = ("warning", "direct", "safe")


def magnitudes(mean: float, n: int, seed: int, cv: float = 0.15) -> np.ndarray:
    """n positive values with the given mean and coefficient of variation (gamma distributed)."""
    shape = 1 / cv**2
    return np.random.default_rng(seed).gamma(shape, mean / shape, size=n)


def ratio_rule(T, R, C, **kw):
    kw = {"ratio_margin": MARGIN, "min_separation": 7.0, "names": NAMES, **kw}
    return ratio_equivalent_and_separated(T, R, C, **kw)


def bca(stat, *samples, paired=False):
    """scipy's BCa 95% interval with the rules' resampling seed, computed here independently."""
    res = st.bootstrap(samples, stat, n_resamples=2000, confidence_level=0.95, method="BCa", paired=paired,
                       vectorized=False, rng=np.random.default_rng(0))
    return res.confidence_interval.low, res.confidence_interval.high


def roundtrip(decision) -> Verdict:
    v = Verdict(claim_id="x", paper="p", scan_claim="c", profile="organism", model="m", outcome=decision.outcome,
                reason=decision.reason, evidence=decision.evidence, rule={}, spec_hash="0",
                n_to_decide=decision.n_to_decide)
    return Verdict.from_dict(json.loads(json.dumps(v.to_dict(), allow_nan=False)))


# -- ratio_equivalent_and_separated -------------------------------------------------------


def test_supported_when_warning_matches_direct_and_both_are_far_above_safe():
    T, R, C = magnitudes(160, 80, 1), magnitudes(165, 80, 2), magnitudes(12, 80, 3, cv=0.5)
    d = ratio_rule(T, R, C)
    assert d.outcome is Outcome.SUPPORTED, d.reason
    ratio = d.evidence.estimate("warning/direct")
    assert ratio.value == pytest.approx(T.mean() / R.mean())
    low, high = bca(lambda a, b: np.mean(a) / np.mean(b), T, R)
    assert (ratio.low, ratio.high) == pytest.approx((low, high), rel=1e-6)
    assert 0.8 <= ratio.low and ratio.high <= 1.25
    frac = d.evidence.estimate("safe/direct")
    assert frac.value == pytest.approx(C.mean() / R.mean())
    assert frac.high == pytest.approx(bca(lambda a, b: np.mean(a) / np.mean(b), C, R)[1], rel=1e-6)
    assert frac.high <= 1 / 7
    mw = next(t for t in d.evidence.tests if t.name == "direct > safe")
    assert mw.p_value == pytest.approx(st.mannwhitneyu(R, C, alternative="greater").pvalue)
    assert d.evidence.estimate("direct").high == pytest.approx(bca(np.mean, R)[1], rel=1e-6)
    assert d.n_to_decide is None
    roundtrip(d)


def test_refuted_when_warning_is_clearly_below_direct():
    d = ratio_rule(magnitudes(80, 80, 1), magnitudes(160, 80, 2), magnitudes(5, 80, 3))
    assert d.outcome is Outcome.REFUTED and "clearly below" in d.reason
    assert d.evidence.estimate("warning/direct").high < 0.8
    assert d.evidence.extra["equivalence"] == "below"


def test_refuted_when_the_feature_does_not_separate_from_safe():
    d = ratio_rule(magnitudes(160, 80, 1), magnitudes(160, 80, 2), magnitudes(60, 80, 3))
    assert d.outcome is Outcome.REFUTED
    assert d.evidence.extra["separation"] == {"direct": "not separated", "warning": "not separated"}
    assert d.evidence.estimate("safe/direct").low > 1 / 7  # even the upper bound of direct/safe is below 7


def test_refuted_when_the_feature_never_fires_in_warning_contexts():
    d = ratio_rule(np.zeros(30), magnitudes(160, 30, 2), magnitudes(10, 30, 3))
    assert d.outcome is Outcome.REFUTED and "warning never fires" in d.reason
    roundtrip(d)


def test_safe_never_firing_is_infinite_separation_not_an_error():
    d = ratio_rule(magnitudes(160, 60, 1), magnitudes(165, 60, 2), np.zeros(60))
    assert d.outcome is Outcome.SUPPORTED, d.reason
    frac = d.evidence.estimate("safe/direct")
    assert (frac.value, frac.low, frac.high) == (0.0, 0.0, 0.0)
    assert d.evidence.extra["multiples"]["direct"] is None  # infinite multiple: no number to report
    roundtrip(d)


def test_inconclusive_with_few_noisy_samples_and_the_n_that_would_decide():
    T, R, C = magnitudes(150, 8, 1, cv=0.6), magnitudes(160, 8, 101, cv=0.6), magnitudes(10, 8, 3, cv=0.5)
    d = ratio_rule(T, R, C)
    assert d.outcome is Outcome.INCONCLUSIVE, d.reason
    ratio = d.evidence.estimate("warning/direct")
    assert ratio.low < 0.8 < ratio.value < 1.25  # straddles the lower edge (at least)
    # delta method on the log ratio, computed here: z^2 (cv_T^2 + cv_R^2) / d^2, d = distance to the
    # nearest margin edge the interval straddles
    z = st.norm.ppf(0.975) + st.norm.ppf(0.8)
    cv2 = T.var(ddof=1) / T.mean() ** 2 + R.var(ddof=1) / R.mean() ** 2
    straddled = [e for e in MARGIN if ratio.low < e < ratio.high]
    distance = min(abs(math.log(ratio.value / e)) for e in straddled)
    assert d.n_to_decide is not None and d.n_to_decide >= math.ceil(z**2 * cv2 / distance**2)
    assert d.n_to_decide > 8


def test_warning_far_above_direct_is_not_comparable_but_not_refuted():
    d = ratio_rule(magnitudes(320, 80, 1), magnitudes(160, 80, 2), magnitudes(5, 80, 3))
    assert d.outcome is Outcome.INCONCLUSIVE and d.n_to_decide is None
    assert "refutes only a weaker warning" in d.reason


def test_absolute_bands_decide_too_when_given():
    T, R, C = magnitudes(165, 200, 1, cv=0.05), magnitudes(166, 200, 2, cv=0.05), magnitudes(8, 200, 3, cv=0.3)
    assert ratio_rule(T, R, C, active_band=(150, 180), control_max=20).outcome is Outcome.SUPPORTED
    low = ratio_rule(T * 0.4, R * 0.4, C * 0.4, active_band=(150, 180), control_max=20)
    assert low.outcome is Outcome.REFUTED and "outside the band" in low.reason
    assert low.evidence.extra["bands"] == {"direct": "outside", "warning": "outside", "safe": "inside"}
    # without the bands the same numbers support the relative claim
    assert ratio_rule(T * 0.4, R * 0.4, C * 0.4).outcome is Outcome.SUPPORTED


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"ratio_margin": (1.1, 1.25)}, "0 < low < 1 < high"),
        ({"ratio_margin": (0.8,)}, "two numbers"),
        ({"min_separation": 1.0}, "min_separation"),
    ],
)
def test_bad_rules_are_explained(kw, message):
    with pytest.raises(ValueError, match=message):
        ratio_rule(magnitudes(1, 5, 1), magnitudes(1, 5, 2), magnitudes(1, 5, 3), **kw)


def test_negative_magnitudes_are_rejected():
    with pytest.raises(ValueError, match=">= 0"):
        ratio_rule([1.0, -1.0], [1.0, 2.0], [0.1, 0.2])


# -- confidence_at_least --------------------------------------------------------------------


def confidences(mean: float, n: int, seed: int, concentration: float = 40.0) -> np.ndarray:
    return np.random.default_rng(seed).beta(mean * concentration, (1 - mean) * concentration, size=n)


def conf_rule(x, acc, **kw):
    return confidence_at_least(x, acc, **{"min_confidence": 0.9, "min_accuracy": 0.9, **kw})


def test_confidence_supported_when_both_lower_bounds_clear_the_thresholds():
    x = confidences(0.98, 100, 1, 200)
    d = conf_rule(x, Counts(196, 200))
    assert d.outcome is Outcome.SUPPORTED, d.reason
    conf, acc = d.evidence.estimate("mean_confidence"), d.evidence.estimate("accuracy")
    assert conf.value == pytest.approx(x.mean())
    assert (conf.low, conf.high) == pytest.approx(bca(np.mean, x), rel=1e-6)
    exact = st.binomtest(196, 200).proportion_ci(0.95, "exact")
    assert (acc.low, acc.high) == pytest.approx((exact.low, exact.high))
    t = next(t for t in d.evidence.tests if t.name.startswith("mean_confidence"))
    assert t.p_value == pytest.approx(st.ttest_1samp(x, 0.9, alternative="greater").pvalue)


def test_confidence_refuted_when_the_probe_is_unsure():
    d = conf_rule(confidences(0.6, 100, 1), Counts(196, 200))
    assert d.outcome is Outcome.REFUTED and "mean_confidence" in d.reason


def test_confidence_refuted_by_accuracy_alone():
    d = conf_rule(confidences(0.98, 100, 1, 200), Counts(150, 200))
    assert st.binomtest(150, 200).proportion_ci(0.95, "exact").high < 0.9
    assert d.outcome is Outcome.REFUTED and "accuracy" in d.reason and "mean_confidence" not in d.reason


def test_confidence_inconclusive_near_the_threshold_with_the_n_to_decide():
    x = confidences(0.93, 15, 3, 30)
    d = conf_rule(x, Counts(29, 30))
    assert d.outcome is Outcome.INCONCLUSIVE, d.reason
    z = st.norm.ppf(0.975) + st.norm.ppf(0.8)
    needs = [math.ceil((z * x.std(ddof=1) / abs(x.mean() - 0.9)) ** 2)]
    if d.evidence.extra["states"]["accuracy"] == "open":
        needs.append(d.evidence.power.n_needed_per_group)
    assert d.n_to_decide == max(needs) and d.n_to_decide > 15


def test_confidences_outside_zero_one_are_rejected():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        conf_rule([0.5, 1.2], Counts(1, 2))


# -- drop_into_bands ----------------------------------------------------------------------


def drop_rule(before, after, **kw):
    kw = {"before_band": (0.9, 1.0), "after_band": (0.0, 0.3), "names": ("without_preamble", "with_preamble"), **kw}
    return drop_into_bands(before, after, **kw)


def test_drop_supported_when_confidence_falls_into_the_low_band():
    before, after = confidences(0.98, 60, 1, 200), confidences(0.1, 60, 2, 30)
    d = drop_rule(before, after)
    assert d.outcome is Outcome.SUPPORTED, d.reason
    mw = next(t for t in d.evidence.tests if t.name == "without_preamble > with_preamble")
    assert mw.p_value == pytest.approx(st.mannwhitneyu(before, after, alternative="greater").pvalue)
    assert mw.statistic == pytest.approx(st.mannwhitneyu(before, after, alternative="greater").statistic)
    e = d.evidence.estimate("with_preamble")
    assert (e.low, e.high) == pytest.approx(bca(np.mean, after), rel=1e-6)
    roundtrip(d)


def test_drop_refuted_when_the_preamble_leaves_the_confidence_high():
    d = drop_rule(confidences(0.98, 60, 1, 200), confidences(0.9, 60, 2, 50))
    assert d.outcome is Outcome.REFUTED and "with_preamble" in d.reason
    assert d.evidence.extra["bands"]["with_preamble"] == "above"


def test_drop_refuted_on_a_rise():
    d = drop_rule(confidences(0.2, 60, 1), confidences(0.5, 60, 2))
    assert d.outcome is Outcome.REFUTED and "significantly above" in d.reason


def test_drop_inconclusive_when_small_and_straddling():
    before, after = confidences(0.95, 6, 1, 30), confidences(0.27, 6, 2, 8)
    d = drop_rule(before, after)
    assert d.outcome is Outcome.INCONCLUSIVE, d.reason
    assert d.n_to_decide is not None and d.n_to_decide > 6


def test_drop_n_needed_matches_the_normal_approximation():
    before, after = confidences(0.6, 20, 1, 10), confidences(0.5, 20, 2, 10)
    d = drop_rule(before, after)
    z = st.norm.ppf(0.95) + st.norm.ppf(0.8)
    var = (before.var(ddof=1) + after.var(ddof=1)) / 2
    expected = math.ceil(2 * z**2 * var / (before.mean() - after.mean()) ** 2 / (3 / math.pi))
    assert d.evidence.power.n_needed_per_group == expected
