"""The intervention rules on synthetic counts, checked against scipy/statsmodels computed here."""

from __future__ import annotations

import math

import pytest
from scipy.stats import binomtest, fisher_exact
from statsmodels.stats.multitest import multipletests

from claimkit.rules import CapabilityCheck, Counts, ablation_fails_retraining_works, expected_effects
from claimkit.verdict import Outcome

RULE = {
    "alpha": 0.05,
    "ablation_equivalence_margin": 0.15,
    "caft_max_rate": 0.10,
    "capability_max_loss_increase": 0.10,
    "capability_max_parse_drop": 0.10,
}
KEPT = CapabilityCheck(1.00, 1.05, Counts(190, 200), Counts(185, 200))


def decide(U=(176, 200), A=(174, 200), C=(0, 200), B=(20, 200), cap=KEPT, **kw):
    return ablation_fails_retraining_works(
        Counts(*U), Counts(*A), Counts(*C), baseline=Counts(*B), capability=cap, rule=RULE, **kw
    )


# -- ablation fails, retraining works -----------------------------------------------------


def test_supported_when_ablation_leaves_the_rate_and_caft_removes_it():
    d = decide()
    assert fisher_exact([[174, 26], [176, 24]], alternative="less").pvalue >= 0.05  # not lower
    assert binomtest(0, 200).proportion_ci(0.95, "exact").high < 0.10
    assert d.outcome is Outcome.SUPPORTED, d.reason
    assert d.evidence.extra["ablation"] == "fails" and d.evidence.extra["caft"] == "works"
    caft = d.evidence.estimate("CAFT")
    assert caft.high == pytest.approx(binomtest(0, 200).proportion_ci(0.95, "exact").high)


def test_refuted_when_the_ablation_works():
    d = decide(A=(40, 200))
    assert fisher_exact([[40, 160], [176, 24]], alternative="less").pvalue < 0.05
    assert d.outcome is Outcome.REFUTED and "ablation lowers the rate by more than" in d.reason
    assert d.evidence.extra["ablation"] == "works"


def test_refuted_when_caft_does_not_remove_the_rate():
    d = decide(C=(60, 200))
    assert binomtest(60, 200).proportion_ci(0.95, "exact").low >= 0.10
    assert d.outcome is Outcome.REFUTED and d.evidence.extra["caft"] == "fails"


@pytest.mark.parametrize(
    "cap, what",
    [
        (CapabilityCheck(1.0, 1.2, Counts(190, 200), Counts(190, 200)), "loss +20%"),
        (CapabilityCheck(1.0, 1.0, Counts(190, 200), Counts(150, 200)), "parse rate drop 20 pp"),
    ],
)
def test_refuted_when_capability_breaks(cap, what):
    d = decide(cap=cap)
    assert d.outcome is Outcome.REFUTED, what
    assert d.evidence.extra["capability_kept"] is False and "capability" in d.reason


def test_capability_at_exactly_the_limit_is_kept():
    cap = CapabilityCheck(2.0, 2.2, Counts(100, 100), Counts(90, 100))  # +10% loss, -10 pp parse: at the limits
    assert decide(cap=cap).evidence.extra["capability_kept"] is True


def test_inconclusive_when_the_model_learnt_nothing():
    d = decide(U=(20, 200), A=(19, 200), C=(0, 200), B=(20, 200))
    assert d.outcome is Outcome.INCONCLUSIVE and "did not learn" in d.reason
    learnt = next(t for t in d.evidence.tests if t.name.endswith("(learnt)"))
    assert learnt.p_value == pytest.approx(fisher_exact([[20, 180], [20, 180]], alternative="greater").pvalue)


def test_inconclusive_when_caft_interval_contains_the_limit():
    ci = binomtest(12, 200).proportion_ci(0.95, "exact")
    assert ci.low < 0.10 < ci.high
    d = decide(C=(12, 200))
    assert d.outcome is Outcome.INCONCLUSIVE and d.evidence.extra["caft"] == "unclear"
    assert d.n_to_decide is not None and d.n_to_decide > 200


def test_caft_must_lower_the_rate_not_merely_be_low():
    # the L1 model learnt little (9%); CAFT's 5% is under the 10% limit but not shown below 9%
    d = decide(U=(18, 200), A=(17, 200), C=(10, 200), B=(6, 200))
    assert binomtest(10, 200).proportion_ci(0.95, "exact").high < 0.10
    assert fisher_exact([[10, 190], [18, 182]], alternative="less").pvalue >= 0.05
    assert d.outcome is Outcome.INCONCLUSIVE and d.evidence.extra["caft"] == "unclear"
    assert "the rate was low before" in d.reason and d.n_to_decide is not None and d.n_to_decide > 200


def test_inconclusive_when_a_drop_is_neither_inside_nor_beyond_the_margin():
    d = decide(A=(150, 200))  # 88% -> 75%: significantly lower, 13 pp, margin 15 pp
    assert fisher_exact([[150, 50], [176, 24]], alternative="less").pvalue < 0.05
    assert d.outcome is Outcome.INCONCLUSIVE and d.evidence.extra["ablation"] == "unclear"


