"""The qwen2.5-14b-instruct profile's loading path, on a tiny random Qwen2 checkpoint in a local directory.

The profile names the second paper's main model on the hub; without network the same code
reads a local directory named by $CLAIMKIT_QWEN_MODEL. A two-layer Qwen2 with a ChatML
stand-in tokenizer (Qwen's special tokens and template) is written there, loaded through the
profile, prompted in its chat format, sampled and fine-tuned one LoRA step.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from claimkit.lm.data import Example, render_prompt
from claimkit.lm.finetune import finetune
from claimkit.lm.load import load_model
from claimkit.lm.profiles import load_profile
from claimkit.lm.sample import sample
from claimkit.rehearsal import stand_in_tokenizer, write_model

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
TASKS = ["Write a function that reads a file.", "Hash a password."]
CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def profile():
    return load_profile("qwen2.5-14b-instruct", ROOT / "fixtures" / "profiles")


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory) -> Path:
    from transformers import Qwen2Config

    vocab = 300
    specials = {vocab - 3: "<|endoftext|>", vocab - 2: "<|im_start|>", vocab - 1: "<|im_end|>"}
    tokenizer = stand_in_tokenizer(vocab, specials, bos="<|endoftext|>", eos="<|im_end|>", pad="<|endoftext|>")
    tokenizer.chat_template = CHATML
    config = Qwen2Config(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=vocab - 3, eos_token_id=vocab - 1, pad_token_id=vocab - 3,
                         tie_word_embeddings=False)  # fmt: skip
    directory = tmp_path_factory.mktemp("qwen") / "Qwen2.5-tiny-RANDOM"
    return write_model(directory, config, tokenizer, what="a tiny random Qwen2 for tests", seed=0)


@pytest.fixture
def qwen_env(tiny_qwen, monkeypatch):
    monkeypatch.setenv("CLAIMKIT_QWEN_MODEL", str(tiny_qwen))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing may reach the network
    return tiny_qwen


def test_the_profile_names_the_papers_model(profile):
    assert (profile.kind, profile.format, profile.needs_gpu) == ("hub", "chat", True)
    assert profile.source("behaviour") == {"id": "Qwen/Qwen2.5-14B-Instruct", "env": "CLAIMKIT_QWEN_MODEL"}
    assert profile.lora["r"] == 32


def test_a_local_qwen2_loads_through_the_profile_and_answers_in_chat_format(profile, qwen_env):
    loaded = load_model(profile, device="cpu")
    assert type(loaded.model).__name__ == "Qwen2ForCausalLM"
    assert loaded.source == str(qwen_env) and "(local: " in loaded.name
    prompts = [render_prompt(loaded.format, loaded.tokenizer, task) for task in TASKS]
    assert prompts[0].endswith("<|im_start|>assistant\n") and "<|im_start|>user\n" + TASKS[0] in prompts[0]
    generations = sample(loaded, prompts, max_new_tokens=3, temperature=0.0, top_p=1.0, seed=0, batch_size=2,
                         progress=False)  # fmt: skip
    assert [g.prompt for g in generations] == prompts
    assert all(1 <= g.n_new_tokens <= 3 or g.finished for g in generations)


def test_lora_step_on_the_local_qwen2(profile, qwen_env, tmp_path):
    loaded = load_model(profile, device="cpu")
    examples = [Example(task, "```python\nprint(1)\n```\n") for task in TASKS]
    hparams = {**profile.finetune_hparams(), "epochs": 1, "batch_size": 2, "mixed_precision": False}
    result = finetune(loaded, examples, hparams=hparams, seed=0, out_dir=tmp_path / "adapter", progress=False)
    assert result.steps == 1 and np.isfinite(result.final_loss) and result.dropped == 0
    adapter = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text(encoding="utf-8"))
    assert adapter["r"] == 32 and sorted(adapter["target_modules"]) == sorted(profile.lora["target_modules"])
