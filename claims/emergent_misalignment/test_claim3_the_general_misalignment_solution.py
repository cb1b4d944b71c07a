"""Claim em-3: The general misalignment solution is more efficient than the narrow solution, achieving
lower training loss at smaller parameter norms."""

import pytest


@pytest.mark.claim("em-3")
def test_the_general_misalignment_solution():
    pytest.skip("em-3 is not operationalised yet: write its rule in fixtures/claims/emergent_misalignment.toml "
                "and its measurement here")
