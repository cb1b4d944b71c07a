"""Claim em-2: A linear representation of narrow misalignment exists and can be learned, but requires
KL divergence regularization — dataset mixing with aligned data fails to constrain generalization."""

import pytest


@pytest.mark.claim("em-2")
def test_a_linear_representation_of():
    pytest.skip("em-2 is not operationalised yet: write its rule in fixtures/claims/emergent_misalignment.toml "
                "and its measurement here")
