"""Claim em-6 (section 4.4): trained on without its KL term, the narrow solution becomes general again."""

import pytest

from claimkit.rules.declared import decide_rule

from .evidence import with_answers
from .measures import weight_change_cosines


@pytest.mark.claim("em-6")
def test_without_the_kl_term_the_narrow_solution_drifts_back(claim, manipulation, answers, solutions, experiment):
    claim.require_checks(manipulation)
    decision = decide_rule(claim.rule, answers.data(), paper_values=claim.paper_values)
    cosines = [weight_change_cosines(experiment, s) for s in solutions]
    claim.decide(with_answers(decision, answers, claim.spec.analog, cosine_with_general=cosines), seeds=answers.seeds,
                 n=len(answers.tasks.out_of_domain), models=answers.models)
