"""Claim em-7 (section 5): the efficiency, stability and influence pattern holds for a trait that is not misalignment."""

import pytest

from claimkit.rules.declared import decide_rule

from .evidence import with_study
from .measures import combined


@pytest.mark.claim("em-7")
def test_the_pattern_holds_beyond_misalignment(claim, manipulation, request):
    claim.require_checks(manipulation)
    studies = request.getfixturevalue("style_studies")
    decision = decide_rule(claim.rule, combined(studies), paper_values=claim.paper_values)
    for study in studies:
        decision = with_study(decision, study.dataset, study.summary, claim.spec.analog)
    claim.decide(decision)
