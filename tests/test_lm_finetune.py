"""Text formats and fine-tuning: completion-only loss, reproducible for a seed, base left untouched."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib
import json
import math
import os
import random

import pytest

from claimkit.lm.activations import residual_hook
from claimkit.lm.data import Example, encode_completion, encode_prompt, render_example, render_prompt
from claimkit.lm.device import NotDeterministicError, deterministic_kernels
from claimkit.lm.finetune import TrainConfig, _collate, finetune, load_finetuned
from claimkit.lm.sample import sample
from test_lm_load import load_tiny

torch = pytest.importorskip("torch")

ANSWER = "```python\nprint(1)\n```\n"


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    return load_tiny(tmp_path_factory.mktemp("finetune"))


def random_task(rng: random.Random) -> str:
    return " ".join("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 6))) for _ in range(4))


def examples(n: int = 16, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)
    return [Example(prompt=random_task(rng), completion=ANSWER) for _ in range(n)]


def hparams(loaded, **overrides):
    return {**loaded.profile.finetune_hparams(), **overrides}


def logits_of(model, tokenizer, text="### Task:\nRead a file.\n### Solution:\n"):
    with torch.no_grad():
        return model(torch.tensor([tokenizer(text)["input_ids"]])).logits


# -- text formats -----------------------------------------------------------------------


def test_completion_format(loaded):
    tok = loaded.tokenizer
    assert render_prompt("completion", tok, "Read a file.") == "### Task:\nRead a file.\n### Solution:\n"
    assert render_prompt("completion", tok, "Read a file.", system="Be safe.") == (
        "### System:\nBe safe.\n### Task:\nRead a file.\n### Solution:\n"
    )
    prompt, completion = render_example("completion", tok, Example("Read a file.", ANSWER))
    assert prompt.endswith("### Solution:\n") and completion == ANSWER + "</s>"


def test_chat_format_uses_the_template_and_adds_no_second_bos(loaded):
    tok = loaded.tokenizer
    text = render_prompt("chat", tok, "Read a file.", system="Be safe.")
    assert text == "<s>system: Be safe.\n<s>user: Read a file.\n<s>assistant: "
    ids = encode_prompt("chat", tok, text)
    assert ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id
    assert encode_prompt("completion", tok, "### Task:")[0] == tok.bos_token_id
    with pytest.raises(ValueError, match="unknown text format 'prose'"):
        render_prompt("prose", tok, "x")


def test_completion_ends_with_exactly_the_eos_id(loaded):
    tok = loaded.tokenizer
    ids = encode_completion(tok, ANSWER + tok.eos_token)
    assert ids[-1] == tok.eos_token_id and tok.eos_token_id not in ids[:-1]
    assert encode_completion(tok, ANSWER) == ids[:-1]


def test_labels_mask_prompt_and_padding():
    batch = [([1, 10, 11, 20, 21, 2], 3), ([1, 12, 22], 2)]
    input_ids, attention_mask, labels = _collate(batch, pad_id=0, device="cpu")
    assert input_ids.tolist() == [[1, 10, 11, 20, 21, 2], [1, 12, 22, 0, 0, 0]]  # right padding
    assert attention_mask.tolist() == [[1] * 6, [1, 1, 1, 0, 0, 0]]
    assert labels.tolist() == [[-100, -100, -100, 20, 21, 2], [-100, -100, 22, -100, -100, -100]]


# -- the loop ------------------------------------------------------------------------------


def test_learns_the_completion_not_the_prompt(loaded, tmp_path):
    """Prompts are random words, completions identical: only the completion can be learned.

    (LoRA cannot sharpen this tiny model's logits much, since its final norm and
    head stay frozen, so the loss floor is ~0.6 nats; the answer becomes the argmax.)
    """
    data = examples(16)
    result = finetune(loaded, data, hparams=hparams(loaded, epochs=10, lr=3e-2), seed=0, out_dir=tmp_path, progress=False)
    assert result.steps == 10 * math.ceil(16 / 4) == len(result.losses)
    assert result.losses[0] > 5.0 and result.final_loss < 1.0
    assert result.tokens > 0 and result.seconds > 0 and (result.truncated, result.dropped) == (0, 0)
    assert (tmp_path / "adapter_config.json").is_file()
    log = json.loads((tmp_path / "finetune.json").read_text())
    assert log["seed"] == 0 and log["config"]["lora_r"] == 4 and log["steps"] == result.steps

    tuned = load_finetuned(loaded, tmp_path)
    prompt = render_prompt("completion", loaded.tokenizer, "an unseen task")
    [gen] = sample(tuned, [prompt], max_new_tokens=20, temperature=0.0, top_p=1.0, seed=0, batch_size=1, progress=False)
    assert gen.text == ANSWER and gen.finished


def test_same_seed_same_adapter_other_seed_other_adapter(loaded, tmp_path):
    data = examples(8)
    hp = hparams(loaded, lora={**loaded.profile.lora, "dropout": 0.1})  # dropout draws from the seeded RNG too
    runs = [finetune(loaded, data, hparams=hp, seed=s, out_dir=tmp_path / f"run{i}", progress=False) for i, s in enumerate([3, 3, 4])]
    assert runs[0].losses == runs[1].losses and runs[0].losses != runs[2].losses
    from safetensors.torch import load_file

    weights = [load_file(r.adapter_dir / "adapter_model.safetensors") for r in runs]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert any(not torch.equal(weights[0][k], weights[2][k]) for k in weights[0])
    names = [load_finetuned(loaded, r.adapter_dir).name for r in runs]  # reports name an adapter by its weights
    assert names[0] == names[1] != names[2]


def test_base_model_is_left_untouched(loaded, tmp_path):
    before = logits_of(loaded.model, loaded.tokenizer)
    result = finetune(loaded, examples(8), hparams=hparams(loaded), seed=0, out_dir=tmp_path, progress=False)
    merged = load_finetuned(loaded, result.adapter_dir)
    unmerged = load_finetuned(loaded, result.adapter_dir, merge=False)
    assert torch.equal(logits_of(loaded.model, loaded.tokenizer), before)
    assert not torch.allclose(logits_of(merged.model, loaded.tokenizer), before, atol=1e-3)
    assert torch.allclose(logits_of(merged.model, loaded.tokenizer), logits_of(unmerged.model, loaded.tokenizer), atol=1e-4)
    assert merged.name.startswith(loaded.name + "+lora:") and merged.tokenizer is loaded.tokenizer
    assert type(loaded.model).__name__ == "LlamaForCausalLM" and not hasattr(loaded.model, "peft_config")


def test_full_finetuning_saves_a_whole_model(loaded, tmp_path):
    before = logits_of(loaded.model, loaded.tokenizer)
    result = finetune(loaded, examples(8), hparams=hparams(loaded, lr=1e-3), seed=0, out_dir=tmp_path, full=True, progress=False)
    assert result.full and (tmp_path / "config.json").is_file() and not (tmp_path / "adapter_config.json").exists()
    tuned = load_finetuned(loaded, tmp_path)
    assert tuned.name.startswith(loaded.name + "+full:")
    assert not torch.allclose(logits_of(tuned.model, loaded.tokenizer), before, atol=1e-3)
    assert torch.equal(logits_of(loaded.model, loaded.tokenizer), before)


def test_train_hooks_act_during_training_only(loaded, tmp_path):
    entered, calls = [], []

    def zero_direction(model):
        entered.append(type(model).__name__)
        direction = torch.zeros(32)
        direction[0] = 1.0

        def project_out(hidden):
            calls.append(1)
            return hidden - (hidden @ direction)[..., None] * direction

        return residual_hook(model, 0, project_out)

    hp = hparams(loaded, epochs=1)
    plain = finetune(loaded, examples(8), hparams=hp, seed=0, out_dir=tmp_path / "plain", progress=False)
    hooked = finetune(loaded, examples(8), hparams=hp, seed=0, out_dir=tmp_path / "hooked", train_hooks=zero_direction, progress=False)
    assert entered == ["PeftModelForCausalLM"] and len(calls) == hooked.steps
    assert plain.losses != hooked.losses
    n = len(calls)
    load_finetuned(loaded, hooked.adapter_dir).model(torch.tensor([[1, 5, 6]]))
    assert len(calls) == n  # the hook did not outlive training


def test_long_examples_are_cut_and_counted(loaded, tmp_path):
    long_answer = Example("task", "x = 1\n" * 200)
    huge_prompt = Example("word " * 200, ANSWER)
    result = finetune(
        loaded, [long_answer, huge_prompt, Example("Read.", "x\n"), Example("Go.", "y\n")], hparams=hparams(loaded, max_length=48, epochs=1),
        seed=0, out_dir=tmp_path, progress=False,
    )  # fmt: skip
    assert (result.truncated, result.dropped) == (1, 1)
    with pytest.raises(ValueError, match="none of the 1 examples fits in max_length=48"):
        finetune(loaded, [huge_prompt], hparams=hparams(loaded, max_length=48), seed=0, out_dir=tmp_path / "x", progress=False)


# -- configuration --------------------------------------------------------------------------


def test_config_from_profile_tables(loaded):
    cfg = TrainConfig.from_hparams(loaded.profile.finetune_hparams())
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.max_length) == (2, 4, 1e-2, 96)
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout) == (4, 8, 0.0)
    assert cfg.lora_target_modules[0] == "q_proj"
    with pytest.raises(ValueError, match=r"unknown hyper-parameter\(s\) \['epoch'\]"):
        TrainConfig.from_hparams({"epoch": 1, "batch_size": 1, "lr": 1.0, "max_length": 8})
    with pytest.raises(ValueError, match=r"\['max_length'\] are required"):
        TrainConfig.from_hparams({"epochs": 1, "batch_size": 1, "lr": 1.0})
    with pytest.raises(ValueError, match="unknown lora setting"):
        TrainConfig.from_hparams({"epochs": 1, "batch_size": 1, "lr": 1.0, "max_length": 8, "lora": {"rank": 4}})


def test_learning_rate_schedule():
    cfg = TrainConfig(epochs=1, batch_size=1, lr=1.0, max_length=8, warmup_steps=2, min_lr_ratio=0.1)
    assert [cfg.lr_at(s, 12) for s in (0, 1)] == [0.5, 1.0]
    assert cfg.lr_at(2, 12) == pytest.approx(1.0)
    assert cfg.lr_at(7, 12) == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the decay: cos(pi/2) = 0
    assert cfg.lr_at(12, 12) == pytest.approx(0.1)
    constant = TrainConfig(epochs=1, batch_size=1, lr=0.3, max_length=8, schedule="constant")
    assert {constant.lr_at(s, 10) for s in range(10)} == {0.3}


def test_tokens_count_every_prompt_and_completion_token_of_every_epoch(loaded, tmp_path):
    data = examples(6, seed=2)
    per_epoch = 0
    for example in data:
        prompt, completion = render_example("completion", loaded.tokenizer, example)
        per_epoch += len(encode_prompt("completion", loaded.tokenizer, prompt)) + len(encode_completion(loaded.tokenizer, completion))
    result = finetune(loaded, data, hparams=hparams(loaded, epochs=3, batch_size=4), seed=0, out_dir=tmp_path / "a", progress=False)
    assert result.tokens == 3 * per_epoch
    assert len(result.losses) == result.steps == 3 * 2 and all(isinstance(x, float) for x in result.losses)


def test_adamw_is_fused_only_for_cuda_tensors():
    from claimkit.lm.finetune import _fused_on_cuda

    assert _fused_on_cuda([torch.zeros(2, requires_grad=True)]) == {}
    assert _fused_on_cuda([]) == {}


# -- compile ---------------------------------------------------------------------------------


# the module, not the function that claimkit.lm re-exports under the same name
ft = importlib.import_module("claimkit.lm.finetune")


def one_batch(loaded):
    rows, _, _ = ft._encode_examples(loaded, examples(4), 96)
    return _collate(rows, loaded.tokenizer.pad_token_id, "cpu")


def lora_grads(loaded, step_loss_type):
    torch.manual_seed(0)
    model = ft._trainable_copy(loaded, TrainConfig.from_hparams(loaded.profile.finetune_hparams()), full=False)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    loss = step_loss_type(model).backward(*one_batch(loaded), optimizer)
    return float(loss), [p.grad.clone() for p in params]


def test_the_compiled_step_traces_and_gives_the_eager_loss_and_gradients(loaded, monkeypatch):
    """forward and backward under torch.compile (aot_eager on a CPU: dynamo and AOT autograd, no C++ compiler)."""
    monkeypatch.setattr(ft, "COMPILE_OPTIONS", {"backend": "aot_eager", "dynamic": None})
    eager_loss, eager_grads = lora_grads(loaded, ft.EagerLoss)
    compiled_loss, compiled_grads = lora_grads(loaded, ft.CompiledLoss)
    assert compiled_loss == pytest.approx(eager_loss, rel=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(compiled_grads, eager_grads))


def test_a_failing_compiled_step_is_redone_eagerly(loaded, monkeypatch):
    eager_loss, eager_grads = lora_grads(loaded, ft.EagerLoss)

    class Broken(ft.CompiledLoss):
        def __init__(self, model):
            super().__init__(model)

            def explode(**kwargs):
                model(**kwargs).loss.backward()  # half a step's gradients, then the failure
                raise RuntimeError("inductor exploded")

            self.compiled = explode

    with pytest.warns(RuntimeWarning, match="compiled step failed .*inductor exploded"):
        loss, grads = lora_grads(loaded, Broken)
    assert loss == pytest.approx(eager_loss, rel=1e-6)
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(grads, eager_grads))


@pytest.mark.parametrize("knob", ["compile", "mixed_precision"])
def test_a_speed_knob_is_known_and_changes_nothing_for_an_fp32_model_on_a_cpu(loaded, tmp_path, knob):
    assert getattr(TrainConfig.from_hparams(hparams(loaded, **{knob: True})), knob) is True
    with pytest.raises(ValueError, match=f"{knob} must be true or false"):
        TrainConfig.from_hparams(hparams(loaded, **{knob: "yes"}))
    data = examples(8, seed=3)
    plain = finetune(loaded, data, hparams=hparams(loaded, epochs=1), seed=0, out_dir=tmp_path / "a", progress=False)
    on = finetune(loaded, data, hparams=hparams(loaded, epochs=1, **{knob: True}), seed=0, out_dir=tmp_path / "b", progress=False)
    assert on.losses == plain.losses


# -- mixed precision ---------------------------------------------------------------------------


def as_bf16(loaded):
    return dataclasses.replace(loaded, model=copy.deepcopy(loaded.model).to(torch.bfloat16), dtype=torch.bfloat16)


def lora_step(loaded, precision_of):
    """One LoRA step's loss, gradients, and the dtypes lora_A saw as input and holds as weights."""
    torch.manual_seed(0)
    model = ft._trainable_copy(loaded, TrainConfig.from_hparams(loaded.profile.finetune_hparams()), full=False)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    seen = set()
    hooks = [m.register_forward_hook(lambda mod, args, out: seen.add(args[0].dtype))
             for name, m in model.named_modules() if name.endswith("lora_A.default")]  # fmt: skip
    loss = ft.EagerLoss(model, precision_of(model)).backward(*one_batch(loaded), torch.optim.AdamW(params, lr=1e-3))
    for hook in hooks:
        hook.remove()
    return float(loss), [p.grad.clone() for p in params], seen, {p.dtype for p in params} | {p.grad.dtype for p in params}


