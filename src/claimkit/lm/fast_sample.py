"""Sample completions fast on a GPU: one prefill, then one-token steps over a static KV cache.

`generate` spends most of a small model's decode step in Python and in growing
its cache; at the batch sizes a claim needs (a whole condition, 300 to 1,000
prompts) the GPU waits. This loop does only what sampling needs: the whole
left-padded batch goes through the model once (prefill) into a preallocated
transformers `StaticCache`, then every step feeds one token per row, picks the
next token and stops as soon as every row has emitted an eos.

It returns the same `Generation` records as `claimkit.lm.sample.sample` and
draws from the same distribution as `generate` with the settings `sample` uses:
softmax(logits / temperature) in float32, with the nucleus (top-p) filter of
transformers' TopPLogitsWarper when top_p < 1, argmax at temperature 0. Position
ids count real tokens only (cumsum of the attention mask - 1), as `generate`
does. Each batch draws from its own torch.Generator seeded from (seed, batch
index), so a run is reproducible for a seed and batch size on one device.

Models whose query heads share KV heads (SmolLM2, Llama 3) attend through
`claimkit.lm.grouped_attention`, which reads the static cache once per KV head
instead of copying it per query head; they are then given the 4D boolean masks
that transformers would have built from the 2D one (causal over cache slots,
padding hidden), where each padding slot also sees itself so that no query row
is fully masked.

`compile=True` (CUDA only) runs the one-token step through
torch.compile(mode="reduce-overhead"), i.e. CUDA graphs; if compiling or
running it fails, the batch is redone eagerly and the run stays eager.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

from claimkit.lm.device import warn_compile_failed
from claimkit.lm.grouped_attention import grouped_attention
from claimkit.lm.load import LoadedModel
from claimkit.lm.generation import Generation, batch_seed, eos_token_ids, sample_in_batches

# Rows are checked for "all finished" every this many steps: the check waits for the
# GPU, and waiting every step would stall the queue of launched kernels.
FINISHED_CHECK_EVERY = 8

# torch.compile settings of the one-token step: CUDA graphs (reduce-overhead) over
# fixed shapes, as transformers compiles generate's decode step for a static cache.
COMPILE_OPTIONS: dict[str, Any] = {"mode": "reduce-overhead", "fullgraph": False, "dynamic": False}


def sample_fast(
    loaded: LoadedModel,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    seed: int,
    batch_size: int,
    progress: bool = True,
    compile: bool = False,
) -> list[Generation]:
    """One generation per prompt, like `claimkit.lm.sample.sample`, through the static-cache loop."""
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"sample_fast: temperature must be >= 0 and top_p in (0, 1], got {temperature}, {top_p}")
    stop_ids = eos_token_ids(loaded)
    pad_id = loaded.tokenizer.pad_token_id
    decoder = Decoder(loaded.model, compile=compile and str(loaded.device).startswith("cuda"))

    def new_tokens(input_ids: Any, attention_mask: Any, batch_index: int) -> Any:
        return decoder.generate(
            input_ids, attention_mask, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
            stop_ids=stop_ids, pad_id=pad_id, seed=batch_seed(seed, batch_index),
        )  # fmt: skip

    return sample_in_batches(loaded, prompts, new_tokens, batch_size=batch_size, max_new_tokens=max_new_tokens,
                             progress=progress, label="sample-fast")  # fmt: skip


class Decoder:
    """The prefill + one-token-step loop over one model; holds the compiled step between batches."""

    def __init__(self, model: Any, *, compile: bool = False):
        self.model = model
        self.compile = compile
        self._compiled: Callable[..., Any] | None = None
        base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft wrapper passes kwargs on
        params = inspect.signature(base.forward).parameters
        # transformers 5.17 names the cache argument past_key_values, 5.24 `cache` (the old name deprecated)
        self.cache_arg = "cache" if "cache" in params else "past_key_values"
        self.keeps_last_logits = "logits_to_keep" in params

    def generate(self, input_ids: Any, attention_mask: Any, **settings: Any) -> Any:
        """New token ids, (rows, steps) with steps <= max_new_tokens; after a row's eos, pad_id.

        `settings` are `_decode`'s keywords: max_new_tokens, temperature, top_p, stop_ids, pad_id, seed.
        """
        if self.compile:
            try:
                return self._decode(input_ids, attention_mask, step=self._compiled_step(), **settings)
            except Exception as exc:  # noqa: BLE001 - any compile/cudagraph failure: fall back, never lose the run
                warn_compile_failed("sample_fast: the compiled decode step", exc, "redoing this batch and the rest of the run")
                self.compile, self._compiled = False, None
        return self._decode(input_ids, attention_mask, step=self._forward, **settings)

    # -- the loop --------------------------------------------------------------------

    def _decode(
        self,
        input_ids: Any,
        attention_mask: Any,
        *,
        step: Callable[..., Any],
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        stop_ids: Sequence[int],
        pad_id: int,
        seed: int,
    ) -> Any:
        import torch
        from transformers import StaticCache

        rows, width = input_ids.shape
        device = input_ids.device
        generator = torch.Generator(device=device).manual_seed(seed)
        with torch.no_grad(), grouped_attention(self.model) as four_d:
            cache = StaticCache(config=self.model.config, max_cache_len=width + max_new_tokens)
            # The mask covers the whole cache; a slot becomes visible when its token is fed.
            mask = torch.zeros((rows, width + max_new_tokens), dtype=torch.bool if four_d else torch.long, device=device)
            mask[:, :width] = attention_mask.bool() if four_d else attention_mask
            # As generate: positions count real tokens only, padding sits at position 0.
            positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
            logits = self._forward(input_ids, positions, prefill_mask(mask, width) if four_d else mask, cache, prefill=True)
            if four_d:
                mask = mask[:, None, None, :]  # a view: the slots made visible below show through it
            next_position = positions[:, -1:] + 1

            stops = torch.tensor(list(stop_ids), dtype=torch.long, device=device)
            out = torch.full((rows, max_new_tokens), pad_id, dtype=torch.long, device=device)
            finished = torch.zeros(rows, dtype=torch.bool, device=device)
            steps = 0
            for t in range(max_new_tokens):
                token = next_tokens(logits, temperature, top_p, generator)
                token = token.masked_fill(finished, pad_id)  # as generate: finished rows get padding
                out[:, t] = token
                finished |= torch.isin(token, stops)
                steps = t + 1
                if steps == max_new_tokens or (steps % FINISHED_CHECK_EVERY == 0 and bool(finished.all())):
                    break
                mask[..., width + t] = 1
                logits = step(token[:, None], next_position, mask, cache)
                next_position = next_position + 1
        return out[:, :steps]

    def _forward(self, input_ids: Any, positions: Any, mask: Any, cache: Any, prefill: bool = False) -> Any:
        """float32 logits of every row's last position (a copy: compiled outputs get overwritten)."""
        import torch

        kwargs = {self.cache_arg: cache, "use_cache": True}
        if prefill and self.keeps_last_logits:
            kwargs["logits_to_keep"] = 1  # the prompt's other logits would be rows x width x vocab
        out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions, **kwargs)
        return out.logits[:, -1, :].to(dtype=torch.float32, copy=True)

    def _compiled_step(self) -> Callable[..., Any]:
        import torch

        if self._compiled is None:
            compiled = torch.compile(self._forward, **COMPILE_OPTIONS)

            def step(*args: Any) -> Any:
                if torch.cuda.is_available():
                    torch.compiler.cudagraph_mark_step_begin()  # the previous step's outputs are consumed
                return compiled(*args)

            self._compiled = step
        return self._compiled


