"""Sample completions for rendered prompts, in batches, reproducibly.

Prompts are left-padded (so every row's next token follows its own prompt) and
generated to a fixed `max_new_tokens`, stopping at the model's eos tokens. Each
batch seeds torch from (seed, batch index), so a run is reproducible for a seed
and batch size on the same device; different batch sizes group prompts
differently and so draw different samples.

Two samplers draw from the same distribution: "generate" (the default, and the
one for CPUs) calls transformers' `generate`; "fast" is claimkit's own loop over
a static KV cache (`claimkit.lm.fast_sample`), for large batches on a GPU.
"""

from __future__ import annotations

from typing import Any, Sequence

from claimkit.lm.generation import Generation, batch_seed, eos_token_ids, sample_in_batches
from claimkit.lm.load import LoadedModel
from claimkit.lm.profiles import SAMPLERS


def sample(
    loaded: LoadedModel,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    seed: int,
    batch_size: int,
    progress: bool = True,
    cache_implementation: str | None = None,
    sampler: str = "generate",
    compile: bool = False,
) -> list[Generation]:
    """One generation per prompt (prompts already rendered by `claimkit.lm.data.render_prompt`).

    temperature 0 means greedy decoding. `cache_implementation="static"` lets
    transformers use a static KV cache (faster on GPUs with compile).
    `sampler="fast"` uses `claimkit.lm.fast_sample.sample_fast` instead of
    `generate`; `compile=True` compiles its decode step (CUDA only).
    """
    import torch

    if sampler not in SAMPLERS:
        raise ValueError(f"sample: unknown sampler {sampler!r}; use one of {', '.join(SAMPLERS)}")
    if sampler == "fast":
        from claimkit.lm.fast_sample import sample_fast

        return sample_fast(
            loaded, prompts, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
            seed=seed, batch_size=batch_size, progress=progress, compile=compile,
        )  # fmt: skip
    stop_ids = eos_token_ids(loaded)
    config = _generation_config(max_new_tokens, temperature, top_p, loaded.tokenizer.pad_token_id, stop_ids,
                                cache_implementation)  # fmt: skip

    def new_tokens(input_ids: Any, attention_mask: Any, batch_index: int) -> Any:
        torch.manual_seed(batch_seed(seed, batch_index))
        with torch.inference_mode():
            out = loaded.model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config)
        return out[:, input_ids.shape[1] :]

    return sample_in_batches(loaded, prompts, new_tokens, batch_size=batch_size, max_new_tokens=max_new_tokens,
                             progress=progress, label="sample")  # fmt: skip


def _generation_config(
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    pad_id: int,
    stop_ids: list[int],
    cache_implementation: str | None,
) -> Any:
    from transformers import GenerationConfig

    greedy = temperature == 0
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=not greedy,
        temperature=None if greedy else float(temperature),
        top_p=None if greedy else float(top_p),
        top_k=None if greedy else 0,  # 0 turns top-k off when sampling; transformers would fill in 50
        pad_token_id=pad_id,
        eos_token_id=stop_ids,
        cache_implementation=cache_implementation,
    )

