"""Claim 3 (paper section 5.3, Figure 3): a linear probe trained on direct generations is fully
confident on warning-framed outputs."""

import pytest

from claimkit.rules import confidence_at_least

from .mechanism import NotTestable, with_extra


@pytest.mark.claim("wf-3")
def test_a_probe_trained_on_direct_generations_is_confident_on_warning_framed_ones(probe_study, claim):
    if isinstance(probe_study, NotTestable):
        claim.decide(probe_study.decision, **probe_study.identity)
    rule = claim.rule
    decision = confidence_at_least(
        probe_study.warning, probe_study.accuracy,
        min_confidence=rule["min_confidence"], min_accuracy=rule["min_accuracy"], alpha=rule["alpha"],
        resamples=rule["bootstrap_resamples"], names=("mean_confidence", "accuracy"),
        paper_values=claim.paper_values,
    )
    contexts = probe_study.contexts
    decision = with_extra(decision, [probe_study.plot()], mechanism=contexts.as_evidence(),
                          probe=probe_study.as_evidence())
    claim.decide(decision, model=contexts.model, seeds=(contexts.seed,), n=contexts.n)
