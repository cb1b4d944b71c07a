"""Pretrain the organism from scratch on CPU: one readable loop in the style of nanoGPT.

Documents are packed into one token stream (each ends with `<|endoftext|>`); every
step draws `batch_size` random contiguous windows of `context + 1` tokens from it
with a seeded numpy Generator and trains next-token prediction with AdamW on a
linear-warmup + cosine schedule. Weights, data order and dropout-free forward passes
all follow from `seed`, so a run on one CPU with one thread count is reproducible
bit for bit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

# Cosine decay ends at this fraction of the peak learning rate (nanoGPT, Chinchilla).
MIN_LR_FRACTION = 0.1
ADAM_BETAS = (0.9, 0.95)


@dataclass(frozen=True)
class OrganismConfig:
    """Every knob of the organism: tokenizer size, model shape and the pretraining run."""

    vocab_size: int = 2048
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int = 512
    context: int = 256  # tokens per training window (and the model's maximum length)
    steps: int = 600
    batch_size: int = 32  # windows per step
    lr: float = 3e-3  # peak learning rate
    warmup: int = 50  # steps of linear warm-up
    weight_decay: float = 0.1  # on matrices only, not on norms
    grad_clip: float = 1.0  # max global gradient norm
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "context", "steps", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                problems.append(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if isinstance(self.d_model, int) and isinstance(self.n_heads, int) and self.n_heads > 0 and self.d_model % self.n_heads:
            problems.append(f"d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads})")
        if not self.lr > 0:
            problems.append(f"lr must be positive, got {self.lr!r}")
        if not (isinstance(self.warmup, int) and self.warmup >= 0):
            problems.append(f"warmup must be a non-negative integer, got {self.warmup!r}")
        if self.weight_decay < 0 or self.grad_clip <= 0:
            problems.append(f"weight_decay must be >= 0 and grad_clip > 0, got {self.weight_decay!r}, {self.grad_clip!r}")
        if problems:
            raise ValueError("organism config: " + "; ".join(problems))

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.context


@dataclass(frozen=True)
class PretrainStats:
    """What a pretraining run cost and reached; written next to the model as organism.json."""

    params: int
    tokens_in_corpus: int  # length of the packed stream
    tokens_seen: int  # steps * batch_size * context
    seconds: float
    tokens_per_second: float
    final_loss: float  # mean training loss over the last `log_every` steps
    loss_curve: tuple[tuple[int, float], ...]  # (step, mean loss over the preceding `log_every` steps)
    threads: int


def build_model(config: OrganismConfig, tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    """A freshly initialised Llama-architecture model of `config`'s shape (seed it first)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if len(tokenizer) > config.vocab_size:
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens but config.vocab_size is {config.vocab_size}")
    model_config = LlamaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.d_model,
        intermediate_size=config.d_ff,
        num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads,
        num_key_value_heads=config.n_heads,
        max_position_embeddings=config.context,
        tie_word_embeddings=True,  # a quarter of a small model's weights would otherwise be a second vocab table
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        attention_dropout=0.0,
    )
    model_config._attn_implementation = "sdpa"
    model = LlamaForCausalLM(model_config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def pack(texts: Sequence[str], tokenizer: PreTrainedTokenizerFast) -> np.ndarray:
    """One token stream: `<eos> doc <eos> doc <eos> ...`, so every document starts after an eos."""
    import numpy as np

    eos = tokenizer.eos_token_id
    # The backend tokenizer directly: documents longer than the context are fine here (windows cut them).
    ids = [e.ids for e in tokenizer.backend_tokenizer.encode_batch(list(texts), add_special_tokens=False)]
    stream = np.fromiter(
        (t for doc in ids for t in (*doc, eos)), dtype=np.int64, count=sum(len(doc) + 1 for doc in ids)
    )
    return np.concatenate([np.array([eos], dtype=np.int64), stream])


def learning_rate(step: int, config: OrganismConfig) -> float:
    """Linear warm-up to `lr`, then cosine decay to MIN_LR_FRACTION * lr at the last step."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    span = max(1, config.steps - config.warmup)
    progress = min(1.0, (step - config.warmup) / span)
    low = config.lr * MIN_LR_FRACTION
    return low + 0.5 * (1.0 + math.cos(math.pi * progress)) * (config.lr - low)


def get_batch(stream: np.ndarray, config: OrganismConfig, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch_size` random windows: inputs and the same windows shifted by one token."""
    import numpy as np
    import torch

    starts = rng.integers(0, len(stream) - config.context - 1, size=config.batch_size, endpoint=True)
    windows = torch.from_numpy(np.stack([stream[s : s + config.context + 1] for s in starts]))
    return windows[:, :-1], windows[:, 1:]


def pretrain(
    texts: Sequence[str],
    tokenizer: PreTrainedTokenizerFast,
    config: OrganismConfig,
    *,
    progress: bool = True,
    log_every: int = 25,
    device: str = "cpu",
) -> tuple[LlamaForCausalLM, PretrainStats]:
    """Train a new model on `texts` for `config.steps` steps; returns it (in eval mode, on CPU) and its stats.

    `device` other than "cpu" is for measuring how configs learn; only CPU runs are reproducible bit for bit.
    """
    import numpy as np
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    stream = pack(texts, tokenizer)
    if len(stream) < config.context + 2:
        raise ValueError(
            f"the corpus packs into {len(stream)} tokens, fewer than one training window of {config.context + 1}; "
            f"generate more documents or lower 'context'"
        )
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = build_model(config, tokenizer).to(device)
    model.train()
    optimizer = _adamw(model, config)

    curve: list[tuple[int, float]] = []
    window: list[float] = []
    started = time.perf_counter()
    bar = tqdm(range(config.steps), desc="pretraining the organism", disable=not progress, leave=False)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        inputs, targets = (t.to(device) for t in get_batch(stream, config, rng))
        logits = model(input_ids=inputs).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()

        window.append(loss.item())
        if len(window) == log_every or step == config.steps - 1:
            curve.append((step + 1, sum(window) / len(window)))
            window = []
            rate = (step + 1) * config.tokens_per_step / (time.perf_counter() - started)
            bar.set_postfix(loss=f"{curve[-1][1]:.3f}", tok_s=f"{rate:,.0f}")
    seconds = time.perf_counter() - started
    model.to("cpu").eval()
    tokens_seen = config.steps * config.tokens_per_step
    stats = PretrainStats(
        params=sum(p.numel() for p in model.parameters()),
        tokens_in_corpus=len(stream),
        tokens_seen=tokens_seen,
        seconds=round(seconds, 2),
        tokens_per_second=round(tokens_seen / seconds, 1),
        final_loss=round(curve[-1][1], 4),
        loss_curve=tuple((s, round(v, 4)) for s, v in curve),
        threads=torch.get_num_threads(),
    )
    return model, stats


def _adamw(model: Any, config: OrganismConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices (embeddings, projections) and none on norm gains (nanoGPT)."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=ADAM_BETAS)
