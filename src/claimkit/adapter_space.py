"""A LoRA adapter as a point in its parameter space: read it, move it, and measure the model there.

Soligo et al. 2026 compare fine-tuning "solutions" by where they sit in parameter space:
the training loss of an adapter rescaled to other norms (efficiency), its loss when
orthogonal noise is added to its parameters (stability), and how far it moves the
model's predictions on other text (influence). Here an adapter is the flat vector of
its LoRA parameters (every lora_A and lora_B, in name order); `AdapterSpace` opens one
adapter on its base model (unmerged) and evaluates the model at any such vector,
including another adapter's of the same configuration. The model is evaluated with the
point's weight change merged into a copy of the base weights (W0 + scaling * B @ A), so a
point costs one base-model forward, not peft's extra per-module passes.

The size of a solution is `delta_norm`, the Frobenius norm of the weight change it makes (sum over modules of
||scaling * B @ A||^2, square-rooted); `delta_cosine` compares two weight changes. The
flat parameters' own norm and cosine say little: adapters of one seed start from the same
A. `with_delta_norm` rescales a point's B matrices, which scales its weight change linearly
and leaves its A matrices as trained.

Given a cache, `losses` and `kl` are built once per base model, space, points and texts
(cache kinds "adapter-point-losses" and "adapter-point-kl"): a point is its numbers, so
the key holds their hash, and the space's structure (module names, shapes, scalings), not
which adapter it was opened on, since the model at a point does not depend on that.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from claimkit.lm.data import Example

if TYPE_CHECKING:
    from claimkit.cache import ArtifactCache
    from claimkit.lm.load import LoadedModel

VALUES_FILE = "values.npy"


class AdapterSpace:
    """The base model of `loaded` with the adapter in `adapter_dir`, whose LoRA weights can be set to any point.

    With `cache` (and `model_parts`, what names the base model in cache keys: Experiment.base_parts()),
    losses and KLs at points are cached.
    """

    def __init__(self, loaded: "LoadedModel", adapter_dir: str | Path, *, cache: "ArtifactCache | None" = None,
                 model_parts: Mapping[str, Any] | None = None):
        from claimkit.lm.finetune import load_finetuned

        self.opened = load_finetuned(loaded, adapter_dir, merge=False)
        self.model = self.opened.model
        named = dict(self.model.named_parameters())
        self.names = sorted(n for n in named if ".lora_A." in n or ".lora_B." in n)
        if not self.names:
            raise ValueError(f"{adapter_dir}: no LoRA weights found (a full fine-tune has no adapter space)")
        self._params = [named[n] for n in self.names]
        self._sizes = [p.numel() for p in self._params]
        self._starts = np.cumsum([0] + self._sizes)
        self._pairs = self._module_pairs(named)
        self.b_entries = self._b_mask()
        self.trained = self.flat()
        self._base = loaded
        self._plain = replace(loaded, model=copy.deepcopy(loaded.model).eval(), name=f"{loaded.name}+adapter-point")
        self._merged = self._merged_weights()
        self._current: bytes | None = None  # the point whose weight change the plain copy holds
        self._cache, self._model_parts = cache, dict(model_parts or {})

    @property
    def dim(self) -> int:
        return int(self._starts[-1])

    def flat(self) -> np.ndarray:
        """The adapter's current LoRA parameters as one float64 vector (name order)."""
        return np.concatenate([p.detach().float().cpu().numpy().reshape(-1) for p in self._params]).astype(float)

    def point_of(self, adapter_dir: str | Path) -> np.ndarray:
        """Another adapter's flat parameters, checked to live in this space (same modules, rank and shapes)."""
        return self._read_saved(Path(adapter_dir))

    def set(self, point: np.ndarray) -> None:
        """Write `point` into the model's LoRA weights."""
        import torch

        point = np.asarray(point, float).reshape(-1)
        if point.shape[0] != self.dim:
            raise ValueError(f"a point of {point.shape[0]} numbers for an adapter space of {self.dim}")
        with torch.no_grad():
            for p, a, b in zip(self._params, self._starts[:-1], self._starts[1:]):
                p.copy_(torch.as_tensor(point[a:b].reshape(tuple(p.shape)), dtype=p.dtype, device=p.device))

    def delta_inner(self, point: np.ndarray, other: np.ndarray) -> float:
        """<weight change at point, weight change at other>: sum over modules of scaling^2 <B1 A1, B2 A2>_F.

        Computed through the rank-r factors (trace((B1^T B2)(A2 A1^T))), never forming a full matrix.
        """
        total = 0.0
        for a_index, b_index, scaling in self._pairs:
            a1, b1 = self._block(point, a_index), self._block(point, b_index)
            a2, b2 = self._block(other, a_index), self._block(other, b_index)
            total += scaling * scaling * float(np.sum((b1.T @ b2) * (a1 @ a2.T)))
        return total

    def delta_norm(self, point: np.ndarray) -> float:
        """||weight change|| of the model at `point`: sqrt(sum over modules of ||scaling * B @ A||_F^2)."""
        return math.sqrt(max(0.0, self.delta_inner(point, point)))

    def delta_cosine(self, point: np.ndarray, other: np.ndarray) -> float:
        """Cosine of two points' weight changes (1: the same change up to scale)."""
        return self.delta_inner(point, other) / (self.delta_norm(point) * self.delta_norm(other))

    def with_delta_norm(self, point: np.ndarray, target: float) -> np.ndarray:
        """`point` with its B matrices rescaled so that its weight change has Frobenius norm `target`."""
        now = self.delta_norm(point)
        if now == 0.0:
            raise ValueError("with_delta_norm: the point changes no weight (its B matrices are zero), so it has no direction")
        out = np.array(point, float)
        for _, b_index, _ in self._pairs:
            a, b = self._starts[b_index], self._starts[b_index + 1]
            out[a:b] *= target / now
        return out

    def perturb_b(self, point: np.ndarray, epsilon: float, rng: np.random.Generator) -> np.ndarray:
        """`point` with the paper's orthogonal noise (claimkit.steering.orthogonal_noise) on its B matrices only.

        B starts at zero and A at a random init, so the flat parameters' norm is mostly A's
        init: noise scaled to it is about the same for every adapter of a seed. The weight
        change is linear in B, so noise scaled to B's norm is scaled to the solution itself.
        """
        from claimkit.steering import orthogonal_noise

        mask = self.b_entries
        out = np.array(point, float)
        out[mask] = orthogonal_noise(out[mask], epsilon, rng)
        return out

    def random_point(self, rng: np.random.Generator) -> np.ndarray:
        """A random adapter of this shape: every A and B entry standard normal (rescale it before use)."""
        return rng.standard_normal(self.dim)

    def losses(self, examples: Sequence[Example], points: Sequence[np.ndarray], *, batch_size: int = 16) -> np.ndarray:
        """[points, examples]: mean NLL per completion token of each example, the model at each point."""
        from claimkit.experiment import examples_hash

        parts = {"examples": examples_hash(examples), "n": len(examples), "batch_size": batch_size}
        return self._cached("adapter-point-losses", parts, points, lambda: self._losses(examples, points, batch_size),
                            f"losses of {len(examples)} examples at {len(points)} adapter points")

    def _losses(self, examples: Sequence[Example], points: Sequence[np.ndarray], batch_size: int) -> np.ndarray:
        from claimkit.interventions import completion_losses

        out = np.zeros((len(points), len(examples)))
        for k, point in enumerate(points):
            loaded = self._at(point)
            sums, counts = completion_losses(loaded, examples, batch_size=batch_size)
            out[k] = np.asarray(sums, float) / np.asarray(counts, float)
        return out

    def kl(self, texts: Sequence[str], points: Sequence[np.ndarray], *, max_length: int = 256,
           batch_size: int = 16) -> np.ndarray:
        """[points, texts]: mean KL(P_base || P_point) per token of each text (P_base: the adapter switched off)."""
        from claimkit.experiment import tasks_hash

        parts = {"texts": tasks_hash(texts), "n": len(texts), "max_length": max_length, "batch_size": batch_size}
        return self._cached("adapter-point-kl", parts, points, lambda: self._kl(texts, points, max_length, batch_size),
                            f"KL on {len(texts)} texts at {len(points)} adapter points")

    def _kl(self, texts: Sequence[str], points: Sequence[np.ndarray], max_length: int, batch_size: int) -> np.ndarray:
        import torch

        from claimkit.steering import padded, text_ids, text_kl

        encoded = [text_ids(self.opened, t, max_length) for t in texts]
        base_model = self._base.model
        out = np.zeros((len(points), len(texts)))
        with torch.inference_mode():
            for first in range(0, len(encoded), batch_size):
                ids, mask = padded(encoded[first : first + batch_size], self.opened.tokenizer.pad_token_id,
                                   self.opened.device)
                base = torch.log_softmax(base_model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
                for k, point in enumerate(points):
                    moved_model = self._at(point).model
                    moved = torch.log_softmax(moved_model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
                    out[k, first : first + len(ids)] = text_kl(base, moved, mask).cpu().numpy()
        return out

    # -- pieces -----------------------------------------------------------------------

    def _cached(self, kind: str, parts: Mapping[str, Any], points: Sequence[np.ndarray],
                compute: Callable[[], np.ndarray], what: str) -> np.ndarray:
        if self._cache is None:
            return compute()

        def build(out: Path) -> None:
            np.save(out / VALUES_FILE, compute())

        key = {**self._model_parts, **parts, "space": self._structure(), "points": _points_hash(points),
               "n_points": len(points)}
        return np.load(self._cache.get_or_build(kind, key, build, description=what) / VALUES_FILE)

    def _structure(self) -> str:
        """A hash of what a point means: the LoRA weights' names and shapes, and each module's scaling."""
        layout = [[n, list(p.shape)] for n, p in zip(self.names, self._params)]
        scalings = [[a, b, s] for a, b, s in self._pairs]
        return hashlib.sha256(json.dumps([layout, scalings]).encode("utf-8")).hexdigest()

    def _b_mask(self) -> np.ndarray:
        """A boolean mask of the flat vector: True on the entries of lora_B matrices."""
        mask = np.zeros(self.dim, bool)
        for _, b_index, _ in self._pairs:
            mask[self._starts[b_index] : self._starts[b_index + 1]] = True
        return mask

    def _merged_weights(self) -> list[tuple[Any, Any, int, int, float]]:
        """Per adapted module of the plain copy: (its weight, W0, A index, B index, scaling)."""
        merged = []
        for a_index, b_index, scaling in self._pairs:
            module_name = self.names[a_index].split(".lora_A.")[0].removeprefix("base_model.model.")
            weight = self._plain.model.get_submodule(module_name).weight
            merged.append((weight, weight.detach().clone(), a_index, b_index, scaling))
        return merged

    def _at(self, point: np.ndarray) -> "LoadedModel":
        """The plain copy with `point`'s weight change merged in (W0 + scaling * B @ A per module)."""
        import torch

        point = np.asarray(point, float).reshape(-1)
        if point.shape[0] != self.dim:
            raise ValueError(f"a point of {point.shape[0]} numbers for an adapter space of {self.dim}")
        key = point.tobytes()
        if key != self._current:
            with torch.no_grad():
                for weight, w0, a_index, b_index, scaling in self._merged:
                    a = torch.as_tensor(self._block(point, a_index), dtype=torch.float32, device=w0.device)
                    b = torch.as_tensor(self._block(point, b_index), dtype=torch.float32, device=w0.device)
                    weight.copy_((w0.float() + scaling * (b @ a)).to(w0.dtype))
            self._current = key
        return self._plain

    def _block(self, point: np.ndarray, index: int) -> np.ndarray:
        shape = tuple(self._params[index].shape)
        return np.asarray(point[self._starts[index] : self._starts[index + 1]], float).reshape(shape)

    def _module_pairs(self, named: dict[str, Any]) -> list[tuple[int, int, float]]:
        """(index of lora_A, index of lora_B, scaling) for every adapted module."""
        index = {n: i for i, n in enumerate(self.names)}
        pairs = []
        for name, i in index.items():
            if ".lora_A." not in name:
                continue
            b_name = name.replace(".lora_A.", ".lora_B.")
            if b_name not in index:
                raise ValueError(f"LoRA weight {name} has no matching lora_B")
            module = self.model.get_submodule(name.split(".lora_A.")[0])
            adapter = name.split(".lora_A.")[1].split(".")[0]
            pairs.append((i, index[b_name], float(module.scaling[adapter])))
        return pairs

    def _read_saved(self, adapter_dir: Path) -> np.ndarray:
        from claimkit.lm.finetune import load_lora_weights

        keep = self.flat()
        try:
            load_lora_weights(self.model, adapter_dir, "cpu", what="adapter space: adapter")
            return self.flat()
        finally:
            self.set(keep)


def _points_hash(points: Sequence[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for point in points:
        digest.update(np.ascontiguousarray(np.asarray(point, dtype=np.float64).reshape(-1)).tobytes())
        digest.update(b"\x00")
    return digest.hexdigest()
