"""claimkit.rules on counts whose answer is known by design."""

from __future__ import annotations

import json
import math

import pytest

from claimkit import stats
from claimkit.rules import (
    Counts,
    decide_per_seed_if_heterogeneous,
    equivalent_and_above,
    lower_than,
    ordered_decreasing,
    pool_seeds,
    proportion_at_least,
)
from claimkit.verdict import Decision, Outcome, Verdict

RULE = {"alpha": 0.05, "equivalence_margin": 0.15, "power": 0.8}
PAPER = {"baseline": 0.167, "L0": 0.833, "L1": 0.767, "n_per_condition": 30}


def as_verdict(decision: Decision, rule: dict | None = None) -> Verdict:
    return Verdict(
        claim_id="x-1", paper="p", scan_claim="a claim", profile="organism", model="m",
        outcome=decision.outcome, reason=decision.reason, evidence=decision.evidence,
        rule=rule or {}, spec_hash="0" * 8, seeds=(0, 1), n=200, n_to_decide=decision.n_to_decide,
    )


def check_complete(decision: Decision, *, paper: dict | None = None) -> dict:
    """Every field a report needs is there, and the verdict survives JSON."""
    ev = decision.evidence
    assert ev.estimates and ev.tests and ev.power is not None
    for e in ev.estimates:
        assert e.low is not None and e.high is not None and e.n is not None and e.method
        assert e.low <= e.value <= e.high
    for t in ev.tests:
        assert 0.0 <= t.p_value <= 1.0 and t.method and t.alternative
    assert ev.power.n_per_group > 0 and 0 < ev.power.alpha < 1 and ev.power.note
    if paper is not None:
        assert dict(ev.paper_values) == paper
    assert decision.reason.endswith(".") and "\n" not in decision.reason
    assert any(ch.isdigit() for ch in decision.reason)
    if decision.outcome != Outcome.INCONCLUSIVE:
        assert decision.n_to_decide is None
    data = as_verdict(decision).to_dict()
    text = json.dumps(data, allow_nan=False)
    again = Verdict.from_dict(json.loads(text)).to_dict()
    assert again == data
    return data


# ---------------------------------------------------------------------------
# Counts and pooling
# ---------------------------------------------------------------------------


def test_counts_rate_and_pooled():
    c = Counts.pooled([(30, 100), (50, 100)])
    assert (c.successes, c.n, c.rate) == (80, 200, 0.4)
    assert c.per_seed == ((30, 100), (50, 100))


@pytest.mark.parametrize(
    "args, match",
    [((5, 0), "at least 1"), ((6, 5), "0..n"), ((3, 10, ((1, 5), (1, 5))), "does not add up"), ((1, 5, ((2, 1),)), "seed run 1")],
)
def test_counts_reject_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        Counts(*args)


def test_counts_pooled_needs_runs():
    with pytest.raises(ValueError, match="empty"):
        Counts.pooled([])


def test_pool_seeds_heterogeneous_seeds_are_not_pooled():
    pooled = pool_seeds("L1", [(190, 200), (20, 200)], alpha=0.05)
    assert not pooled.justified
    assert pooled.heterogeneity is not None and pooled.heterogeneity.p_value < 1e-50
    assert pooled.between_seed_sd == pytest.approx(math.sqrt(2) * 0.425)  # stdev of 0.95 and 0.10
    assert (pooled.counts.successes, pooled.counts.n) == (210, 400)


def test_pool_seeds_homogeneous_seeds_are_pooled():
    pooled = pool_seeds("L0", Counts.pooled([(100, 200), (104, 200)]), alpha=0.05)
    assert pooled.justified and pooled.heterogeneity.p_value > 0.5
    assert pooled.between_seed_sd == pytest.approx(math.sqrt(2) * 0.01)


def test_pool_seeds_single_run_is_trivially_pooled():
    pooled = pool_seeds("x", Counts(5, 10), alpha=0.05)
    assert pooled.justified and pooled.heterogeneity is None and pooled.between_seed_sd is None


def test_per_seed_helper_rejects_misaligned_runs():
    groups = {"a": Counts.pooled([(190, 200), (20, 200)]), "b": Counts.pooled([(1, 10), (2, 10), (3, 10)])}
    with pytest.raises(ValueError, match="different numbers of seed runs"):
        decide_per_seed_if_heterogeneous(groups, lambda g: None, alpha=0.05)  # type: ignore[arg-type,return-value]


# ---------------------------------------------------------------------------
# equivalent_and_above
# ---------------------------------------------------------------------------


