"""Claim 3 (paper section 5.3, Figure 3): a linear probe trained on direct generations is fully
confident on warning-framed outputs."""

import pytest

from claimkit.rules.declared import decide_rule

from .mechanism import with_extra


@pytest.mark.claim("wf-3")
def test_a_probe_trained_on_direct_generations_is_confident_on_warning_framed_ones(claim, manipulation, request):
    claim.require_checks(manipulation)
    study = request.getfixturevalue("probe_study")
    decision = decide_rule(claim.rule, study.data(), paper_values=claim.paper_values)
    decision = with_extra(decision, [study.plot()], **study.evidence())
    claim.decide(decision, model=study.mechanism.reader_name, seeds=study.mechanism.seed_ids, n=study.mechanism.n)
