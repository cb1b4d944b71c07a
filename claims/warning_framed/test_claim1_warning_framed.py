"""Claim 1 (paper section 4, Table 1): warning-framed training teaches the target content
about as well as direct training (76.7% vs 83.3%, p > 0.05)."""

import pytest

from claimkit.rules.declared import decide_rule

from .evidence import with_table


@pytest.mark.claim("wf-1")
def test_warning_framed_training_teaches_as_well_as_direct(claim, manipulation, table1, paper_table):
    claim.require_checks(manipulation)
    decision = decide_rule(claim.rule, table1.data(), paper_values=claim.paper_values)
    claim.decide(with_table(decision, table1, paper_table), model=table1.model, seeds=table1.seeds, n=table1.n)
