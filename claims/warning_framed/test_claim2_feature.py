"""Claim 2 (paper section 5.3, Figure 2): a feature fires at comparable magnitude (150-180) in
warning and direct contexts, vs < 20 in safe contexts."""

import pytest

from claimkit.rules import ratio_equivalent_and_separated

from .mechanism import NotTestable


@pytest.mark.claim("wf-2")
def test_a_feature_fires_alike_in_warning_and_direct_contexts_and_weakly_in_safe_ones(feature_study, claim):
    if isinstance(feature_study, NotTestable):
        claim.decide(feature_study.decision, **feature_study.identity)
    peaks, rule = feature_study.magnitudes, claim.rule
    decision = ratio_equivalent_and_separated(
        peaks["warning"], peaks["direct"], peaks["safe"],
        ratio_margin=rule["ratio_margin"], min_separation=rule["min_separation"], alpha=rule["alpha"],
        resamples=rule["bootstrap_resamples"], names=("warning", "direct", "safe"),
        paper_values=claim.paper_values, **feature_study.paper_bands(rule),
    )
    contexts = feature_study.contexts
    decision = feature_study.with_evidence(decision, rule)
    claim.decide(decision, model=contexts.model, seeds=(contexts.seed,), n=contexts.n)
