"""Sparse autoencoders over the residual stream: train one, load one, read features.

Every SAE here is a sae-lens object (`sae_lens.SAE` subclasses) so that an SAE
trained by claimkit for a small model and Gemma Scope for Gemma-2-2B are read by
the same code. Where an SAE comes from is data — a profile's `[sae]` table —
and `load_sae` / `sae_for` dispatch on it:

  {release = ..., id = ...}   a pretrained SAE from sae-lens's registry (needs the
                              Hugging Face hub or its local cache); with
                              env = "VAR", $VAR may name a local directory instead
  {path = ...}                an SAE saved in sae-lens's format (`save_sae`), or a
                              Gemma Scope folder (params.npz, as the hub publishes it)
  {source = "train", ...}     trained by claimkit on the model's own activations
                              (`train_sae`), cached by `sae_for`

Training uses sae-lens's own classes and trainer (`TopKTrainingSAE` or
`StandardTrainingSAE`, `SAETrainer`) on activations the caller supplies; nothing
is logged to wandb and no checkpoint is written.

sae-lens takes ~4-6 s to import (it pulls in transformer_lens): it is imported
only inside these functions, never when claimkit or its pytest plugin loads.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal, Mapping, Sequence

from claimkit.lm.device import ModelLoadError, require_package

if TYPE_CHECKING:
    import torch

    from claimkit.cache import ArtifactCache

Architecture = Literal["topk", "standard"]
GEMMA_SCOPE_PARAMS = "params.npz"  # the one file of each published Gemma Scope SAE
GEMMA_SCOPE_REPO = r"gemma-scope-\d+b-(?:pt|it)-(?:res|mlp|att)"  # hub repos, e.g. gemma-scope-2b-pt-res


class SAELoadError(ModelLoadError):
    """An SAE could not be loaded or trained; the message says what to do about it."""


# ---------------------------------------------------------------------------
# records
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainedSAE:
    """An SAE trained by `train_sae`, with the settings that produced it (for reports and cache keys)."""

    sae: Any  # a sae_lens.SAE (inference class: TopKSAE or StandardSAE)
    architecture: str
    d_in: int
    width: int
    k: int | None  # TopK only
    l1_coefficient: float | None  # standard only
    steps: int
    batch_size: int
    lr: float
    seed: int
    n_train: int  # activation rows it was trained on

    def describe(self) -> str:
        sparsity = f"k={self.k}" if self.architecture == "topk" else f"l1={self.l1_coefficient:g}"
        return (
            f"{self.architecture} SAE {self.d_in}->{self.width}, {sparsity}, {self.steps} steps x {self.batch_size} "
            f"on {self.n_train} activations, lr {self.lr:g}, seed {self.seed}"
        )


@dataclass(frozen=True)
class SAEQuality:
    """How well an SAE describes a set of activations it was not trained on.

    explained_variance  1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 over all rows
                        (sae-lens's "metrics/explained_variance"; 1 is perfect, 0 is no
                        better than predicting the mean activation)
    mean_l0             mean number of non-zero features per row
    dead_fraction       share of features that are zero on every row
    mse                 mean squared reconstruction error per coordinate
    n                   rows measured
    """

    explained_variance: float
    mean_l0: float
    dead_fraction: float
    mse: float
    n: int

    def acceptable(self, *, min_explained_variance: float, max_dead_fraction: float) -> bool:
        """True when the SAE is good enough to decide a claim on (thresholds come from the spec)."""
        return self.explained_variance >= min_explained_variance and self.dead_fraction <= max_dead_fraction

    def describe(self) -> str:
        return (
            f"explained variance {self.explained_variance:.3f}, L0 {self.mean_l0:.1f}, "
            f"dead {100 * self.dead_fraction:.1f}%, mse {self.mse:.4g} (n={self.n} held-out activations)"
        )


@dataclass(frozen=True)
class LoadedSAE:
    """An SAE ready for a claim: the object, a name for reports, and its held-out quality."""

    sae: Any  # a sae_lens.SAE
    name: str
    quality: SAEQuality | None
    directory: Path | None = None  # where a cached or local SAE lives


# ---------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------


def train_sae(
    activations: "torch.Tensor",
    *,
    width: int,
    architecture: Architecture = "topk",
    k: int = 32,
    l1_coefficient: float = 5.0,
    steps: int = 2000,
    batch_size: int = 256,
    lr: float = 3e-4,
    seed: int = 0,
    device: str = "cpu",
    dead_feature_window: int | None = None,
    threads: int | None = None,
    progress: bool = False,
) -> TrainedSAE:
    """Train an SAE of `width` features on `activations` [N, d] with sae-lens's SAETrainer.

    Architecture: TopK by default (Gao et al. 2024, "Scaling and evaluating sparse
    autoencoders"). It fixes L0 at `k` directly, so one setting transfers across
    models whose activations differ in scale and size, where an L1 coefficient
    would need tuning per model; it has no L1 shrinkage, so feature magnitudes —
    what claims compare — are not biased towards zero; and its auxiliary loss
    revives dead features. "standard" (ReLU + L1, `l1_coefficient`) is there for
    comparison with older SAE work.

    Inputs are rescaled to mean norm sqrt(d) while training (sae-lens's
    "expected_average_only_in") and the factor is folded back into the weights, so
    the returned SAE reads raw activations. The learning rate decays linearly to 0
    over the last fifth of the steps. Batches are drawn without replacement from
    `activations`, reshuffled every epoch by `seed`; the same seed, data and
    settings give the same SAE on CPU. `dead_feature_window` (steps without firing
    before a feature counts as dead for TopK's auxiliary loss) defaults to
    min(1000, max(10, steps // 10)).

    `threads` caps torch's intra-op CPU threads while training (restored after).
    Small SAEs train fastest on one thread: on a busy 2-core machine, 1,500 steps
    of a 16->64 SAE took 1.3 s on one thread and 35 s on two.
    """
    import torch

    _require_sae_lens("training an SAE")
    x = _as_matrix(activations, "activations")
    n, d_in = x.shape
    _check_training_args(n, width, architecture, k, l1_coefficient, steps, batch_size, lr)
    if dead_feature_window is None:
        dead_feature_window = min(1000, max(10, steps // 10))

    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    with torch.random.fork_rng(devices=[]), _quiet_progress(not progress), _torch_threads(threads):
        torch.manual_seed(seed)  # sae-lens initialises weights from the global generator
        training_sae = _training_sae(architecture, d_in, width, k, l1_coefficient, device)
        config = SAETrainerConfig(
            total_training_samples=steps * batch_size,
            train_batch_size_samples=batch_size,
            lr=lr,
            lr_end=lr,  # sae-lens's config has no __post_init__ default; the constant schedule decays from lr
            lr_scheduler_name="constant",
            lr_decay_steps=steps // 5,
            device=device,
            dead_feature_window=dead_feature_window,
            n_batches_for_norm_estimate=max(1, min(100, n // batch_size)),
            n_checkpoints=0,
            checkpoint_path=None,
            save_final_checkpoint=False,
            logger=LoggingConfig(log_to_wandb=False),
        )
        trainer = SAETrainer(cfg=config, sae=training_sae, data_provider=_shuffled_batches(x, batch_size, seed))
        trained = trainer.fit()
        sae = _inference_sae(trained)
    return TrainedSAE(
        sae=sae,
        architecture=architecture,
        d_in=d_in,
        width=width,
        k=k if architecture == "topk" else None,
        l1_coefficient=float(l1_coefficient) if architecture == "standard" else None,
        steps=steps,
        batch_size=batch_size,
        lr=float(lr),
        seed=seed,
        n_train=n,
    )


def _training_sae(architecture: str, d_in: int, width: int, k: int, l1: float, device: str) -> Any:
    from sae_lens import StandardTrainingSAE, StandardTrainingSAEConfig, TopKTrainingSAE, TopKTrainingSAEConfig

    common = dict(d_in=d_in, d_sae=width, device=device, normalize_activations="expected_average_only_in")
    if architecture == "topk":
        return TopKTrainingSAE(TopKTrainingSAEConfig(k=k, **common))
    return StandardTrainingSAE(StandardTrainingSAEConfig(l1_coefficient=l1, **common))


def _inference_sae(training_sae: Any) -> Any:
    """The inference class of a trained SAE, as sae-lens's save_inference_model would write it.

    TopK training keeps un-normalised decoder rows; the inference state dict has the
    norms folded into the encoder (`process_state_dict_for_saving_inference`), so the
    inference SAE has unit-norm decoder rows.
    """
    from sae_lens import SAE

    state = {name: value.detach().clone() for name, value in training_sae.state_dict().items()}
    training_sae.process_state_dict_for_saving_inference(state)
    sae = SAE.from_dict(training_sae.cfg.get_inference_sae_cfg_dict())
    sae.load_state_dict(state)
    return sae.eval()


def _shuffled_batches(x: "torch.Tensor", batch_size: int, seed: int) -> Iterator["torch.Tensor"]:
    """Endless full batches, each epoch in a fresh seeded order.

    The trailing partial batch of an epoch is dropped: SAETrainer counts firing
    frequencies per `train_batch_size_samples`, which a short batch would skew.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            yield x[order[start : start + batch_size]]


@contextlib.contextmanager
def _quiet_progress(quiet: bool) -> Iterator[None]:
    """Silence sae-lens's tqdm bars, which its trainer creates with no option to turn them off."""
    if not quiet:
        yield
        return
    from sae_lens.training import activation_scaler, sae_trainer

    modules = (sae_trainer, activation_scaler)
    originals = [module.tqdm for module in modules]
    try:
        for module, original in zip(modules, originals):
            module.tqdm = functools.partial(original, disable=True)
        yield
    finally:
        for module, original in zip(modules, originals):
            module.tqdm = original


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    import torch

    if threads is None:
        yield
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a whole number >= 1 or None, got {threads!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_training_args(
    n: int, width: int, architecture: str, k: int, l1: float, steps: int, batch_size: int, lr: float
) -> None:
    if architecture not in ("topk", "standard"):
        raise ValueError(f"architecture must be 'topk' or 'standard', got {architecture!r}")
    for value, name in ((width, "width"), (steps, "steps"), (batch_size, "batch_size")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    if architecture == "topk" and not (isinstance(k, int) and 1 <= k <= width):
        raise ValueError(f"k must be a whole number in 1..width ({width}), got {k!r}")
    if architecture == "standard" and not (isinstance(l1, (int, float)) and l1 >= 0):
        raise ValueError(f"l1_coefficient must be a number >= 0, got {l1!r}")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if n < batch_size:
        raise ValueError(
            f"activations has {n} rows, fewer than batch_size={batch_size}: collect more activations "
            f"or lower batch_size"
        )


# ---------------------------------------------------------------------------
# reading an SAE
# ---------------------------------------------------------------------------


def encode(sae: Any, activations: "torch.Tensor", *, batch_size: int = 4096) -> "torch.Tensor":
    """Feature activations [N, d_sae] (float32, CPU) of activations [N, d_in].

    Encoded in batches on the SAE's device. For many generations at Gemma Scope
    width, encode one generation at a time and reduce it at once (see
    `claimkit.features.per_generation`) rather than holding every token's features.
    """
    import torch

    x = _as_matrix(activations, "activations", d_in=sae.cfg.d_in)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    chunks = []
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            chunk = x[start : start + batch_size].to(sae.device)
            chunks.append(_dense(sae.encode(chunk)).float().cpu())
    if not chunks:
        return torch.zeros((0, sae.cfg.d_sae), dtype=torch.float32)
    return torch.cat(chunks)


def reconstruct(sae: Any, activations: "torch.Tensor", *, batch_size: int = 4096) -> "torch.Tensor":
    """The SAE's reconstruction [N, d_in] (float32, CPU) of activations [N, d_in]."""
    import torch

    x = _as_matrix(activations, "activations", d_in=sae.cfg.d_in)
    chunks = []
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            chunk = x[start : start + batch_size].to(sae.device)
            chunks.append(sae.decode(sae.encode(chunk)).float().cpu())
    return torch.cat(chunks) if chunks else torch.zeros_like(x)


def decoder_directions(sae: Any, feature_ids: Sequence[int], *, normalize: bool = True) -> "torch.Tensor":
    """The decoder rows [k, d_in] (float32, CPU) of `feature_ids`, unit length unless normalize=False.

    These are the directions a feature writes into the residual stream: what an
    ablation projects out and what CAFT removes during fine-tuning.
    """
    import torch

    ids = [int(i) for i in feature_ids]
    bad = [i for i in ids if not 0 <= i < sae.cfg.d_sae]
    if bad:
        last = sae.cfg.d_sae - 1
        raise IndexError(f"feature ids {bad} do not exist: the SAE has {sae.cfg.d_sae} features (0..{last})")
    with torch.no_grad():
        rows = sae.W_dec[ids].detach().float().cpu().clone()
        if normalize:
            rows = rows / rows.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return rows


def sae_quality(sae: Any, activations: "torch.Tensor", *, batch_size: int = 4096) -> SAEQuality:
    """Explained variance, L0, dead share and MSE of `sae` on `activations` [N, d_in].

    Pass activations the SAE was not trained on: on its training data an SAE looks
    better than it is. Definitions are in `SAEQuality`.
    """
    import torch

    x = _as_matrix(activations, "activations", d_in=sae.cfg.d_in).double()
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"sae_quality needs at least 2 activation rows, got {n}")
    squared_error = 0.0
    l0_total = 0.0
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    with torch.no_grad():
        for start in range(0, n, batch_size):
            chunk = x[start : start + batch_size]
            features = _dense(sae.encode(chunk.to(sae.device, sae.dtype)))
            recon = sae.decode(features).double().cpu()
            active = (features != 0).cpu()
            squared_error += float(((recon - chunk) ** 2).sum())
            l0_total += float(active.sum())
            fired |= active.any(dim=0)
    total_variance = float(((x - x.mean(dim=0)) ** 2).sum())
    return SAEQuality(
        explained_variance=1.0 - squared_error / total_variance if total_variance > 0 else float("nan"),
        mean_l0=l0_total / n,
        dead_fraction=float((~fired).double().mean()),
        mse=squared_error / x.numel(),
        n=n,
    )


def _dense(t: "torch.Tensor") -> "torch.Tensor":
    return t.to_dense() if t.is_sparse else t


# ---------------------------------------------------------------------------
# loading and saving
# ---------------------------------------------------------------------------


def save_sae(sae: Any, path: str | Path) -> Path:
    """Write `sae` in sae-lens's format (cfg.json + sae_weights.safetensors) into directory `path`."""
    path = Path(path)
    sae.save_model(path)
    return path


def load_sae_from_disk(path: str | Path, *, device: str = "cpu", hub: tuple[str, str] | None = None) -> Any:
    """An SAE from directory `path`: sae-lens's format (`save_sae`), or Gemma Scope's `params.npz`.

    A Gemma Scope folder is read as sae-lens reads it from the hub (`load_gemma_scope_from_disk`);
    `hub` = (repo id, folder) says which SAE it is where `path` does not follow the hub's layout.
    """
    _require_sae_lens("loading an SAE")
    from sae_lens import SAE
    from sae_lens.constants import SAE_CFG_FILENAME, SAE_WEIGHTS_FILENAME

    path = Path(path).expanduser()
    if (path / GEMMA_SCOPE_PARAMS).is_file() and not (path / SAE_CFG_FILENAME).is_file():
        return load_gemma_scope_from_disk(path, device=device, hub=hub)
    missing = [name for name in (SAE_CFG_FILENAME, SAE_WEIGHTS_FILENAME) if not (path / name).is_file()]
    if missing:
        raise SAELoadError(
            f"{path} is not an SAE saved in sae-lens's format (missing {', '.join(missing)}) nor a Gemma Scope "
            f"folder (no {GEMMA_SCOPE_PARAMS}); make one with claimkit.sae.save_sae(sae, path) or sae.save_model(path)"
        )
    try:
        return SAE.load_from_disk(path, device=device).eval()
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise SAELoadError(f"could not read the SAE saved at {path}: {_first_line(exc)}") from exc


def load_gemma_scope_from_disk(path: str | Path, *, device: str = "cpu", hub: tuple[str, str] | None = None) -> Any:
    """A Gemma Scope SAE (a sae-lens JumpReLUSAE) from a local folder holding its `params.npz`.

    Gemma Scope publishes each SAE as params.npz (W_enc [d_model, d_sae], W_dec
    [d_sae, d_model], b_enc, b_dec, threshold) in `<repo>/layer_<L>/width_<W>/<variant>/`,
    with no config: sae-lens builds the config from the repo and folder names
    (`get_gemma_2_config_from_hf`: JumpReLU, hook blocks.<L>.hook_resid_post for
    residual SAEs). The same is done here, with the hub download replaced by the local
    file, so a downloaded folder loads exactly as `SAE.from_pretrained` would load it.
    The repo and folder are read from `path` when it keeps the hub's layout (e.g.
    /models/gemma-scope-2b-pt-res/layer_20/width_16k/average_l0_71), else from `hub`.
    d_in and d_sae are the arrays' own shapes.
    """
    _require_sae_lens("loading a Gemma Scope SAE")
    from sae_lens import SAE

    path = Path(path).expanduser()
    repo_id, folder = _gemma_scope_coordinates(path) or hub or ("", "")
    if not re.search(GEMMA_SCOPE_REPO, repo_id) or not re.match(r"layer_\d+/|embedding", folder):
        raise SAELoadError(
            f"{path} holds a Gemma Scope {GEMMA_SCOPE_PARAMS} but its path does not say which SAE it is: keep the "
            f"hub's layout (.../gemma-scope-2b-pt-res/layer_20/width_16k/average_l0_71/{GEMMA_SCOPE_PARAMS}) or "
            f"name the SAE by release and id in the profile's [sae] table"
        )
    if "embedding" in folder:  # sae-lens rescales embedding SAEs by sqrt(d_model); not done here
        raise SAELoadError(f"{path}: Gemma Scope embedding SAEs are not supported from disk; use the release")

    def converter(directory: str | Path, device: str, cfg_overrides: dict[str, Any] | None) -> tuple[dict, dict]:
        return _gemma_scope_components(Path(directory), repo_id, folder, device, cfg_overrides)

    try:
        return SAE.load_from_disk(path, device=device, converter=converter).eval()
    except SAELoadError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise SAELoadError(f"could not read the Gemma Scope SAE at {path}: {_first_line(exc)}") from exc


def _gemma_scope_components(
    path: Path, repo_id: str, folder: str, device: str, cfg_overrides: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, "torch.Tensor"]]:
    """(config, state dict) as sae-lens's `gemma_2_sae_huggingface_loader` makes them, from a local params.npz."""
    import numpy as np
    import torch
    from sae_lens.loading.pretrained_sae_loaders import get_gemma_2_config_from_hf

    state: dict[str, torch.Tensor] = {}
    with np.load(path / GEMMA_SCOPE_PARAMS) as data:
        for key in data:  # sae-lens's renaming: w_enc -> W_enc (the published files say W_enc already)
            name = "W_" + key[2:] if key.startswith("w_") else key
            state[name] = torch.tensor(data[key]).to(device=device, dtype=torch.float32)
    required = ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")
    missing = [name for name in required if name not in state]
    if missing:
        raise SAELoadError(f"{path / GEMMA_SCOPE_PARAMS} lacks {', '.join(missing)}: not a Gemma Scope JumpReLU SAE")
    scaling = state.pop("scaling_factor", None)
    if scaling is not None and not torch.allclose(scaling, torch.ones_like(scaling)):
        raise SAELoadError(f"{path / GEMMA_SCOPE_PARAMS} has a fine-tuning scaling factor, which claimkit does not "
                           f"apply; load this SAE through sae-lens's own release instead")
    d_in, d_sae = state["W_enc"].shape
    cfg = get_gemma_2_config_from_hf(repo_id, folder, device, cfg_overrides={**(cfg_overrides or {}),
                                                                             "d_in": d_in, "d_sae": d_sae})  # fmt: skip
    return cfg, state


def _gemma_scope_coordinates(path: Path) -> tuple[str, str] | None:
    """("google/<repo>", "layer_<L>/...") from a path in Gemma Scope's hub layout, or None."""
    parts = path.resolve().parts
    layer = next((i for i, part in enumerate(parts) if re.fullmatch(r"layer_\d+|embedding", part)), None)
    if layer is None or layer == 0:
        return None
    repo = re.search(GEMMA_SCOPE_REPO, parts[layer - 1])
    return (f"google/{repo.group(0)}", "/".join(parts[layer:])) if repo else None


def load_pretrained_sae(
    release: str, sae_id: str, *, device: str = "cpu", dtype: str = "float32", converter: Any = None
) -> Any:
    """A pretrained SAE from sae-lens's registry by release and id.

    E.g. ("gemma-scope-2b-pt-res-canonical", "layer_20/width_16k/canonical").

    Downloads from the Hugging Face hub, or reads the hub's local cache (set
    HF_HUB_OFFLINE=1 to skip the network: without it and without network
    huggingface_hub retries for ~25 s before failing). `converter` replaces
    sae-lens's download-and-convert step (its `PretrainedSaeHuggingfaceLoader`
    protocol); tests use it to read a local file.

    Gemma Scope residual SAEs read `blocks.<L>.hook_resid_post`, the output of
    decoder layer L: `capture_residual(..., layer=L)`.
    """
    _require_sae_lens(f"loading the pretrained SAE {release}/{sae_id}")
    from sae_lens import SAE
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory, get_repo_id_and_folder_name

    directory = get_pretrained_saes_directory()
    if release not in directory:
        raise SAELoadError(
            f"SAE release {release!r} is not in sae-lens's registry ({_sae_lens_version()}); check the spelling "
            f"(e.g. 'gemma-scope-2b-pt-res-canonical') or use a local SAE directory"
        )
    ids = list(directory[release].saes_map)
    if sae_id not in ids:
        raise SAELoadError(f"SAE release {release!r} has no id {sae_id!r}; it has e.g. {', '.join(ids[:5])}")
    repo_id, folder = get_repo_id_and_folder_name(release, sae_id)
    try:
        return SAE.from_pretrained(release, sae_id, device=device, dtype=dtype, converter=converter).eval()
    except Exception as exc:
        if not _is_hub_error(exc):
            raise
        raise SAELoadError(
            f"could not load the SAE {release}/{sae_id} (hub repo {repo_id}, folder {folder}): {_first_line(exc)}. "
            f"Download it where the hub is reachable (`huggingface-cli download {repo_id} --include '{folder}/*'`) "
            f"and set HF_HUB_OFFLINE=1, or point the profile's SAE env variable at a directory holding the SAE in "
            f"sae-lens's format (made with claimkit.sae.save_sae on a machine that has it)."
        ) from exc


def load_sae(source: Mapping[str, Any], *, device: str = "cpu", converter: Any = None) -> Any:
    """The SAE a profile's `[sae]` table names: {release, id[, env]} or {path}.

    With `env`, a set environment variable of that name wins over the release and
    must name a local SAE directory: sae-lens's format, or a Gemma Scope folder
    (params.npz; the release and id say which SAE it is where its path does not
    keep the hub's layout). {source = "train"} SAEs
    need activations: use `sae_for` (cached) or `train_sae`.
    """
    if not isinstance(source, Mapping):
        raise TypeError(f"an SAE source must be a table (mapping), got {type(source).__name__}")
    env = source.get("env")
    if env and os.environ.get(env):
        local = Path(os.environ[env]).expanduser()
        if not local.is_dir():
            raise SAELoadError(f"${env} is set to {str(local)!r}, which is not a directory holding an SAE")
        hub = _hub_coordinates(source) if (local / GEMMA_SCOPE_PARAMS).is_file() else None
        return load_sae_from_disk(local, device=device, hub=hub)
    if "path" in source:
        return load_sae_from_disk(source["path"], device=device)
    if "release" in source and "id" in source:
        return load_pretrained_sae(str(source["release"]), str(source["id"]), device=device, converter=converter)
    if source.get("source") == "train":
        raise ValueError("an SAE with source = 'train' is trained on activations: use claimkit.sae.sae_for")
    raise ValueError(f"an SAE source needs 'release' and 'id', or 'path', or source = 'train'; got {dict(source)!r}")


def _hub_coordinates(source: Mapping[str, Any]) -> tuple[str, str] | None:
    """(repo id, folder) of a {release, id} source in sae-lens's registry; None without one."""
    if "release" not in source or "id" not in source:
        return None
    _require_sae_lens("loading an SAE")
    from sae_lens.loading.pretrained_saes_directory import get_repo_id_and_folder_name

    try:
        return get_repo_id_and_folder_name(str(source["release"]), str(source["id"]))
    except (KeyError, ValueError):
        return None


def describe_source(source: Mapping[str, Any]) -> str:
    """A short name for reports: "<release>/<id>", a path, or "trained"."""
    env = source.get("env")
    if env and os.environ.get(env):
        return f"{source.get('release', 'sae')}/{source.get('id', '')} (local: {os.environ[env]})"
    if "path" in source:
        return str(source["path"])
    if "release" in source and "id" in source:
        return f"{source['release']}/{source['id']}"
    return "trained"


# ---------------------------------------------------------------------------
# the claim-side helper
# ---------------------------------------------------------------------------

TRAIN_DEFAULTS: Mapping[str, Any] = {
    "architecture": "topk",
    "width_factor": 8,  # width = width_factor * d_in unless `width` is given
    "k": 32,
    "l1_coefficient": 5.0,
    "steps": 2000,
    "batch_size": 256,
    "lr": 3e-4,
    "holdout_fraction": 0.2,
}


def sae_for(
    source: Mapping[str, Any],
    activations: Callable[[], Any],
    *,
    key: Mapping[str, Any],
    cache: "ArtifactCache | None" = None,
    seed: int = 0,
    device: str = "cpu",
) -> LoadedSAE:
    """The SAE a profile names, with its quality on activations it was not trained on.

    `activations()` returns the activations of the model the SAE reads: a list of
    [T, d] tensors, one per generation, or one [N, d] tensor of rows. It is called
    at most once, and only when something must be built or measured. `key` says
    what they are (model, layer, data hash) so a trained SAE is cached under it.

    Pretrained: loaded; quality measured on all activations. Trained: generations
    (or rows, for a single tensor) are split by `seed` into training and held-out
    (`holdout_fraction`, default 0.2) — whole generations, so held-out tokens share
    no generation with training tokens. Settings come from the source table, else
    `TRAIN_DEFAULTS`.
    """
    if source.get("source") != "train":
        sae = load_sae(source, device=device)
        rows = _cat(_as_units(activations()))
        return LoadedSAE(sae=sae, name=describe_source(source), quality=sae_quality(sae, rows))

    settings = {**TRAIN_DEFAULTS, **{k: v for k, v in source.items() if k != "source"}}
    if cache is None:
        from claimkit.cache import default_cache

        cache = default_cache()
    parts = {"key": dict(key), "settings": settings, "seed": seed, "device": device.split(":")[0]}

    def build(directory: Path) -> None:
        import torch

        units = _as_units(activations())
        if len(units) < 2:
            raise ValueError("training an SAE needs at least 2 generations (or rows) to hold some out")
        order = torch.randperm(len(units), generator=torch.Generator().manual_seed(seed)).tolist()
        n_held = min(max(1, int(round(settings["holdout_fraction"] * len(units)))), len(units) - 1)
        held = _cat([units[i] for i in order[:n_held]])
        train = _cat([units[i] for i in order[n_held:]])
        trained = train_sae(
            train,
            width=int(settings.get("width") or settings["width_factor"] * train.shape[1]),
            architecture=settings["architecture"],
            k=int(settings["k"]),
            l1_coefficient=float(settings["l1_coefficient"]),
            steps=int(settings["steps"]),
            batch_size=min(int(settings["batch_size"]), train.shape[0]),
            lr=float(settings["lr"]),
            seed=seed,
            device=device,
            threads=settings.get("threads"),
        )
        quality = sae_quality(trained.sae, held)
        save_sae(trained.sae, directory / "sae")
        record = {"name": trained.describe(), "quality": quality.__dict__}
        (directory / "claimkit-sae.json").write_text(json.dumps(record, indent=2), encoding="utf-8")

    directory = cache.get_or_build("sae", parts, build, description=f"SAE for {dict(key)}")
    record = json.loads((directory / "claimkit-sae.json").read_text(encoding="utf-8"))
    return LoadedSAE(
        sae=load_sae_from_disk(directory / "sae", device=device),
        name=record["name"],
        quality=SAEQuality(**record["quality"]),
        directory=directory,
    )


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _as_units(values: Any) -> list["torch.Tensor"]:
    """Generations as a list of [T, d] tensors; a single [N, d] tensor becomes N one-row units."""
    if isinstance(values, (list, tuple)):
        units = [_as_matrix(v, f"activations of generation {i}") for i, v in enumerate(values)]
        if len({u.shape[1] for u in units}) > 1:
            raise ValueError("activations of different generations have different widths: mixed layers or models?")
        return units
    x = _as_matrix(values, "activations")
    return list(x.unsqueeze(1))


def _cat(units: Sequence["torch.Tensor"]) -> "torch.Tensor":
    """Rows of all units, in order."""
    import torch

    return torch.cat(list(units)) if units else torch.zeros((0, 0))


def _as_matrix(values: Any, what: str, *, d_in: int | None = None) -> "torch.Tensor":
    """A float32 CPU [N, d] tensor, with errors that say what was wrong."""
    import torch

    x = torch.as_tensor(values)
    if x.ndim != 2:
        raise ValueError(f"{what} must be a 2-D [rows, d] tensor, got shape {tuple(x.shape)}")
    if d_in is not None and x.shape[1] != d_in:
        raise ValueError(f"{what} have width {x.shape[1]} but the SAE reads d_in={d_in}: wrong layer or model?")
    x = x.detach().to("cpu", torch.float32)
    if not torch.isfinite(x).all():
        raise ValueError(f"{what} contain NaN or infinite values")
    return x


def _require_sae_lens(why: str) -> None:
    try:
        require_package("sae_lens", "sae-lens", why)
    except ModelLoadError as exc:
        raise SAELoadError(f"{exc} (or: pip install 'claimkit[sae]')") from None


def _is_hub_error(exc: BaseException) -> bool:
    """Failures to reach or read the Hugging Face hub (offline, gated, missing files)."""
    if isinstance(exc, (OSError, ConnectionError, TimeoutError)):
        return True
    hub_modules = ("huggingface_hub", "httpx", "httpx2", "requests")
    return any(cls.__module__.split(".")[0] in hub_modules for cls in type(exc).__mro__)


def _sae_lens_version() -> str:
    import importlib.metadata

    try:
        return "sae-lens " + importlib.metadata.version("sae-lens")
    except importlib.metadata.PackageNotFoundError:
        return "sae-lens"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
