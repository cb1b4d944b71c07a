"""Residual edits, CAFT and capability on a tiny random Llama and a random sae-lens SAE.

Expected values are computed here from the SAE's weights by hand (ReLU encoder,
linear decoder), not by calling the code under test twice.
"""

from __future__ import annotations

import contextlib
import json
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sae_lens")

from claimkit.cache import ArtifactCache  # noqa: E402
from claimkit.experiment import Arm, Experiment  # noqa: E402
from claimkit.interventions import (  # noqa: E402
    Capability,
    best_threshold,
    caft_adapter,
    caft_hooks,
    caft_samples,
    capability,
    capability_change,
    clamp_features,
    completion_losses,
    feature_clamp,
    intervene,
    orthonormal_basis,
    parse_counts,
    project_out,
    projection,
    samples_with,
    sae_fingerprint,
)
from claimkit.lm.activations import decoder_layers, residual_hook  # noqa: E402
from claimkit.lm.data import Example, encode_completion, encode_prompt, render_example  # noqa: E402
from claimkit.lm.finetune import finetune, load_finetuned  # noqa: E402
from claimkit.lm.load import load_model  # noqa: E402
from test_lm_load import hub_profile, make_model_dir  # noqa: E402

D = 32  # hidden size of the tiny model
IDS = [3, 17, 40, 41]
ANSWER = "```python\ndef read(path):\n    with open(path) as f:\n        return f.read()\n```\n"


def random_sae(seed: int = 0, **cfg):
    from sae_lens import StandardSAE, StandardSAEConfig

    torch.manual_seed(seed)
    sae = StandardSAE(StandardSAEConfig(d_in=D, d_sae=64, **cfg))
    with torch.no_grad():
        sae.b_enc.normal_(0.0, 0.5)
        sae.b_dec.normal_(0.0, 0.1)
        sae.W_enc.mul_(3.0)  # features fire with magnitudes well above 0 on unit-scale inputs
    return sae.eval()


def features_by_hand(sae, h):
    """The ReLU SAE's encoder written out: relu((h - b_dec) W_enc + b_enc)."""
    return torch.relu((h - sae.b_dec) @ sae.W_enc + sae.b_enc)


@pytest.fixture(scope="module")
def sae():
    return random_sae()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("tiny") / "llama")


@pytest.fixture(scope="module")
def profile(model_dir, tmp_path_factory):
    return hub_profile(tmp_path_factory.mktemp("profile"), str(model_dir))


@pytest.fixture(scope="module")
def loaded(profile):
    return load_model(profile, device="cpu")


def hidden(seed: int = 1, shape=(2, 5, D)):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def examples(n: int = 12) -> list[Example]:
    return [Example(f"Read the file number {i}.", ANSWER) for i in range(n)]


# -- clamping SAE features ------------------------------------------------------------------


def test_clamp_with_scale_one_is_the_identity(sae):
    h = hidden()
    assert torch.equal(clamp_features(sae, IDS, scale=1.0)(h), h)


@pytest.mark.parametrize("scale", [0.0, 2.0, 5.0])
def test_clamp_changes_exactly_the_features_decoder_contribution(sae, scale):
    h = hidden()
    with torch.no_grad():
        f = features_by_hand(sae, h)[..., IDS]
        assert (f > 0).any(), "the test needs the chosen features to fire"
        expected = h + ((scale - 1.0) * f) @ sae.W_dec[IDS]
        got = clamp_features(sae, IDS, scale=scale)(h)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_ablation_keeps_the_sae_reconstruction_error(sae):
    h = hidden()
    with torch.no_grad():
        f = features_by_hand(sae, h)
        error = h - (f @ sae.W_dec + sae.b_dec)
        f_ablated = f.clone()
        f_ablated[..., IDS] = 0.0
        got = clamp_features(sae, IDS, scale=0.0)(h)
        torch.testing.assert_close(got - (f_ablated @ sae.W_dec + sae.b_dec), error, rtol=1e-5, atol=1e-5)


