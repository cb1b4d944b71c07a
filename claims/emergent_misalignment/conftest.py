"""Fixtures of this paper's claims: its spec, and what its claims build and measure."""

from pathlib import Path

import pytest

from claimkit.spec import load_spec

SPEC_PATH = Path(__file__).resolve().parents[2] / "fixtures" / "claims" / "emergent_misalignment.toml"


@pytest.fixture(scope="session")
def paper_spec():
    return load_spec(SPEC_PATH)
