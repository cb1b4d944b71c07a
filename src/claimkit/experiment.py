"""Fine-tune-then-sample experiments, cached: the step every behavioural claim shares.

An `Arm` is one model to evaluate (a name, its fine-tuning examples, a seed; no
examples means the base model itself). `Experiment` fine-tunes each arm's model
once, samples it on evaluation tasks once, and keeps both in the artifact cache
under a key made of everything they depend on, so reruns and other xdist workers
reuse them.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from claimkit.cache import ArtifactCache
from claimkit.jsonl import read_jsonl, write_jsonl
from claimkit.lm.data import Example, render_prompt
from claimkit.lm.profiles import Profile

if TYPE_CHECKING:
    from claimkit.lm.load import LoadedModel, ModelInfo

SAMPLES_FILE = "samples.jsonl"


@dataclass(frozen=True)
class Arm:
    """One model to evaluate: `examples` fine-tune the base model (none: the base itself).

    The optional fields ask for a KL-regularised fine-tune (`kl_weight` * KL(P_base ||
    P_finetuned) on `regularise_on`), for training on from another arm's adapter
    (`init`), or for another number of epochs than the profile's; each is part of the
    adapter's cache key only when set, so plain arms keep the keys they always had.
    """

    name: str
    examples: tuple[Example, ...]
    seed: int
    kl_weight: float = 0.0
    regularise_on: tuple[Example, ...] = ()
    init: "Arm | None" = None
    epochs: int | None = None

    @property
    def data_hash(self) -> str:
        return examples_hash(self.examples)


@dataclass(frozen=True)
class ArmSamples:
    """An arm's generations on the evaluation tasks, in task order."""

    arm: str
    seed: int
    model: str
    tasks: tuple[str, ...]
    texts: tuple[str, ...]
    finished: tuple[bool, ...]
    new_tokens: tuple[int, ...] = field(repr=False, default=())
    system: str | None = None
    prefill: str = ""