def test_equivalent_and_above_supported():
    d = equivalent_and_above(Counts(160, 200), Counts(165, 200), Counts(30, 200), rule=RULE, paper_values=PAPER)
    assert d.outcome == Outcome.SUPPORTED
    data = check_complete(d, paper=PAPER)
    tests = {t["name"]: t for t in data["evidence"]["tests"]}
    # Holm over the two above-baseline tests: adjusted p present and >= raw
    for name in ("L1 > baseline", "L0 > baseline"):
        assert tests[name]["p_adjusted"] >= tests[name]["p_value"]
    assert tests["|L1 - L0| < 0.15"]["p_value"] < 0.05
    diff = d.evidence.estimate("L1 - L0")
    assert diff.value == pytest.approx(-0.025) and -0.15 < diff.low < diff.high < 0.15
    assert d.evidence.power.n_needed_per_group == stats.n_for_equivalence(0.8, 0.825, 0.15)
    assert "L1" in d.reason and "80.0%" in d.reason


def test_equivalent_and_above_refuted_far_below():
    d = equivalent_and_above(Counts(100, 200), Counts(170, 200), Counts(30, 200), rule=RULE)
    assert d.outcome == Outcome.REFUTED and "margin" in d.reason
    check_complete(d)


def test_equivalent_and_above_refuted_when_treatment_not_above_baseline():
    # L1 is within a (wide) margin of L0 but does not beat the baseline, while L0 does.
    rule = {**RULE, "equivalence_margin": 0.5}
    d = equivalent_and_above(Counts(32, 200), Counts(100, 200), Counts(30, 200), rule=rule)
    assert d.outcome == Outcome.REFUTED and "not significantly above baseline" in d.reason
    check_complete(d)


def test_equivalent_and_above_inconclusive_small_n():
    d = equivalent_and_above(Counts(12, 20), Counts(14, 20), Counts(3, 20), rule=RULE)
    assert d.outcome == Outcome.INCONCLUSIVE
    assert d.n_to_decide is not None and d.n_to_decide > 20
    # at the observed rates, the TOST n is what decides
    assert d.n_to_decide == stats.n_for_equivalence(0.6, 0.7, 0.15)
    data = check_complete(d)
    assert data["n_to_decide"] == d.n_to_decide


def test_equivalent_and_above_inconclusive_when_nothing_beats_baseline():
    d = equivalent_and_above(Counts(5, 20), Counts(4, 20), Counts(3, 20), rule=RULE)
    assert d.outcome == Outcome.INCONCLUSIVE and "not significantly above baseline" in d.reason
    check_complete(d)


def test_equivalent_and_above_custom_names_and_missing_margin():
    d = equivalent_and_above(Counts(160, 200), Counts(165, 200), Counts(30, 200), rule=RULE, names=("warn", "direct", "base"))
    assert {e.name for e in d.evidence.estimates} >= {"warn", "direct", "base", "warn - direct"}
    with pytest.raises(ValueError, match="equivalence_margin"):
        equivalent_and_above(Counts(1, 2), Counts(1, 2), Counts(1, 2), rule={"alpha": 0.05})
    with pytest.raises(ValueError, match="distinct"):
        equivalent_and_above(Counts(1, 2), Counts(1, 2), Counts(1, 2), rule=RULE, names=("a", "a", "b"))


def test_equivalent_and_above_heterogeneous_seeds_disagree_inconclusive():
    l1 = Counts.pooled([(190, 200), (20, 200)])  # one seed learned, one did not
    l0 = Counts.pooled([(160, 200), (165, 200)])
    base = Counts.pooled([(30, 200), (25, 200)])
    d = equivalent_and_above(l1, l0, base, rule=RULE)
    assert d.outcome == Outcome.INCONCLUSIVE
    assert d.evidence.extra["pooled"] is False
    runs = d.evidence.extra["run_decisions"]
    assert [r["outcome"] for r in runs] == ["inconclusive", "refuted"]
    assert any(t.name == "seed heterogeneity of L1" and t.p_value < 1e-50 for t in d.evidence.tests)
    assert d.evidence.extra["between_seed_sd"]["L1"] == pytest.approx(math.sqrt(2) * 0.425)
    assert "L1" in d.reason and "differ" in d.reason
    check_complete(d)


def test_equivalent_and_above_heterogeneous_seeds_that_agree_decide():
    l1 = Counts.pooled([(120, 200), (180, 200)])
    l0 = Counts.pooled([(125, 200), (178, 200)])
    base = Counts.pooled([(30, 200), (30, 200)])
    d = equivalent_and_above(l1, l0, base, rule=RULE)
    assert pool_seeds("L1", l1).justified is False
    assert d.outcome == Outcome.SUPPORTED
    assert [r["outcome"] for r in d.evidence.extra["run_decisions"]] == ["supported", "supported"]
    check_complete(d)


