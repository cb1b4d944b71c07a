"""An adapter as a point: read back exactly, rescaled by its weight change, evaluated, and always restored."""

from __future__ import annotations

import numpy as np
import pytest

from claimkit.adapter_space import AdapterSpace
from claimkit.interventions import completion_losses
from claimkit.lm.finetune import finetune, load_finetuned
from test_lm_finetune_kl import examples, hparams
from test_lm_load import load_tiny

torch = pytest.importorskip("torch")

TEXTS = ["def add(a, b):\n    return a + b\n", "The quick brown fox jumps over the lazy dog."]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny Llama and two adapters of it trained on different data (lr raised so B moves off zero)."""
    root = tmp_path_factory.mktemp("adapter-space")
    loaded = load_tiny(root)
    dirs = []
    for k, completion in enumerate(["```python\nprint(1)\n```\n", "Here is prose, not code.\n"]):
        out = root / f"adapter{k}"
        finetune(loaded, examples(8, seed=k, completion=completion), hparams=hparams(loaded, lr=1e-2), seed=k,
                 out_dir=out, progress=False)
        dirs.append(out)
    return loaded, dirs


def test_the_trained_point_reproduces_the_adapters_loss(trained):
    loaded, (first, _) = trained
    space = AdapterSpace(loaded, first)
    data = examples(4, seed=5)
    merged = load_finetuned(loaded, first)
    sums, counts = completion_losses(merged, data)
    expected = np.asarray(sums) / np.asarray(counts)
    assert np.allclose(space.losses(data, [space.trained])[0], expected, atol=1e-4)


def test_another_adapters_point_is_read_without_changing_this_one(trained):
    loaded, (first, second) = trained
    space = AdapterSpace(loaded, first)
    other = space.point_of(second)
    assert other.shape == space.trained.shape and not np.allclose(other, space.trained)
    assert np.array_equal(space.flat(), space.trained)
    assert np.allclose(other, AdapterSpace(loaded, second).trained)


def test_rescaling_sets_the_weight_change_and_keeps_the_a_matrices(trained):
    loaded, (first, _) = trained
    space = AdapterSpace(loaded, first)
    point = space.trained
    now = space.delta_norm(point)
    assert now > 0
    half = space.with_delta_norm(point, now / 2)
    assert space.delta_norm(half) == pytest.approx(now / 2, rel=1e-9)
    a_entries = np.array([".lora_A." in n for n, size in zip(space.names, space._sizes) for _ in range(size)])
    assert np.array_equal(half[a_entries], point[a_entries])
    zero_change = space.with_delta_norm(point, 0.0)
    base = space.losses(examples(4, seed=5), [zero_change])[0]
    sums, counts = completion_losses(loaded, examples(4, seed=5))
    assert np.allclose(base, np.asarray(sums) / np.asarray(counts), atol=1e-4)  # no weight change: the base model


def test_kl_is_zero_at_the_base_and_grows_with_the_weight_change(trained):
    loaded, (first, _) = trained
    space = AdapterSpace(loaded, first)
    now = space.delta_norm(space.trained)
    points = [space.with_delta_norm(space.trained, f * now) for f in (0.0, 1.0, 4.0)]
    kl = space.kl(TEXTS, points)
    assert kl.shape == (3, 2)
    assert np.allclose(kl[0], 0.0, atol=1e-6)
    assert np.all(kl[2] > kl[1]) and np.all(kl[1] > 0)
    assert np.array_equal(space.flat(), space.trained)  # restored after measuring


def test_a_random_point_rescaled_has_the_asked_weight_change(trained):
    loaded, (first, _) = trained
    space = AdapterSpace(loaded, first)
    point = space.with_delta_norm(space.random_point(np.random.default_rng(0)), 0.3)
    assert space.delta_norm(point) == pytest.approx(0.3)


def test_an_adapter_of_another_rank_is_refused(trained, tmp_path):
    loaded, (first, _) = trained
    space = AdapterSpace(loaded, first)
    other = tmp_path / "rank"
    finetune(loaded, examples(4), hparams=hparams(loaded), seed=0, out_dir=other, progress=False)
    from peft.utils import load_peft_weights

    weights = load_peft_weights(str(other), device="cpu")
    name = next(k for k in weights if "lora_A" in k)
    weights[name] = torch.zeros(weights[name].shape[0] + 1, weights[name].shape[1])
    from safetensors.torch import save_file

    save_file(weights, str(other / "adapter_model.safetensors"))
    with pytest.raises(ValueError, match="does not fit this model"):
        space.point_of(other)
    with pytest.raises(ValueError, match="numbers for an adapter space"):
        space.set(np.zeros(3))


def test_weight_change_inner_product_matches_the_full_matrices(trained):
    loaded, (first, second) = trained
    space = AdapterSpace(loaded, first)
    p, q = space.trained, space.point_of(second)
    full = 0.0
    for a_index, b_index, scaling in space._pairs:
        full += float(np.sum((scaling * space._block(p, b_index) @ space._block(p, a_index))
                             * (scaling * space._block(q, b_index) @ space._block(q, a_index))))
    assert space.delta_inner(p, q) == pytest.approx(full, rel=1e-9)
    assert space.delta_cosine(p, p) == pytest.approx(1.0)
    assert space.delta_cosine(p, space.with_delta_norm(p, 3.0)) == pytest.approx(1.0)
    assert -1.0 <= space.delta_cosine(p, q) <= 1.0


def test_noise_on_b_keeps_a_and_the_norm_of_b(trained):
    loaded, (first, _) = trained
    space = AdapterSpace(loaded, first)
    point = space.trained
    mask = space.b_entries
    moved = space.perturb_b(point, 0.5, np.random.default_rng(0))
    assert np.array_equal(moved[~mask], point[~mask])
    assert np.linalg.norm(moved[mask]) == pytest.approx(np.linalg.norm(point[mask]))
    cos = moved[mask] @ point[mask] / np.linalg.norm(point[mask]) ** 2
    assert cos == pytest.approx(np.sqrt(1 - 0.25))
    assert np.array_equal(space.perturb_b(point, 0.0, np.random.default_rng(0)), point)


def test_cached_losses_and_kls_are_computed_once_per_points_and_reused(trained, tmp_path, monkeypatch):
    from claimkit.cache import ArtifactCache

    loaded, (first, second) = trained
    cache = ArtifactCache(tmp_path / "cache")
    space = AdapterSpace(loaded, first, cache=cache, model_parts={"model": "tiny"})
    data = examples(3, seed=6)
    points = [space.trained, space.with_delta_norm(space.trained, 0.5 * space.delta_norm(space.trained))]
    losses, kls = space.losses(data, points), space.kl(TEXTS, points, max_length=32)
    assert np.allclose(losses, AdapterSpace(loaded, first).losses(data, points))
    assert np.allclose(kls, AdapterSpace(loaded, first).kl(TEXTS, points, max_length=32))

    # Opened on the other adapter, the same points mean the same models: the cache answers, nothing is run.
    reopened = AdapterSpace(loaded, second, cache=cache, model_parts={"model": "tiny"})
    monkeypatch.setattr(reopened, "_losses", lambda *a: pytest.fail("recomputed cached losses"))
    monkeypatch.setattr(reopened, "_kl", lambda *a: pytest.fail("recomputed cached KLs"))
    assert np.array_equal(reopened.losses(data, points), losses)
    assert np.array_equal(reopened.kl(TEXTS, points, max_length=32), kls)
    with pytest.raises(pytest.fail.Exception):  # other points, or another base model, are other entries
        reopened.losses(data, points[:1])
    other_model = AdapterSpace(loaded, second, cache=cache, model_parts={"model": "other"})
    monkeypatch.setattr(other_model, "_losses", lambda *a: pytest.fail("recomputed"))
    with pytest.raises(pytest.fail.Exception):
        other_model.losses(data, points)
