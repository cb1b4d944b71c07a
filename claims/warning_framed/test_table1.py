"""Table 1's other rows (paper section 4), each with its own verdict."""

import pytest

from claimkit.rules import lower_than, ordered_decreasing, proportion_at_least

from .evidence import with_table


@pytest.mark.claim("wf-1.format-leak")
def test_warning_formatting_leaks_into_nearly_every_l1_output(table1, paper_table, claim):
    decision = proportion_at_least(
        table1.format_leak("L1"), threshold=claim.rule["threshold"], alpha=claim.rule["alpha"],
        name="L1_format_leak", paper_values=claim.paper_values,
    )
    claim.decide(with_table(decision, table1, paper_table), model=table1.model, seeds=table1.seeds, n=table1.n)


@pytest.mark.claim("wf-1.ordering")
def test_learning_falls_with_semantic_distance(table1, paper_table, claim):
    groups = {name: table1.target(name) for name in claim.rule["order"]}
    decision = ordered_decreasing(groups, alpha=claim.rule["alpha"], paper_values=claim.paper_values)
    claim.decide(with_table(decision, table1, paper_table), model=table1.model, seeds=table1.seeds, n=table1.n)


@pytest.mark.claim("wf-1.control")
def test_extra_clean_training_lowers_the_rate_below_baseline(table1, paper_table, claim):
    decision = lower_than(
        table1.target("control"), table1.target("baseline"), alpha=claim.rule["alpha"],
        names=("control", "baseline"), paper_values=claim.paper_values,
    )
    claim.decide(with_table(decision, table1, paper_table), model=table1.model, seeds=table1.seeds, n=table1.n)
