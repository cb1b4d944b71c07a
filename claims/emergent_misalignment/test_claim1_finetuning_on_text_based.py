"""Claim em-1: Finetuning on text-based narrowly harmful datasets (medical, financial, sports)
consistently induces emergent misalignment across diverse model families and sizes, reaching ~40% EM
with >99% coherency."""

import pytest


@pytest.mark.claim("em-1")
def test_finetuning_on_text_based():
    pytest.skip("em-1 is not operationalised yet: write its rule in fixtures/claims/emergent_misalignment.toml "
                "and its measurement here")
