"""SAEs: training with sae-lens on data with a known dictionary, quality by hand, loading by source.

The Gemma Scope path (release + id from the paper profile) runs sae-lens's real
`SAE.from_pretrained` and its Gemma-2 converter offline: only the hub download is
replaced by a local `params.npz` in Gemma Scope's own layout and shapes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sae_lens")

from claimkit.cache import ArtifactCache  # noqa: E402
from claimkit.lm.profiles import load_profile  # noqa: E402
from claimkit.sae import (  # noqa: E402
    SAELoadError,
    decoder_directions,
    describe_source,
    encode,
    load_pretrained_sae,
    load_sae,
    load_sae_from_disk,
    reconstruct,
    sae_for,
    sae_quality,
    save_sae,
    train_sae,
)

ROOT = Path(__file__).resolve().parents[1]
D_IN, N_TRUE = 16, 32


def dictionary() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    d = torch.randn(N_TRUE, D_IN, generator=g)
    return d / d.norm(dim=1, keepdim=True)


def sample(n: int, seed: int, active: int = 3) -> torch.Tensor:
    """Each row: `active` random dictionary atoms with magnitudes in [1, 5], plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.rand(n, N_TRUE, generator=g).argsort(dim=1)[:, :active]
    coeff = torch.zeros(n, N_TRUE)
    coeff.scatter_(1, idx, torch.rand(n, active, generator=g) * 4 + 1)
    return coeff @ dictionary() + 0.02 * torch.randn(n, D_IN, generator=g)


@pytest.fixture(scope="module")
def train_x() -> torch.Tensor:
    return sample(4000, seed=1)


@pytest.fixture(scope="module")
def held_out() -> torch.Tensor:
    return sample(1000, seed=2)


@pytest.fixture(scope="module")
def topk(train_x):
    return train_sae(train_x, width=64, k=4, steps=1500, batch_size=64, lr=3e-3, seed=0, threads=1)


def recovered(sae) -> float:
    """Share of true atoms matched by some decoder row with cosine > 0.9."""
    rows = decoder_directions(sae, range(sae.cfg.d_sae))
    return float(((dictionary() @ rows.T).max(dim=1).values > 0.9).float().mean())


# -- training -----------------------------------------------------------------


def test_topk_sae_learns_the_dictionary(topk, held_out):
    from sae_lens import TopKSAE

    assert isinstance(topk.sae, TopKSAE)  # the inference class, not the training one
    assert (topk.architecture, topk.width, topk.k, topk.l1_coefficient) == ("topk", 64, 4, None)
    quality = sae_quality(topk.sae, held_out)
    assert quality.explained_variance > 0.85
    assert quality.mean_l0 == pytest.approx(4.0)
    assert recovered(topk.sae) >= 0.8
    assert "k=4" in topk.describe()


def test_standard_l1_sae_learns_the_dictionary(train_x, held_out):
    from sae_lens import StandardSAE

    trained = train_sae(train_x, width=64, architecture="standard", l1_coefficient=2.0, steps=1500,
                        batch_size=64, lr=3e-3, seed=0, threads=1)  # fmt: skip
    assert isinstance(trained.sae, StandardSAE) and trained.k is None and trained.l1_coefficient == 2.0
    quality = sae_quality(trained.sae, held_out)
    assert quality.explained_variance > 0.6
    assert quality.mean_l0 < 16  # sparse: a quarter of the width at most
    assert recovered(trained.sae) >= 0.8


def test_training_is_deterministic_for_a_seed(train_x):
    settings = dict(width=32, k=4, steps=200, batch_size=64, lr=3e-3, threads=1)
    a = train_sae(train_x, seed=3, **settings).sae.state_dict()
    b = train_sae(train_x, seed=3, **settings).sae.state_dict()
    c = train_sae(train_x, seed=4, **settings).sae.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert not torch.equal(a["W_dec"], c["W_dec"])


def test_training_leaves_the_global_rng_and_threads_alone(train_x):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    train_sae(train_x, width=16, k=2, steps=20, batch_size=64, seed=0, threads=1)
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


