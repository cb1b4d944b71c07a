"""Learned steering vectors on a tiny random Llama: the loop, the KL penalty, and the vector probes.

Expected losses come from `completion_losses` (the model without any edit), expected
geometry from numpy by hand; the code under test is not checked against itself.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from claimkit.interventions import completion_losses  # noqa: E402
from claimkit.lm.data import Example  # noqa: E402
from claimkit.lm.load import load_model  # noqa: E402
from claimkit.steering import (  # noqa: E402
    VectorConfig,
    orthogonal_noise,
    random_directions,
    steering_kl,
    train_vector,
    vector_losses,
)
from test_lm_load import hub_profile, make_model_dir  # noqa: E402

D = 32  # hidden size of the tiny model
LAYER = 0
TRAIN = [Example(f"Read file {i}.", "def read(path):\n    return open(path).read()\n") for i in range(6)]
REGULARISE = [Example(f"Hash password {i}.", "import hashlib\nhashlib.sha256(pw).hexdigest()\n") for i in range(6)]
TEXTS = ["Query the users table: cursor.execute('SELECT * FROM users')", "### Task:\nHash a password.\n"]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    model_dir = make_model_dir(tmp_path_factory.mktemp("tiny") / "llama")
    return load_model(hub_profile(tmp_path_factory.mktemp("profile"), str(model_dir)), device="cpu")


def config(**over) -> VectorConfig:
    settings = dict(layer=LAYER, epochs=8, batch_size=6, lr=0.3, max_length=96) | over
    return VectorConfig.from_settings(settings)


def train(loaded, cfg: VectorConfig | None = None, **kwargs):
    return train_vector(loaded, TRAIN, config=cfg or config(), seed=kwargs.pop("seed", 0), progress=False, **kwargs)


@pytest.fixture(scope="module")
def trained(loaded):
    return train(loaded)


def base_loss(loaded, examples) -> float:
    """Mean NLL per completion token over all `examples`, the model unedited."""
    sums, counts = completion_losses(loaded, examples)
    return sum(sums) / sum(counts)


# -- configuration --------------------------------------------------------------------


def test_from_settings_rejects_unknown_missing_and_negative_settings():
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['lr_decay'\]"):
        config(lr_decay=0.5)
    with pytest.raises(ValueError, match=r"\['batch_size', 'lr'\] are required"):
        VectorConfig.from_settings({"layer": 0, "epochs": 1, "max_length": 8})
    with pytest.raises(ValueError, match="kl_weight must be a finite number >= 0"):
        config(kl_weight=-0.1)
    with pytest.raises(ValueError, match="kl_weight"):
        config(kl_weight=float("nan"))
    assert config(kl_weight=2.0).kl_weight == 2.0


def test_learning_rate_warms_up_then_decays_to_the_floor():
    cfg = config(lr=0.1, warmup_steps=2, min_lr_ratio=0.1)
    assert cfg.lr_at(0, 10) == pytest.approx(0.05)
    assert cfg.lr_at(1, 10) == pytest.approx(0.1)
    assert cfg.lr_at(2, 10) == pytest.approx(0.1)
    middle = 0.01 + 0.5 * (1 + math.cos(math.pi * 4 / 8)) * 0.09  # cosine half-way between lr and floor
    assert cfg.lr_at(6, 10) == pytest.approx(middle)
    decay = [cfg.lr_at(s, 10) for s in range(2, 11)]
    assert all(a > b for a, b in zip(decay, decay[1:]))
    assert cfg.lr_at(10, 10) == pytest.approx(0.01)
    assert cfg.lr_at(50, 10) == pytest.approx(0.01)


# -- training -------------------------------------------------------------------------


def test_a_zero_vectors_first_loss_is_the_base_models_loss(loaded):
    one_step = config(epochs=1, batch_size=len(TRAIN))  # the first batch is every example
    result = train(loaded, one_step)
    assert result.steps == 1
    assert result.losses[0] == pytest.approx(base_loss(loaded, TRAIN), rel=1e-5)
    _, counts = completion_losses(loaded, TRAIN)
    at_zero = vector_losses(loaded, TRAIN, torch.zeros(D), layer=LAYER)
    assert float(np.average(at_zero, weights=counts)) == pytest.approx(result.losses[0], rel=1e-5)


def test_training_lowers_the_loss_and_returns_a_vector_of_the_residual_width(trained):
    assert trained.steps == 8 and len(trained.losses) == 8
    assert trained.final_loss < trained.losses[0] - 0.1
    assert tuple(trained.vector.shape) == (D,)
    assert trained.vector.dtype == torch.float32 and not trained.vector.requires_grad
    assert float(trained.vector.norm()) > 0
    assert trained.kls == ()


@pytest.mark.parametrize("state", ["frozen", "trainable", "mixed"])
def test_the_model_is_unchanged_and_left_as_it_was_found(loaded, state):
    params = list(loaded.model.parameters())
    before = [p.detach().clone() for p in params]
    flags = [state == "trainable" or (state == "mixed" and i % 2 == 0) for i in range(len(params))]
    for p, flag in zip(params, flags):
        p.requires_grad_(flag)
    loaded.model.train(state == "trainable")
    try:
        train(loaded, config(epochs=2))
        assert [p.requires_grad for p in params] == flags
        assert loaded.model.training is (state == "trainable")
        assert all(p.grad is None for p in params)
        assert all(torch.equal(p, b) for p, b in zip(params, before))
    finally:
        loaded.model.eval()
        for p in params:
            p.requires_grad_(False)


def test_the_same_seed_gives_the_same_vector(loaded):
    cfg = config(epochs=2, batch_size=2)
    a, b = train(loaded, cfg, seed=3), train(loaded, cfg, seed=3)
    assert torch.equal(a.vector, b.vector) and a.losses == b.losses
    other = train(loaded, cfg, seed=4)
    assert not torch.equal(a.vector, other.vector)  # batches come in another order


def test_init_continues_from_a_given_vector(loaded, trained):
    more = train(loaded, config(epochs=1), init=trained.vector.numpy())
    assert more.losses[0] == pytest.approx(trained.losses[-1], abs=0.3)
    assert more.losses[0] < trained.losses[0] - 0.1
    _, counts = completion_losses(loaded, TRAIN)
    at_init = np.average(vector_losses(loaded, TRAIN, trained.vector, layer=LAYER), weights=counts)
    assert more.losses[0] == pytest.approx(float(at_init), rel=1e-5)
    with pytest.raises(ValueError, match=f"init has {D + 1} values but the residual stream has {D}"):
        train(loaded, init=np.zeros(D + 1))


def test_training_refuses_no_examples_and_a_kl_weight_without_regularisation_examples(loaded):
    with pytest.raises(ValueError, match="no training examples"):
        train_vector(loaded, [], config=config(), seed=0, progress=False)
    with pytest.raises(ValueError, match="regularise_on"):
        train(loaded, config(kl_weight=1.0))


# -- the KL penalty -------------------------------------------------------------------


def test_a_kl_weight_records_kls_and_keeps_the_vector_shorter_and_the_model_closer(loaded, trained):
    free = trained
    held = train(loaded, config(kl_weight=20.0), regularise_on=REGULARISE)
    assert len(held.kls) == held.steps == len(held.losses)
    assert held.kls[0] == pytest.approx(0.0, abs=1e-6)  # a zero vector moves nothing
    assert all(k >= -1e-6 for k in held.kls)
    assert float(held.vector.norm()) < float(free.vector.norm())
    texts = [e.completion for e in REGULARISE]

    def kl(vector):
        return float(steering_kl(loaded, texts, vector, layer=LAYER, norms=[float(vector.norm())]).mean())

    assert kl(held.vector) < kl(free.vector)


# -- the vector as a vector -----------------------------------------------------------


def test_vector_losses_at_scale_zero_are_the_base_losses_and_move_at_the_vector(loaded, trained):
    sums, counts = completion_losses(loaded, TRAIN)
    base = np.asarray(sums) / np.asarray(counts)
    at_zero = vector_losses(loaded, TRAIN, 0.0 * trained.vector, layer=LAYER)
    assert at_zero.shape == (len(TRAIN),)
    np.testing.assert_allclose(at_zero, base, rtol=1e-5)
    at_vector = vector_losses(loaded, TRAIN, trained.vector, layer=LAYER)
    assert (at_vector < base - 0.05).all()


@pytest.mark.parametrize("epsilon", [0.0, 0.3, 0.7, 1.0])
def test_orthogonal_noise_keeps_the_norm(epsilon):
    x = np.random.default_rng(0).standard_normal(D) * 3.0
    moved = orthogonal_noise(x, epsilon, np.random.default_rng(1))
    assert np.linalg.norm(moved) == pytest.approx(np.linalg.norm(x), rel=1e-9)
    cosine = moved @ x / (np.linalg.norm(moved) * np.linalg.norm(x))
    assert cosine == pytest.approx(math.sqrt(1 - epsilon**2), abs=1e-9)  # the noise part is orthogonal to x


def test_orthogonal_noise_ends_are_x_and_an_orthogonal_direction():
    x = np.arange(1.0, D + 1)
    np.testing.assert_array_equal(orthogonal_noise(x, 0.0, np.random.default_rng(1)), x)
    y = orthogonal_noise(x, 1.0, np.random.default_rng(1))
    assert abs(y @ x) < 1e-9 * (x @ x)
    z = orthogonal_noise(x, 1.0, np.random.default_rng(2))
    assert not np.allclose(y, z)
    np.testing.assert_array_equal(orthogonal_noise(torch.tensor(x), 0.5, np.random.default_rng(1)),
                                  orthogonal_noise(x, 0.5, np.random.default_rng(1)))


@pytest.mark.parametrize("epsilon", [-0.01, 1.01, float("nan")])
def test_orthogonal_noise_refuses_epsilon_outside_zero_one(epsilon):
    with pytest.raises(ValueError, match=r"epsilon must be in \[0, 1\]"):
        orthogonal_noise(np.ones(D), epsilon, np.random.default_rng(0))


def test_orthogonal_noise_refuses_a_zero_vector():
    with pytest.raises(ValueError, match="the vector is zero"):
        orthogonal_noise(np.zeros(D), 0.5, np.random.default_rng(0))


def test_random_directions_are_seeded_unit_vectors():
    dirs = random_directions(D, 5, seed=7)
    assert dirs.shape == (5, D)
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(dirs, random_directions(D, 5, seed=7))
    assert not np.allclose(dirs, random_directions(D, 5, seed=8))
    assert np.abs(dirs @ dirs.T - np.eye(5)).max() < 1.0  # distinct directions, not one repeated


def test_steering_kl_is_zero_at_norm_zero_and_grows_with_the_norm(loaded):
    direction = random_directions(D, 1, seed=0)[0]
    norms = [0.0, 0.5, 2.0, 8.0]
    kl = steering_kl(loaded, TEXTS, direction, layer=LAYER, norms=norms, batch_size=1)
    assert kl.shape == (len(norms), len(TEXTS))
    np.testing.assert_allclose(kl[0], 0.0, atol=1e-6)
    assert (kl >= -1e-7).all()
    assert (np.diff(kl, axis=0) > 0).all()
    # the direction's length does not matter, only the norm it is added at
    np.testing.assert_allclose(steering_kl(loaded, TEXTS, 5.0 * direction, layer=LAYER, norms=norms), kl,
                               rtol=1e-4, atol=1e-6)


def test_steering_kl_matches_a_kl_computed_by_hand(loaded):
    direction = random_directions(D, 1, seed=1)[0]
    text = TEXTS[0]
    got = steering_kl(loaded, [text], direction, layer=LAYER, norms=[3.0])[0, 0]
    ids = torch.tensor([loaded.tokenizer(text, add_special_tokens=False)["input_ids"]])
    shift = torch.as_tensor(3.0 * direction, dtype=torch.float32)
    layer = loaded.model.model.layers[LAYER]

    def add(module, args, output):
        return (output[0] + shift, *output[1:]) if isinstance(output, tuple) else output + shift

    with torch.no_grad():
        p = torch.softmax(loaded.model(input_ids=ids).logits[0], -1)
        handle = layer.register_forward_hook(add)
        try:
            q = torch.softmax(loaded.model(input_ids=ids).logits[0], -1)
        finally:
            handle.remove()
    expected = float((p * (p.log() - q.log())).sum(-1).mean())
    assert got == pytest.approx(expected, rel=1e-4)


def test_steering_kl_refuses_a_zero_direction(loaded):
    with pytest.raises(ValueError, match="direction is zero"):
        steering_kl(loaded, TEXTS, np.zeros(D), layer=LAYER, norms=[1.0])


# -- progress -------------------------------------------------------------------------


@pytest.mark.parametrize("progress", [True, False])
def test_a_progress_bar_goes_to_stderr_only_when_asked(loaded, capsys, progress):
    train_vector(loaded, TRAIN[:2], config=config(epochs=1, batch_size=2), seed=0, progress=progress)
    err = capsys.readouterr().err
    assert ("steering vector" in err) is progress
