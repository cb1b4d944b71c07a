"""Table 1's other rows (paper section 4), each with its own verdict."""

import pytest

from claimkit.rules.declared import decide_rule

from .evidence import with_table


@pytest.mark.claim("wf-1.format-leak")
def test_warning_formatting_leaks_into_nearly_every_l1_output(claim, manipulation, table1, paper_table):
    claim.require_checks(manipulation)
    decision = decide_rule(claim.rule, table1.data(), paper_values=claim.paper_values)
    claim.decide(with_table(decision, table1, paper_table), model=table1.model, seeds=table1.seeds, n=table1.n)


@pytest.mark.claim("wf-1.ordering")
def test_learning_falls_with_semantic_distance(claim, manipulation, table1, paper_table):
    claim.require_checks(manipulation)
    decision = decide_rule(claim.rule, table1.data(), paper_values=claim.paper_values)
    claim.decide(with_table(decision, table1, paper_table), model=table1.model, seeds=table1.seeds, n=table1.n)


@pytest.mark.claim("wf-1.control")
def test_extra_clean_training_lowers_the_rate_below_comparable_clean_training(claim, manipulation, table1, paper_table):
    claim.require_checks(manipulation)
    decision = decide_rule(claim.rule, table1.data(), paper_values=claim.paper_values)
    claim.decide(with_table(decision, table1, paper_table), model=table1.model, seeds=table1.seeds, n=table1.n)
