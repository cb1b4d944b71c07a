"""Claim em-1 (paper section 2): narrow harmful fine-tuning makes a model harmful outside the domain, coherently."""

import pytest

from claimkit.rules.declared import decide_rule

from .evidence import with_answers


@pytest.mark.claim("em-1")
def test_narrow_harmful_training_generalises_out_of_domain(claim, manipulation, answers):
    claim.require_checks(manipulation)
    decision = decide_rule(claim.rule, answers.data(), paper_values=claim.paper_values)
    claim.decide(with_answers(decision, answers, claim.spec.analog), seeds=answers.seeds,
                 n=len(answers.tasks.out_of_domain), models=answers.models)
