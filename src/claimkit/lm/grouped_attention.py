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

With `flex_decode=True` the one-token decode steps go through FlexAttention
instead (`flex_decode_attention`; inside torch.compile only). Its decoding kernel
attends all query heads of a KV head together and splits the cache among thread
blocks, where SDPA's memory-efficient kernel pads each row's few queries to a 64-row
tile: profiled on an H200 (bench/gpu_sampling.py --profile), that kernel took 139 us
per layer per step at batch 1,000, about four times what reading the cache needs.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

NAME = "claimkit_grouped_sdpa"
FLEX_NAME = "claimkit_flex_decode"
FLEX_KWARG = "claimkit_block_mask"  # the forward keyword that carries decode_block_mask's mask

# FlexAttention's block size: the cache is split into blocks of this many slots.
FLEX_BLOCK = 128


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


def flex_decode_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    claimkit_block_mask: Any = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """A one-token step through FlexAttention with the caller's `decode_block_mask`; anything else as grouped_sdpa_attention.

    The block mask comes in as a keyword of the model's forward (transformers passes
    those on to the attention function): built inside the compiled step it failed to
    lower (torch 2.11, inductor: "'function' object has no attribute 'graph'").
    """
    if query.shape[2] != 1 or claimkit_block_mask is None or module.training:
        return grouped_sdpa_attention(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    if kwargs.get("softcap") or kwargs.get("sliding_window"):
        raise ValueError(f"{FLEX_NAME}: soft-capped or sliding-window attention is not supported (see can_group)")
    from torch.nn.attention.flex_attention import flex_attention

    out = flex_attention(query, key, value, block_mask=claimkit_block_mask, scale=scaling, enable_gqa=True)
    return out.transpose(1, 2).contiguous(), None


def decode_block_mask(visible: Any, kv_len: int) -> Any:
    """A FlexAttention BlockMask for one-token steps over `kv_len` cache slots that reads `visible` in the kernel.

    `visible`: (rows, slots) booleans, True where a row may attend, `slots` a multiple
    of FLEX_BLOCK and >= kv_len (the slots past kv_len stay False, so the kernel never
    reads past it). The caller updates it in place between steps. Every block is
    declared partial: which blocks are full or empty changes every step, and finding
    out would take a host-side scan that breaks the CUDA graph.
    """
    import torch
    from torch.nn.attention.flex_attention import BlockMask

    rows, slots = visible.shape
    if slots % FLEX_BLOCK or slots < kv_len:
        raise ValueError(f"decode_block_mask: {slots} slots is not a multiple of {FLEX_BLOCK} covering {kv_len}")
    blocks = -(-kv_len // FLEX_BLOCK)

    def mask_mod(b: Any, h: Any, q_idx: Any, kv_idx: Any) -> Any:
        return visible[b, kv_idx]

    device = visible.device
    return BlockMask.from_kv_blocks(
        torch.full((1, 1, 1), blocks, dtype=torch.int32, device=device),  # rows and heads broadcast
        torch.arange(blocks, dtype=torch.int32, device=device).view(1, 1, 1, blocks),
        BLOCK_SIZE=FLEX_BLOCK, mask_mod=mask_mod, seq_lengths=(1, kv_len), compute_q_blocks=False,
    )  # fmt: skip


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
def grouped_attention(model: Any, *, flex_decode: bool = False) -> Iterator[bool]:
    """Run `model`'s attention through grouped_sdpa_attention inside the block; yields whether it does.

    `flex_decode`: one-token steps through flex_decode_attention instead, which is
    fast only when torch.compile generates its kernel. The model must then be given
    4D boolean masks (transformers passes those on as they are). Models that
    `can_group` refuses are left as they are.
    """
    if not can_group(model):
        yield False
        return
    from transformers import AttentionInterface

    name, function = (FLEX_NAME, flex_decode_attention) if flex_decode else (NAME, grouped_sdpa_attention)
    AttentionInterface.register(name, function)
    config = model.config
    before = config._attn_implementation
    config._attn_implementation = name
    try:
        yield True
    finally:
        config._attn_implementation = before
