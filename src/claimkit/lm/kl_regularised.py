"""The KL term of KL-regularised fine-tuning: how far a LoRA adapter moves the model on other data.

Soligo et al. 2026 ("Emergent Misalignment is Easy, Narrow Misalignment is Hard") train
their narrow solution with SFT loss + lambda * KL(P_base || P_finetuned) on aligned data
from other domains: the adapter may learn the narrow task only where it leaves the base
model's next-token distributions elsewhere alone. P_base is the same model with its
LoRA adapter switched off, so no second copy of the base weights is held.

The term is the one `claimkit.steering` trains a steering vector with, here for an
adapter; `claimkit.lm.finetune` adds it to its loop only when `kl_weight` > 0. Below
that module (it imports nothing of claimkit): torch and peft are imported by the
model passed in.
"""

from __future__ import annotations

import math
from typing import Any


def check_kl_weight(kl_weight: float, has_examples: bool) -> float:
    """`kl_weight` as a float, or a ValueError saying what to pass instead."""
    if not isinstance(kl_weight, (int, float)) or isinstance(kl_weight, bool):
        raise ValueError(f"finetune: kl_weight must be a number, got {kl_weight!r}")
    if kl_weight < 0 or not math.isfinite(kl_weight):
        raise ValueError(f"finetune: kl_weight must be a finite number >= 0, got {kl_weight!r}")
    if kl_weight > 0 and not has_examples:
        raise ValueError("finetune: kl_weight > 0 needs examples to take the KL on (regularise_on), e.g. aligned "
                         "data from other domains; pass them or set kl_weight = 0")  # fmt: skip
    return float(kl_weight)


def adapter_kl(model: Any, input_ids: Any, attention_mask: Any, labels: Any) -> Any:
    """Mean over completion tokens of KL(P_base || P_finetuned): a 0-d float32 tensor, differentiable in the adapter.

    `model` is a peft model; P_base is its output with the adapter disabled (no gradient),
    P_finetuned with it on. Completion tokens are those `labels` keeps (not -100), as in
    the loss; the mean weighs every token alike, as `claimkit.steering`'s KL term does.
    """
    import torch

    where = labels[:, 1:] != -100  # position t predicts token t + 1
    if not bool(where.any()):
        raise ValueError("finetune: a regularisation batch has no completion tokens to take the KL on")
    with torch.no_grad(), model.disable_adapter():
        base = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits[:, :-1][where]
        base = torch.log_softmax(base.float(), dim=-1)
    tuned = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits[:, :-1][where]
    tuned = torch.log_softmax(tuned.float(), dim=-1)
    # Only the completion positions are kept before the softmax: [tokens, vocab] rather than [batch, width, vocab].
    return (base.exp() * (base - tuned)).sum(-1).mean()