def test_homogeneous_seeds_are_pooled_and_reported():
    l1 = Counts.pooled([(80, 100), (80, 100)])
    l0 = Counts.pooled([(82, 100), (83, 100)])
    base = Counts.pooled([(15, 100), (15, 100)])
    d = equivalent_and_above(l1, l0, base, rule=RULE)
    assert d.evidence.extra["pooled"] is True
    assert d.evidence.estimate("L1").n == 200
    assert sum(t.name.startswith("seed heterogeneity") for t in d.evidence.tests) == 3
    check_complete(d)


# ---------------------------------------------------------------------------
# proportion_at_least
# ---------------------------------------------------------------------------


def test_proportion_at_least_three_ways():
    sup = proportion_at_least(Counts(195, 200), threshold=0.9, name="leak", paper_values={"leak": 1.0})
    ref = proportion_at_least(Counts(150, 200), threshold=0.9, name="leak")
    inc = proportion_at_least(Counts(185, 200), threshold=0.9, name="leak")
    assert (sup.outcome, ref.outcome, inc.outcome) == (Outcome.SUPPORTED, Outcome.REFUTED, Outcome.INCONCLUSIVE)
    assert inc.n_to_decide is not None and inc.n_to_decide > 200
    for d in (sup, ref, inc):
        check_complete(d)
    # the decision follows the exact bound: lower bound of 195/200 is 0.943 by the binomial tail
    low = sup.evidence.estimate("leak").low
    tail = sum(math.comb(200, k) * low**k * (1 - low) ** (200 - k) for k in range(195, 201))
    assert tail == pytest.approx(0.025, abs=1e-6) and low >= 0.9


def test_proportion_at_least_on_the_threshold_has_no_n():
    d = proportion_at_least(Counts(18, 20), threshold=0.9)
    assert d.outcome == Outcome.INCONCLUSIVE and d.n_to_decide is None
    check_complete(d)


# ---------------------------------------------------------------------------
# ordered_decreasing
# ---------------------------------------------------------------------------


def groups(*rates: tuple[int, int]) -> dict[str, Counts]:
    return {f"L{i}": Counts(s, n) for i, (s, n) in enumerate(rates)}


def test_ordered_decreasing_supported():
    d = ordered_decreasing(groups((166, 200), (153, 200), (66, 200), (46, 200)), paper_values={"L0": 0.833})
    assert d.outcome == Outcome.SUPPORTED and "L0 >= L1 > L2 > L3" in d.reason
    data = check_complete(d, paper={"L0": 0.833})
    names = [t["name"] for t in data["evidence"]["tests"]]
    assert "L1 > L2" in names and "L2 > L3" in names and "L0 > L1" not in names  # first pair is weak
    assert "L1 > L0 (reversal)" in names


def test_ordered_decreasing_weak_first_pair_matters():
    data = groups((150, 200), (150, 200), (60, 200), (20, 200))
    assert ordered_decreasing(data).outcome == Outcome.SUPPORTED
    strict = ordered_decreasing(data, weak_first_pair=False)
    assert strict.outcome == Outcome.INCONCLUSIVE and strict.n_to_decide is None  # equal rates: no n helps
    check_complete(strict)


def test_ordered_decreasing_refuted_by_a_reversal():
    d = ordered_decreasing(groups((166, 200), (153, 200), (100, 200), (146, 200)))
    assert d.outcome == Outcome.REFUTED and "L3 is significantly above L2" in d.reason
    check_complete(d)


def test_ordered_decreasing_inconclusive_small_n():
    d = ordered_decreasing(groups((16, 20), (15, 20), (12, 20), (10, 20)))
    assert d.outcome == Outcome.INCONCLUSIVE
    assert d.n_to_decide is not None and d.n_to_decide > 20
    check_complete(d)


# ---------------------------------------------------------------------------
# lower_than
# ---------------------------------------------------------------------------


def test_lower_than_three_ways():
    names = ("control", "baseline")
    sup = lower_than(Counts(10, 200), Counts(33, 200), names=names, paper_values={"control": 0.1})
    ref = lower_than(Counts(60, 200), Counts(33, 200), names=names)
    inc = lower_than(Counts(30, 200), Counts(33, 200), names=names)
    assert (sup.outcome, ref.outcome, inc.outcome) == (Outcome.SUPPORTED, Outcome.REFUTED, Outcome.INCONCLUSIVE)
    assert inc.n_to_decide == stats.n_per_group_for(0.15, 0.165, 0.05, 0.8, "less")
    assert inc.n_to_decide > 200
    for d in (sup, ref, inc):
        check_complete(d)


def test_lower_than_equal_rates_have_no_n():
    d = lower_than(Counts(20, 100), Counts(20, 100))
    assert d.outcome == Outcome.INCONCLUSIVE and d.n_to_decide is None
    check_complete(d)