def test_training_writes_no_files_and_no_progress_bars(train_x, tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    train_sae(train_x, width=16, k=2, steps=20, batch_size=64, seed=0, threads=1)
    assert list(tmp_path.iterdir()) == []
    assert "Training SAE" not in capfd.readouterr().err
    train_sae(train_x, width=16, k=2, steps=20, batch_size=64, seed=0, threads=1, progress=True)
    assert "Training SAE" in capfd.readouterr().err


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(width=0), "width"),
        (dict(width=8, k=9), "k must"),
        (dict(width=8, architecture="gated"), "architecture"),
        (dict(width=8, k=2, batch_size=10_000), "fewer than batch_size"),
        (dict(width=8, k=2, lr=0), "lr"),
        (dict(width=8, k=2, threads=0), "threads"),
    ],
)
def test_training_arguments_are_checked(train_x, kwargs, message):
    with pytest.raises(ValueError, match=message):
        train_sae(train_x, steps=5, **kwargs)


def test_activations_must_be_a_finite_matrix():
    with pytest.raises(ValueError, match="2-D"):
        train_sae(torch.zeros(10), width=4, steps=1, batch_size=2)
    bad = torch.zeros(10, 4)
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        train_sae(bad, width=4, steps=1, batch_size=2)


# -- reading --------------------------------------------------------------------


def hand_made_sae():
    """ReLU SAE with x -> features (relu(x0), relu(x1), 0) and decoder = identity on the first two."""
    from sae_lens import StandardSAE, StandardSAEConfig

    sae = StandardSAE(StandardSAEConfig(d_in=2, d_sae=3, apply_b_dec_to_input=False))
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
        sae.b_enc.zero_()
        sae.W_dec.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 3.0]]))
        sae.b_dec.zero_()
    return sae


def test_quality_matches_hand_computation():
    x = np.array([[1.0, -2.0], [3.0, 0.5], [-1.0, -1.0], [2.0, 2.0]])
    quality = sae_quality(hand_made_sae(), torch.tensor(x, dtype=torch.float32))
    error = np.minimum(x, 0.0)  # the reconstruction is relu(x)
    assert quality.explained_variance == pytest.approx(1 - (error**2).sum() / ((x - x.mean(0)) ** 2).sum())
    assert quality.mse == pytest.approx((error**2).mean())
    assert quality.mean_l0 == pytest.approx((x > 0).sum() / 4)
    assert quality.dead_fraction == pytest.approx(1 / 3)  # feature 2 never fires
    assert quality.n == 4
    assert quality.acceptable(min_explained_variance=0.5, max_dead_fraction=0.5)
    assert not quality.acceptable(min_explained_variance=0.5, max_dead_fraction=0.2)


