"""Cached model readings: the same values as reading through the model, and the model untouched once cached."""

from __future__ import annotations

import numpy as np
import pytest

from claimkit.cache import ArtifactCache
from claimkit.interventions import capability, completion_losses
from claimkit.lm.activations import capture_residual, token_entropies
from claimkit.lm.data import Example
from claimkit.lm.finetune import finetune, finetuned_name, load_finetuned
from claimkit.readings import cached_completion_losses, cached_residuals, cached_token_entropies
from test_lm_load import load_tiny

torch = pytest.importorskip("torch")

PAIRS = [
    ("### Task:\nRead a file.\n### Solution:\n", "```python\nopen(path).read()\n```\n"),
    ("### Task:\nOpen.\n### Solution:\n", ""),  # an empty output: no rows
    ("### Task:\nHash.\n### Solution:\n", "import hashlib\n"),
]
ANSWERS = [Example(prompt="Read a file.", completion="```python\nopen(path).read()\n```\n"),
           Example(prompt="Hash.", completion="import hashlib\n")]  # fmt: skip
PARTS = {"model": "tiny", "adapter": None}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    return load_tiny(tmp_path_factory.mktemp("readings"))


class Loads:
    """A `load` callable that counts its calls."""

    def __init__(self, loaded):
        self.loaded, self.calls = loaded, 0

    def __call__(self):
        self.calls += 1
        return self.loaded


def test_residuals_are_read_once_and_equal_a_direct_read(loaded, tmp_path):
    cache, load = ArtifactCache(tmp_path), Loads(loaded)
    first = cached_residuals(cache, PARTS, load, PAIRS, layer=1)
    again = cached_residuals(cache, PARTS, load, PAIRS, layer=1)
    direct = capture_residual(loaded, PAIRS, layer=1, positions="completion")
    assert load.calls == 1
    assert [r.shape for r in first] == [r.shape for r in direct] and first[1].shape[0] == 0
    assert all(torch.allclose(a, b) and torch.equal(a, c) for a, b, c in zip(first, direct, again))
    cached_residuals(cache, PARTS, load, PAIRS[:2], layer=1)  # other texts
    cached_residuals(cache, {**PARTS, "adapter": "abc"}, load, PAIRS, layer=1)  # another model
    cached_residuals(cache, PARTS, load, PAIRS, layer=0)  # another layer
    assert load.calls == 4


def test_token_entropies_are_read_once_and_equal_a_direct_read(loaded, tmp_path):
    cache, load = ArtifactCache(tmp_path), Loads(loaded)
    pairs = [PAIRS[0], PAIRS[2]]
    first = cached_token_entropies(cache, PARTS, load, pairs, batch_size=1)
    again = cached_token_entropies(cache, PARTS, load, pairs, batch_size=1)
    direct = token_entropies(loaded, pairs, batch_size=1)
    assert load.calls == 1
    assert all(a.dtype == np.float32 and np.allclose(a, b, atol=1e-6) and np.array_equal(a, c)
               for a, b, c in zip(first, direct, again))  # fmt: skip


def test_completion_losses_are_read_once_and_score_capability_as_the_model_does(loaded, tmp_path):
    cache, load = ArtifactCache(tmp_path), Loads(loaded)
    losses = cached_completion_losses(cache, PARTS, load, ANSWERS)
    assert cached_completion_losses(cache, PARTS, load, ANSWERS) == losses and load.calls == 1
    sums, counts = completion_losses(loaded, ANSWERS)
    assert losses[1] == counts and losses[0] == pytest.approx(sums, rel=1e-6)
    generations = ["```python\nx = 1\n```", "no code"]
    assert capability(None, ANSWERS, generations, losses=losses).loss == pytest.approx(
        capability(loaded, ANSWERS, generations).loss, rel=1e-6)
    with pytest.raises(ValueError, match="1 losses for 2 reference answers"):
        capability(None, ANSWERS, generations, losses=([1.0], [3]))
    with pytest.raises(ValueError, match="needs the model or its completion losses"):
        capability(None, ANSWERS, generations)


def test_a_finetuned_model_is_named_from_its_files_as_when_loaded(loaded, tmp_path):
    examples = [Example(prompt=f"task {i}", completion="print(1)\n") for i in range(4)]
    hparams = {**loaded.profile.finetune_hparams(), "epochs": 1}
    result = finetune(loaded, examples, hparams=hparams, seed=0, out_dir=tmp_path / "lora", progress=False)
    name = finetuned_name(loaded.name, result.adapter_dir)
    assert name == load_finetuned(loaded, result.adapter_dir).name and name.startswith(f"{loaded.name}+lora:")
