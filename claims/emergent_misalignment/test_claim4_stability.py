"""Claim em-4 (section 4.2): the narrow solution's loss degrades faster than the general one's under orthogonal noise."""

import pytest

from claimkit.rules.declared import decide_rule

from .evidence import with_study


@pytest.mark.claim("em-4")
def test_the_general_solution_is_more_stable(claim, manipulation, request):
    claim.require_checks(manipulation)
    study = request.getfixturevalue("stability_study")
    decision = decide_rule(claim.rule, study.data(), paper_values=claim.paper_values)
    claim.decide(with_study(decision, "stability", study.summary, claim.spec.analog))
