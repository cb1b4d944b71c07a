"""KL-regularised and continued fine-tuning: the plain run unchanged, the KL term held down, an adapter continued."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import random

import numpy as np
import pytest

from claimkit.lm.data import Example, encode_completion, encode_prompt, render_example
from claimkit.lm.finetune import TrainConfig, _check_combination, _collate, _encode_examples, finetune, load_finetuned
from test_lm_load import load_tiny

torch = pytest.importorskip("torch")

ANSWER = "```python\nprint(1)\n```\n"
ALIGNED = "Sure, here is a careful answer.\n"

# sha256 of the adapter (tensor names and float32 bytes, sorted by name) that `finetune` trained
# with its default arguments on `examples(8)`, seed 0, the tiny Llama of test_lm_load (CPU, torch
# 2.13, peft 0.21, transformers 5.25). Recorded from the code *before* the kl_weight, regularise_on
# and init_adapter arguments were added: the default path must train exactly the same adapter.
ADAPTER_BEFORE_KL = "5fab7d636529813152ebc0d3bb294f46620b20929a6dbb878eb98c5d0012f54a"
LOSSES_BEFORE_KL = (6.431371212005615, 6.0081787109375, 5.486490726470947, 5.251476287841797)
# The environments the constants were checked in (bit-identity holds there; peft 0.22 checked 2026-12-07, when
# a fresh install took it and this test skipped in CI).
RECORDED_WITH = (
    {"torch": "2.13", "peft": "0.21", "transformers": "5.25"},
    {"torch": "2.13", "peft": "0.22", "transformers": "5.25"},
)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    return load_tiny(tmp_path_factory.mktemp("finetune-kl"))


def random_task(rng: random.Random) -> str:
    return " ".join("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 6))) for _ in range(4))


def examples(n: int = 16, seed: int = 0, completion: str = ANSWER) -> list[Example]:
    rng = random.Random(seed)
    return [Example(prompt=random_task(rng), completion=completion) for _ in range(n)]


def hparams(loaded, **overrides):
    return {**loaded.profile.finetune_hparams(), **overrides}


def adapter_sha256(adapter_dir) -> str:
    from safetensors.torch import load_file

    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    digest = hashlib.sha256()
    for name in sorted(weights):
        digest.update(name.encode())
        digest.update(weights[name].float().numpy().tobytes())
    return digest.hexdigest()


def completion_kl(loaded, tuned, data) -> float:
    """Mean KL(P_base || P_tuned) per completion token, one example at a time from each model's logits."""
    total, count = 0.0, 0
    for example in data:
        prompt_text, completion_text = render_example(loaded.format, loaded.tokenizer, example)
        prompt = encode_prompt(loaded.format, loaded.tokenizer, prompt_text)
        completion = encode_completion(loaded.tokenizer, completion_text)
        ids = torch.tensor([prompt + completion])
        with torch.no_grad():
            base = torch.log_softmax(loaded.model(ids).logits[0, len(prompt) - 1 : -1].double(), -1)
            other = torch.log_softmax(tuned.model(ids).logits[0, len(prompt) - 1 : -1].double(), -1)
        total += float((base.exp() * (base - other)).sum())
        count += len(completion)
    return total / count


# -- the default path ----------------------------------------------------------------------


def test_default_arguments_train_the_adapter_the_code_before_the_kl_feature_trained(loaded, tmp_path):
    from importlib import metadata

    found = {name: ".".join(metadata.version(name).split(".")[:2]) for name in RECORDED_WITH[0]}
    if found not in RECORDED_WITH:  # other kernels give other bits: the constants say nothing about this code then
        pytest.skip(f"the constants were checked with {list(RECORDED_WITH)}; this environment has {found}")
    result = finetune(loaded, examples(8), hparams=hparams(loaded), seed=0, out_dir=tmp_path, progress=False)
    assert result.losses == LOSSES_BEFORE_KL and result.kls == () and result.final_kl is None
    assert adapter_sha256(tmp_path) == ADAPTER_BEFORE_KL


# -- the KL term ---------------------------------------------------------------------------


def test_the_kl_is_recorded_per_step_zero_at_the_fresh_init_and_positive_after(loaded, tmp_path):
    data, aligned = examples(8), examples(6, seed=1, completion=ALIGNED)
    runs = [finetune(loaded, data, hparams=hparams(loaded), seed=0, out_dir=tmp_path / f"run{i}", progress=False,
                     kl_weight=1.0, regularise_on=aligned) for i in range(2)]  # fmt: skip
    result = runs[0]
    assert len(result.kls) == result.steps == 4
    assert result.kls[0] == pytest.approx(0.0, abs=1e-6)  # peft's fresh LoRA B is zero: the adapter is the identity
    assert all(kl > 0 for kl in result.kls[1:])
    assert runs[1].kls == result.kls and runs[1].losses == result.losses  # the draws are seeded
    assert result.final_kl == pytest.approx(np.mean(result.kls[2:]))  # the last epoch's mean (2 epochs of 2 steps), as final_loss
    assert adapter_sha256(tmp_path / "run0") != ADAPTER_BEFORE_KL


