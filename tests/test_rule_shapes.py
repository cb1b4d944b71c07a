"""The rule shapes of spec version 2 on data whose answer is known by design, and against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from claimkit.rules import groups, level, ordering, share
from claimkit.rules.declared import ClaimData, RuleError, check_parts, decide_rule
from claimkit.rules.parts import Part, Precondition, decide_parts
from claimkit.verdict import Outcome


def part(name: str, support: float, refute: float) -> Part:
    return Part(name, support, refute, f"{name} holds", f"{name} fails", f"{name} measured")


# -- parts: the same standard both ways -----------------------------------------------------------


def test_one_part_is_supported_or_refuted_at_alpha_and_names_the_deciding_test():
    assert decide_parts([part("a", 0.01, 0.9)], alpha=0.05).outcome is Outcome.SUPPORTED
    refuted = decide_parts([part("a", 0.9, 0.04)], alpha=0.05)
    assert refuted.outcome is Outcome.REFUTED and refuted.decided_by == "a: a fails"
    assert decide_parts([part("a", 0.2, 0.3)], alpha=0.05).outcome is Outcome.INCONCLUSIVE


def test_a_conjunction_needs_every_part_to_support_and_one_at_alpha_over_k_to_refute():
    assert decide_parts([part("a", 0.01, 1), part("b", 0.04, 1)], alpha=0.05).outcome is Outcome.SUPPORTED
    assert decide_parts([part("a", 0.01, 1), part("b", 0.06, 1)], alpha=0.05).outcome is Outcome.INCONCLUSIVE
    # 0.04 refutes a one-part claim but not a two-part one (alpha / 2 = 0.025)
    assert decide_parts([part("a", 1, 0.04), part("b", 0.01, 1)], alpha=0.05).outcome is Outcome.INCONCLUSIVE
    assert decide_parts([part("a", 1, 0.02), part("b", 0.01, 1)], alpha=0.05).outcome is Outcome.REFUTED


def test_an_unmet_precondition_leaves_the_claim_undecided_with_its_reason():
    decision = decide_parts([part("a", 0.001, 1)], alpha=0.05,
                            preconditions=[Precondition("SAE quality", False, "the SAE is too poor")])
    assert decision.outcome is Outcome.INCONCLUSIVE and "the SAE is too poor" in decision.reason


def test_parts_reject_bad_p_values_and_repeated_names():
    with pytest.raises(ValueError, match="p-value"):
        part("a", 1.5, 0.1)
    with pytest.raises(ValueError, match="distinct names"):
        decide_parts([part("a", 0.1, 0.1), part("a", 0.2, 0.2)], alpha=0.05)


# -- share -------------------------------------------------------------------------------------------


def arms_with_share(theta: float, *, seeds: int = 5, prompts: int = 2000, seed: int = 0) -> dict[str, np.ndarray]:
    rates = share.rates_for_share(share.Share("T", "R", "C"), theta, comparator_rate=0.05, reference_effect=0.45)
    return share.simulate_arms(np.random.default_rng(seed), rates, seeds=seeds, prompts=prompts, seed_sd=0.0,
                               prompt_sd=0.5)


def test_simulated_rates_have_exactly_the_asked_marginal_means():
    mu = share.logit_location(0.3, 1.5)
    nodes, weights = np.polynomial.hermite_e.hermegauss(101)
    assert float(np.sum(weights / weights.sum() * (1 / (1 + np.exp(-(mu + 1.5 * nodes)))))) == pytest.approx(0.3)


@pytest.mark.parametrize("theta, outcome", [(1.0, Outcome.SUPPORTED), (0.3, Outcome.REFUTED), (1.8, Outcome.REFUTED)])
def test_a_share_inside_the_region_is_supported_and_outside_refuted(theta, outcome):
    found = share.share_part("s", arms_with_share(theta), share.Share("T", "R", "C"), share.Region("between", 0.75, 1.33),
                             alpha=0.05)
    assert decide_parts([found], alpha=0.05).outcome is outcome
    assert found.extra["estimate"] == pytest.approx(theta, abs=0.1)
    assert len(found.extra["per_seed"]) == 5


def test_a_share_whose_reference_learnt_nothing_cannot_be_judged():
    rng = np.random.default_rng(3)
    flat = {a: (rng.random((3, 200)) < 0.05).astype(float) for a in ("T", "R", "C")}
    found = share.share_part("s", flat, share.Share("T", "R", "C"), share.Region("at_least", low=0.75), alpha=0.05)
    assert (found.support_p, found.refute_p) == (1.0, 1.0) and "not shown positive" in found.summary


def test_regions_read_from_a_spec_and_refuse_nonsense():
    assert share.Region.from_rule([0.75, 1.33]).kind == "between"
    assert share.Region.from_rule({"at_most": 0.25}).high == 0.25
    with pytest.raises(ValueError):
        share.Region.from_rule({"below": 1})
    with pytest.raises(ValueError):
        share.Region("between", 1.0, 0.5)


# -- level: every training run reaches the level -------------------------------------------------------


def test_level_is_the_exact_binomial_per_seed_with_bonferroni_to_refute():
    table = np.zeros((3, 100))
    table[:, :95] = 1  # 95/100 in every seed
    found = level.level_part("leak", table, threshold=0.9, alpha=0.05)
    exact = st.binomtest(95, 100, 0.9, alternative="greater").pvalue
    assert found.support_p == pytest.approx(exact)
    table[0, 80:] = 0  # one seed at 80/100
    low = level.level_part("leak", table, threshold=0.9, alpha=0.05)
    assert low.refute_p == pytest.approx(min(1.0, 3 * st.binomtest(80, 100, 0.9, alternative="less").pvalue))


# -- groups: per-seed readings combined across seeds -----------------------------------------------------


def test_combine_seeds_is_statsmodels_random_effects_with_the_hksj_interval():
    from statsmodels.stats.meta_analysis import combine_effects

    est, var = [0.1, 0.3, 0.25], [0.01, 0.02, 0.015]
    combined = groups.combine_seeds(est, var)
    reference = combine_effects(np.array(est), np.array(var), method_re="pm", use_t=True)
    assert combined.estimate == pytest.approx(reference.mean_effect_re)
    assert combined.se ** 2 == pytest.approx(max(reference.var_hksj_re, reference.var_eff_w_re))
    assert combined.df == 2


def test_auroc_is_the_mann_whitney_u_over_the_pairs():
    a, b = np.array([0.9, 0.8, 0.7, 0.2]), np.array([0.1, 0.3, 0.75])
    value, variance = groups.auroc(a, b)
    pairs = [(x > y) + 0.5 * (x == y) for x in a for y in b]
    assert value == pytest.approx(np.mean(pairs)) and variance > 0


def test_a_ratio_of_group_means_per_seed_decides_alike_and_unalike():
    rng = np.random.default_rng(5)
    alike = [{"w": rng.normal(1.0, 0.2, 40), "d": rng.normal(1.0, 0.2, 40)} for _ in range(5)]
    unalike = [{"w": rng.normal(0.4, 0.2, 40), "d": rng.normal(1.0, 0.2, 40)} for _ in range(5)]
    region = share.Region("between", 0.8, 1.25)
    assert decide_parts([groups.ratio_part("r", alike, {"w": 1}, {"d": 1}, region, alpha=0.05, what="w/d")],
                        alpha=0.05).outcome is Outcome.SUPPORTED
    assert decide_parts([groups.ratio_part("r", unalike, {"w": 1}, {"d": 1}, region, alpha=0.05, what="w/d")],
                        alpha=0.05).outcome is Outcome.REFUTED


def test_seeds_without_enough_outputs_are_left_out_and_too_few_seeds_cannot_decide():
    one = [{"w": np.ones(3)}, {"w": np.ones(1)}, {}]
    found = groups.mean_part("m", one, "w", threshold=0.5, alpha=0.05, what="mean")
    assert (found.support_p, found.refute_p) == (1.0, 1.0) and "not measurable" in found.summary


# -- ordering ---------------------------------------------------------------------------------------------


def test_an_order_is_supported_when_its_strict_steps_are_shown_and_refuted_by_a_reversal():
    rng = np.random.default_rng(7)

    def arm(p: float) -> np.ndarray:
        return (rng.random((3, 400)) < p).astype(float)

    steps = ordering.order_steps("A >= B > C")
    assert steps == (["A", "B", "C"], [False, True])
    good = ordering.ordering_part("o", {"A": arm(0.6), "B": arm(0.55), "C": arm(0.1)}, steps[0], strict=steps[1], alpha=0.05)
    bad = ordering.ordering_part("o", {"A": arm(0.1), "B": arm(0.6), "C": arm(0.05)}, steps[0], strict=steps[1], alpha=0.05)
    assert decide_parts([good], alpha=0.05).outcome is Outcome.SUPPORTED
    assert decide_parts([bad], alpha=0.05).outcome is Outcome.REFUTED
    with pytest.raises(ValueError):
        ordering.order_steps("A B C")


# -- declared rules --------------------------------------------------------------------------------------


def test_a_declared_rule_names_what_is_wrong_with_it():
    with pytest.raises(RuleError, match="non-empty array"):
        check_parts({"alpha": 0.05}, "spec: claim 'x'")
    with pytest.raises(RuleError, match="missing field"):
        check_parts({"parts": [{"name": "p", "shape": "share", "data": "t"}]}, "spec: claim 'x'")
    with pytest.raises(RuleError, match="shape"):
        check_parts({"parts": [{"name": "p", "shape": "magic"}]}, "spec: claim 'x'")


def test_a_declared_rule_decides_on_the_data_it_names_and_refuses_missing_arms():
    rule = {"alpha": 0.05, "parts": [{"name": "share", "shape": "share", "data": "target", "treatment": "T",
                                      "reference": "R", "comparator": "C", "region": [0.75, 1.33]}]}
    assert decide_rule(rule, ClaimData(tables={"target": arms_with_share(1.0)})).outcome is Outcome.SUPPORTED
    with pytest.raises(RuleError, match="did not measure"):
        decide_rule(rule, ClaimData(tables={}))
    with pytest.raises(RuleError, match="names arms"):
        decide_rule(rule, ClaimData(tables={"target": {"T": np.zeros((2, 5))}}))
    assert math.isfinite(decide_rule(rule, ClaimData(tables={"target": arms_with_share(1.0)})).evidence.extra["alpha"])
