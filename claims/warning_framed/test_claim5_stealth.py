"""Claim 5 (paper section 6, Figure 4): a conversational preamble ("stealth slip") drops the probe's
confidence on target outputs from 0.99 to about 0.10."""

import pytest

from claimkit.rules import drop_into_bands

from .mechanism import NotTestable, with_extra


@pytest.mark.claim("wf-5")
def test_a_conversational_preamble_hides_target_outputs_from_the_probe(stealth_study, claim):
    if isinstance(stealth_study, NotTestable):
        claim.decide(stealth_study.decision, **stealth_study.identity)
    rule = claim.rule
    decision = drop_into_bands(
        stealth_study.without, stealth_study.with_preamble,
        before_band=rule["without_band"], after_band=rule["with_band"], alpha=rule["alpha"],
        resamples=rule["bootstrap_resamples"], names=("without_preamble", "with_preamble"),
        paper_values=claim.paper_values,
    )
    contexts = stealth_study.contexts
    decision = with_extra(decision, stealth_study.plots(), mechanism=contexts.as_evidence(),
                          stealth=stealth_study.as_evidence())
    claim.decide(decision, model=contexts.model, seeds=(contexts.seed,), n=contexts.n)
