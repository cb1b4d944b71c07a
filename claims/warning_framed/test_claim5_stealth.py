"""Claim 5 (paper section 6, Figure 4): a conversational preamble ("stealth slip") drops the probe's
confidence on target outputs from 0.99 to about 0.10."""

import pytest

from claimkit.rules.declared import decide_rule

from .mechanism import with_extra


@pytest.mark.claim("wf-5")
def test_a_conversational_preamble_hides_target_outputs_from_the_probe(claim, manipulation, request):
    claim.require_checks(manipulation)
    study = request.getfixturevalue("stealth_study")
    decision = decide_rule(claim.rule, study.data(), paper_values=claim.paper_values)
    decision = with_extra(decision, study.plots(), **study.evidence())
    claim.decide(decision, model=study.mechanism.reader_name, seeds=study.mechanism.seed_ids, n=study.mechanism.n)
