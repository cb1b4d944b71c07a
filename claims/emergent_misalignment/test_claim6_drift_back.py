"""Claim em-6 (section 4.4): trained on without its KL term, the narrow solution becomes general again."""

import pytest

from claimkit.rules.declared import decide_rule

from .evidence import with_answers
from .measures import GENERAL, NARROW, cosine


@pytest.mark.claim("em-6")
def test_without_the_kl_term_the_narrow_solution_drifts_back(claim, manipulation, answers, solutions):
    claim.require_checks(manipulation)
    decision = decide_rule(claim.rule, answers.data(), paper_values=claim.paper_values)
    cosines = [{"seed": s.seed, "narrow_kl": cosine(s.vectors[NARROW].vector, s.vectors[GENERAL].vector),
                "continued": cosine(s.vectors["continued"].vector, s.vectors[GENERAL].vector)} for s in solutions]
    claim.decide(with_answers(decision, answers, claim.spec.analog, cosine_with_general=cosines), seeds=answers.seeds,
                 n=len(answers.tasks.out_of_domain), models=answers.models)
