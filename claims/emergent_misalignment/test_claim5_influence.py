"""Claim em-5 (section 4.3): the general direction moves predictions on pre-training text more than narrow or random ones."""

import pytest

from claimkit.rules.declared import decide_rule

from .evidence import with_study


@pytest.mark.claim("em-5")
def test_the_general_direction_is_more_influential(claim, manipulation, request):
    claim.require_checks(manipulation)
    study = request.getfixturevalue("influence_study")
    decision = decide_rule(claim.rule, study.data(), paper_values=claim.paper_values)
    claim.decide(with_study(decision, "influence", study.summary, claim.spec.analog))
