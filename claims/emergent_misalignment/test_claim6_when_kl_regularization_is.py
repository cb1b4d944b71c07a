"""Claim em-6: When KL regularization is removed from a narrowly misaligned model, continued training
causes convergence back to the general misalignment solution."""

import pytest


@pytest.mark.claim("em-6")
def test_when_kl_regularization_is():
    pytest.skip("em-6 is not operationalised yet: write its rule in fixtures/claims/emergent_misalignment.toml "
                "and its measurement here")
