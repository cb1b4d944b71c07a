"""Learned steering vectors: one vector added to a layer's residual output, and what it costs and moves.

A steering vector is the smallest fine-tuning there is: the model stays frozen and one
vector v [d] is added to the residual stream after one decoder layer, at every
position. Training it on examples asks which single direction best produces them;
training it with a KL penalty on other data (Soligo et al. 2026, "Emergent
Misalignment is Easy, Narrow Misalignment is Hard") asks for one that does so
without changing the model anywhere else. A solution is then studied as a vector:

  `vector_losses`        the training loss with v rescaled (efficiency: loss at a norm)
  `orthogonal_noise`     v moved by noise orthogonal to it at a fixed norm (stability)
  `steering_kl`          how far adding a direction at a norm moves the model's next-
                         token distributions on other text (influence)

The loop follows `claimkit.lm.finetune`: AdamW, linear warm-up then cosine decay,
gradient clipping, loss on completion tokens only, data order from a numpy
Generator seeded once. torch is imported inside the functions only.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from claimkit.interventions import add_vector, completion_losses, intervene
from claimkit.lm.activations import residual_hook
from claimkit.lm.data import Example

if TYPE_CHECKING:
    import numpy as np
    import torch

    from claimkit.lm.load import LoadedModel


@dataclass(frozen=True)
class VectorConfig:
    """Every knob of steering-vector training; built from a spec's table by `from_settings`."""

    layer: int
    epochs: int
    batch_size: int
    lr: float
    max_length: int
    kl_weight: float = 0.0  # lambda of lambda * KL(P_base || P_steered) on the regularisation examples
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0  # max norm of the vector's gradient; 0 disables

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> "VectorConfig":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ValueError(f"steering vector: unknown setting(s) {unknown}; known: {sorted(known)}")
        missing = sorted({"layer", "epochs", "batch_size", "lr", "max_length"} - set(settings))
        if missing:
            raise ValueError(f"steering vector: setting(s) {missing} are required")
        config = cls(**settings)
        if config.kl_weight < 0 or not math.isfinite(config.kl_weight):
            raise ValueError(f"steering vector: kl_weight must be a finite number >= 0, got {config.kl_weight!r}")
        if config.epochs < 1 or config.batch_size < 1 or config.max_length < 2:
            raise ValueError("steering vector: epochs and batch_size must be >= 1 and max_length >= 2")
        return config

    def lr_at(self, step: int, total_steps: int) -> float:
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, total_steps - self.warmup_steps))
        floor = self.lr * self.min_lr_ratio
        return floor + 0.5 * (1.0 + math.cos(math.pi * progress)) * (self.lr - floor)


@dataclass(frozen=True)
class VectorResult:
    vector: Any  # torch.Tensor [d], float32 on the CPU
    steps: int
    seconds: float
    losses: tuple[float, ...] = field(repr=False)  # training loss per step (without the KL term)
    kls: tuple[float, ...] = field(default=(), repr=False)  # mean KL per token per step (with a kl_weight)

    @property
    def final_loss(self) -> float:
        return _tail_mean(self.losses)

    @property
    def final_kl(self) -> float | None:
        """The KL term at the end of training (None without a kl_weight)."""
        return _tail_mean(self.kls) if self.kls else None


