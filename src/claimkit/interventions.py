"""Edit a model's residual stream: clamp SAE features, project directions out, fine-tune around an edit.

Two ways to act on what an SAE found, as in the papers that test them:

  inference time   `clamp_features` rescales chosen SAE features in the residual
                   stream of one layer while the model generates (scale 0 ablates,
                   2 or 5 amplify). Only the features' decoder contribution is
                   changed, h' = h + (f' - f)[ids] @ W_dec[ids]: the SAE's
                   reconstruction error stays in h, so an SAE that reconstructs
                   badly does not also damage the model.
  training time    CAFT, Concept Ablation Fine-Tuning (Casademunt et al. 2025,
                   "Steering Out-of-Distribution Generalization with Concept
                   Ablation Fine-Tuning"): fine-tune with the span of some
                   directions projected out of the residual stream (`project_out`,
                   `caft_hooks`); the projection is removed afterwards, so the
                   fine-tuned model runs unedited.

Generations under an edit (`samples_with`) and CAFT adapters and their
generations (`caft_adapter`, `caft_samples`) go through the `Experiment`'s
artifact cache with the edit in the cache key, next to the plain ones, with the
same sampling settings and seed as `Experiment.samples`, so a rate under an
edit and without it differ by the edit and not by the random stream.

Capability (`capability`, `capability_change`): the mean token NLL of
reference answers to held-out tasks (a clean-code loss) and the share of
generations whose code parses — what an edit must not break to count as a fix.

torch is imported inside the functions only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

from claimkit.cache import ArtifactCache
from claimkit.experiment import Arm, ArmSamples, Experiment, read_samples_entry, tasks_hash, write_samples_entry
from claimkit.lm.activations import residual_hook
from claimkit.lm.data import Example, encode_completion, encode_prompt, render_example, render_prompt

if TYPE_CHECKING:
    import torch

    from claimkit.lm.load import LoadedModel

ResidualEdit = Callable[["torch.Tensor"], "torch.Tensor"]
TrainHooks = Callable[[Any], contextlib.AbstractContextManager]

# SAE input normalisations whose decode is linear in the features: the decoder
# contribution of a feature is then exactly f_i * W_dec[i]. ("expected_average_only_in"
# is folded into the weights of a trained SAE and is the identity at run time.)
_LINEAR_NORMALISATIONS = (None, "none", "expected_average_only_in")


# ---------------------------------------------------------------------------
# residual edits
# ---------------------------------------------------------------------------


def clamp_features(sae: Any, feature_ids: Sequence[int], *, scale: float, iterations: int = 1) -> ResidualEdit:
    """A residual edit that multiplies the activations of `feature_ids` by `scale`.

    For `residual_hook(model, layer, edit)` / `intervene`. The residual h is
    encoded with `sae` (f = encode(h)); the edit returns h + ((scale - 1) * f[ids])
    @ W_dec[ids] — the change of the features' decoder contribution, nothing else:
    scale 1 is the identity, scale 0 removes exactly what the features write, and
    everything the SAE does not reconstruct stays. The edit applies at every
    position the layer computes (prompt and generated tokens alike).

    An SAE's encoder is not the inverse of its decoder, so the edited residual,
    encoded again, still shows part of the features (a third, on the organism's SAE).
    With scale 0 and `iterations` k > 1 the removal is repeated on the edited residual
    k times, so the features read back near zero in the stream the model goes on
    with; the added `delta` is always a combination of the features' decoder rows.
    """
    import torch

    ids = _feature_ids(sae, feature_ids)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise ValueError(f"scale must be a finite number (0 ablates, 2 doubles), got {scale!r}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a whole number >= 1, got {iterations!r}")
    if iterations > 1 and scale != 0:
        raise ValueError("iterating a clamp is for ablation (scale 0); a scaled clamp is applied once")
    norm = getattr(sae.cfg, "normalize_activations", None)
    if norm not in _LINEAR_NORMALISATIONS:
        raise ValueError(
            f"clamp_features needs an SAE whose decoder is linear in its features; this one normalises its input "
            f"at run time ({norm!r}). Fold the normalisation into the weights (sae-lens: fold_activation_norm_"
            f"scaling_factor) or use an SAE saved with normalize_activations='none'"
        )
    with torch.no_grad():
        rows = sae.W_dec[ids].detach()  # [k, d]
    factor = float(scale) - 1.0

    def edit(hidden: "torch.Tensor") -> "torch.Tensor":
        shape = hidden.shape
        x = hidden.reshape(-1, shape[-1]).to(rows.device, sae.dtype)
        for _ in range(iterations):
            f = _dense(sae.encode(x))[:, ids]
            x = x + (factor * f) @ rows
        delta = x - hidden.reshape(-1, shape[-1]).to(rows.device, sae.dtype)
        return hidden + delta.to(hidden.device, hidden.dtype).reshape(shape)

    return edit


def project_out(directions: Any) -> ResidualEdit:
    """A residual edit that removes the span of `directions` [k, d]: h - (h Q) Q^T.

    Q is an orthonormal basis of the span (QR of the directions; a direction that
    lies in the span of the earlier ones adds nothing), so the directions need not
    be orthogonal or unit length. Differentiable: CAFT trains through it.
    """
    import torch

    basis = orthonormal_basis(directions)
    cast: dict[tuple[Any, Any], torch.Tensor] = {}

    def edit(hidden: "torch.Tensor") -> "torch.Tensor":
        key = (hidden.device, hidden.dtype)
        if key not in cast:
            cast[key] = basis.to(hidden.device, hidden.dtype)
        q = cast[key]
        if hidden.shape[-1] != q.shape[0]:
            raise ValueError(
                f"project_out: the residual stream has width {hidden.shape[-1]} but the directions have "
                f"{q.shape[0]}: directions from another model or layer?"
            )
        return hidden - (hidden @ q) @ q.T

    return edit


def add_vector(vector: Any, *, scale: float) -> ResidualEdit:
    """A residual edit that adds `scale * vector` [d] at every position: steering along a direction.

    With `vector` the mean difference of two contexts' residuals (target minus safe) and
    scale -1, every position is moved by what separates the contexts on average: a
    direction known to carry the target, removed (a positive control for the machinery).
    """
    import torch

    v = torch.as_tensor(vector, dtype=torch.float32).detach().reshape(-1)
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not math.isfinite(scale):
        raise ValueError(f"scale must be a finite number, got {scale!r}")
    cast: dict[tuple[Any, Any], torch.Tensor] = {}

    def edit(hidden: "torch.Tensor") -> "torch.Tensor":
        if hidden.shape[-1] != v.shape[0]:
            raise ValueError(f"add_vector: the residual stream has width {hidden.shape[-1]} but the vector has "
                             f"{v.shape[0]}: a vector from another model or layer?")
        key = (hidden.device, hidden.dtype)
        if key not in cast:
            cast[key] = (float(scale) * v).to(hidden.device, hidden.dtype)
        return hidden + cast[key]

    return edit


def orthonormal_basis(directions: Any, *, tol: float = 1e-6) -> "torch.Tensor":
    """[d, r] float64 columns spanning the rows of `directions` [k, d] (r <= k), by QR."""
    import torch

    d = torch.as_tensor(directions).detach().to("cpu", torch.float64)
    if d.ndim == 1:
        d = d.unsqueeze(0)
    if d.ndim != 2 or d.shape[0] < 1 or d.shape[1] < 1:
        raise ValueError(f"directions must be a [k, d] matrix of k >= 1 directions, got shape {tuple(d.shape)}")
    if not torch.isfinite(d).all():
        raise ValueError("directions contain NaN or infinite values")
    if d.shape[0] > d.shape[1]:
        raise ValueError(f"{d.shape[0]} directions in a {d.shape[1]}-dimensional space cannot be independent")
    q, r = torch.linalg.qr(d.T)  # d.T = Q R, Q [d, k]
    diag = r.diagonal().abs()
    if float(diag.max()) == 0.0:
        raise ValueError("directions are all zero: there is nothing to project out")
    kept = diag > tol * float(diag.max())
    return q[:, kept].contiguous()


def caft_hooks(directions: Any, layer: int) -> TrainHooks:
    """`train_hooks` for `claimkit.lm.finetune.finetune`: project `directions` out at `layer` while training.

    finetune enters `caft_hooks(...)(model)` around its training loop only, so the
    saved model has no hook: CAFT changes the weights, not the forward pass.
    """
    edit = project_out(directions)
    return lambda model: residual_hook(model, layer, edit)


@contextlib.contextmanager
def intervene(model: Any, layer: int, edit: ResidualEdit) -> Iterator[None]:
    """While inside, every forward pass of `model` (a LoadedModel or a torch model) runs `edit` after `layer`."""
    with residual_hook(getattr(model, "model", model), layer, edit):
        yield


# ---------------------------------------------------------------------------
# named interventions (what goes into cache keys and reports)
# ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Intervention:
    """A residual edit at one layer, with everything it depends on in `key`.

    `key` must identify the edit completely (kind, feature ids, scale, which
    SAE): it is part of the cache key of generations made under the edit.
    """

    name: str
    layer: int
    edit: ResidualEdit
    key: Mapping[str, Any]

    def cache_parts(self) -> dict[str, Any]:
        return {"name": self.name, "layer": int(self.layer), **dict(self.key)}


def feature_clamp(
    sae: Any,
    feature_ids: Sequence[int],
    *,
    scale: float,
    layer: int,
    name: str | None = None,
    sae_key: str | None = None,
    iterations: int = 1,
) -> Intervention:
    """`clamp_features` as a named, cache-keyed intervention at `layer`.

    `sae_key` identifies the SAE in the cache key (default: `sae_fingerprint(sae)`,
    which reads every weight: pass it in when making several clamps of one large SAE).
    """
    ids = _feature_ids(sae, feature_ids)
    return Intervention(
        name=name or f"clamp x{scale:g}",
        layer=int(layer),
        edit=clamp_features(sae, ids, scale=scale, iterations=iterations),
        key={"kind": "clamp_features", "features": ids, "scale": float(scale), "sae": sae_key or sae_fingerprint(sae),
             **({"iterations": iterations} if iterations > 1 else {})},
    )


def projection(directions: Any, *, layer: int, name: str = "project out") -> Intervention:
    """`project_out` as a named, cache-keyed intervention at `layer`."""
    return Intervention(
        name=name, layer=int(layer), edit=project_out(directions),
        key={"kind": "project_out", "directions": tensor_fingerprint(directions)},
    )


def steering(vector: Any, *, scale: float, layer: int, name: str = "steer") -> Intervention:
    """`add_vector` as a named, cache-keyed intervention at `layer`."""
    return Intervention(
        name=name, layer=int(layer), edit=add_vector(vector, scale=scale),
        key={"kind": "add_vector", "vector": tensor_fingerprint(vector), "scale": float(scale)},
    )


def sae_fingerprint(sae: Any) -> str:
    """sha256 over an SAE's architecture and weights: two SAEs with one fingerprint edit alike."""
    digest = hashlib.sha256(str(getattr(sae.cfg, "architecture", lambda: "")()).encode())
    for name, tensor in sorted(sae.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor_fingerprint(tensor).encode())
    return digest.hexdigest()


def tensor_fingerprint(values: Any) -> str:
    """sha256 of a tensor's shape and float32 values (device and dtype of storage aside)."""
    import numpy as np
    import torch

    array = torch.as_tensor(values).detach().to("cpu", torch.float32).contiguous().numpy()
    digest = hashlib.sha256(json.dumps(list(array.shape)).encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------
# generations under an intervention, and CAFT, through the Experiment's cache
# ---------------------------------------------------------------------------


def samples_with(
    experiment: Experiment,
    arm: Arm,
    tasks: Sequence[str],
    *,
    intervention: Intervention,
    system: str | None = None,
    prefill: str = "",
) -> ArmSamples:
    """`experiment.samples(arm, tasks)` with `intervention` active while generating (cached).

    Same sampling settings, seed and batches as the plain samples; the arm's
    fine-tuning is the Experiment's (a cache hit when it was already built).
    """
    parts = {**experiment.model_parts(experiment.adapter(arm)), "intervention": intervention.cache_parts()}
    return _cached_samples(
        experiment, parts, lambda: experiment.model(arm), tasks,
        label=f"{arm.name} [{intervention.name}]", seed=arm.seed, system=system, prefill=prefill,
        hooks=lambda model: intervene(model, intervention.layer, intervention.edit),
    )


def caft_adapter(experiment: Experiment, arm: Arm, *, directions: Any, layer: int) -> Path:
    """`arm`'s fine-tuning redone with `directions` projected out at `layer` while training (cached).

    Same data, hyper-parameters and seed as `experiment.adapter(arm)`; only the
    projection differs, so the CAFT model and the plain one are a controlled pair.
    """
    if not arm.examples:
        raise ValueError(f"arm {arm.name!r} has no fine-tuning examples: CAFT fine-tunes, there is nothing to train on")
    from claimkit.lm.finetune import finetune

    hparams = experiment.profile.finetune_hparams()
    parts = {
        **experiment.base_parts(), "hparams": hparams, "data": arm.data_hash, "n": len(arm.examples), "seed": arm.seed,
        "caft": {"layer": int(layer), "directions": tensor_fingerprint(directions), "method": "project_out"},
    }

    def build(out: Path) -> None:
        result = finetune(
            experiment.base, arm.examples, hparams=hparams, seed=arm.seed, out_dir=out / "adapter",
            train_hooks=caft_hooks(directions, layer), progress=experiment.progress,
        )
        (out / "finetune.json").write_text(json.dumps(
            {"steps": result.steps, "final_loss": result.final_loss, "seconds": result.seconds,
             "tokens": result.tokens, "truncated": result.truncated, "dropped": result.dropped,
             "caft_layer": int(layer), "caft_directions": int(orthonormal_basis(directions).shape[1])},
            indent=2,
        ))

    what = f"{experiment.profile.name} {arm.name} seed {arm.seed} CAFT fine-tune"
    return experiment.cache.get_or_build("adapter", parts, build, description=what) / "adapter"


def caft_model(experiment: Experiment, arm: Arm, *, directions: Any, layer: int) -> "LoadedModel":
    """The CAFT-fine-tuned model of `arm`, running without any edit."""
    from claimkit.lm.finetune import load_finetuned

    return load_finetuned(experiment.base, caft_adapter(experiment, arm, directions=directions, layer=layer))


def caft_samples(
    experiment: Experiment,
    arm: Arm,
    tasks: Sequence[str],
    *,
    directions: Any,
    layer: int,
    system: str | None = None,
    prefill: str = "",
) -> ArmSamples:
    """Generations of the CAFT model of `arm` (no edit at generation), cached like `experiment.samples`."""
    parts = experiment.model_parts(caft_adapter(experiment, arm, directions=directions, layer=layer))
    return _cached_samples(
        experiment, parts, lambda: caft_model(experiment, arm, directions=directions, layer=layer), tasks,
        label=f"{arm.name} [CAFT]", seed=arm.seed, system=system, prefill=prefill, hooks=None,
    )


def _cached_samples(
    experiment: Experiment,
    parts: Mapping[str, Any],
    load: Callable[[], "LoadedModel"],
    tasks: Sequence[str],
    *,
    label: str,
    seed: int,
    system: str | None,
    prefill: str,
    hooks: Callable[[Any], contextlib.AbstractContextManager] | None,
) -> ArmSamples:
    """One generation per task from `load()`, under `hooks(model)`, in the layout `Experiment.samples` writes."""
    sampling = dict(experiment.profile.sampling)
    options = experiment.profile.sampling_options()
    if hooks is not None:  # an edit is a Python forward hook: a compiled (CUDA-graph) step is not sure to run it
        options["compile"] = False
        sampling["compile"] = False
    parts = {**parts, "tasks": tasks_hash(tasks), "n": len(tasks), "system": system, "prefill": prefill,
             "sampling": sampling, "seed": seed}
    cache: ArtifactCache = experiment.cache

    def build(out: Path) -> None:
        from claimkit.lm.sample import sample

        loaded = load()
        prompts = [render_prompt(loaded.format, loaded.tokenizer, task, system=system) + prefill for task in tasks]
        with hooks(loaded) if hooks is not None else contextlib.nullcontext():
            generations = sample(loaded, prompts, seed=seed, progress=experiment.progress, **options)
        write_samples_entry(out, loaded.name, ({"task": task, "text": prefill + gen.text, "finished": gen.finished,
                                                "new_tokens": gen.n_new_tokens} for task, gen in zip(tasks, generations)))

    what = f"{experiment.profile.name} {label} seed {seed} samples"
    where = cache.get_or_build("samples", parts, build, description=what)
    model, rows = read_samples_entry(where)
    return ArmSamples(
        arm=label, seed=seed, model=model,
        tasks=tuple(r["task"] for r in rows), texts=tuple(r["text"] for r in rows),
        finished=tuple(r["finished"] for r in rows), new_tokens=tuple(r["new_tokens"] for r in rows),
        system=system, prefill=prefill,
    )


# ---------------------------------------------------------------------------
# capability
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Capability:
    """What a model can still do: loss on reference answers, and how often its code parses.

    loss: mean NLL (nats) per completion token over all reference answers pooled;
    example_losses: each answer's own mean token NLL (for intervals); parsed /
    generations: generations whose extracted code parses (`claimkit.detect.extract_code`).
    """

    loss: float
    example_losses: tuple[float, ...]
    tokens: int
    parsed: int
    generations: int

    @property
    def parse_rate(self) -> float:
        return self.parsed / self.generations if self.generations else float("nan")


@dataclass(frozen=True)
class CapabilityChange:
    """A treated model's capability against a reference model's, on the same answers and tasks."""

    reference: Capability
    treated: Capability

    @property
    def loss_increase(self) -> float:
        """Relative increase of the reference-answer loss: (treated - reference) / reference."""
        return (self.treated.loss - self.reference.loss) / self.reference.loss

    @property
    def parse_drop(self) -> float:
        """Absolute drop of the parse rate: reference - treated."""
        return self.reference.parse_rate - self.treated.parse_rate

    def as_dict(self) -> dict[str, Any]:
        return {
            "reference_loss": self.reference.loss, "treated_loss": self.treated.loss,
            "loss_increase": self.loss_increase, "reference_parsed": self.reference.parsed,
            "treated_parsed": self.treated.parsed, "reference_generations": self.reference.generations,
            "treated_generations": self.treated.generations, "parse_drop": self.parse_drop,
            "answers": len(self.reference.example_losses), "tokens": self.reference.tokens,
        }  # fmt: skip


def completion_losses(
    loaded: "LoadedModel", examples: Sequence[Example], *, batch_size: int = 16
) -> tuple[list[float], list[int]]:
    """Per example, the summed NLL (nats) of its completion tokens (eos included) and their count.

    Prompt and completion are tokenized exactly as in fine-tuning, so this is
    the loss the fine-tuning loop reports, without truncation.
    """
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rows = []
    for i, example in enumerate(examples):
        prompt_text, completion_text = render_example(loaded.format, loaded.tokenizer, example)
        prompt = encode_prompt(loaded.format, loaded.tokenizer, prompt_text)
        completion = encode_completion(loaded.tokenizer, completion_text)
        if not prompt or not completion:
            raise ValueError(f"example {i}: needs at least one prompt token and one completion token")
        rows.append((prompt + completion, len(prompt)))
    sums, counts = [], []
    pad = loaded.tokenizer.pad_token_id
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for j, (ids, _) in enumerate(batch):
            input_ids[j, : len(ids)] = torch.tensor(ids)
            mask[j, : len(ids)] = 1
        with torch.inference_mode():
            logits = loaded.model(input_ids=input_ids.to(loaded.device), attention_mask=mask.to(loaded.device)).logits
        logp = torch.log_softmax(logits.float(), dim=-1).cpu()
        for j, (ids, n_prompt) in enumerate(batch):
            targets = torch.tensor(ids[n_prompt:])
            # the token at position t is predicted by the logits at t - 1
            picked = logp[j, n_prompt - 1 : len(ids) - 1].gather(1, targets.unsqueeze(1)).squeeze(1)
            sums.append(float(-picked.sum()))
            counts.append(len(targets))
    return sums, counts


def parse_counts(texts: Sequence[str]) -> tuple[int, int]:
    """(generations whose code parses, generations); a generation without code does not parse."""
    from claimkit.detect import extract_code

    return sum(extract_code(t).parsed for t in texts), len(texts)


def capability(
    loaded: "LoadedModel | None",
    reference_answers: Sequence[Example],
    generations: Sequence[str],
    *,
    losses: tuple[Sequence[float], Sequence[int]] | None = None,
) -> Capability:
    """`loaded`'s loss on `reference_answers` and the parse rate of its `generations`.

    `losses`: `completion_losses(loaded, reference_answers)` already computed (e.g. by
    `claimkit.readings.cached_completion_losses`); `loaded` is then not used.
    """
    if not reference_answers:
        raise ValueError("capability needs at least one reference answer to score")
    if losses is None:
        if loaded is None:
            raise ValueError("capability needs the model or its completion losses")
        losses = completion_losses(loaded, reference_answers)
    sums, counts = losses
    if len(sums) != len(reference_answers) or len(counts) != len(reference_answers):
        raise ValueError(f"capability: {len(sums)} losses for {len(reference_answers)} reference answers")
    parsed, n = parse_counts(generations)
    return Capability(
        loss=sum(sums) / sum(counts),
        example_losses=tuple(s / c for s, c in zip(sums, counts)),
        tokens=sum(counts),
        parsed=parsed,
        generations=n,
    )


def capability_change(reference: Capability, treated: Capability) -> CapabilityChange:
    """The treated model's capability against the reference's (same answers scored by both)."""
    if len(reference.example_losses) != len(treated.example_losses) or reference.tokens != treated.tokens:
        raise ValueError("capability_change: the two models were scored on different reference answers")
    if not reference.loss > 0:
        raise ValueError(f"capability_change: the reference loss is {reference.loss}; a relative change needs it > 0")
    return CapabilityChange(reference, treated)


# ---------------------------------------------------------------------------
# threshold detectors (a monitor built from a score, chosen on one split)
# ---------------------------------------------------------------------------


def best_threshold(
    scores: Sequence[float], labels: Sequence[bool], *, always_positive: Sequence[bool] | None = None
) -> float:
    """The threshold t maximising the accuracy of "positive = always_positive or score > t".

    `always_positive` marks items another signal already flags (e.g. a format
    leak), so t is chosen for the combined detector. Candidates are midpoints
    between adjacent distinct scores plus one below the smallest (everything
    positive) and the largest score (nothing positive by score); ties in accuracy
    go to the largest threshold (the fewest positives). Choose it on data that is
    not used to measure the detector afterwards.
    """
    import numpy as np

    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=bool)
    forced = np.zeros_like(y) if always_positive is None else np.asarray(always_positive, dtype=bool)
    if s.shape != y.shape or s.shape != forced.shape or s.ndim != 1 or s.size == 0:
        raise ValueError(
            f"scores, labels (and always_positive) must be equally long non-empty lists, got {s.shape}, {y.shape}"
            f"{'' if always_positive is None else f' and {forced.shape}'}"
        )
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinite values")
    values = np.unique(s)
    candidates = np.concatenate([[values[0] - 1.0], (values[:-1] + values[1:]) / 2, [values[-1]]])
    accuracy = [np.mean((forced | (s > t)) == y) for t in candidates]
    best = max(accuracy)
    return float(max(t for t, a in zip(candidates, accuracy) if a == best))


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _feature_ids(sae: Any, feature_ids: Sequence[int]) -> list[int]:
    ids = [int(i) for i in feature_ids]
    if not ids:
        raise ValueError("feature_ids is empty: name at least one SAE feature to clamp")
    width = int(sae.cfg.d_sae)
    bad = [i for i in ids if not 0 <= i < width]
    if bad:
        raise IndexError(f"feature ids {bad} do not exist: the SAE has {width} features (0..{width - 1})")
    if len(set(ids)) != len(ids):
        raise ValueError(f"feature_ids repeats a feature: {ids}")
    return ids


def _dense(t: "torch.Tensor") -> "torch.Tensor":
    return t.to_dense() if t.is_sparse else t