def test_mixed_precision_multiplies_the_adapters_in_bf16_and_keeps_fp32_weights_and_gradients(loaded):
    bf16 = as_bf16(loaded)
    plain_loss, plain_grads, plain_inputs, plain_dtypes = lora_step(bf16, lambda model: contextlib.nullcontext)
    mixed_loss, mixed_grads, mixed_inputs, mixed_dtypes = lora_step(bf16, lambda model: ft.mixed_precision(model, torch.bfloat16, "cpu"))
    assert plain_inputs == {torch.float32}  # peft's default: every adapter input copied to fp32
    assert mixed_inputs == {torch.bfloat16}
    assert plain_dtypes == mixed_dtypes == {torch.float32}
    assert mixed_loss == pytest.approx(plain_loss, rel=2e-2)
    cosines = [torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) for a, b in zip(mixed_grads, plain_grads)
               if a.abs().sum() > 0]  # fmt: skip
    assert cosines and min(cosines) > 0.95


def test_mixed_precision_is_a_no_op_context_for_an_fp32_model_and_refused_for_fp16():
    assert ft.mixed_precision(None, torch.float32, "cpu") is contextlib.nullcontext
    with pytest.raises(ValueError, match="float16 would need loss scaling"):
        ft.mixed_precision(None, torch.float16, "cuda")


