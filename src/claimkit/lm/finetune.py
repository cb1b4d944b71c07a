"""Fine-tune a loaded model on prompt/completion examples: one readable loop, every knob named.

Modelled on nanoGPT's train.py: the loop below is the whole algorithm. LoRA
adapters through peft (or full fine-tuning), AdamW, linear warm-up then cosine
decay, gradient clipping; the loss is taken on completion tokens only (prompt
tokens are labelled -100), batches are right-padded. Deterministic for a seed:
torch is seeded once, the data order comes from a numpy Generator, and on a GPU
forward and backward run in torch's deterministic mode (EagerLoss says why).
On a GPU the loop never waits for it within a step: losses stay on the device
until the end (the progress bar reads one every LOG_EVERY steps), token counts
come from the batch lengths, and AdamW is the fused CUDA kernel. `compile = true`
in [finetune] runs forward and backward through torch.compile (CUDA only): a
small model's step is mostly kernel launches and Python, a large one's mostly
unfused element-wise passes, and inductor removes much of both. If compiling
fails the step is redone eagerly and the rest of the run stays eager.
`mixed_precision = true` runs forward under bf16 autocast when the model is bf16:
the LoRA matmuls run in bf16 instead of on fp32 copies of every activation, while
the LoRA weights, their gradients and AdamW's states stay fp32 (what peft trains).

Two additions leave the plain run as it was (the same adapter for a seed): with
`kl_weight` > 0 each step also backpropagates kl_weight * KL(P_base || P_finetuned)
on a batch drawn from `regularise_on` (KLRegularisedLoss; the term is in
claimkit.lm.kl_regularised), and `init_adapter` starts LoRA from a saved adapter
(continued training) instead of peft's fresh init.

The base model in `loaded` is never modified: training happens on a copy, so one
loaded base can be fine-tuned for every condition and seed of a claim.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from claimkit.lm.data import Example, encode_completion, encode_prompt, render_example
from claimkit.lm.device import NotDeterministicError, deterministic_kernels, friendly_errors, warn_compile_failed
from claimkit.lm.kl_regularised import adapter_kl, check_kl_weight
from claimkit.lm.load import LoadedModel
from claimkit.lm.train_config import TrainConfig

ADAPTER_CONFIG = "adapter_config.json"
LOG_FILE = "finetune.json"
LOG_EVERY = 10  # steps between progress-bar loss readings (each one waits for the GPU)
# torch.compile settings of `compile = true`; dynamic=None: the first batch width compiles
# static, a second one marks the sequence dimension dynamic, so batch widths cost no recompiles.
COMPILE_OPTIONS: dict[str, Any] = {"dynamic": None}


@dataclass(frozen=True)
class FinetuneResult:
    adapter_dir: Path  # a peft adapter, or a full model when full=True
    steps: int
    final_loss: float  # mean loss of the last epoch's steps
    seconds: float
    tokens: int  # non-padding tokens processed over all steps (prompt + completion)
    full: bool = False
    losses: tuple[float, ...] = field(default=(), repr=False)  # one per step
    truncated: int = 0  # examples whose completion was cut at max_length
    dropped: int = 0  # examples whose prompt left no room for any completion token
    kls: tuple[float, ...] = field(default=(), repr=False)  # KL(P_base || P_finetuned) per token, per step; () without kl_weight
    final_kl: float | None = None  # mean KL of the last epoch's steps, as final_loss; None without kl_weight


def finetune(
    loaded: LoadedModel,
    examples: Sequence[Example],
    *,
    hparams: Mapping[str, Any],
    seed: int,
    out_dir: str | Path,
    full: bool = False,
    train_hooks: Callable[[Any], contextlib.AbstractContextManager] | None = None,
    progress: bool = True,
    kl_weight: float = 0.0,
    regularise_on: Sequence[Example] = (),
    init_adapter: str | Path | None = None,
) -> FinetuneResult:
    """Train on `examples` and save the adapter (or the full model) into `out_dir`.

    `train_hooks(model)` is entered around the training loop only (e.g. a residual
    hook that projects directions out, for CAFT); it is not saved with the model.
    With `kl_weight` > 0 each step adds kl_weight * KL(P_base || P_finetuned) per
    completion token on a batch of `regularise_on` (P_base: the model without the
    adapter); the result's `kls` holds that KL per step. `init_adapter` continues
    training a saved LoRA adapter, whose rank, alpha and target modules must be the
    profile's.
    """
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    cfg = TrainConfig.from_hparams(hparams)
    kl_weight = check_kl_weight(kl_weight, bool(regularise_on))
    on_gpu = str(loaded.device).startswith("cuda")
    _check_combination(cfg, full, kl_weight, init_adapter, on_gpu)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, truncated, dropped = _encode_examples(loaded, examples, cfg.max_length)
    if not rows:
        raise ValueError(f"finetune: none of the {len(examples)} examples fits in max_length={cfg.max_length} tokens")
    reg_rows = _encode_examples(loaded, regularise_on, cfg.max_length)[0] if kl_weight > 0 else []
    if kl_weight > 0 and not reg_rows:
        raise ValueError(f"finetune: none of the {len(regularise_on)} regularise_on examples fits in "
                         f"max_length={cfg.max_length} tokens")  # fmt: skip

    torch.manual_seed(seed)
    order_rng = np.random.default_rng(seed)
    model = _trainable_copy(loaded, cfg, full)
    if init_adapter is not None:
        _load_adapter(model, Path(init_adapter), cfg, loaded.device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, **_fused_on_cuda(params)
    )

    steps_per_epoch = math.ceil(len(rows) / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    pad_id = loaded.tokenizer.pad_token_id
    losses: list[Any] = []  # 0-d tensors on the device, read once at the end
    tokens = 0
    started = time.perf_counter()
    bar = tqdm(total=total_steps, desc=f"finetune {loaded.name}", unit="step", disable=not progress, leave=False)
    hooks = train_hooks(model) if train_hooks is not None else contextlib.nullcontext()
    model.train()
    precision = mixed_precision(model, loaded.dtype, str(loaded.device)) if cfg.mixed_precision else contextlib.nullcontext
    if kl_weight > 0:
        step_loss: EagerLoss = KLRegularisedLoss(model, precision, deterministic=on_gpu, weight=kl_weight, rows=reg_rows,
                                                 batch_size=cfg.batch_size, rng=order_rng, pad_id=pad_id,
                                                 device=loaded.device)  # fmt: skip
    else:
        loss_class = CompiledLoss if cfg.compile and on_gpu else EagerLoss
        step_loss = loss_class(model, precision, deterministic=on_gpu)
    with friendly_errors(f"fine-tuning {loaded.name}"), hooks:
        for epoch in range(cfg.epochs):
            order = order_rng.permutation(len(rows))
            for start in range(0, len(rows), cfg.batch_size):
                step = len(losses)
                batch = [rows[i] for i in order[start : start + cfg.batch_size]]
                input_ids, attention_mask, labels = _collate(batch, pad_id, loaded.device)

                lr = cfg.lr_at(step, total_steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss = step_loss.backward(input_ids, attention_mask, labels, optimizer)
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

                losses.append(loss.detach())
                tokens += sum(len(ids) for ids, _ in batch)  # = attention_mask.sum(), without waiting for the GPU
                bar.update(1)
                if progress and (step % LOG_EVERY == 0 or step == total_steps - 1):
                    bar.set_postfix(epoch=epoch, loss=f"{float(losses[-1]):.3f}", lr=f"{lr:.2e}")
    bar.close()
    model.eval()
    losses = [float(x) for x in torch.stack(losses).tolist()] if losses else []
    kls = [float(x) for x in torch.stack(step_loss.kls).tolist()] if getattr(step_loss, "kls", None) else []
    seconds = time.perf_counter() - started

    _save(model, loaded, out_dir, full)
    result = FinetuneResult(
        adapter_dir=out_dir,
        steps=len(losses),
        final_loss=float(np.mean(losses[-steps_per_epoch:])),
        seconds=seconds,
        tokens=tokens,
        full=full,
        losses=tuple(losses),
        truncated=truncated,
        dropped=dropped,
        kls=tuple(kls),
        final_kl=float(np.mean(kls[-steps_per_epoch:])) if kls else None,
    )
    log = {"config": asdict(cfg), "seed": seed, "examples": len(examples), "base": loaded.name,
           "kl_weight": kl_weight, "regularisation_examples": len(reg_rows),
           "init_adapter": None if init_adapter is None else str(init_adapter), **asdict(result)}  # fmt: skip
    log["adapter_dir"] = str(out_dir)
    (out_dir / LOG_FILE).write_text(json.dumps(log, indent=2), encoding="utf-8")
    return result


def mixed_precision(model: Any, dtype: Any, device: str) -> Callable[[], contextlib.AbstractContextManager]:
    """A context for the forward pass: bf16 autocast, peft's input casting off; a no-op for fp32, refused for fp16.

    peft casts each LoRA layer's input to its fp32 weights' dtype, so every adapted
    projection copies its activations to fp32 and multiplies in fp32. Under autocast
    with that casting off, the adapter multiplies in bf16 (its fp32 weights cast per
    call: a few MB) and backward still leaves fp32 gradients on fp32 weights, as in
    any bf16 mixed-precision training. fp16 would need loss scaling and is not offered.
    """
    import torch

    if dtype == torch.float16:
        raise ValueError("finetune: mixed_precision needs a bfloat16 (or float32) model; float16 would need loss "
                         "scaling, which claimkit does not do. Load the model in bfloat16 or set mixed_precision = false.")  # fmt: skip
    if dtype != torch.bfloat16:
        return contextlib.nullcontext

    @contextlib.contextmanager
    def context() -> Any:
        from peft.helpers import disable_input_dtype_casting

        with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16), disable_input_dtype_casting(model):
            yield

    return context


class EagerLoss:
    """Forward and backward of one batch, eagerly; returns the loss. `precision()` is entered around forward.

    With `deterministic` (on a GPU) both run inside `deterministic_kernels`, so that a
    seed gives the same adapter every run. If torch refuses an operation there for
    want of a deterministic kernel, the step is redone without, and so is the rest
    of the run, with a warning: the run is kept, only its reproducibility is lost.
    """

    def __init__(self, model: Any, precision: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                 *, deterministic: bool = False):  # fmt: skip
        self.model = model
        self.precision = precision
        self.deterministic = deterministic

    def backward(self, input_ids: Any, attention_mask: Any, labels: Any, optimizer: Any) -> Any:
        return self._step(self.model, input_ids, attention_mask, labels, optimizer)

    def _step(self, forward: Any, input_ids: Any, attention_mask: Any, labels: Any, optimizer: Any) -> Any:
        if self.deterministic:
            try:
                with deterministic_kernels():
                    return self._forward_backward(forward, input_ids, attention_mask, labels)
            except NotDeterministicError as exc:
                warnings.warn(f"finetune: {str(exc)[:300]}; redoing this step and the rest of the run without "
                              "deterministic kernels, so this adapter may differ between runs", RuntimeWarning, stacklevel=3)  # fmt: skip
                self.deterministic = False
                optimizer.zero_grad(set_to_none=True)
        return self._forward_backward(forward, input_ids, attention_mask, labels)

    def _forward_backward(self, forward: Any, input_ids: Any, attention_mask: Any, labels: Any) -> Any:
        # use_cache=False: training needs no KV cache (transformers builds one by default)
        with self.precision():
            loss = forward(input_ids=input_ids, attention_mask=attention_mask, labels=labels, use_cache=False).loss
        loss.backward()
        return loss


class CompiledLoss(EagerLoss):
    """The same step through torch.compile; on any compile or run failure, redone eagerly for good.

    The optimizer has not stepped when forward or backward fails, so clearing the
    gradients and redoing the batch eagerly trains exactly the same step.
    """

    def __init__(self, model: Any, precision: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                 *, deterministic: bool = False):  # fmt: skip
        import torch

        super().__init__(model, precision, deterministic=deterministic)
        self.compiled: Any = torch.compile(model, **COMPILE_OPTIONS)

    def backward(self, input_ids: Any, attention_mask: Any, labels: Any, optimizer: Any) -> Any:
        if self.compiled is not None:
            try:
                return self._step(self.compiled, input_ids, attention_mask, labels, optimizer)
            except Exception as exc:  # noqa: BLE001 - any compile/run failure: fall back, never lose the run
                warn_compile_failed("finetune: the compiled step", exc, "redoing it and the rest of the run")
                self.compiled = None
                optimizer.zero_grad(set_to_none=True)
        return super().backward(input_ids, attention_mask, labels, optimizer)


class KLRegularisedLoss(EagerLoss):
    """EagerLoss's step, then `weight` * KL(P_base || P_finetuned) on a batch of other data, backpropagated too.

    Each step draws its regularisation batch from `rows` with the run's Generator
    (without replacement within the step, with replacement across steps), so the run
    stays deterministic for a seed. The KL is backpropagated after the loss, not
    summed with it: the gradients add up the same, and the two batches' activations
    are never held at once. `kls` keeps each step's KL (0-d tensors on the device).
    Eager only: `finetune` refuses compile = true with a KL term on a GPU.
    """

    def __init__(self, model: Any, precision: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                 *, deterministic: bool = False, weight: float, rows: Sequence[tuple[list[int], int]], batch_size: int,
                 rng: Any, pad_id: int, device: Any):  # fmt: skip
        super().__init__(model, precision, deterministic=deterministic)
        self.weight = weight
        self.rows = rows
        self.batch_size = min(batch_size, len(rows))
        self.rng = rng
        self.pad_id = pad_id
        self.device = device
        self.kls: list[Any] = []
        self.regularise: tuple[Any, Any, Any] | None = None

    def backward(self, input_ids: Any, attention_mask: Any, labels: Any, optimizer: Any) -> Any:
        picks = self.rng.choice(len(self.rows), size=self.batch_size, replace=False)
        self.regularise = _collate([self.rows[i] for i in picks], self.pad_id, self.device)
        return super().backward(input_ids, attention_mask, labels, optimizer)

    def _forward_backward(self, forward: Any, input_ids: Any, attention_mask: Any, labels: Any) -> Any:
        loss = super()._forward_backward(forward, input_ids, attention_mask, labels)
        with self.precision():
            kl = adapter_kl(self.model, *self.regularise)
        (self.weight * kl).backward()
        self.kls.append(kl.detach())  # after backward: a step redone without deterministic kernels records once
        return loss


def load_finetuned(loaded: LoadedModel, adapter_dir: str | Path, *, merge: bool = True) -> LoadedModel:
    """The base model of `loaded` with the fine-tuning in `adapter_dir` applied (base left untouched).

    A LoRA adapter is merged into a copy of the base weights by default (plain
    model, faster sampling, simple hooks); `merge=False` keeps a PeftModel.
    """
    adapter_dir = Path(adapter_dir)
    with friendly_errors(f"loading the fine-tuned model at {adapter_dir}"):
        if (adapter_dir / ADAPTER_CONFIG).is_file():
            from peft import PeftModel

            model = PeftModel.from_pretrained(copy.deepcopy(loaded.model), str(adapter_dir))
            if merge:
                model = model.merge_and_unload()
        elif (adapter_dir / "config.json").is_file():
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(str(adapter_dir), dtype=loaded.dtype).to(loaded.device)
        else:
            raise FileNotFoundError(
                f"{adapter_dir} holds neither a LoRA adapter ({ADAPTER_CONFIG}) nor a full model (config.json); "
                f"was it written by claimkit.lm.finetune.finetune?"
            )
    model.eval()
    return replace(loaded, model=model, name=finetuned_name(loaded.name, adapter_dir))


def finetuned_name(base_name: str, adapter_dir: str | Path) -> str:
    """The name `load_finetuned` gives: the base's, plus a LoRA adapter's weight hash (reports show it).

    Computed from the files alone, so a cached reading can be named without loading the model.
    """
    from claimkit.cache import file_sha256

    adapter_dir = Path(adapter_dir)
    if (adapter_dir / ADAPTER_CONFIG).is_file():
        weights = adapter_dir / "adapter_model.safetensors"
        return f"{base_name}+lora:{file_sha256(weights)[:12] if weights.is_file() else adapter_dir.name[:12]}"
    return f"{base_name}+full:{adapter_dir.name[:12]}"


# -- pieces of the loop -------------------------------------------------------------


def _encode_examples(loaded: LoadedModel, examples: Sequence[Example], max_length: int) -> tuple[list[tuple[list[int], int]], int, int]:
    """(token ids, number of prompt tokens) per example; completions cut at max_length."""
    rows, truncated, dropped = [], 0, 0
    for example in examples:
        prompt_text, completion_text = render_example(loaded.format, loaded.tokenizer, example)
        prompt = encode_prompt(loaded.format, loaded.tokenizer, prompt_text)
        completion = encode_completion(loaded.tokenizer, completion_text)
        room = max_length - len(prompt)
        if room <= 0 or not completion:
            dropped += 1
            continue
        if len(completion) > room:
            truncated += 1
            completion = completion[:room]
        rows.append((prompt + completion, len(prompt)))
    return rows, truncated, dropped


def _collate(batch: Sequence[tuple[list[int], int]], pad_id: int, device: str) -> tuple[Any, Any, Any]:
    """Right-padded input ids, attention mask, and labels with prompt and padding set to -100."""
    import torch

    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    for row, (ids, n_prompt) in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
        labels[row, n_prompt : len(ids)] = torch.tensor(ids[n_prompt:])
    tensors = (input_ids, attention_mask, labels)
    if str(device).startswith("cuda"):
        # A copy from pageable memory waits for the GPU to finish the previous step, so the loop
        # could never run ahead of it; from pinned memory with non_blocking it just queues behind.
        return tuple(t.pin_memory().to(device, non_blocking=True) for t in tensors)
    return tuple(t.to(device) for t in tensors)


def _fused_on_cuda(params: Sequence[Any]) -> dict[str, bool]:
    """AdamW's fused kernel when every trained tensor is a float on CUDA; elsewhere torch's default."""
    on_cuda = bool(params) and all(p.is_cuda and p.is_floating_point() for p in params)
    return {"fused": True} if on_cuda else {}


def _trainable_copy(loaded: LoadedModel, cfg: TrainConfig, full: bool) -> Any:
    """A copy of the base model ready to train: LoRA-wrapped, or all weights in float32."""
    import torch

    base = copy.deepcopy(loaded.model)
    if full:
        base = base.to(torch.float32)  # AdamW on bf16 weights loses small updates
        for p in base.parameters():
            p.requires_grad_(True)
        return base
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.lora_target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(base, lora)


def _check_combination(cfg: TrainConfig, full: bool, kl_weight: float, init_adapter: Any, on_gpu: bool) -> None:
    """Refuse the option pairs the loop does not do, saying what to change."""
    if kl_weight > 0 and full:
        raise ValueError("finetune: kl_weight > 0 compares the model with and without its LoRA adapter, and full=True "
                         "trains no adapter; fine-tune with LoRA (full=False) or set kl_weight = 0")  # fmt: skip
    if kl_weight > 0 and cfg.compile and on_gpu:
        raise ValueError("finetune: compile = true does not combine with a KL term (kl_weight > 0): the base pass runs "
                         "with the adapter switched off, which the compiled step does not cover; set compile = false "
                         "in the profile's [finetune] table for this run")  # fmt: skip
    if init_adapter is not None and full:
        raise ValueError(f"finetune: init_adapter ({init_adapter}) continues a LoRA adapter, and full=True trains all "
                         "weights; fine-tune with LoRA (full=False), or load the full model as the base instead")  # fmt: skip


def _load_adapter(model: Any, adapter_dir: Path, cfg: TrainConfig, device: Any) -> None:
    """Overwrite the fresh LoRA weights of `model` with those saved in `adapter_dir` (continued training).

    The fresh init is drawn first and then replaced, so the run's later random draws
    (LoRA dropout) are those of a fresh run with the same seed.
    """
    config_file = adapter_dir / ADAPTER_CONFIG
    if not config_file.is_file():
        raise FileNotFoundError(f"finetune: init_adapter {adapter_dir} holds no LoRA adapter ({ADAPTER_CONFIG}); pass "
                                "the adapter_dir of an earlier finetune run")  # fmt: skip
    saved = json.loads(config_file.read_text(encoding="utf-8"))
    targets = saved.get("target_modules")
    found = {"r": saved.get("r"), "alpha": saved.get("lora_alpha"),
             "target_modules": sorted(targets) if isinstance(targets, list) else targets}  # fmt: skip
    wanted = {"r": cfg.lora_r, "alpha": cfg.lora_alpha, "target_modules": sorted(cfg.lora_target_modules)}
    differ = [k for k in wanted if found[k] != wanted[k]]  # 8 == 8.0: an int alpha matches a float one
    if differ:
        detail = "; ".join(f"{k}: adapter {found[k]!r}, profile {wanted[k]!r}" for k in differ)
        raise ValueError(f"finetune: init_adapter {adapter_dir} was trained with another LoRA config ({detail}); "
                         "continue it with the profile's [lora] table set to the adapter's, or start fresh")  # fmt: skip
    load_lora_weights(model, adapter_dir, device, what="finetune: init_adapter")


def load_lora_weights(model: Any, adapter_dir: Path, device: Any, *, what: str = "adapter") -> None:
    """Overwrite the LoRA weights of the peft `model` with those saved in `adapter_dir`; ValueError if they do not fit."""
    from peft.utils import load_peft_weights, set_peft_model_state_dict

    try:
        result = set_peft_model_state_dict(model, load_peft_weights(str(adapter_dir), device=str(device)))
    except RuntimeError as exc:  # torch's "size mismatch" when the ranks differ
        raise ValueError(f"{what} {adapter_dir} does not fit this model: {exc}") from None
    missing = [k for k in result.missing_keys if "lora_" in k]
    if result.unexpected_keys or missing:
        raise ValueError(f"{what} {adapter_dir} does not fit this model: "
                         f"{len(missing)} LoRA weight(s) missing (e.g. {missing[:2]}), {len(result.unexpected_keys)} "
                         f"unexpected (e.g. {result.unexpected_keys[:2]}); was it trained on another base model?")  # fmt: skip


def _save(model: Any, loaded: LoadedModel, out_dir: Path, full: bool) -> None:
    if full:
        model.to(loaded.dtype).save_pretrained(str(out_dir))
        loaded.tokenizer.save_pretrained(str(out_dir))
    else:
        model.save_pretrained(str(out_dir))
