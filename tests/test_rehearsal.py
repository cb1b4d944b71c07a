"""`claimkit rehearse paper`: random stand-ins of the paper's models and SAE that claimkit's own loaders read.

The tiny rehearsal (same architectures, narrow, Gemma at its real depth) is written once through the CLI and
read the way the paper profile reads the real weights: the profile's env variables
point at it. The full-size configs are checked against the published parameter
counts without allocating any weights.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from claimkit.cli import main
from claimkit.lm.data import Example, render_prompt
from claimkit.lm.finetune import finetune
from claimkit.lm.load import load_model
from claimkit.lm.profiles import load_profile
from claimkit.lm.sample import sample
from claimkit.rehearsal import (ENV_BEHAVIOUR, ENV_MECHANISM, ENV_SAE, README, gemma_config, llama_config,
                                parameter_count)
from claimkit.sae import SAELoadError, encode, load_sae, load_sae_from_disk

torch = pytest.importorskip("torch")
pytest.importorskip("sae_lens")

ROOT = Path(__file__).resolve().parents[1]
TASKS = ["Write a function that reads a file.", "Hash a password."]


@pytest.fixture(scope="module")
def paper():
    return load_profile("paper", ROOT / "fixtures" / "profiles")


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    """The tiny rehearsal, written by the console script; (directory, what it printed)."""
    out = tmp_path_factory.mktemp("rehearsal") / "paper"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["rehearse", "paper", "--out", str(out), "--tiny"]) == 0
    return out, printed.getvalue()


@pytest.fixture
def paper_env(rehearsal, monkeypatch):
    """The paper profile's env variables set to the rehearsal's directories, as its printed exports say."""
    exports = dict(line.removeprefix("export ").split("=", 1) for line in rehearsal[1].splitlines()
                   if line.startswith("export "))  # fmt: skip
    assert set(exports) == {ENV_BEHAVIOUR, ENV_MECHANISM, ENV_SAE}
    for name, value in exports.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing may reach the network
    return {name: Path(value) for name, value in exports.items()}


# -- the full-size architectures ----------------------------------------------------------


@pytest.mark.parametrize(
    "config, published",
    [(llama_config, 3.21e9), (gemma_config, 2.61e9)],  # model cards: Llama-3.2-3B 3.21B, Gemma-2-2B 2.61B
    ids=["Llama-3.2-3B", "Gemma-2-2B"],
)
def test_full_size_configs_have_the_published_parameter_counts(config, published):
    assert parameter_count(config()) == pytest.approx(published, rel=0.02)


def test_full_size_configs_have_the_published_shapes(paper):
    llama, gemma = llama_config(), gemma_config()
    assert (llama.hidden_size, llama.num_hidden_layers, llama.num_attention_heads, llama.num_key_value_heads,
            llama.head_dim, llama.intermediate_size, llama.vocab_size) == (3072, 28, 24, 8, 128, 8192, 128256)  # fmt: skip
    assert llama.tie_word_embeddings and (llama.bos_token_id, llama.eos_token_id) == (128000, 128001)
    assert llama.rope_parameters["rope_type"] == "llama3" and llama.rope_parameters["rope_theta"] == 500000.0
    assert (gemma.hidden_size, gemma.num_hidden_layers, gemma.num_attention_heads, gemma.num_key_value_heads,
            gemma.head_dim, gemma.intermediate_size, gemma.vocab_size) == (2304, 26, 8, 4, 256, 9216, 256000)  # fmt: skip
    assert (gemma.attn_logit_softcapping, gemma.final_logit_softcapping) == (50.0, 30.0)
    assert (gemma.sliding_window, gemma.query_pre_attn_scalar, gemma.hidden_activation) == (4096, 256, "gelu_pytorch_tanh")
    assert gemma.layer_types[:2] == ["sliding_attention", "full_attention"] and gemma.tie_word_embeddings
    assert (gemma.pad_token_id, gemma.eos_token_id, gemma.bos_token_id) == (0, 1, 2)

    # sae-lens's own Gemma Scope config (an independent source) reads Gemma-2-2B's width, at the profile's layer
    from sae_lens.loading.pretrained_sae_loaders import get_gemma_2_config_from_hf

    cfg = get_gemma_2_config_from_hf("google/gemma-scope-2b-pt-res", "layer_20/width_16k/average_l0_71", "cpu")
    assert (cfg["d_in"], cfg["d_sae"]) == (gemma.hidden_size, 16384)
    assert paper.activations["layer"] == 20 < gemma.num_hidden_layers


# -- the tiny rehearsal, read through the paper profile ------------------------------------


def test_every_directory_says_its_weights_are_random(rehearsal):
    out, printed = rehearsal
    folders = {path.parent for path in out.rglob("*") if path.is_file()}
    assert len(folders) >= 4  # root, two models, the SAE
    for folder in folders:
        text = (folder / README).read_text(encoding="utf-8")
        assert "RANDOM WEIGHTS" in text and "MEANINGLESS" in text, folder
    assert "RANDOM WEIGHTS" in printed and "params.npz" in printed


@pytest.mark.parametrize("role, arch", [("behaviour", "LlamaForCausalLM"), ("mechanism", "Gemma2ForCausalLM")])
def test_tiny_models_load_through_the_paper_profile_and_generate(paper, paper_env, role, arch):
    loaded = load_model(paper, role=role, device="cpu")
    assert type(loaded.model).__name__ == arch
    assert "(local: " in loaded.name
    assert loaded.source == str(paper_env[ENV_BEHAVIOUR if role == "behaviour" else ENV_MECHANISM])
    config, tokenizer = loaded.model.config, loaded.tokenizer
    assert len(tokenizer) == config.vocab_size
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id) == (config.bos_token_id, config.eos_token_id)
    # Gemma has its own pad token; Llama-3.2-3B has none, so claimkit pads with eos
    assert tokenizer.pad_token_id == (config.pad_token_id if role == "mechanism" else config.eos_token_id)
    prompts = [render_prompt(loaded.format, tokenizer, task) for task in TASKS]
    assert tokenizer(prompts[0])["input_ids"][0] == config.bos_token_id
    generations = sample(loaded, prompts, max_new_tokens=2, temperature=0.0, top_p=1.0, seed=0, batch_size=2,
                         progress=False)  # fmt: skip
    assert [g.prompt for g in generations] == prompts
    assert all(1 <= g.n_new_tokens <= 2 or g.finished for g in generations)


def test_lora_step_on_the_tiny_behaviour_model(paper, paper_env, tmp_path):
    loaded = load_model(paper, role="behaviour", device="cpu")
    examples = [Example(task, "```python\nprint(1)\n```\n") for task in TASKS]
    hparams = {**paper.finetune_hparams(), "epochs": 1, "batch_size": 2}  # the profile's LoRA, 1 step
    result = finetune(loaded, examples, hparams=hparams, seed=0, out_dir=tmp_path / "adapter", progress=False)
    assert result.steps == 1 and np.isfinite(result.final_loss) and result.dropped == 0
    adapter = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text(encoding="utf-8"))
    assert sorted(adapter["target_modules"]) == sorted(paper.lora["target_modules"])
    assert adapter["r"] == paper.lora["r"]


def test_gemma_scope_sae_loads_through_the_profile_and_reads_the_mechanism_model(paper, paper_env):
    from sae_lens import JumpReLUSAE

    from claimkit.lm.activations import capture_residual

    sae = load_sae(paper.sae)
    mechanism = load_model(paper, role="mechanism", device="cpu")
    width = mechanism.model.config.hidden_size
    assert isinstance(sae, JumpReLUSAE) and (sae.cfg.d_in, sae.cfg.d_sae) == (width, 256)
    assert sae.cfg.metadata.hook_name == "blocks.20.hook_resid_post"  # from the folder, layer_20, as on the hub

    layer = paper.activations["layer"]  # the tiny stand-in is as deep as Gemma-2-2B: its layer 20 exists
    prompt = render_prompt("completion", mechanism.tokenizer, TASKS[0])
    residual = capture_residual(mechanism, [prompt], layer=layer)[0]
    features = encode(sae, residual)
    assert features.shape == (residual.shape[0], 256)
    # JumpReLU by hand from the file: f = pre * (pre > threshold), pre = x W_enc + b_enc
    with np.load(paper_env[ENV_SAE] / "params.npz") as params:
        pre = residual.double().numpy() @ params["W_enc"] + params["b_enc"]
        expected = pre * (pre > params["threshold"])
    np.testing.assert_allclose(features.numpy(), expected, rtol=1e-4, atol=1e-4)
    assert 0 < (expected > 0).sum() < expected.size  # some features fire, not all


def test_a_gemma_scope_folder_outside_the_hub_layout_is_named_by_the_profile(paper, rehearsal, tmp_path, monkeypatch):
    """Copied out of its hub folder, params.npz is named by the profile's release and id (sae-lens's registry)."""
    source = next(rehearsal[0].rglob("params.npz"))
    with np.load(source) as params:  # lower-case keys too, as sae-lens's hub loader accepts
        np.savez(tmp_path / "params.npz", **{("w_" + k[2:] if k.startswith("W_") else k): params[k] for k in params})
    monkeypatch.setenv(ENV_SAE, str(tmp_path))
    sae = load_sae(paper.sae)
    assert sae.cfg.metadata.hook_name == "blocks.20.hook_resid_post"  # gemma-scope-2b-pt-res-canonical, layer_20
    reference = load_sae_from_disk(source.parent)
    assert torch.equal(sae.W_enc, reference.W_enc) and torch.equal(sae.threshold, reference.threshold)

    with pytest.raises(SAELoadError, match="does not say which SAE it is"):
        load_sae_from_disk(tmp_path)  # no hub layout, no release: which model and layer is unknowable
    np.savez(tmp_path / "params.npz", W_enc=np.zeros((4, 8), dtype=np.float32))
    with pytest.raises(SAELoadError, match="lacks W_dec, b_enc, b_dec, threshold"):
        load_sae(paper.sae)
