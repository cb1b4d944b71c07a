"""What a model reads off texts, kept in the artifact cache: residual streams, token entropies, completion losses.

A warm rerun then neither runs nor loads the model that produced them. The caller
names the model by `model_parts` (what identifies its weights: a model name, or the
cache key its fine-tuning is kept under) and passes `load`, which is called only
when a reading has to be built.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from claimkit.cache import ArtifactCache
from claimkit.experiment import examples_hash
from claimkit.lm.data import Example

if TYPE_CHECKING:
    from claimkit.lm.load import LoadedModel

RESIDUALS_FILE = "residuals.safetensors"
ENTROPIES_FILE = "entropies.safetensors"
LOSSES_FILE = "losses.json"


def pairs_hash(pairs: Sequence[tuple[str, str]]) -> str:
    """sha256 of (prompt, completion) pairs, in order."""
    digest = hashlib.sha256()
    for prompt, completion in pairs:
        digest.update(json.dumps([prompt, completion], ensure_ascii=False).encode("utf-8") + b"\x00")
    return digest.hexdigest()


def cached_residuals(
    cache: ArtifactCache,
    model_parts: Mapping[str, Any],
    load: Callable[[], "LoadedModel"],
    pairs: Sequence[tuple[str, str]],
    *,
    layer: int,
    positions: str = "completion",
    description: str = "",
) -> list[Any]:
    """`capture_residual(load(), pairs, layer=, positions=)`, built once per model and texts (CPU tensors)."""
    parts = {**model_parts, "layer": layer, "positions": positions, "pairs": pairs_hash(pairs), "n": len(pairs)}

    def build(out: Path) -> None:
        from claimkit.lm.activations import capture_residual

        save_tensors(out / RESIDUALS_FILE, capture_residual(load(), list(pairs), layer=layer, positions=positions))

    what = description or f"residuals of {len(pairs)} texts at layer {layer}"
    return load_tensors(cache.get_or_build("activations", parts, build, description=what) / RESIDUALS_FILE)


def cached_token_entropies(
    cache: ArtifactCache,
    model_parts: Mapping[str, Any],
    load: Callable[[], "LoadedModel"],
    pairs: Sequence[tuple[str, str]],
    *,
    batch_size: int = 16,
    description: str = "",
) -> list[Any]:
    """`token_entropies(load(), pairs)`, built once per model and texts (float32 numpy arrays)."""
    parts = {**model_parts, "pairs": pairs_hash(pairs), "n": len(pairs)}

    def build(out: Path) -> None:
        import torch

        from claimkit.lm.activations import token_entropies

        entropies = token_entropies(load(), list(pairs), batch_size=batch_size)
        save_tensors(out / ENTROPIES_FILE, [torch.from_numpy(e) for e in entropies])

    what = description or f"token entropies of {len(pairs)} texts"
    where = cache.get_or_build("entropies", parts, build, description=what)
    return [t.numpy() for t in load_tensors(where / ENTROPIES_FILE)]


def cached_completion_losses(
    cache: ArtifactCache,
    model_parts: Mapping[str, Any],
    load: Callable[[], "LoadedModel"],
    examples: Sequence[Example],
    *,
    description: str = "",
) -> tuple[list[float], list[int]]:
    """`claimkit.interventions.completion_losses(load(), examples)`, built once per model and examples."""
    parts = {**model_parts, "examples": examples_hash(examples), "n": len(examples)}

    def build(out: Path) -> None:
        from claimkit.interventions import completion_losses

        sums, counts = completion_losses(load(), examples)
        (out / LOSSES_FILE).write_text(json.dumps({"sums": sums, "counts": counts}), encoding="utf-8")

    what = description or f"completion losses of {len(examples)} answers"
    stored = json.loads((cache.get_or_build("losses", parts, build, description=what) / LOSSES_FILE).read_text(encoding="utf-8"))
    return [float(s) for s in stored["sums"]], [int(c) for c in stored["counts"]]


def save_tensors(path: Path, tensors: Sequence[Any]) -> None:
    """One tensor per text (rows: its tokens), concatenated, with their lengths (an empty text has 0 rows).

    Residual streams and token entropies alike; the file's key stays "residuals", as
    cached files already have it.
    """
    import torch
    from safetensors.torch import save_file

    lengths = torch.tensor([t.shape[0] for t in tensors], dtype=torch.int64)
    save_file({"residuals": torch.cat(list(tensors)).contiguous(), "lengths": lengths}, str(path))


def load_tensors(path: Path) -> list[Any]:
    """The tensors `save_tensors` wrote, in order."""
    from safetensors.torch import load_file

    data = load_file(str(path))
    return list(data["residuals"].split(data["lengths"].tolist()))
