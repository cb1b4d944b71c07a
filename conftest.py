"""Root fixtures shared by every paper's claims: the artifact cache and the loaded profile.

The `profile` fixture itself (a profile name, parametrised over the selected
profiles) comes from the claimkit pytest plugin.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def artifact_cache(request: pytest.FixtureRequest):
    """Where adapters, generations and activations are kept between runs ($CLAIMKIT_CACHE)."""
    from claimkit.cache import default_cache

    return default_cache(request.config.rootpath)


@pytest.fixture(scope="session")
def lm_profile(profile: str, request: pytest.FixtureRequest):
    """The selected profile's data (model source, format, LoRA, sampling) from fixtures/profiles."""
    from claimkit.lm.profiles import load_profile

    directory = Path(request.config.rootpath) / request.config.getini("claimkit_profiles_dir")
    return load_profile(profile, directory)


@pytest.fixture(scope="session")
def experiment(lm_profile, artifact_cache):
    """Fine-tunes and samples the profile's behaviour model, through the cache."""
    from claimkit.experiment import Experiment

    return Experiment(lm_profile, artifact_cache)