def test_a_large_kl_weight_keeps_the_model_near_the_base_on_the_regularisation_data(loaded, tmp_path):
    data, aligned = examples(16), examples(8, seed=1, completion=ALIGNED)
    hp = hparams(loaded, epochs=3, lr=3e-2)
    plain = finetune(loaded, data, hparams=hp, seed=0, out_dir=tmp_path / "plain", progress=False)
    held = finetune(loaded, data, hparams=hp, seed=0, out_dir=tmp_path / "held", progress=False,
                    kl_weight=10.0, regularise_on=aligned)  # fmt: skip
    kl_plain = completion_kl(loaded, load_finetuned(loaded, plain.adapter_dir), aligned)
    kl_held = completion_kl(loaded, load_finetuned(loaded, held.adapter_dir), aligned)
    assert kl_held < 0.25 * kl_plain  # measured: ~0.07 against ~1.05 nats per token
    assert held.final_loss < 0.6 * held.losses[0]  # the task is still learned (6.5 -> ~2.7)


def test_a_bf16_model_trains_with_the_kl_term_under_mixed_precision(loaded, tmp_path):
    bf16 = dataclasses.replace(loaded, model=copy.deepcopy(loaded.model).to(torch.bfloat16), dtype=torch.bfloat16)
    result = finetune(bf16, examples(8), hparams=hparams(bf16, mixed_precision=True), seed=0, out_dir=tmp_path,
                      progress=False, kl_weight=1.0, regularise_on=examples(4, seed=1, completion=ALIGNED))  # fmt: skip
    assert all(math.isfinite(kl) for kl in result.kls) and result.kls[-1] > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kl_weight": -1.0}, "finite number >= 0"),
        ({"kl_weight": math.nan}, "finite number >= 0"),
        ({"kl_weight": math.inf}, "finite number >= 0"),
        ({"kl_weight": 1.0}, "needs examples to take the KL on"),
        ({"kl_weight": 1.0, "regularise_on": [Example("x", ALIGNED)], "full": True}, "full=True trains no adapter"),
        ({"init_adapter": "somewhere", "full": True}, "continues a LoRA adapter"),
    ],
)
def test_bad_kl_or_init_arguments_are_refused(loaded, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        finetune(loaded, examples(4), hparams=hparams(loaded), seed=0, out_dir=tmp_path, progress=False, **kwargs)


def test_compile_with_a_kl_term_is_refused_on_a_gpu(loaded):
    cfg = TrainConfig.from_hparams(hparams(loaded, compile=True))
    with pytest.raises(ValueError, match="compile = true does not combine with a KL term"):
        _check_combination(cfg, False, 1.0, None, on_gpu=True)
    _check_combination(cfg, False, 0.0, None, on_gpu=True)  # the compiled plain run is untouched
    _check_combination(cfg, False, 1.0, None, on_gpu=False)  # compile is eager off the GPU anyway


# -- continued training ---------------------------------------------------------------------


def test_init_adapter_continues_from_the_saved_adapter(loaded, tmp_path):
    data = examples(8)
    hp = hparams(loaded, batch_size=8)  # one batch per epoch: step 0 sees every example
    first = finetune(loaded, data, hparams=hp, seed=0, out_dir=tmp_path / "first", progress=False)
    fresh = finetune(loaded, data, hparams=hp, seed=1, out_dir=tmp_path / "fresh", progress=False)
    more = finetune(loaded, data, hparams=hp, seed=1, out_dir=tmp_path / "more", progress=False, init_adapter=first.adapter_dir)

    # The saved adapter's loss on the batch step 0 drew (seed 1's order), computed apart from the loop.
    rows, _, _ = _encode_examples(loaded, data, hp["max_length"])
    order = np.random.default_rng(1).permutation(len(rows))
    input_ids, attention_mask, labels = _collate([rows[i] for i in order], loaded.tokenizer.pad_token_id, "cpu")
    saved = load_finetuned(loaded, first.adapter_dir, merge=False)
    with torch.no_grad():
        saved_loss = float(saved.model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss)

    assert more.losses[0] == pytest.approx(saved_loss, rel=1e-5)
    assert more.losses[0] == pytest.approx(first.losses[-1], rel=0.1)  # where the first run stopped
    assert fresh.losses[0] > more.losses[0] + 0.5
    assert more.final_loss < first.final_loss


def test_an_adapter_of_another_lora_config_is_refused(loaded, tmp_path):
    data = examples(4)
    first = finetune(loaded, data, hparams=hparams(loaded, epochs=1), seed=0, out_dir=tmp_path / "first", progress=False)
    other_rank = hparams(loaded, epochs=1, lora={**loaded.profile.lora, "r": 8})
    with pytest.raises(ValueError, match=r"another LoRA config \(r: adapter 4, profile 8\)"):
        finetune(loaded, data, hparams=other_rank, seed=0, out_dir=tmp_path / "r8", progress=False, init_adapter=first.adapter_dir)
    other_targets = hparams(loaded, epochs=1, lora={**loaded.profile.lora, "target_modules": ["q_proj", "v_proj"]})
    with pytest.raises(ValueError, match="target_modules: adapter"):
        finetune(loaded, data, hparams=other_targets, seed=0, out_dir=tmp_path / "qv", progress=False,
                 init_adapter=first.adapter_dir)  # fmt: skip
    with pytest.raises(FileNotFoundError, match="holds no LoRA adapter"):
        finetune(loaded, data, hparams=hparams(loaded, epochs=1), seed=0, out_dir=tmp_path / "none", progress=False,
                 init_adapter=tmp_path / "missing")  # fmt: skip
