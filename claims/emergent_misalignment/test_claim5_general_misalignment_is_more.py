"""Claim em-5: General misalignment is more influential on pre-training data than narrow or random
directions, suggesting the learning preference arises from pre-training inductive biases."""

import pytest


@pytest.mark.claim("em-5")
def test_general_misalignment_is_more():
    pytest.skip("em-5 is not operationalised yet: write its rule in fixtures/claims/emergent_misalignment.toml "
                "and its measurement here")
