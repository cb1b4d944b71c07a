"""Claim em-4: The general misalignment solution is more stable, deteriorating less rapidly when
orthogonal noise is added to the finetuned adapters."""

import pytest


@pytest.mark.claim("em-4")
def test_the_general_misalignment_solution():
    pytest.skip("em-4 is not operationalised yet: write its rule in fixtures/claims/emergent_misalignment.toml "
                "and its measurement here")