def test_ablation_within_the_margin_fails_even_when_significantly_lower():
    # n large enough that a 5 pp drop is significant and shown to be within 15 pp
    d = ablation_fails_retraining_works(
        Counts(4400, 5000), Counts(4150, 5000), Counts(0, 200), baseline=Counts(500, 5000), capability=KEPT, rule=RULE
    )
    assert fisher_exact([[4150, 850], [4400, 600]], alternative="less").pvalue < 0.05
    assert d.evidence.extra["ablation"] == "fails" and d.outcome is Outcome.SUPPORTED, d.reason


def test_reported_groups_are_holm_corrected_and_do_not_decide():
    d = decide(reported={"amplify 2x": Counts(180, 200), "amplify 5x": Counts(120, 200)})
    raw = [fisher_exact([[s, 200 - s], [176, 24]]).pvalue for s in (180, 120)]
    adjusted = multipletests(raw, method="holm")[1]
    tests = {t.name: t for t in d.evidence.tests}
    assert tests["amplify 2x vs unablated (reported)"].p_adjusted == pytest.approx(adjusted[0])
    assert tests["amplify 5x vs unablated (reported)"].p_adjusted == pytest.approx(adjusted[1])
    assert d.outcome is Outcome.SUPPORTED  # a significant 5x change is reported, not decided on
    assert d.evidence.estimate("amplify 5x").value == pytest.approx(0.6)


def test_rule_errors_name_the_missing_key():
    with pytest.raises(ValueError, match="caft_max_rate"):
        ablation_fails_retraining_works(
            Counts(1, 2), Counts(1, 2), Counts(1, 2), baseline=Counts(1, 2), capability=KEPT,
            rule={"alpha": 0.05, "ablation_equivalence_margin": 0.15},
        )
    with pytest.raises(ValueError, match="repeat"):
        decide(reported={"CAFT": Counts(1, 2)})
    with pytest.raises(ValueError, match="reference_loss"):
        CapabilityCheck(0.0, 1.0, Counts(1, 2), Counts(1, 2))


def test_capability_check_arithmetic():
    cap = CapabilityCheck(2.0, 2.5, Counts(90, 100), Counts(80, 100))
    assert cap.loss_increase == pytest.approx(0.25)
    assert cap.parse_drop == pytest.approx(0.10)


# -- expected effects of prompt variants --------------------------------------------------

EXPECTED = {"safety": "none", "role": "none", "cot": "none", "permission": "increase", "meta": "decrease"}
PROMPT_RULE = {"alpha": 0.05, "equivalence_margin": 0.15}


def effects(**counts):
    base = {"safety": (98, 200), "role": (102, 200), "cot": (100, 200), "permission": (140, 200), "meta": (10, 200)}
    base.update(counts)
    return expected_effects(
        Counts(100, 200), {k: Counts(*v) for k, v in base.items()}, expected=EXPECTED, rule=PROMPT_RULE,
        reference_name="no prompt",
    )


def test_supported_when_every_variant_has_its_expected_effect():
    d = effects()
    assert d.outcome is Outcome.SUPPORTED, d.reason
    raw = [fisher_exact([[s, 200 - s], [100, 100]]).pvalue for s in (98, 102, 100, 140, 10)]
    adjusted = multipletests(raw, method="holm")[1]
    got = [t.p_adjusted for t in d.evidence.tests if " vs no prompt" in t.name]
    assert got == pytest.approx(list(adjusted))


def test_refuted_when_a_no_effect_variant_changes_the_rate():
    d = effects(safety=(40, 200))
    assert d.outcome is Outcome.REFUTED and d.evidence.extra["status"]["safety"] == "contradicts"


def test_refuted_when_a_variant_moves_the_wrong_way():
    d = effects(permission=(60, 200))
    assert d.outcome is Outcome.REFUTED and d.evidence.extra["status"]["permission"] == "contradicts"


def test_inconclusive_when_an_expected_increase_is_not_shown():
    d = effects(permission=(110, 200))
    assert d.outcome is Outcome.INCONCLUSIVE and d.evidence.extra["status"]["permission"] == "open"
    assert d.n_to_decide is not None and d.n_to_decide > 200


def test_no_effect_needs_equivalence_not_just_no_significance():
    d = expected_effects(
        Counts(10, 20), {"safety": Counts(9, 20)}, expected={"safety": "none"}, rule=PROMPT_RULE, reference_name="none"
    )
    assert d.outcome is Outcome.INCONCLUSIVE  # 20 per group cannot show |diff| < 15 pp
    assert d.evidence.extra["status"]["safety"] == "open"


def test_expected_effects_checks_its_inputs():
    with pytest.raises(ValueError, match="missing for \\['x'\\]"):
        expected_effects(Counts(1, 2), {"x": Counts(1, 2)}, expected={}, rule=PROMPT_RULE)
    with pytest.raises(ValueError, match="unknown"):
        expected_effects(Counts(1, 2), {"x": Counts(1, 2)}, expected={"x": "up"}, rule=PROMPT_RULE)


def test_power_statement_is_finite_for_a_middle_rate():
    d = effects()
    assert d.evidence.power is not None and math.isfinite(d.evidence.power.detectable_difference)
