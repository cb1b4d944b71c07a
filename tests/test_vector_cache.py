"""Steering vectors through the artifact cache: built once, keyed by everything they were trained from."""

from __future__ import annotations

import numpy as np
import pytest

from claimkit.cache import ArtifactCache
from claimkit.experiment import Experiment
from claimkit.lm.data import Example
from claimkit.steering import VectorConfig
from claimkit.vector_cache import cached_vector
from test_lm_load import hub_profile, make_model_dir

EXAMPLES = tuple(Example(prompt=f"add {i} and 1", completion=f"print({i} + 1)") for i in range(8))
OTHER = tuple(Example(prompt=f"say {i}", completion=f"print({i})") for i in range(8))
CONFIG = VectorConfig(layer=0, epochs=2, batch_size=4, lr=0.05, max_length=32)


@pytest.fixture()
def experiment(tmp_path):
    model_dir = make_model_dir(tmp_path / "model")
    return Experiment(hub_profile(tmp_path, str(model_dir)), ArtifactCache(tmp_path / "cache"), progress=False)


def builds(experiment) -> int:
    root = experiment.cache.root / "vector"
    return len([p for p in root.iterdir() if (p / "_complete.json").exists()]) if root.exists() else 0


def test_a_vector_is_trained_once_and_reused(experiment, monkeypatch):
    first = cached_vector(experiment, name="v", examples=EXAMPLES, config=CONFIG, seed=0)
    import claimkit.steering as steering

    monkeypatch.setattr(steering, "train_vector", lambda *a, **k: pytest.fail("retrained a cached vector"))
    again = cached_vector(experiment, name="v", examples=EXAMPLES, config=CONFIG, seed=0)
    assert np.array_equal(first.vector, again.vector) and first.entry == again.entry
    assert first.vector.shape == (experiment.base.model.config.hidden_size,) and first.norm > 0
    assert first.steps == 4 and first.final_kl is None and first.final_loss < first.first_loss
    assert builds(experiment) == 1


def test_seed_data_settings_regularisation_and_start_each_make_another_vector(experiment):
    base = cached_vector(experiment, name="v", examples=EXAMPLES, config=CONFIG, seed=0)
    cached_vector(experiment, name="v", examples=EXAMPLES, config=CONFIG, seed=1)
    cached_vector(experiment, name="v", examples=EXAMPLES[:4], config=CONFIG, seed=0)
    kl = VectorConfig(**{**CONFIG.__dict__, "kl_weight": 5.0})
    regularised = cached_vector(experiment, name="v", examples=EXAMPLES, config=kl, seed=0, regularise_on=OTHER)
    cached_vector(experiment, name="v", examples=EXAMPLES, config=kl, seed=0, regularise_on=OTHER[:4])
    cached_vector(experiment, name="v", examples=EXAMPLES, config=CONFIG, seed=0, init=base)
    assert builds(experiment) == 6
    assert regularised.final_kl is not None and regularised.norm < base.norm
