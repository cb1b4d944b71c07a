"""The knobs of the fine-tuning loop (`claimkit.lm.finetune`), as a profile's [finetune] and [lora] tables set them.

Its own module, below both: `claimkit.lm.profiles` checks a profile's tables against
these fields, and the loop, which reads the profile's model through `claimkit.lm.load`,
runs them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Mapping


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of the loop; built from a profile's [finetune] and [lora] tables."""

    epochs: int
    batch_size: int
    lr: float
    max_length: int  # prompt + completion tokens; longer completions are cut
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: str = "cosine"  # "cosine" (decay to min_lr_ratio * lr) or "constant"
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    betas: tuple[float, float] = (0.9, 0.999)
    lora_r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    compile: bool = False  # torch.compile forward and backward (CUDA only; eager elsewhere)
    mixed_precision: bool = False  # bf16 autocast over forward when the model is bf16; weights stay fp32

    @classmethod
    def from_hparams(cls, hparams: Mapping[str, Any]) -> "TrainConfig":
        """From `profile.finetune_hparams()`: the finetune keys plus a `lora` table."""
        hparams = dict(hparams)
        lora = dict(hparams.pop("lora", {}) or {})
        known = {f for f in cls.__dataclass_fields__ if not f.startswith("lora_")}
        unknown = sorted(set(hparams) - known)
        if unknown:
            raise ValueError(f"finetune: unknown hyper-parameter(s) {unknown}; known: {sorted(known)} and a 'lora' table")
        missing = sorted({"epochs", "batch_size", "lr", "max_length"} - set(hparams))
        if missing:
            raise ValueError(f"finetune: hyper-parameter(s) {missing} are required (the profile's [finetune] table)")
        unknown_lora = sorted(set(lora) - {"r", "alpha", "dropout", "target_modules"})
        if unknown_lora:
            raise ValueError(f"finetune: unknown lora setting(s) {unknown_lora}; known: r, alpha, dropout, target_modules")
        if "betas" in hparams:
            hparams["betas"] = tuple(hparams["betas"])
        for flag in cls.flags():
            if not isinstance(hparams.get(flag, False), bool):
                raise ValueError(f"finetune: {flag} must be true or false, got {hparams[flag]!r}")
        if hparams.get("schedule", "cosine") not in ("cosine", "constant"):
            raise ValueError(f"finetune: schedule must be 'cosine' or 'constant', got {hparams['schedule']!r}")
        renamed = {f"lora_{k}": (tuple(v) if k == "target_modules" else v) for k, v in lora.items()}
        return cls(**hparams, **renamed)

    @classmethod
    def flags(cls) -> tuple[str, ...]:
        """The on/off knobs (compile, mixed_precision, ...): the fields whose default is a bool."""
        return tuple(f.name for f in fields(cls) if isinstance(f.default, bool))

    def lr_at(self, step: int, total_steps: int) -> float:
        """Learning rate for optimizer step `step` (0-based) of `total_steps`."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return self.lr
        decay_steps = max(1, total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        floor = self.lr * self.min_lr_ratio
        return floor + 0.5 * (1.0 + math.cos(math.pi * progress)) * (self.lr - floor)