def _tail_mean(values: Sequence[float]) -> float:
    """The mean of the last tenth of a per-step series: where training ended, less one step's noise."""
    tail = values[-max(1, len(values) // 10):]
    return float(sum(tail) / len(tail))


def train_vector(
    loaded: "LoadedModel",
    examples: Sequence[Example],
    *,
    config: VectorConfig,
    seed: int,
    regularise_on: Sequence[Example] = (),
    init: Any = None,
    progress: bool = True,
) -> VectorResult:
    """A vector added after `config.layer` that lowers the completion loss on `examples`, the model frozen.

    With `config.kl_weight` > 0, each step also draws a batch of `regularise_on` and adds
    kl_weight * KL(P_base || P_steered) per completion token, P_base being the model
    without the vector. `init` starts from a given vector (continued training); the
    default starts from zero.
    """
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    if not examples:
        raise ValueError("train_vector: no training examples")
    if config.kl_weight > 0 and not regularise_on:
        raise ValueError("train_vector: kl_weight > 0 needs regularisation examples (regularise_on)")
    rows = _rows(loaded, examples, config.max_length)
    reg_rows = _rows(loaded, regularise_on, config.max_length) if config.kl_weight > 0 else []
    torch.manual_seed(seed)
    order_rng = np.random.default_rng(seed)
    model = loaded.model
    width = _width(model)
    start = torch.zeros(width) if init is None else torch.as_tensor(init, dtype=torch.float32).reshape(-1).clone()
    if start.shape[0] != width:
        raise ValueError(f"train_vector: init has {start.shape[0]} values but the residual stream has {width}")
    vector = torch.nn.Parameter(start.to(loaded.device))
    optimizer = torch.optim.AdamW([vector], lr=config.lr, weight_decay=0.0)
    steps_per_epoch = math.ceil(len(rows) / config.batch_size)
    total = config.epochs * steps_per_epoch
    losses: list[float] = []
    kls: list[float] = []
    pad = loaded.tokenizer.pad_token_id
    started = time.perf_counter()
    # The caller's model is left as it was found: its requires_grad flags and train/eval mode.
    frozen = [p.requires_grad for p in model.parameters()]
    was_training = model.training
    bar = tqdm(total=total, desc=f"steering vector {loaded.name}", unit="step", disable=not progress, leave=False)
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        model.eval()  # no dropout: the vector is what is trained
        for _ in range(config.epochs):
            order = order_rng.permutation(len(rows))
            for first in range(0, len(rows), config.batch_size):
                step = len(losses)
                for group in optimizer.param_groups:
                    group["lr"] = config.lr_at(step, total)
                batch = [rows[i] for i in order[first : first + config.batch_size]]
                loss = _steered_loss(model, vector, config.layer, batch, pad, loaded.device)
                objective = loss
                if config.kl_weight > 0:
                    picks = order_rng.choice(len(reg_rows), size=min(config.batch_size, len(reg_rows)), replace=False)
                    kl = _steered_kl(model, vector, config.layer, [reg_rows[i] for i in picks], pad, loaded.device)
                    objective = loss + config.kl_weight * kl
                    kls.append(float(kl.detach()))
                objective.backward()
                if config.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_([vector], config.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.3f}", norm=f"{float(vector.detach().norm()):.2f}")
    finally:
        bar.close()
        model.train(was_training)
        for p, flag in zip(model.parameters(), frozen):
            p.requires_grad_(flag)
    return VectorResult(vector.detach().to("cpu", torch.float32), len(losses), time.perf_counter() - started,
                        tuple(losses), tuple(kls))


def vector_losses(
    loaded: "LoadedModel", examples: Sequence[Example], vector: Any, *, layer: int, batch_size: int = 16
) -> "np.ndarray":
    """Per example, the mean NLL per completion token with `vector` added after `layer` (the model's loss there)."""
    import numpy as np

    with intervene(loaded, layer, add_vector(vector, scale=1.0)):
        sums, counts = completion_losses(loaded, examples, batch_size=batch_size)
    return np.asarray(sums, float) / np.asarray(counts, float)


def orthogonal_noise(vector: Any, epsilon: float, generator: "np.random.Generator") -> "np.ndarray":
    """sqrt(1 - e^2) x + e y: y Gaussian, orthogonal to x and of x's norm, so the result keeps x's norm.

    At e = 0 it is x, at e = 1 a random direction orthogonal to x (the paper's stability probe).
    """
    import numpy as np

    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon!r}")
    x = np.asarray(vector, float).reshape(-1)
    norm = float(np.linalg.norm(x))
    if norm == 0.0:
        raise ValueError("orthogonal_noise: the vector is zero, so no direction is orthogonal to it in particular")
    y = generator.standard_normal(x.shape[0])
    y -= (y @ x) / (norm * norm) * x
    y *= norm / float(np.linalg.norm(y))
    return math.sqrt(1.0 - epsilon * epsilon) * x + epsilon * y


def random_directions(width: int, count: int, seed: int) -> "np.ndarray":
    """`count` unit vectors of `width`, uniformly distributed (normalised Gaussians): the random baseline."""
    import numpy as np

    draws = np.random.default_rng(seed).standard_normal((count, width))
    return draws / np.linalg.norm(draws, axis=1, keepdims=True)


def steering_kl(
    loaded: "LoadedModel", texts: Sequence[str], direction: Any, *, layer: int, norms: Sequence[float],
    batch_size: int = 16, max_length: int = 256,
) -> "np.ndarray":
    """[len(norms), len(texts)]: mean KL(P_base || P_steered) per token of each text, the unit `direction`
    added after `layer` at each norm (the paper's influence on pre-training data)."""
    import numpy as np
    import torch

    unit = torch.as_tensor(direction, dtype=torch.float32).reshape(-1)
    length = float(unit.norm())
    if length == 0.0:
        raise ValueError("steering_kl: the direction is zero")
    unit = unit / length
    encoded = [text_ids(loaded, text, max_length) for text in texts]
    out = np.zeros((len(norms), len(texts)))
    with torch.inference_mode():
        for first in range(0, len(encoded), batch_size):
            ids, mask = padded(encoded[first : first + batch_size], loaded.tokenizer.pad_token_id, loaded.device)
            base = torch.log_softmax(loaded.model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
            for k, norm in enumerate(norms):
                with intervene(loaded, layer, add_vector(unit, scale=float(norm))):
                    steered = torch.log_softmax(loaded.model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
                out[k, first : first + len(ids)] = text_kl(base, steered, mask).cpu().numpy()
    return out


def text_kl(base: "torch.Tensor", other: "torch.Tensor", mask: "torch.Tensor") -> "torch.Tensor":
    """Per text (row), mean over its tokens of KL(P_base || P_other), from [rows, tokens, vocab] log-probabilities."""
    per_token = (base.exp() * (base - other)).sum(-1) * mask
    return per_token.sum(1) / mask.sum(1)


# -- pieces of the loop -------------------------------------------------------------


def _rows(loaded: "LoadedModel", examples: Sequence[Example], max_length: int) -> list[tuple[list[int], int]]:
    from claimkit.lm.finetune import _encode_examples

    rows, _, _ = _encode_examples(loaded, examples, max_length)
    if examples and not rows:
        raise ValueError(f"none of the {len(examples)} examples fits in max_length={max_length} tokens")
    return rows


def text_ids(loaded: "LoadedModel", text: str, max_length: int) -> list[int]:
    ids = loaded.tokenizer(text, add_special_tokens=False)["input_ids"][:max_length]
    if len(ids) < 2:
        raise ValueError(f"steering_kl: a text of fewer than two tokens: {text[:40]!r}")
    return ids


def _width(model: Any) -> int:
    config = getattr(model, "config", None)
    width = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None)
    if not isinstance(width, int):
        raise TypeError(f"cannot read the residual width of a {type(model).__name__} (config.hidden_size)")
    return width


def padded(rows: Sequence[list[int]], pad_id: int, device: Any) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Right-padded token ids and their attention mask."""
    return _pad([(row, 0) for row in rows], pad_id, device)


def _pad(batch: Sequence[tuple[list[int], int]], pad_id: int, device: Any) -> tuple["torch.Tensor", "torch.Tensor"]:
    import torch

    width = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (tokens, _) in enumerate(batch):
        ids[row, : len(tokens)] = torch.tensor(tokens)
        mask[row, : len(tokens)] = 1
    return ids.to(device), mask.to(device)


def _completion_mask(batch: Sequence[tuple[list[int], int]], width: int, device: Any) -> "torch.Tensor":
    """1 where a position's next token is a completion token (what the loss and the KL are taken over)."""
    import torch

    mask = torch.zeros((len(batch), width - 1))
    for row, (tokens, n_prompt) in enumerate(batch):
        mask[row, n_prompt - 1 : len(tokens) - 1] = 1.0
    return mask.to(device)


@dataclass
class _Added:
    """A residual edit adding a trainable vector (kept differentiable, unlike `add_vector`)."""

    vector: Any

    def __call__(self, hidden: Any) -> Any:
        return hidden + self.vector.to(hidden.dtype)


def _steered_loss(model: Any, vector: Any, layer: int, batch: Sequence[tuple[list[int], int]], pad: int,
                  device: Any) -> "torch.Tensor":
    import torch

    ids, mask = _pad(batch, pad, device)
    with residual_hook(model, layer, _Added(vector)):
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    picked = logp.gather(2, ids[:, 1:].unsqueeze(2)).squeeze(2)
    where = _completion_mask(batch, ids.shape[1], device)
    return -(picked * where).sum() / where.sum()


def _steered_kl(model: Any, vector: Any, layer: int, batch: Sequence[tuple[list[int], int]], pad: int,
                device: Any) -> "torch.Tensor":
    import torch

    ids, mask = _pad(batch, pad, device)
    with torch.no_grad():
        base = torch.log_softmax(model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()[:, :-1], -1)
    with residual_hook(model, layer, _Added(vector)):
        steered = torch.log_softmax(model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()[:, :-1], -1)
    per_token = (base.exp() * (base - steered)).sum(-1)
    where = _completion_mask(batch, ids.shape[1], device)
    return (per_token * where).sum() / where.sum()
