"""Claim em-7 (section 5): the pattern holds beyond misalignment. Not operationalised yet (its spec is a draft)."""

import pytest


@pytest.mark.claim("em-7")
def test_the_pattern_holds_beyond_misalignment():
    pytest.skip("em-7 is not operationalised yet: it needs a trait other than vulnerability (type hints, docstrings) "
                "that the corpus varies within one domain; see fixtures/claims/emergent_misalignment.toml")
