"""Claim em-2 (section 3): a narrow solution exists and a KL term finds it; mixing in aligned data does not."""

import pytest

from claimkit.rules.declared import decide_rule

from .evidence import with_answers


@pytest.mark.claim("em-2")
def test_a_kl_term_finds_a_narrow_solution_and_mixing_does_not(claim, manipulation, answers):
    claim.require_checks(manipulation)
    decision = decide_rule(claim.rule, answers.data(), paper_values=claim.paper_values)
    claim.decide(with_answers(decision, answers, claim.spec.analog), seeds=answers.seeds,
                 n=len(answers.tasks.out_of_domain), models=answers.models)
