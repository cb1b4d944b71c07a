"""What every sampler shares: the `Generation` record and the batch loop around a sampler's decode.

`claimkit.lm.sample` (transformers' `generate`) and `claimkit.lm.fast_sample`
(claimkit's static-cache loop) differ only in how a batch's new tokens are
drawn; encoding, left-padding, per-batch seeds, cutting at eos and progress are
here, below both, so that neither sampler imports the other's module.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from claimkit.lm.data import encode_prompt
from claimkit.lm.device import friendly_errors
from claimkit.lm.load import LoadedModel


@dataclass(frozen=True)
class Generation:
    prompt: str  # the rendered prompt, as given
    text: str  # the new text only, without the eos token
    token_ids: tuple[int, ...]  # the new tokens, without eos and padding
    n_new_tokens: int
    finished: bool  # True when the model emitted eos before max_new_tokens


def sample_in_batches(
    loaded: LoadedModel,
    prompts: Sequence[str],
    new_tokens: Callable[[Any, Any, int], Any],
    *,
    batch_size: int,
    max_new_tokens: int,
    progress: bool,
    label: str,
) -> list[Generation]:
    """The batch loop every sampler shares: encode, left-pad, `new_tokens`, cut at eos, show progress.

    `new_tokens(input_ids, attention_mask, batch_index)` returns the batch's new token
    ids (rows x steps); what follows a row's eos is ignored.
    """
    from tqdm.auto import tqdm

    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError(f"{label}: batch_size and max_new_tokens must be >= 1, got {batch_size}, {max_new_tokens}")
    tokenizer = loaded.tokenizer
    encoded = [encode_prompt(loaded.format, tokenizer, p) for p in prompts]
    stop_ids = eos_token_ids(loaded)
    generations: list[Generation] = []
    count, started = 0, time.perf_counter()
    bar = tqdm(total=len(prompts), desc=f"{label} {loaded.name}", unit="gen", disable=not progress, leave=False)
    for batch_index, start in enumerate(range(0, len(prompts), batch_size)):
        chunk = encoded[start : start + batch_size]
        input_ids, attention_mask = left_pad(chunk, tokenizer.pad_token_id, loaded.device)
        with friendly_errors(f"sampling from {loaded.name}"):
            rows = new_tokens(input_ids, attention_mask, batch_index)
        for offset, row in enumerate(rows.tolist()):
            generation = _cut(prompts[start + offset], row, stop_ids, tokenizer)
            generations.append(generation)
            count += generation.n_new_tokens
        bar.update(len(chunk))
        bar.set_postfix(tok_per_s=f"{count / max(time.perf_counter() - started, 1e-9):.0f}")
    bar.close()
    return generations


def eos_token_ids(loaded: LoadedModel) -> list[int]:
    """Every token that ends an answer: the tokenizer's eos and the generation config's (e.g. <|eot_id|>)."""
    ids = set()
    if loaded.tokenizer.eos_token_id is not None:
        ids.add(int(loaded.tokenizer.eos_token_id))
    configured = getattr(getattr(loaded.model, "generation_config", None), "eos_token_id", None)
    if configured is not None:
        ids.update(int(i) for i in (configured if isinstance(configured, (list, tuple)) else [configured]))
    if not ids:
        raise ValueError(f"{loaded.name}: neither the tokenizer nor the generation config names an eos token")
    return sorted(ids)


def left_pad(rows: Sequence[Sequence[int]], pad_id: int, device: str) -> tuple[Any, Any]:
    """Left-padded input ids and attention mask: the last column is every row's last prompt token."""
    import torch

    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            input_ids[i, width - len(r) :] = torch.tensor(list(r), dtype=torch.long)
            attention_mask[i, width - len(r) :] = 1
    return input_ids.to(device), attention_mask.to(device)


def batch_seed(seed: int, batch_index: int) -> int:
    """A torch seed for one batch, derived from the run's seed (independent streams per batch)."""
    import numpy as np

    return int(np.random.SeedSequence([seed, batch_index]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _cut(prompt: str, row: list[int], stop_ids: list[int], tokenizer: Any) -> Generation:
    stops = set(stop_ids)
    end = next((i for i, t in enumerate(row) if t in stops), None)
    ids = row if end is None else row[:end]
    return Generation(
        prompt=prompt,
        text=tokenizer.decode(ids, skip_special_tokens=True),
        token_ids=tuple(ids),
        n_new_tokens=len(ids),
        finished=end is not None,
    )
