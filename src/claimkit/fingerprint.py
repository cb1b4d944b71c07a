"""Which code builds each kind of cached artifact, and a fingerprint of that code.

An artifact is a pure function of its inputs *and of the code that built it*: a
fix to the fine-tuning loop makes every adapter built before it wrong, though
their inputs are the same. So each kind of artifact names, in `RECIPES`, the
claimkit modules its builder runs and the installed distributions that compute
it; `code_fingerprint(kind)` hashes those modules' source files and those
distributions' versions, and `claimkit.cache.ArtifactCache` puts the result in
every key of that kind. A change rebuilds what runs it, and, through the keys,
what is built on that: artifacts name the artifact they were built from by its
cache entry (samples name their adapter's, and a model read from the cache, the
organism or a de-quantised GGUF file, is named by its entry through
`Experiment.base_parts`), so an edit of the fine-tuning loop rebuilds adapters
and everything downstream of them, but not the organism, and an edit of a report
module rebuilds nothing.

What is not listed, and why:

  - code that makes an artifact's *inputs*: those are in its key by content
    (training examples, tasks, texts and corpora by hash: `examples_hash`,
    `tasks_hash`, `pairs_hash`, `corpus_hash`; SAEs and directions by their
    weights). The paper code under claims/ and the corpus generator
    (claimkit.organism.corpus) only make inputs, so they are not fingerprinted;
  - claimkit.cache itself (how artifacts are stored, not what they hold);
  - libraries that only store bytes (safetensors, filelock) or show progress (tqdm).

A kind missing from `RECIPES` is refused by the cache (`UnregisteredKind`), rather
than keyed by, say, all of claimkit's source: a key that ignores the builder's code
is the bug this module exists to remove, and a guess at it would miss code outside
claimkit (a paper's own builder) while rebuilding on every unrelated edit.

The unit is a module: an edit anywhere in a listed file rebuilds the kind, even
where the builder never runs the edited function (lm/finetune.py holds both the
training loop and load_finetuned, so an edit of the loop also rereads the base
model's activations). Source files are hashed as bytes, not as bytecode (whose
caching Python may turn off, and whose bytes change with the interpreter): a
comment counts as an edit. Versions are read with importlib.metadata, so nothing
heavy is imported; each fingerprint is computed once per process. This module is
imported at pytest start-up through claimkit.cache: it must not import torch.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

SOURCE_ROOT = Path(__file__).parent  # the claimkit package whose sources are hashed


@dataclass(frozen=True)
class Recipe:
    """What builds one kind of artifact.

    modules: the claimkit modules its builders run (dotted names).
    distributions: the installed distributions whose code computes it (pip names).
    reads: kinds whose artifacts its builder consumes *without* its key naming
    their cache entries: their fingerprints are folded into this one's.
    """

    modules: tuple[str, ...]
    distributions: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()


# Running a model a profile names: loading it (the organism's directory, a de-quantised
# GGUF, a hub id), rendering and encoding its prompts, applying a fine-tuning to it
# (load_finetuned, with the loop's knobs in TrainConfig), and the Experiment that wires
# these into the builders. Every kind that runs a model runs these; the model's own
# weights are named by the key.
_RUN_A_MODEL = (
    "claimkit.experiment",
    "claimkit.lm.data",
    "claimkit.lm.device",
    "claimkit.lm.finetune",
    "claimkit.lm.load",
    "claimkit.lm.profiles",
    "claimkit.lm.train_config",
)
_MODEL_LIBRARIES = ("numpy", "peft", "tokenizers", "torch", "transformers")

RECIPES: Mapping[str, Recipe] = MappingProxyType({
    # ensure_organism: a tokenizer and a model trained on the generated corpus (keyed by its hash).
    "organism": Recipe(
        modules=("claimkit.organism.build", "claimkit.organism.pretrain", "claimkit.organism.tokenizer"),
        distributions=("numpy", "tokenizers", "torch", "transformers"),
    ),
    # dequantised_gguf: transformers reads the file (through gguf) and claimkit restores its bos/eos.
    "gguf-model": Recipe(
        modules=("claimkit.lm.device", "claimkit.lm.load"),
        distributions=("gguf", "numpy", "tokenizers", "torch", "transformers"),
    ),
    # Experiment.adapter and CAFT's caft_adapter (which trains through interventions.project_out,
    # hooked in by lm.activations.residual_hook); a KL-regularised run adds lm.kl_regularised's term.
    "adapter": Recipe(
        modules=(*_RUN_A_MODEL, "claimkit.interventions", "claimkit.lm.activations", "claimkit.lm.kl_regularised"),
        distributions=_MODEL_LIBRARIES,
    ),
    # Experiment.samples and interventions' samples_with / caft_samples: the samplers, and the
    # residual edits generations run under (an SAE clamp encodes with sae-lens; plain samples share
    # the kind, so a sae-lens upgrade resamples them too).
    "samples": Recipe(
        modules=(
            *_RUN_A_MODEL, "claimkit.interventions", "claimkit.jsonl", "claimkit.lm.activations", "claimkit.lm.fast_sample",
            "claimkit.lm.generation", "claimkit.lm.grouped_attention", "claimkit.lm.sample",
        ),
        distributions=(*_MODEL_LIBRARIES, "sae-lens"),
    ),
    # readings.cached_residuals / cached_token_entropies read a base or fine-tuned model (their
    # callers load it with Experiment.base / Experiment.model; a reader loaded by other code, a
    # CAFT model say, would add that code here).
    "activations": Recipe(modules=(*_RUN_A_MODEL, "claimkit.lm.activations", "claimkit.readings"),
                          distributions=_MODEL_LIBRARIES),
    "entropies": Recipe(modules=(*_RUN_A_MODEL, "claimkit.lm.activations", "claimkit.readings"),
                        distributions=_MODEL_LIBRARIES),
    # readings.cached_completion_losses: interventions.completion_losses, of a plain or CAFT model.
    "losses": Recipe(modules=(*_RUN_A_MODEL, "claimkit.interventions", "claimkit.readings"),
                     distributions=_MODEL_LIBRARIES),
    # AdapterSpace.losses and .kl: a model at points of a LoRA adapter's space (the weight change merged
    # into a copy of the base), its completion losses (interventions) or its KL to the base (steering's).
    "adapter-point-losses": Recipe(modules=(*_RUN_A_MODEL, "claimkit.adapter_space", "claimkit.interventions"),
                                   distributions=_MODEL_LIBRARIES),
    "adapter-point-kl": Recipe(modules=(*_RUN_A_MODEL, "claimkit.adapter_space", "claimkit.steering"),
                               distributions=_MODEL_LIBRARIES),
    # vector_cache.cached_vector: a steering vector trained on the frozen base model (claimkit.steering,
    # through lm.activations.residual_hook; its KL term and losses run interventions' pieces).
    "vector": Recipe(
        modules=(*_RUN_A_MODEL, "claimkit.steering", "claimkit.vector_cache", "claimkit.interventions",
                 "claimkit.lm.activations"),
        distributions=_MODEL_LIBRARIES,
    ),
    # detections.detect_targets: bandit plus claimkit's checks; the parser is Python's own ast.
    "detections": Recipe(modules=("claimkit.detect", "claimkit.detections"), distributions=("bandit",)),
    # Answers run against their unit tests in the sandbox: what a check can import counts too.
    "passes": Recipe(modules=("claimkit.capability", "claimkit.detect", "claimkit.sandbox", "claimkit.sandbox_child"),
                     distributions=("pyyaml", "requests")),
    # sae.sae_for trains on residual streams its caller names by model and texts, not by their
    # cache entries: what read them is part of what the SAE was trained on.
    "sae": Recipe(modules=("claimkit.lm.device", "claimkit.sae"), distributions=("sae-lens", "torch"),
                  reads=("activations",)),
})  # fmt: skip


class UnregisteredKind(LookupError):
    """A cache kind with no entry in RECIPES: its key could not change when its code does."""


@dataclass(frozen=True)
class CodeFingerprint:
    """The code that builds one kind: each module's source hash, each distribution's version.

    `digest` (sha256 hex of the rest) goes into cache keys; `as_dict()` into manifests,
    so a person can see what built an artifact and, comparing two, what changed.
    """

    kind: str
    digest: str
    modules: Mapping[str, str] = field(repr=False)  # dotted name -> sha256 of the .py file
    distributions: Mapping[str, str] = field(repr=False)  # pip name -> version, or "absent"
    python: str = field(repr=False)  # major.minor: the ast grammar, and the ABI every wheel was built for
    reads: Mapping[str, str] = field(repr=False)  # kind -> its digest

    def as_dict(self) -> dict[str, Any]:
        return {"digest": self.digest, "modules": dict(self.modules), "distributions": dict(self.distributions),
                "python": self.python, "reads": dict(self.reads)}  # fmt: skip


def code_fingerprint(kind: str, source_root: str | Path | None = None) -> CodeFingerprint:
    """The fingerprint of the code that builds `kind` (once per process and source root).

    `source_root` is the claimkit package directory whose files are hashed (default:
    the imported one's, `SOURCE_ROOT`); another one answers "what would this edit rebuild?".
    """
    if kind not in RECIPES:
        raise UnregisteredKind(
            f"cache kind {kind!r} is not registered in claimkit.fingerprint.RECIPES (known: {', '.join(RECIPES)}); "
            f"add it with the modules its builder runs and the distributions that compute it, so that its key "
            f"changes when that code does"
        )
    return _fingerprint(kind, Path(source_root if source_root is not None else SOURCE_ROOT).resolve())


@functools.cache
def _fingerprint(kind: str, root: Path) -> CodeFingerprint:
    recipe = RECIPES[kind]
    modules = {name: _source_sha256(root, name, kind) for name in sorted(set(recipe.modules))}
    distributions = {name: _version(name) for name in sorted(set(recipe.distributions))}
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    reads = {other: _fingerprint(other, root).digest for other in sorted(set(recipe.reads))}
    payload = {"modules": modules, "distributions": distributions, "python": python, "reads": reads}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()
    return CodeFingerprint(kind, digest, MappingProxyType(modules), MappingProxyType(distributions), python,
                           MappingProxyType(reads))  # fmt: skip


def _source_sha256(root: Path, module: str, kind: str) -> str:
    digest = _file_sha256(_module_file(root, module))
    if digest is None:
        raise FileNotFoundError(
            f"claimkit.fingerprint.RECIPES[{kind!r}] lists the module {module!r}, which is not a claimkit module "
            f"file under {root}; was it moved or renamed? Update the recipe to the modules the builder now runs"
        )
    return digest


def _module_file(root: Path, module: str) -> Path | None:
    """The .py file of a claimkit module under `root` (a package: its __init__.py), if there is one."""
    head, _, rest = module.partition(".")
    if head != "claimkit" or not rest:
        return None
    path = root.joinpath(*rest.split("."))
    return next((p for p in (path.with_suffix(".py"), path / "__init__.py") if p.is_file()), None)


@functools.cache
def _file_sha256(path: Path | None) -> str | None:
    """sha256 of a source file's bytes, read once per process (modules are shared by several kinds)."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path is not None else None


@functools.cache
def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "absent"
