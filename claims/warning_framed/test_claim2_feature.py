"""Claim 2 (paper section 5.3, Figure 2): a feature fires at comparable magnitude (150-180) in
warning and direct contexts, vs < 20 in safe contexts."""

import pytest

from claimkit.rules.declared import decide_rule

from .mechanism import with_extra


@pytest.mark.claim("wf-2")
def test_a_feature_fires_alike_in_warning_and_direct_contexts_and_weakly_in_safe_ones(claim, manipulation, request):
    claim.require_checks(manipulation)
    study = request.getfixturevalue("feature_study")
    decision = decide_rule(claim.rule, study.data(), paper_values=claim.paper_values,
                           preconditions=study.preconditions())
    decision = with_extra(decision, [study.plot()], **study.evidence())
    claim.decide(decision, model=study.mechanism.reader_name, seeds=study.mechanism.seed_ids, n=study.mechanism.n)
