"""Claim em-3 (section 4.1): the general solution reaches lower training loss than the narrow one at the same norm."""

import pytest

from claimkit.rules.declared import decide_rule

from .evidence import with_study


@pytest.mark.claim("em-3")
def test_the_general_solution_is_more_efficient(claim, manipulation, request):
    claim.require_checks(manipulation)
    study = request.getfixturevalue("efficiency_study")
    decision = decide_rule(claim.rule, study.data(), paper_values=claim.paper_values)
    claim.decide(with_study(decision, "efficiency", study.summary, claim.spec.analog))