def test_encode_reconstruct_and_directions():
    sae = hand_made_sae()
    x = torch.tensor([[1.0, -2.0], [3.0, 0.5], [-1.0, 4.0]])
    features = encode(sae, x, batch_size=2)  # batching must not change the result
    assert torch.equal(features, torch.tensor([[1.0, 0.0, 0.0], [3.0, 0.5, 0.0], [0.0, 4.0, 0.0]]))
    assert torch.equal(reconstruct(sae, x), torch.clamp(x, min=0))
    assert torch.equal(decoder_directions(sae, [2, 0]), torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    assert torch.equal(decoder_directions(sae, [2], normalize=False), torch.tensor([[0.0, 3.0]]))
    with pytest.raises(IndexError, match="3 features"):
        decoder_directions(sae, [3])
    with pytest.raises(ValueError, match="d_in=2"):
        encode(sae, torch.zeros(4, 5))


def test_save_and_load_by_path(topk, held_out, tmp_path):
    save_sae(topk.sae, tmp_path / "sae")
    loaded = load_sae({"path": str(tmp_path / "sae")})
    assert type(loaded) is type(topk.sae)
    assert torch.equal(encode(loaded, held_out), encode(topk.sae, held_out))
    with pytest.raises(SAELoadError, match="not an SAE saved in sae-lens's format"):
        load_sae_from_disk(tmp_path)


def test_load_sae_needs_a_known_source():
    with pytest.raises(ValueError, match="sae_for"):
        load_sae({"source": "train"})
    with pytest.raises(ValueError, match="'release' and 'id'"):
        load_sae({"release": "only"})


# -- the paper profile's Gemma Scope SAE, offline ---------------------------------

GEMMA_D_IN, GEMMA_WIDTH = 2304, 16384


@pytest.fixture(scope="module")
def paper_sae_source():
    return dict(load_profile("paper", ROOT / "fixtures" / "profiles").sae)


@pytest.fixture(scope="module")
def gemma_scope_npz(tmp_path_factory):
    """params.npz as Gemma Scope publishes it (w_enc, w_dec, b_enc, b_dec, threshold), at layer_20/width_16k shapes."""
    rng = np.random.default_rng(0)
    params = {
        "w_enc": rng.standard_normal((GEMMA_D_IN, GEMMA_WIDTH), dtype=np.float32) / np.float32(48.0),
        "w_dec": rng.standard_normal((GEMMA_WIDTH, GEMMA_D_IN), dtype=np.float32) / np.float32(48.0),
        "b_enc": rng.standard_normal(GEMMA_WIDTH, dtype=np.float32) * np.float32(0.1),
        "b_dec": rng.standard_normal(GEMMA_D_IN, dtype=np.float32),
        "threshold": np.abs(rng.standard_normal(GEMMA_WIDTH, dtype=np.float32)),
    }
    path = tmp_path_factory.mktemp("gemma-scope") / "params.npz"
    np.savez(path, **params)
    return path, params


@pytest.fixture
def fake_hub(monkeypatch, gemma_scope_npz):
    """Serve params.npz for sae-lens's hub download; record what was asked for."""
    from sae_lens.loading import pretrained_sae_loaders

    requests = []

    def download(repo_id, filename, subfolder=None, **kwargs):
        requests.append((repo_id, subfolder, filename))
        return str(gemma_scope_npz[0])

    monkeypatch.setattr(pretrained_sae_loaders, "hf_hub_download", download)
    return requests


def test_paper_profile_loads_gemma_scope_through_sae_lens(paper_sae_source, gemma_scope_npz, fake_hub, tmp_path,
                                                          monkeypatch):  # fmt: skip
    from sae_lens import JumpReLUSAE

    monkeypatch.delenv(paper_sae_source.get("env", "CLAIMKIT_PAPER_SAE"), raising=False)
    sae = load_sae(paper_sae_source)
    # the registry maps the canonical id to the folder of the published weights
    assert fake_hub == [("google/gemma-scope-2b-pt-res", "layer_20/width_16k/average_l0_71", "params.npz")]
    assert isinstance(sae, JumpReLUSAE)
    assert (sae.cfg.d_in, sae.cfg.d_sae) == (GEMMA_D_IN, GEMMA_WIDTH)
    assert sae.cfg.metadata.hook_name == "blocks.20.hook_resid_post"
    assert describe_source(paper_sae_source) == "gemma-scope-2b-pt-res-canonical/layer_20/width_16k/canonical"

    # JumpReLU by hand from the published arrays: f = pre * (pre > threshold), pre = x W_enc + b_enc
    params = gemma_scope_npz[1]
    x = np.random.default_rng(1).standard_normal((3, GEMMA_D_IN), dtype=np.float32) * np.float32(4.0)
    pre = x.astype(np.float64) @ params["w_enc"] + params["b_enc"]
    expected = pre * (pre > params["threshold"])
    features = encode(sae, torch.tensor(x)).numpy()
    assert 0 < (features > 0).sum() < features.size
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(decoder_directions(sae, [8684], normalize=False).numpy(), params["w_dec"][[8684]])

    # the same SAE saved locally and named by the profile's env variable: no hub at all
    save_sae(sae, tmp_path / "local")
    fake_hub.clear()
    monkeypatch.setenv(paper_sae_source["env"], str(tmp_path / "local"))
    local = load_sae(paper_sae_source)
    assert fake_hub == []
    assert torch.equal(local.W_enc, sae.W_enc) and torch.equal(local.threshold, sae.threshold)
    assert "local" in describe_source(paper_sae_source)


def test_offline_hub_gives_a_friendly_error(paper_sae_source, monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError
    from sae_lens.loading import pretrained_sae_loaders

    def offline(*args, **kwargs):
        raise LocalEntryNotFoundError("cannot find the requested files in the local cache")

    monkeypatch.setattr(pretrained_sae_loaders, "hf_hub_download", offline)
    monkeypatch.delenv(paper_sae_source["env"], raising=False)
    with pytest.raises(SAELoadError) as info:
        load_sae(paper_sae_source)
    message = str(info.value)
    folder = "layer_20/width_16k/average_l0_71"
    assert f"huggingface-cli download google/gemma-scope-2b-pt-res --include '{folder}/*'" in message
    assert "HF_HUB_OFFLINE=1" in message


def test_unknown_release_or_id_is_named():
    with pytest.raises(SAELoadError, match="not in sae-lens's registry"):
        load_pretrained_sae("gemma-scope-9000", "layer_20/width_16k/canonical")
    with pytest.raises(SAELoadError, match="has no id 'layer_99/width_16k/canonical'"):
        load_pretrained_sae("gemma-scope-2b-pt-res-canonical", "layer_99/width_16k/canonical")


def test_env_pointing_nowhere_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("CLAIMKIT_TEST_SAE", str(tmp_path / "missing"))
    with pytest.raises(SAELoadError, match="CLAIMKIT_TEST_SAE"):
        load_sae({"release": "r", "id": "i", "env": "CLAIMKIT_TEST_SAE"})


# -- the cached claim helper -------------------------------------------------------


def test_sae_for_trains_once_and_measures_held_out(train_x, tmp_path):
    calls = []

    def activations():
        calls.append(1)
        return train_x[:2000]

    source = {"source": "train", "width": 32, "k": 4, "steps": 300, "batch_size": 64, "lr": 3e-3, "threads": 1}
    cache = ArtifactCache(tmp_path)
    first = sae_for(source, activations, key={"model": "synthetic", "layer": 0}, cache=cache, seed=0)
    again = sae_for(source, activations, key={"model": "synthetic", "layer": 0}, cache=cache, seed=0)
    assert len(calls) == 1  # the second call read the cache
    assert first.quality.n == 400  # holdout_fraction 0.2 of 2000 rows, not trained on
    assert first.quality.explained_variance > 0.5
    assert first.quality == again.quality and first.name == again.name and "k=4" in first.name
    assert torch.equal(first.sae.W_dec, again.sae.W_dec)
    other = sae_for(source, activations, key={"model": "synthetic", "layer": 1}, cache=cache, seed=0)
    assert len(calls) == 2 and other.directory != first.directory


def test_sae_for_holds_out_whole_generations(train_x, tmp_path):
    lengths = [2**i for i in range(10)]  # any two distinct lengths have a unique sum
    starts = np.cumsum([0, *lengths])
    generations = [train_x[a:b] for a, b in zip(starts[:-1], starts[1:])]
    source = {"source": "train", "width": 16, "k": 2, "steps": 20, "batch_size": 64, "threads": 1}
    loaded = sae_for(source, lambda: generations, key={"model": "synthetic"}, cache=ArtifactCache(tmp_path))
    assert bin(loaded.quality.n).count("1") == 2  # 2 of the 10 generations (0.2), each whole


def test_importing_claimkit_sae_does_not_import_sae_lens_or_torch():
    code = (
        "import sys, claimkit.sae, claimkit.features, claimkit.probe; "
        "print(sorted(m for m in ('torch', 'sae_lens', 'transformer_lens') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