def examples_hash(examples: Iterable[Example]) -> str:
    digest = hashlib.sha256()
    for example in examples:
        digest.update(json.dumps([example.prompt, example.completion], ensure_ascii=False).encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


def tasks_hash(tasks: Iterable[str]) -> str:
    return hashlib.sha256("\x00".join(tasks).encode("utf-8")).hexdigest()


class Experiment:
    """Fine-tunes and samples the arms of one profile's model, through the cache."""

    def __init__(self, profile: Profile, cache: ArtifactCache, *, role: str = "behaviour", progress: bool = True):
        self.profile = profile
        self.cache = cache
        self.role = role
        self.progress = progress
        self._base: LoadedModel | None = None
        self._info: ModelInfo | None = None

    # -- models ---------------------------------------------------------------------

    @property
    def base(self) -> LoadedModel:
        """The profile's model (a LoadedModel), loaded once per process."""
        if self._base is None:
            from claimkit.lm.load import load_model
            from claimkit.organism.build import ensure_organism

            share_cores_between_workers()
            self._base = load_model(self.profile, role=self.role, cache=self.cache, ensure_organism=ensure_organism)
        return self._base

    @property
    def info(self) -> ModelInfo:
        """The profile's model as a ModelInfo (name, source, tokenizer, format, device), without loading it.

        Everything cached is keyed by it, so a rerun that finds every artifact in the
        cache loads no model at all; `base` loads it when something must be built.
        """
        if self._base is not None:
            return self._base
        if self._info is None:
            from claimkit.lm.load import describe_model
            from claimkit.organism.build import ensure_organism

            share_cores_between_workers()  # as `base` does: the CPU work on cached artifacts runs as it did then
            self._info = describe_model(self.profile, role=self.role, cache=self.cache, ensure_organism=ensure_organism)
        return self._info

    def base_parts(self) -> dict[str, Any]:
        """What every cached artifact of this experiment depends on: profile, role, base model, tokenizer.

        The special tokens are part of it because fine-tuning ends each answer with
        eos: a loader that reads them differently (transformers 5.17 on GGUF files)
        must not reuse adapters trained with other ones. A base model read from the
        cache (the organism, a de-quantised GGUF) is named by its cache entry, whose
        key holds the code that built it: rebuilt, it rebuilds everything on it.
        """
        info = self.info
        special = {name: getattr(info.tokenizer, f"{name}_token", None) for name in ("bos", "eos", "pad")}
        return {"profile": self.profile.name, "role": self.role, "model": info.name, "source": info.source,
                "artifact": info.artifact, "special_tokens": special}

    def model_parts(self, adapter: Path | None) -> dict[str, Any]:
        """What names a model in cache keys: the base's parts and the cache entry of its fine-tuning (None: the base).

        An adapter's cache directory is the hash of everything it was trained from, so
        samples and readings of a fine-tuned model can be keyed without loading it.
        """
        return {**self.base_parts(), "adapter": adapter.parent.name if adapter is not None else None}

    def adapter(self, arm: Arm) -> Path | None:
        """The fine-tuned weights of `arm` (built on first use), or None for the base model."""
        if not arm.examples:
            return None
        from claimkit.lm.finetune import finetune

        hparams = self.profile.finetune_hparams()
        if arm.epochs is not None:
            hparams = {**hparams, "epochs": int(arm.epochs)}
        parts = {**self.base_parts(), "hparams": hparams, "data": arm.data_hash, "n": len(arm.examples), "seed": arm.seed}
        if arm.kl_weight:
            parts |= {"kl_weight": float(arm.kl_weight), "regularise_on": examples_hash(arm.regularise_on),
                      "n_regularise": len(arm.regularise_on)}
        init = self.adapter(arm.init) if arm.init is not None else None
        if arm.init is not None:
            if init is None:
                raise ValueError(f"arm {arm.name!r}: its init arm {arm.init.name!r} has no examples, so no adapter to start from")
            parts["init"] = init.parent.name

        def build(out: Path) -> None:
            result = finetune(self.base, arm.examples, hparams=hparams, seed=arm.seed, out_dir=out / "adapter",
                              progress=self.progress, kl_weight=float(arm.kl_weight), regularise_on=arm.regularise_on,
                              init_adapter=init)
            record = {"steps": result.steps, "final_loss": result.final_loss, "seconds": result.seconds,
                      "tokens": result.tokens, "truncated": result.truncated, "dropped": result.dropped}
            if result.final_kl is not None:
                record["final_kl"] = result.final_kl
            (out / "finetune.json").write_text(json.dumps(record, indent=2))

        return self.cache.get_or_build("adapter", parts, build, description=f"{self.profile.name} {arm.name} seed {arm.seed} fine-tune") / "adapter"

    def model(self, arm: Arm) -> Any:
        """A LoadedModel for `arm`: the base, or the base with its fine-tuning applied."""
        adapter = self.adapter(arm)
        if adapter is None:
            return self.base
        from claimkit.lm.finetune import load_finetuned

        return load_finetuned(self.base, adapter)

    def model_name(self, arm: Arm) -> str:
        """The name `model(arm)` would have, without loading it (the fine-tuning is built if absent)."""
        adapter = self.adapter(arm)
        if adapter is None:
            return self.info.name
        from claimkit.lm.finetune import finetuned_name

        return finetuned_name(self.info.name, adapter)

    # -- sampling -------------------------------------------------------------------

    def samples(
        self, arm: Arm, tasks: Sequence[str], *, system: str | None = None, prefill: str | Sequence[str] = ""
    ) -> ArmSamples:
        """One generation per task for `arm` (cached). `prefill` starts the answer for the model: one
        text for every task, or one per task (sampled together, in one set of batches)."""
        sampling = dict(self.profile.sampling)
        adapter = self.adapter(arm)
        prefills = [prefill] * len(tasks) if isinstance(prefill, str) else list(prefill)
        if len(prefills) != len(tasks):
            raise ValueError(f"samples: {len(prefills)} prefills for {len(tasks)} tasks; give one, or one per task")
        parts = {
            **self.model_parts(adapter),
            "tasks": tasks_hash(tasks),
            "n": len(tasks),
            "system": system,
            "prefill": prefill if isinstance(prefill, str) else tasks_hash(prefills),
            "sampling": sampling,
            "seed": arm.seed,
        }

        def build(out: Path) -> None:
            from claimkit.lm.sample import sample

            loaded = self.model(arm)
            prompts = [render_prompt(loaded.format, loaded.tokenizer, task, system=system) + p
                       for task, p in zip(tasks, prefills)]
            generations = sample(loaded, prompts, seed=arm.seed, progress=self.progress,
                                 **self.profile.sampling_options())
            write_samples_entry(out, loaded.name, [{"task": task, "text": p + gen.text, "finished": gen.finished,
                                                    "new_tokens": gen.n_new_tokens}
                                                   for task, p, gen in zip(tasks, prefills, generations)])

        where = self.cache.get_or_build("samples", parts, build, description=f"{self.profile.name} {arm.name} seed {arm.seed} samples")
        model, rows = read_samples_entry(where)
        return _arm_samples(arm, model, rows, system=system,
                            prefill=prefill if isinstance(prefill, str) else "(one per task)")


    def samples_under_systems(self, arm: Arm, tasks: Sequence[str], systems: Sequence[str]) -> list[ArmSamples]:
        """`samples(arm, tasks, system=s)` for every s in `systems`, drawn in one sampling call (cached as one).

        One call loads the fine-tuned model and sets up the sampler once for all the
        system prompts, and fills batches across them; its draws differ from those of
        separate calls (other batches, other batch seeds), so it has its own cache entry.
        """
        if not systems:
            return []
        sampling = dict(self.profile.sampling)
        adapter = self.adapter(arm)
        parts = {**self.model_parts(adapter), "tasks": tasks_hash(tasks), "n": len(tasks),
                 "systems": list(systems), "sampling": sampling, "seed": arm.seed}

        def build(out: Path) -> None:
            from claimkit.lm.sample import sample

            loaded = self.model(arm)
            prompts = [render_prompt(loaded.format, loaded.tokenizer, task, system=system)
                       for system in systems for task in tasks]
            generations = sample(loaded, prompts, seed=arm.seed, progress=self.progress, **self.profile.sampling_options())
            write_samples_entry(out, loaded.name, [{"system": i // len(tasks), "task": tasks[i % len(tasks)],
                                                    "text": gen.text, "finished": gen.finished,
                                                    "new_tokens": gen.n_new_tokens}
                                                   for i, gen in enumerate(generations)])

        where = self.cache.get_or_build("samples", parts, build,
                                        description=f"{self.profile.name} {arm.name} seed {arm.seed} samples under {len(systems)} system prompts")
        model, rows = read_samples_entry(where)
        return [_arm_samples(arm, model, [r for r in rows if r["system"] == k], system=system)
                for k, system in enumerate(systems)]


def write_samples_entry(out: Path, model: str, rows: Iterable[dict[str, Any]]) -> None:
    """A samples entry: one JSON line per generation, and the name of the model that wrote them."""
    write_jsonl(out / SAMPLES_FILE, rows)
    (out / "model.json").write_text(json.dumps({"model": model}))


def read_samples_entry(where: Path) -> tuple[str, list[dict[str, Any]]]:
    """The name of the model that wrote a samples entry, and its rows (`write_samples_entry`'s)."""
    rows = read_jsonl(where / SAMPLES_FILE)
    return json.loads((where / "model.json").read_text())["model"], rows


def _arm_samples(arm: Arm, model: str, rows: Sequence[dict[str, Any]], *, system: str | None,
                 prefill: str = "") -> ArmSamples:
    return ArmSamples(arm=arm.name, seed=arm.seed, model=model, tasks=tuple(r["task"] for r in rows),
                      texts=tuple(r["text"] for r in rows), finished=tuple(r["finished"] for r in rows),
                      new_tokens=tuple(r["new_tokens"] for r in rows), system=system, prefill=prefill)


def worker_order(items: Sequence[Any]) -> list[Any]:
    """`items` rotated by this xdist worker's index, so workers build different artifacts first.

    Every worker needs every artifact; starting at different points lets two
    workers build in parallel instead of queueing on the same lock.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    try:
        index = int(worker.removeprefix("gw"))
    except ValueError:
        index = 0
    if not items or count <= 1:
        return list(items)
    offset = (index * len(items)) // count
    return list(items[offset:]) + list(items[:offset])


def share_cores_between_workers() -> None:
    """Give each xdist worker its share of the CPU cores instead of all of them each.

    On a GPU machine too: the plugin gives each worker a GPU of its own, but the
    workers still share the host's cores for their CPU work (tokenising, the
    detector, statistics, CPU-side tensors).
    """
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if count <= 1:
        return
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // count))
