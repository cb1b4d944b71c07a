"""Read and edit the residual stream of a decoder-only model.

The residual stream after decoder layer `layer` is what a forward hook on
`model.model.layers[layer]` sees as that layer's output — the same tensor as
`output_hidden_states[layer + 1]`. SAEs and probes read it (`capture_residual`);
interventions and CAFT edit it (`residual_hook`). Texts are given as

  str                        tokenized as a prompt (special tokens per format);
                             with positions="completion" the caller gives
                             prompt_lengths in tokens
  (prompt, completion) pair  tokenized separately and concatenated, exactly as in
                             fine-tuning, so the completion is known
  Generation                 its rendered prompt + the generated token ids, exact

so that the positions read are the tokens the model trained on or generated.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Literal, Sequence, Union

from claimkit.lm.data import encode_completion, encode_prompt
from claimkit.lm.device import friendly_errors
from claimkit.lm.load import LoadedModel
from claimkit.lm.generation import Generation

Text = Union[str, tuple[str, str], Generation]


def decoder_layers(model: Any) -> Any:
    """The ModuleList of decoder layers, through peft wrapping (Llama, Gemma, Mistral, Qwen ...)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    for path in ("model.layers", "model.decoder.layers", "transformer.h", "gpt_neox.layers"):
        obj = inner
        for attr in path.split("."):
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        if obj is not None:
            return obj
    raise TypeError(
        f"cannot find the decoder layers of a {type(inner).__name__}; claimkit reads model.model.layers "
        f"(Llama/Gemma-style causal LMs)"
    )


@contextlib.contextmanager
def residual_hook(model: Any, layer: int, fn: Callable[[Any], Any]) -> Iterator[None]:
    """While inside, `fn(hidden)` sees the residual stream after `layer` ([batch, tokens, d]).

    `fn` returns the replacement hidden states, or None to leave them as they are.
    The hook is removed on exit, also when the block raises.
    """
    layers = decoder_layers(model)
    if not -len(layers) <= layer < len(layers):
        raise IndexError(f"layer {layer} does not exist: the model has {len(layers)} decoder layers (0..{len(layers) - 1})")

    def hook(module: Any, args: Any, output: Any) -> Any:
        hidden = output[0] if isinstance(output, tuple) else output
        new = fn(hidden)
        if new is None:
            return None
        return (new, *output[1:]) if isinstance(output, tuple) else new

    handle = layers[layer].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def capture_residual(
    loaded: LoadedModel,
    texts: Sequence[Text],
    *,
    layer: int,
    positions: Literal["all", "completion"] = "all",
    prompt_lengths: Sequence[int] | None = None,
    batch_size: int = 16,
) -> list[Any]:
    """Per text, the residual stream after decoder `layer` as a [T, d] float32 CPU tensor.

    positions="completion" keeps only the completion's (generated) tokens.
    """
    import torch

    if positions not in ("all", "completion"):
        raise ValueError(f"positions must be 'all' or 'completion', got {positions!r}")
    rows = encode_texts(loaded, texts, prompt_lengths, need_split=positions == "completion")
    out: list[Any] = []
    captured: list[Any] = []
    with residual_hook(loaded.model, layer, lambda h: captured.append(h.detach())):
        for batch in _batches(rows, batch_size):
            input_ids, attention_mask = _right_pad(batch, loaded)
            captured.clear()
            with friendly_errors(f"reading activations of {loaded.name}"), torch.inference_mode():
                loaded.model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=1)
            hidden = captured[0].float().cpu()
            for i, (ids, n_prompt) in enumerate(batch):
                first = n_prompt if positions == "completion" else 0
                out.append(hidden[i, first : len(ids)].clone())
    return out


def token_entropies(
    loaded: LoadedModel,
    texts: Sequence[Text],
    prompt_lengths: Sequence[int] | None = None,
    *,
    batch_size: int = 16,
) -> list[Any]:
    """Per text, the entropy (nats) of the next-token distribution that produced each completion token.

    Entry t is the entropy of the model's distribution for completion token t, i.e.
    of the logits at the position before it; one value per completion token.
    """
    import numpy as np
    import torch

    rows = encode_texts(loaded, texts, prompt_lengths, need_split=True)
    out: list[Any] = []
    for batch in _batches(rows, batch_size):
        input_ids, attention_mask = _right_pad(batch, loaded)
        with friendly_errors(f"reading entropies of {loaded.name}"), torch.inference_mode():
            logits = loaded.model(input_ids=input_ids, attention_mask=attention_mask).logits
        for i, (ids, n_prompt) in enumerate(batch):
            if n_prompt == 0:
                raise ValueError("token_entropies: a completion needs at least one prompt token before it")
            logp = torch.log_softmax(logits[i, n_prompt - 1 : len(ids) - 1].float(), dim=-1)
            out.append(-(logp.exp() * logp).sum(-1).cpu().numpy().astype(np.float32))
    return out


def encode_texts(
    loaded: LoadedModel,
    texts: Sequence[Text],
    prompt_lengths: Sequence[int] | None = None,
    *,
    need_split: bool = False,
) -> list[tuple[list[int], int]]:
    """(token ids, number of prompt tokens) for each text, as the functions above read them."""
    if prompt_lengths is not None and len(prompt_lengths) != len(texts):
        raise ValueError(f"{len(prompt_lengths)} prompt_lengths for {len(texts)} texts")
    rows = []
    for i, text in enumerate(texts):
        if isinstance(text, Generation):
            prompt = encode_prompt(loaded.format, loaded.tokenizer, text.prompt)
            ids, n_prompt = prompt + list(text.token_ids), len(prompt)
        elif isinstance(text, tuple):
            prompt = encode_prompt(loaded.format, loaded.tokenizer, text[0])
            ids, n_prompt = prompt + encode_completion(loaded.tokenizer, text[1]), len(prompt)
        elif isinstance(text, str):
            ids = encode_prompt(loaded.format, loaded.tokenizer, text)
            if prompt_lengths is not None:
                n_prompt = int(prompt_lengths[i])
            elif need_split:
                raise ValueError(
                    f"text {i} is a plain string, so where its completion starts is unknown: pass prompt_lengths "
                    f"(tokens), or give (prompt, completion) pairs or Generation objects"
                )
            else:
                n_prompt = 0
        else:
            raise TypeError(f"text {i}: expected str, (prompt, completion) or Generation, got {type(text).__name__}")
        if not 0 <= n_prompt <= len(ids):
            raise ValueError(f"text {i}: prompt length {n_prompt} is outside its {len(ids)} tokens")
        rows.append((ids, n_prompt))
    return rows


def _batches(rows: list, size: int) -> Iterator[list]:
    if size < 1:
        raise ValueError(f"batch_size must be >= 1, got {size}")
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _right_pad(batch: Sequence[tuple[list[int], int]], loaded: LoadedModel) -> tuple[Any, Any]:
    """Right padding: real tokens keep positions 0..n-1, so their activations do not depend on the batch."""
    import torch

    width = max(max(len(ids) for ids, _ in batch), 1)
    input_ids = torch.full((len(batch), width), loaded.tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, (ids, _) in enumerate(batch):
        input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[i, : len(ids)] = 1
    return input_ids.to(loaded.device), attention_mask.to(loaded.device)