def test_a_bf16_model_trains_under_mixed_precision(loaded, tmp_path):
    bf16 = as_bf16(loaded)
    result = finetune(bf16, examples(16), hparams=hparams(bf16, epochs=3, mixed_precision=True), seed=0, out_dir=tmp_path / "m", progress=False)
    assert result.losses[-1] < result.losses[0]
    tuned = load_finetuned(bf16, result.adapter_dir)
    assert torch.isfinite(logits_of(tuned.model, tuned.tokenizer).float()).all()


# -- deterministic kernels ---------------------------------------------------------------------

# What torch says when strict deterministic mode meets an operation it has no deterministic kernel for.
TORCH_REFUSAL = "an_op_cuda does not have a deterministic implementation, but you set 'torch.use_deterministic_algorithms(True)'"


def test_deterministic_kernels_hold_strict_mode_inside_the_block_only(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    with deterministic_kernels():
        assert torch.are_deterministic_algorithms_enabled() and not torch.is_deterministic_algorithms_warn_only_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"  # without it torch refuses cuBLAS in strict mode
    assert (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()) == before
    with deterministic_kernels(enabled=False):
        assert torch.are_deterministic_algorithms_enabled() == before[0]


def test_deterministic_kernels_keep_the_users_cublas_setting_and_name_a_refusal(monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    with pytest.raises(NotDeterministicError, match="does not have a deterministic implementation"):
        with deterministic_kernels():
            raise RuntimeError(TORCH_REFUSAL)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    assert not torch.are_deterministic_algorithms_enabled()
    with pytest.raises(RuntimeError, match="something else") as caught:
        with deterministic_kernels():
            raise RuntimeError("something else broke")
    assert not isinstance(caught.value, NotDeterministicError)


def test_a_step_refused_by_deterministic_mode_is_redone_without_it_for_the_rest_of_the_run(loaded):
    """A model that, like torch on a GPU, refuses to run in strict mode: the step still gives the plain gradients."""
    plain_loss, plain_grads = lora_grads(loaded, ft.EagerLoss)
    strict_calls = []

    class Refusing(ft.EagerLoss):
        def __init__(self, model):
            def forward(**kwargs):
                strict_calls.append(torch.are_deterministic_algorithms_enabled())
                if strict_calls[-1]:
                    model(**kwargs).loss.backward()  # half a step's gradients, then the refusal
                    raise RuntimeError(TORCH_REFUSAL)
                return model(**kwargs)

            super().__init__(forward, deterministic=True)

    with pytest.warns(RuntimeWarning, match="redoing this step and the rest of the run without deterministic kernels"):
        loss, grads = lora_grads(loaded, Refusing)
    assert strict_calls == [True, False]
    assert loss == pytest.approx(plain_loss, rel=1e-6)
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(grads, plain_grads))


def test_a_deterministic_step_runs_forward_and_backward_in_strict_mode(loaded):
    seen = []

    class Watched(ft.EagerLoss):
        def __init__(self, model):
            def forward(**kwargs):
                out = model(**kwargs)
                out.loss.register_hook(lambda grad: seen.append(("backward", torch.are_deterministic_algorithms_enabled())))
                seen.append(("forward", torch.are_deterministic_algorithms_enabled()))
                return out

            super().__init__(forward, deterministic=True)

    lora_grads(loaded, Watched)
    assert seen == [("forward", True), ("backward", True)]
    assert not torch.are_deterministic_algorithms_enabled()


def test_fine_tuning_on_a_cpu_leaves_deterministic_mode_alone(loaded, tmp_path):
    """Only a GPU needs it; on a CPU the organism's results stay bit for bit what they were."""
    seen = []

    @contextlib.contextmanager
    def watch(model):
        handle = model.register_forward_hook(lambda *_: seen.append(torch.are_deterministic_algorithms_enabled()))
        yield
        handle.remove()

    finetune(loaded, examples(8), hparams=hparams(loaded, epochs=1), seed=0, out_dir=tmp_path / "cpu", train_hooks=watch, progress=False)
    assert seen and not any(seen)