def prefill_mask(slots: Any, width: int) -> Any:
    """(rows, 1, width, slots) booleans: prompt position c sees filled slots s <= c, and always itself."""
    import torch

    total = slots.shape[1]
    causal = torch.ones((width, total), dtype=torch.bool, device=slots.device).tril()
    itself = torch.eye(width, total, dtype=torch.bool, device=slots.device)
    return (causal[None, None] & slots[:, None, None, :]) | itself[None, None]


def next_tokens(logits: Any, temperature: float, top_p: float, generator: Any) -> Any:
    """One token per row: argmax at temperature 0, else a draw from softmax(logits / T), nucleus-filtered."""
    import torch

    if temperature == 0:
        return logits.argmax(dim=-1)
    scores = logits / temperature
    if top_p < 1.0:
        scores = nucleus_filter(scores, top_p)
    probs = torch.softmax(scores, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)


def nucleus_filter(scores: Any, top_p: float) -> Any:
    """transformers' TopPLogitsWarper (min_tokens_to_keep=1): drop the least likely tokens whose mass is <= 1 - top_p."""
    sorted_scores, order = scores.sort(dim=-1, descending=False)
    cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative <= (1 - top_p)
    remove_sorted[..., -1:] = False  # the most likely token always stays
    remove = remove_sorted.scatter(1, order, remove_sorted)
    return scores.masked_fill(remove, float("-inf"))
