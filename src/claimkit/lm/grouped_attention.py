"""Grouped-query attention that reads the KV cache once: query heads folded onto their KV head.

Models such as SmolLM2 and Llama 3 share each key/value head between several query
heads. With a padding mask, transformers' SDPA path cannot use SDPA's own GQA
support, so it copies every cached key and value once per sharing query head
(`repeat_kv`) on every decode step. Profiled on an H200 (bench/gpu_sampling.py
--profile), those copies and the attention over the tripled cache were three
quarters of SmolLM2's compiled decode step.

Here the `g` query heads of each KV head are laid along the query-length axis
instead: queries (b, kv_heads * g, q, d) become (b, kv_heads, g * q, d), so one
SDPA call attends them to the KV head they share, with no copy; the mask row of
query position t is repeated for its g heads. The arithmetic is the same as
repeat_kv's; only the order of floating-point sums inside the kernel may differ.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

NAME = "claimkit_grouped_sdpa"


def grouped_sdpa_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """transformers' attention-function signature; `attention_mask` is a 4D boolean mask (True: attend)."""
    import torch

    if kwargs.get("softcap") or kwargs.get("sliding_window"):
        raise ValueError(f"{NAME}: soft-capped or sliding-window attention is not supported (see can_group)")
    batch, heads, q_len, head_dim = query.shape
    kv_heads, kv_len = key.shape[1], key.shape[2]
    group = heads // kv_heads
    folded = query.reshape(batch, kv_heads, group * q_len, head_dim)
    mask = attention_mask
    if mask is not None:
        mask = mask[:, :, :, :kv_len]
        mask = mask.unsqueeze(2).expand(batch, mask.shape[1], group, q_len, kv_len).reshape(batch, mask.shape[1], group * q_len, kv_len)
    out = torch.nn.functional.scaled_dot_product_attention(
        folded, key, value, attn_mask=mask, dropout_p=dropout if module.training else 0.0, scale=scaling
    )
    return out.reshape(batch, heads, q_len, head_dim).transpose(1, 2).contiguous(), None


def can_group(model: Any) -> bool:
    """Whether `model` shares KV heads and runs transformers' SDPA attention, which this replaces.

    Not for sliding-window models (the caller's masks are plain causal ones) nor
    for soft-capped attention logits (Gemma 2), which SDPA does not do.
    """
    config = model.config
    heads = getattr(config, "num_attention_heads", None)
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    sliding = getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True)
    capped = getattr(config, "attn_logit_softcapping", None)
    return (getattr(config, "_attn_implementation", None) == "sdpa" and not sliding and not capped and bool(heads)
            and kv_heads < heads and heads % kv_heads == 0)  # fmt: skip


@contextlib.contextmanager
def grouped_attention(model: Any) -> Iterator[bool]:
    """Run `model`'s attention through grouped_sdpa_attention inside the block; yields whether it does.

    The model must then be given 4D boolean masks (transformers passes those on as
    they are). Models that `can_group` refuses are left as they are.
    """
    if not can_group(model):
        yield False
        return
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, grouped_sdpa_attention)
    config = model.config
    before = config._attn_implementation
    config._attn_implementation = NAME
    try:
        yield True
    finally:
        config._attn_implementation = before