def test_clamp_acts_inside_the_model_at_the_layer(loaded, sae):
    ids = torch.tensor([loaded.tokenizer("### Task:\nRead a file.\n### Solution:\n")["input_ids"]])
    plain, edited = [], []
    with torch.no_grad():
        with residual_hook(loaded.model, 0, lambda h: plain.append(h.clone())):
            plain_logits = loaded.model(input_ids=ids).logits
        with intervene(loaded, 0, clamp_features(sae, IDS, scale=0.0)), residual_hook(
            loaded.model, 0, lambda h: edited.append(h.clone())
        ):
            edited_logits = loaded.model(input_ids=ids).logits
        f = features_by_hand(sae, plain[0])[..., IDS]
    torch.testing.assert_close(edited[0], plain[0] - f @ sae.W_dec[IDS], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(edited_logits, plain_logits)
    assert all(len(layer._forward_hooks) == 0 for layer in decoder_layers(loaded.model))


def test_clamp_rejects_bad_input(sae):
    with pytest.raises(IndexError, match="64 features"):
        clamp_features(sae, [64], scale=0.0)
    with pytest.raises(ValueError, match="empty"):
        clamp_features(sae, [], scale=0.0)
    with pytest.raises(ValueError, match="repeats"):
        clamp_features(sae, [1, 1], scale=0.0)
    with pytest.raises(ValueError, match="finite"):
        clamp_features(sae, [1], scale=float("nan"))
    with pytest.raises(ValueError, match="linear"):
        clamp_features(random_sae(normalize_activations="layer_norm"), [1], scale=0.0)


# -- projecting directions out --------------------------------------------------------------


def test_projection_removes_the_directions_and_is_idempotent():
    directions = torch.randn(3, D, generator=torch.Generator().manual_seed(2)) * 4
    edit = project_out(directions)
    h = hidden(shape=(4, 7, D))
    once = edit(h)
    assert (once @ directions.T).abs().max() < 1e-4
    torch.testing.assert_close(edit(once), once, rtol=1e-5, atol=1e-5)
    # what is orthogonal to the directions is untouched
    basis = torch.linalg.qr(directions.double().T).Q
    outside = h.double() - (h.double() @ basis) @ basis.T
    torch.testing.assert_close(once.double(), outside, rtol=1e-5, atol=1e-5)


def test_projection_handles_dependent_directions_and_rejects_bad_ones():
    a, b = torch.randn(2, D, generator=torch.Generator().manual_seed(3))
    assert orthonormal_basis(torch.stack([a, b, a + 2 * b])).shape == (D, 2)
    h = hidden()
    torch.testing.assert_close(project_out(torch.stack([a, b, a - b]))(h), project_out(torch.stack([a, b]))(h))
    with pytest.raises(ValueError, match="all zero"):
        project_out(torch.zeros(2, D))
    with pytest.raises(ValueError, match="width"):
        project_out(torch.randn(1, D + 1))(h)
    with pytest.raises(ValueError, match="cannot be independent"):
        orthonormal_basis(torch.randn(D + 1, D))


# -- CAFT -------------------------------------------------------------------------------------


def test_caft_projects_while_training_and_leaves_no_hook(loaded, tmp_path):
    directions = torch.randn(2, D, generator=torch.Generator().manual_seed(4))
    seen_models, residual_on_directions = [], []

    @contextlib.contextmanager
    def watched(model):
        seen_models.append(model)
        with caft_hooks(directions, 0)(model), residual_hook(
            model, 0, lambda h: residual_on_directions.append(float((h.detach() @ directions.T).abs().max()))
        ):
            yield

    hparams = loaded.profile.finetune_hparams()
    finetune(
        loaded, examples(), hparams=hparams, seed=0, out_dir=tmp_path / "caft", train_hooks=watched, progress=False
    )
    finetune(loaded, examples(), hparams=hparams, seed=0, out_dir=tmp_path / "plain", progress=False)

    assert residual_on_directions and max(residual_on_directions) < 1e-4  # projected in every training step
    trained = seen_models[0]
    assert all(len(layer._forward_hooks) == 0 for layer in decoder_layers(trained))
    assert all(len(layer._forward_hooks) == 0 for layer in decoder_layers(loaded.model))
    ids = torch.tensor([loaded.tokenizer("### Task:\nRead a file.\n### Solution:\n")["input_ids"]])
    with torch.no_grad():
        after_training = trained(input_ids=ids).logits
        reloaded = load_finetuned(loaded, tmp_path / "caft", merge=False).model(input_ids=ids).logits
        plain = load_finetuned(loaded, tmp_path / "plain").model(input_ids=ids).logits
    torch.testing.assert_close(after_training, reloaded, rtol=1e-4, atol=1e-4)  # no edit at evaluation
    assert not torch.allclose(reloaded, plain, atol=1e-3)  # the projection changed what was learnt


# -- generations under an intervention, through the cache ---------------------------------------


@pytest.fixture()
def experiment(profile, tmp_path):
    return Experiment(profile, ArtifactCache(tmp_path / "cache"), progress=False)


TASKS = ["Read a file.", "Hash a password.", "Query the users table.", "Write a function."]


def test_samples_with_identity_edit_match_plain_samples_and_are_cached(experiment, sae, monkeypatch):
    arm = Arm("base", (), 0)
    plain = experiment.samples(arm, TASKS)
    same = samples_with(experiment, arm, TASKS, intervention=feature_clamp(sae, IDS, scale=1.0, layer=0))
    assert same.texts == plain.texts and same.arm == "base [clamp x1]"
    ablate = feature_clamp(sae, IDS, scale=0.0, layer=0, name="ablate")
    ablated = samples_with(experiment, arm, TASKS, intervention=ablate)
    assert len(ablated.texts) == len(TASKS)
    n_dirs = len(list((experiment.cache.root / "samples").iterdir()))
    assert n_dirs == 3  # plain, x1 and ablate are three artifacts

    refuse = lambda *a, **k: pytest.fail("rebuilt a cached artifact")  # noqa: E731
    monkeypatch.setattr(sys.modules["claimkit.lm.sample"], "sample", refuse)
    same_edit = feature_clamp(sae, IDS, scale=0.0, layer=0, name="ablate")  # made anew: the same cache key
    again = samples_with(experiment, arm, TASKS, intervention=same_edit)
    assert again.texts == ablated.texts


def test_intervention_keys_identify_the_edit(sae):
    a = feature_clamp(sae, IDS, scale=0.0, layer=0).cache_parts()
    assert a != feature_clamp(sae, IDS, scale=2.0, layer=0).cache_parts()
    assert a != feature_clamp(sae, IDS, scale=0.0, layer=1).cache_parts()
    assert a != feature_clamp(random_sae(seed=1), IDS, scale=0.0, layer=0).cache_parts()
    assert sae_fingerprint(sae) == sae_fingerprint(random_sae())
    d = torch.randn(2, D)
    assert projection(d, layer=0).cache_parts() == projection(d.clone(), layer=0).cache_parts()


def test_caft_samples_build_a_caft_adapter_once(experiment):
    arm = Arm("L1", tuple(examples()), 0)
    directions = torch.randn(2, D, generator=torch.Generator().manual_seed(5))
    out = caft_samples(experiment, arm, TASKS, directions=directions, layer=0)
    assert out.arm == "L1 [CAFT]" and len(out.texts) == len(TASKS)
    adapter = caft_adapter(experiment, arm, directions=directions, layer=0)
    assert adapter != experiment.adapter(arm)  # not the plain fine-tune's cache entry
    log = json.loads((adapter.parent / "finetune.json").read_text())
    assert log["caft_layer"] == 0 and log["caft_directions"] == 2
    with pytest.raises(ValueError, match="no fine-tuning examples"):
        caft_adapter(experiment, Arm("base", (), 0), directions=directions, layer=0)


# -- capability ---------------------------------------------------------------------------------


def test_completion_losses_match_the_models_own_loss(loaded):
    pairs = examples(3)
    sums, counts = completion_losses(loaded, pairs, batch_size=2)
    for example, total, count in zip(pairs, sums, counts):
        prompt_text, completion_text = render_example(loaded.format, loaded.tokenizer, example)
        prompt = encode_prompt(loaded.format, loaded.tokenizer, prompt_text)
        completion = encode_completion(loaded.tokenizer, completion_text)
        ids = torch.tensor([prompt + completion])
        labels = ids.clone()
        labels[0, : len(prompt)] = -100
        with torch.no_grad():
            mean = float(loaded.model(input_ids=ids, labels=labels).loss)  # transformers' shifted cross-entropy
        assert count == len(completion)
        assert total / count == pytest.approx(mean, rel=1e-4)


def test_parse_counts():
    texts = ["```python\nx = 1\n```", "no code at all, only words here", "```python\nimport os\nos.getcwd()\n```"]
    assert parse_counts(texts) == (2, 3)


def test_capability_and_its_change(loaded):
    cap = capability(loaded, examples(4), ["```python\nx = 1\n```", "words only"])
    assert cap.parsed == 1 and cap.generations == 2 and cap.parse_rate == 0.5
    assert cap.loss == pytest.approx(sum(l * 1 for l in cap.example_losses) / len(cap.example_losses))  # equal lengths
    worse = Capability(
        loss=cap.loss * 1.25, example_losses=cap.example_losses, tokens=cap.tokens, parsed=0, generations=2
    )
    change = capability_change(cap, worse)
    assert change.loss_increase == pytest.approx(0.25) and change.parse_drop == pytest.approx(0.5)
    other = Capability(loss=1.0, example_losses=(1.0,), tokens=3, parsed=0, generations=1)
    with pytest.raises(ValueError, match="different reference answers"):
        capability_change(cap, other)


# -- threshold detectors ------------------------------------------------------------------------


def test_best_threshold_separates_and_prefers_fewer_positives():
    assert best_threshold([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == pytest.approx(0.5)
    assert best_threshold([1.0, 1.0], [False, False]) == pytest.approx(1.0)  # nothing positive
    assert best_threshold([1.0, 2.0], [True, True]) == pytest.approx(0.0)  # everything positive
    with pytest.raises(ValueError, match="equally long"):
        best_threshold([1.0], [True, False])


def test_best_threshold_for_a_combined_detector():
    # items 0 and 1 are flagged by another signal; the score only has to find item 3
    scores, labels, flagged = [0.0, 0.2, 1.0, 2.0], [True, True, False, True], [True, True, False, False]
    assert best_threshold(scores, labels) == pytest.approx(-1.0)  # alone: call everything positive (3/4)
    assert best_threshold(scores, labels, always_positive=flagged) == pytest.approx(1.5)  # combined: 4/4


def test_add_vector_moves_every_position_by_the_scaled_vector_and_refuses_another_width():
    import torch

    from claimkit.interventions import add_vector, steering

    v = torch.tensor([1.0, -2.0, 0.5])
    h = torch.zeros(2, 4, 3)
    out = add_vector(v, scale=-1.0)(h)
    assert torch.equal(out, (-v).expand(2, 4, 3))
    with pytest.raises(ValueError, match="width 2"):
        add_vector(v, scale=1.0)(torch.zeros(1, 1, 2))
    a, b = steering(v, scale=-1.0, layer=1), steering(v, scale=-2.0, layer=1)
    assert a.cache_parts() != b.cache_parts() and a.cache_parts()["kind"] == "add_vector"


def test_an_iterated_ablation_reads_back_nearer_zero_and_only_moves_along_the_features_rows(sae):
    h = hidden()
    with torch.no_grad():
        before = features_by_hand(sae, h)[..., IDS].mean()
        once = features_by_hand(sae, clamp_features(sae, IDS, scale=0.0)(h))[..., IDS].mean()
        edited = clamp_features(sae, IDS, scale=0.0, iterations=5)(h)
        thrice = features_by_hand(sae, edited)[..., IDS].mean()
        delta = (edited - h).reshape(-1, D)
        rows = sae.W_dec[IDS]
        coeffs = torch.linalg.lstsq(rows.T, delta.T).solution  # delta = coeffs^T @ rows exactly
        residue = delta - coeffs.T @ rows
    assert before > 0 and thrice < once
    assert residue.abs().max() < 1e-4
    with pytest.raises(ValueError, match="for ablation"):
        clamp_features(sae, IDS, scale=2.0, iterations=2)
