"""Claim em-7: The stability, efficiency, and pre-training significance pattern generalizes beyond
emergent misalignment to other unexpected generalization phenomena."""

import pytest


@pytest.mark.claim("em-7")
def test_the_stability_efficiency_and():
    pytest.skip("em-7 is not operationalised yet: write its rule in fixtures/claims/emergent_misalignment.toml "
                "and its measurement here")
