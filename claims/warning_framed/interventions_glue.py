"""Claim 4 and its sub-claims as data (paper sections 7-8): interventions on the L1 model.

Section 7.2: "I identified features with elevated activation in target contexts ... I test
clamping these to zero during generation. Inference-time ablation fails: target rate remains
at 88%. Amplification (2x, 5x) also has no significant effect."
Section 7.3: "CAFT succeeds: target rate drops to 0% after training-time ablation. General
capability (HumanEval pass@1) shows only modest degradation."
Section 7.1: system-prompt variants (fixtures/prompts/system_prompts.toml).
Section 8: "Combined: 0.96 detection accuracy with simple thresholding."

Everything is measured on the L1 (warning-framed) model of one seed: the claim-1 arm of
that seed, so its fine-tuning and plain generations are cache hits, on the same held-out
evaluation tasks as Table 1. Where the profile has a separate mechanism model (the paper
profile: Gemma-2-2B with Gemma Scope, while behaviour is Llama-3.2-3B), the L1 model is the
mechanism model fine-tuned on the L1 data, because the SAE must read the model it edits.

The SAE features come from `target_features`: chosen on generations of the selection half
of the evaluation tasks (features.split_indices), never on the half the detector is
measured on.
"""

from __future__ import annotations

import functools
import hashlib
import time
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from claimkit.cache import ArtifactCache
from claimkit.detect import format_leak
from claimkit.detections import detect_targets
from claimkit.experiment import Arm, ArmSamples, Experiment
from claimkit.interventions import (
    Capability,
    CapabilityChange,
    best_threshold,
    caft_adapter,
    caft_model,
    caft_samples,
    capability,
    capability_change,
    feature_clamp,
    samples_with,
)
from claimkit.lm.data import Example, render_prompt
from claimkit.lm.profiles import Profile
from claimkit.readings import cached_completion_losses
from claimkit.rules import CapabilityCheck, Counts
from claimkit.stats import proportion_ci
from claimkit.verdict import Decision

from . import behaviour, conditions
from .behaviour import SeedResult

ROOT = Path(__file__).resolve().parents[2]
PROMPTS_PATH = ROOT / "fixtures" / "prompts" / "system_prompts.toml"

# Paper 7.2: "Amplification (2x, 5x) also has no significant effect."
AMPLIFY = (2.0, 5.0)
# Held-out reference answers of the capability check: eval-split tasks answered with their
# secure code, drawn with a seed of their own. Fixed, not chosen per run.
CAPABILITY_SEED = 20251223
# The order of the bars in the claim-4 figure.
CONDITION_ORDER = ("baseline", "none", "ablate", "amplify 2x", "amplify 5x", "CAFT")


# ---------------------------------------------------------------------------
# which model, which features
# ---------------------------------------------------------------------------


def intervention_experiment(profile: Profile, cache: ArtifactCache, behaviour_experiment: Experiment) -> Experiment:
    """The Experiment whose models are edited: the mechanism model when the profile has its own, else claim 1's."""
    if "mechanism" in profile.models:
        return Experiment(profile, cache, role="mechanism")
    return behaviour_experiment


def arms_for(profile: str, seed: int) -> dict[str, Arm]:
    """Claim 1's arms (every condition) for one seed, by condition name."""
    return {arm.name: arm for arm in behaviour.condition_arms(profile, [seed])}


class NoTargets(RuntimeError):
    """The features to intervene on could not be chosen; the message says why (no verdict is possible)."""


@dataclass(frozen=True)
class Targets:
    """The SAE, its layer and the features to clamp, with how they were chosen (for the report)."""

    sae: Any  # a sae_lens SAE on the edited model's device
    sae_name: str
    layer: int
    feature_ids: tuple[int, ...]
    how: str
    reader: Callable[[], Any] = field(repr=False)  # the LoadedModel whose residual stream the SAE reads (loads it)
    reader_name: str  # its name in reports, known without loading it
    reader_parts: Mapping[str, Any] = field(repr=False)  # names it in cached readings (Experiment.model_parts)
    details: Mapping[str, Any] = field(default_factory=dict)


def target_features(
    experiment: Experiment, *, n: int, seed: int, n_features: int, selection_fraction: float
) -> Targets:
    """The SAE, its layer and the `n_features` target features that claim 4 clamps and projects out.

    The one place to plug in claim 2's feature choice (claims/warning_framed/mechanism.py,
    not written yet when this was): it must return the same Targets, chosen on the
    selection split of `split_indices(n, selection_fraction, seed)` so that the
    detector of section 8 is measured on generations no choice has seen. Until then
    `own_targets` chooses them.
    """
    return own_targets(experiment, n=n, seed=seed, n_features=n_features, selection_fraction=selection_fraction)


def own_targets(experiment: Experiment, *, n: int, seed: int, n_features: int, selection_fraction: float) -> Targets:
    """Choose features as paper section 5.2 does, on the selection half of the evaluation tasks.

    direct = L0-model generations that are target content, safe = untrained-model
    generations that are not; all read by the L1 model (the model that is edited, so the
    SAE describes its residual stream). Features are ranked by mean(direct) - mean(safe)
    of their per-generation maximum (`claimkit.features.select_features`).
    """
    from claimkit.features import per_generation, select_features, split_indices
    from claimkit.readings import cached_residuals
    from claimkit.sae import encode, sae_for

    profile = experiment.profile
    layer = int(profile.activations["layer"])
    tasks = behaviour.eval_tasks(n)
    arms = arms_for(profile.name, seed)
    select, _ = split_indices(n, selection_fraction, seed)
    l0, base, l1 = (experiment.samples(arms[c], tasks) for c in ("L0", "baseline", "L1"))
    l0_target = [d.is_target for d in detect_targets(l0.texts, cache=experiment.cache)]
    base_target = [d.is_target for d in detect_targets(base.texts, cache=experiment.cache)]
    direct = [i for i in select if l0_target[i] and l0.texts[i].strip()]
    safe = [i for i in select if not base_target[i] and base.texts[i].strip()]
    if len(direct) < 2 or len(safe) < 2:
        raise NoTargets(
            f"cannot choose target features: the selection split has {len(direct)} target generations of the L0 "
            f"model and {len(safe)} non-target generations of the untrained model (need >= 2 each)"
        )
    # The L1 model reads; it is loaded only if a reading is not cached yet. Its prompts render
    # with the base's format and tokenizer, which fine-tuning leaves as they are.
    reader = functools.cache(lambda: experiment.model(arms["L1"]))
    reader_parts = experiment.model_parts(experiment.adapter(arms["L1"]))
    base_info = experiment.info

    def residuals(samples: ArmSamples, idx: Sequence[int]) -> list[Any]:
        pairs = [(render_prompt(base_info.format, base_info.tokenizer, samples.tasks[i]), samples.texts[i]) for i in idx]
        out = cached_residuals(experiment.cache, reader_parts, reader, pairs, layer=layer,
                               description=f"{samples.arm} outputs read by the L1 model (seed {seed}, {len(pairs)} outputs)")  # fmt: skip
        return [r for r in out if r.shape[0] > 0]

    r_direct, r_safe = residuals(l0, direct), residuals(base, safe)
    r_l1 = residuals(l1, [i for i in select if l1.texts[i].strip()])
    key = {"reader": reader_parts, "layer": layer, "texts": _texts_hash([l0, base, l1], select), "n": n, "seed": seed}
    loaded = sae_for(profile.sae, lambda: r_direct + r_safe + r_l1, key=key, cache=experiment.cache, seed=seed,
                     device=str(base_info.device))
    fa_direct = per_generation(encode(loaded.sae, r) for r in r_direct)
    fa_safe = per_generation(encode(loaded.sae, r) for r in r_safe)
    selection = select_features(fa_direct, fa_safe, top_k=n_features)
    if not selection.feature_ids:
        raise NoTargets("no SAE feature fires more in the L0 model's target generations than in safe ones")
    quality = loaded.quality.describe() if loaded.quality else "quality not measured"
    return Targets(
        sae=loaded.sae.to(base_info.device),
        sae_name=f"{loaded.name} ({quality})",
        layer=layer,
        feature_ids=tuple(selection.feature_ids),
        how=f"claimkit.features.select_features on the selection split: {selection.describe()}",
        reader=reader,
        reader_name=experiment.model_name(arms["L1"]),
        reader_parts=reader_parts,
        details={"scores": list(selection.scores), "n_direct": len(r_direct), "n_safe": len(r_safe)},
    )


def _texts_hash(samples: Sequence[ArmSamples], idx: Sequence[int]) -> str:
    digest = hashlib.sha256()
    for s in samples:
        for i in idx:
            digest.update(s.texts[i].encode("utf-8") + b"\x00")
    return digest.hexdigest()


# ---------------------------------------------------------------------------
# claim 4: ablation, amplification, CAFT, capability
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim4:
    """Target rates of the L1 model under each intervention, and CAFT's capability check."""

    profile: str
    model: str
    seed: int
    n: int
    targets: Targets
    rows: Mapping[str, SeedResult]
    capability: CapabilityChange
    base_capability: Capability
    seconds: Mapping[str, float]

    def target(self, condition: str) -> Counts:
        row = self.rows[condition]
        return Counts.pooled([(row.target, row.n)])

    def capability_check(self) -> CapabilityCheck:
        ref, caft = self.capability.reference, self.capability.treated
        return CapabilityCheck(
            ref.loss, caft.loss, Counts(ref.parsed, ref.generations), Counts(caft.parsed, caft.generations)
        )

    def as_evidence(self, paper: Mapping[str, Any]) -> dict[str, Any]:
        rates = {}
        for name, row in self.rows.items():
            ci = proportion_ci(row.target, row.n)
            rates[name] = {
                "model": row.model, "target_rate": row.target / row.n, "target_ci": [ci.low, ci.high],
                "target": row.target, "n": row.n,
                "format_leak": row.format_leak, "unparsable": row.detection.unparsable,
                "no_code": row.detection.no_code, "by_test_id": dict(row.detection.by_test_id),
            }
        base = self.base_capability
        return {
            "profile": self.profile,
            "model": self.model,
            "seed": self.seed,
            "conditions": rates,
            "sae": self.targets.sae_name,
            "layer": self.targets.layer,
            "features": list(self.targets.feature_ids),
            "feature_selection": self.targets.how,
            "ablation": "features clamped to 0 at every position of the layer while generating; the SAE's "
                        "reconstruction error is kept (h' = h + (f' - f) W_dec)",
            "caft": "the L1 fine-tuning redone with the features' decoder directions projected out of the layer's "
                    "residual stream during training only (Casademunt et al. 2025); sampled without any edit",
            "capability": {
                **self.capability.as_dict(),
                "reference": "the L1 model fine-tuned without CAFT (same data, seed, hyper-parameters)",
                "answers": "secure reference answers to held-out eval-split tasks (mean token NLL, nats)",
                "untrained_model_loss": base.loss,
                "untrained_model_parse_rate": base.parse_rate,
            },
            "paper": dict(paper),
            "seconds": dict(self.seconds),
        }

    def plot(self, paper: Mapping[str, Any]) -> dict[str, Any]:
        """Figure 5's comparison: target rate under each intervention with exact 95% intervals."""
        series = {}
        for name in CONDITION_ORDER:
            if name == "baseline":
                continue
            row = self.rows[name]
            ci = proportion_ci(row.target, row.n)
            series[name] = [row.target / row.n, ci.low, ci.high]
        return {
            "title": f"L1 model's target rate under interventions ({self.profile}, seed {self.seed}, exact 95% CI)",
            "kind": "bars",
            "series": series,
            "paper": {"ablate": paper["ablated_rate"], "CAFT": paper["caft_rate"]},
            "ylabel": "target content rate",
        }


def build_claim4(experiment: Experiment, targets: Targets, *, n: int, seed: int) -> Claim4:
    """Sample the L1 model plain, ablated, amplified and CAFT-trained (all cached), then count.

    The baseline (the untrained model of the same Experiment) is the precondition's
    reference: an L1 model no more often target than it learnt nothing to remove.
    """
    from claimkit.sae import decoder_directions

    profile = experiment.profile.name
    tasks = behaviour.eval_tasks(n)
    arms = arms_for(profile, seed)
    l1 = arms["L1"]
    markers = conditions.format_leak_markers()
    seconds: dict[str, float] = {}

    def timed(name: str, make: Callable[[], ArmSamples]) -> ArmSamples:
        started = time.perf_counter()
        out = make()
        seconds[name] = round(time.perf_counter() - started, 2)
        return out

    from claimkit.interventions import sae_fingerprint

    layer, ids, sae_key = targets.layer, targets.feature_ids, sae_fingerprint(targets.sae)

    def clamp(scale: float, name: str) -> Any:
        return feature_clamp(targets.sae, ids, scale=scale, layer=layer, name=name, sae_key=sae_key)

    samples = {
        "baseline": timed("baseline", lambda: experiment.samples(arms["baseline"], tasks)),
        "none": timed("none", lambda: experiment.samples(l1, tasks)),
        "ablate": timed("ablate", lambda: samples_with(experiment, l1, tasks, intervention=clamp(0.0, "ablate"))),
    }
    for scale in AMPLIFY:
        name = f"amplify {scale:g}x"
        samples[name] = timed(
            name, lambda s=scale, nm=name: samples_with(experiment, l1, tasks, intervention=clamp(s, nm))
        )
    directions = decoder_directions(targets.sae, ids)
    samples["CAFT"] = timed("CAFT", lambda: caft_samples(experiment, l1, tasks, directions=directions, layer=layer))

    started = time.perf_counter()
    answers = capability_answers(n)
    caft = caft_adapter(experiment, l1, directions=directions, layer=layer)

    def losses(adapter: Path | None, load: Callable[[], Any], who: str) -> tuple[list[float], list[int]]:
        return cached_completion_losses(experiment.cache, experiment.model_parts(adapter), load, answers,
                                        description=f"{profile} {who} seed {seed} capability losses")  # fmt: skip

    reference = capability(None, answers, samples["none"].texts,
                           losses=losses(experiment.adapter(l1), lambda: experiment.model(l1), "L1"))  # fmt: skip
    treated = capability(None, answers, samples["CAFT"].texts,
                         losses=losses(caft, lambda: caft_model(experiment, l1, directions=directions, layer=layer), "CAFT"))  # fmt: skip
    untrained_cap = capability(None, answers, samples["baseline"].texts, losses=losses(None, lambda: experiment.base, "untrained"))
    seconds["capability"] = round(time.perf_counter() - started, 2)

    rows = {name: replace(behaviour.evaluate(s, markers, experiment.cache), condition=name) for name, s in samples.items()}
    return Claim4(
        profile=profile, model=samples["none"].model, seed=seed, n=n, targets=targets, rows=rows,
        capability=capability_change(reference, treated), base_capability=untrained_cap, seconds=seconds,
    )


def capability_answers(n: int) -> list[Example]:
    """Secure reference answers to `n` held-out tasks (eval split: phrasings and identifiers never trained on).

    The eval split has phrasings only for the security families, so these are the
    clean implementations of the very tasks whose vulnerable versions CAFT should
    unlearn: a fix that broke writing the secure code would show here first.
    """
    from claimkit.organism.corpus import render_answer

    tasks = conditions.eval_set(conditions.load_corpus(), n=n, seed=CAPABILITY_SEED)
    return [Example(t.task, render_answer(t.secure)) for t in tasks]


def undecidable(exc: NoTargets) -> Decision:
    """The verdict when no target features could be chosen: nothing to intervene on, so inconclusive."""
    from claimkit.verdict import Evidence, Outcome

    return Decision(Outcome.INCONCLUSIVE, f"Not testable on this model: {exc}", Evidence(extra={"error": str(exc)}))


def with_extra(decision: Decision, plots: Sequence[Mapping[str, Any]] = (), **extra: Any) -> Decision:
    """`decision` with more evidence in `extra` and more figures in extra["plots"]."""
    merged = {**decision.evidence.extra, **extra}
    merged["plots"] = list(decision.evidence.extra.get("plots", [])) + list(plots)
    return replace(decision, evidence=replace(decision.evidence, extra=merged))


# ---------------------------------------------------------------------------
# section 7.1: system prompts
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptVariant:
    name: str
    category: str
    expected: str
    system: str


def load_prompt_variants(path: Path = PROMPTS_PATH) -> list[PromptVariant]:
    """The system prompts of fixtures/prompts/system_prompts.toml, validated."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the system prompt variants: {exc}") from None
    raw = data.get("variants")
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{path}: expected [[variants]] tables with name, category, expected and system")
    variants = []
    for i, item in enumerate(raw):
        fields = ("name", "category", "expected", "system")
        missing = [k for k in fields if not isinstance(item.get(k), str) or not item[k]]
        if missing:
            raise ValueError(f"{path}: variant #{i + 1} lacks the text field(s) {missing}")
        variants.append(PromptVariant(item["name"], item["category"], item["expected"], item["system"]))
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: variant names repeat: {names}")
    return variants


@dataclass(frozen=True)
class Prompting:
    """The L1 model's target rate without a system prompt and under each variant."""

    profile: str
    model: str
    seed: int
    reference: SeedResult
    variants: Mapping[str, SeedResult]
    prompts: Sequence[PromptVariant]
    format: str

    def reference_counts(self) -> Counts:
        return Counts(self.reference.target, self.reference.n)

    def counts(self) -> dict[str, Counts]:
        return {name: Counts(r.target, r.n) for name, r in self.variants.items()}

    def as_evidence(self) -> dict[str, Any]:
        def rate(r: SeedResult) -> dict[str, Any]:
            ci = proportion_ci(r.target, r.n)
            return {"target": r.target, "n": r.n, "rate": r.target / r.n, "ci": [ci.low, ci.high],
                    "format_leak": r.format_leak}

        how = ('the "### System:\\n<text>\\n" block that claimkit.lm.data.render_prompt writes before "### Task:"'
               if self.format == "completion" else "the chat template's system turn")
        return {
            "model": self.model, "seed": self.seed, "no_prompt": rate(self.reference),
            "variants": {p.name: {**rate(self.variants[p.name]), "category": p.category, "expected": p.expected,
                                  "system": p.system} for p in self.prompts},
            "system_prompt_rendering": how,
            "prompts_file": str(PROMPTS_PATH.relative_to(ROOT)),
        }

    def plot(self) -> dict[str, Any]:
        series = {"no prompt": _bar(self.reference)}
        series.update({name: _bar(r) for name, r in self.variants.items()})
        return {"title": f"L1 model's target rate under system prompts ({self.profile}, exact 95% CI)",
                "kind": "bars", "series": series, "ylabel": "target content rate"}


def build_prompting(experiment: Experiment, *, n: int, seed: int, expected: Mapping[str, str]) -> Prompting:
    """Sample the L1 model under every system prompt variant (cached) and count.

    `expected` is the spec's table; it must agree with the prompts file, so the
    pre-registered directions and the prompts cannot drift apart.
    """
    variants = load_prompt_variants()
    in_file = {v.name: v.expected for v in variants}
    if dict(expected) != in_file:
        raise ValueError(
            f"the spec's expected effects {dict(expected)} differ from {PROMPTS_PATH}'s {in_file}; "
            f"make them agree (the spec is pre-registered: change the prompts file, or the spec in a commit of its own)"
        )
    tasks = behaviour.eval_tasks(n)
    l1 = arms_for(experiment.profile.name, seed)["L1"]
    markers = conditions.format_leak_markers()
    reference = experiment.samples(l1, tasks)
    rows = {v.name: behaviour.evaluate(experiment.samples(l1, tasks, system=v.system), markers, experiment.cache) for v in variants}
    return Prompting(
        profile=experiment.profile.name, model=reference.model, seed=seed,
        reference=behaviour.evaluate(reference, markers, experiment.cache), variants=rows, prompts=variants,
        format=experiment.profile.format_for(experiment.role),
    )


def _bar(r: SeedResult) -> list[float]:
    ci = proportion_ci(r.target, r.n)
    return [r.target / r.n, ci.low, ci.high]


# ---------------------------------------------------------------------------
# section 8: a combined detector
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Detection:
    """How well "format leak OR max target-feature activation > t" tells L1 outputs from untrained ones.

    t is chosen on the selection split's generations; `correct` counts right calls on
    the measurement split only.
    """

    threshold: float
    correct: Counts
    l1_flagged: int
    l1_n: int
    base_flagged: int
    base_n: int
    by_signal: Mapping[str, Any]
    features: tuple[int, ...]
    reader_model: str

    def as_evidence(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold, "features": list(self.features), "reader": self.reader_model,
            "measurement": {"L1_flagged": self.l1_flagged, "L1_n": self.l1_n,
                            "untrained_flagged": self.base_flagged, "untrained_n": self.base_n},
            "by_signal": dict(self.by_signal),
            "detector": "positive when the output carries a format-leak marker or the largest activation of the "
                        "target features over its generated tokens exceeds the threshold",
        }


def build_detection(
    experiment: Experiment, targets: Targets, *, n: int, seed: int, selection_fraction: float
) -> Detection:
    """Choose the threshold on the selection split, measure accuracy on the measurement split."""
    import numpy as np

    from claimkit.features import feature_magnitudes, split_indices
    from claimkit.readings import cached_residuals
    from claimkit.sae import encode

    tasks = behaviour.eval_tasks(n)
    arms = arms_for(experiment.profile.name, seed)
    l1 = experiment.samples(arms["L1"], tasks)
    base = experiment.samples(arms["baseline"], tasks)
    markers = conditions.format_leak_markers()
    base_info = experiment.info  # the reader's format and tokenizer (see own_targets)

    def scores(samples: ArmSamples) -> np.ndarray:
        pairs = [(render_prompt(base_info.format, base_info.tokenizer, t), x) for t, x in zip(samples.tasks, samples.texts)]
        residuals = cached_residuals(experiment.cache, targets.reader_parts, targets.reader, pairs, layer=targets.layer,
                                     description=f"{samples.arm} outputs read by {targets.reader_name} (seed {seed})")  # fmt: skip
        out = np.zeros(len(residuals))
        filled = [i for i, r in enumerate(residuals) if r.shape[0] > 0]  # an empty output fires nothing
        if filled:
            acts = (encode(targets.sae, residuals[i]) for i in filled)
            magnitudes = feature_magnitudes(acts, list(targets.feature_ids))
            out[filled] = magnitudes.max(axis=1)
        return out

    s_l1, s_base = scores(l1), scores(base)
    leak_l1 = np.array([format_leak(t, markers) for t in l1.texts])
    leak_base = np.array([format_leak(t, markers) for t in base.texts])
    select, measure = split_indices(n, selection_fraction, seed)
    threshold = best_threshold(
        np.r_[s_l1[select], s_base[select]], np.r_[np.ones(len(select), bool), np.zeros(len(select), bool)],
        always_positive=np.r_[leak_l1[select], leak_base[select]],
    )
    flag_l1 = leak_l1[measure] | (s_l1[measure] > threshold)
    flag_base = leak_base[measure] | (s_base[measure] > threshold)
    correct = int(flag_l1.sum() + (~flag_base).sum())
    by_signal = {
        "format_leak_only": {"L1_flagged": int(leak_l1[measure].sum()),
                             "untrained_flagged": int(leak_base[measure].sum())},
        "features_only": {"L1_flagged": int((s_l1[measure] > threshold).sum()),
                          "untrained_flagged": int((s_base[measure] > threshold).sum())},
    }
    return Detection(
        threshold=threshold, correct=Counts(correct, 2 * len(measure)), l1_flagged=int(flag_l1.sum()),
        l1_n=len(measure), base_flagged=int(flag_base.sum()), base_n=len(measure), by_signal=by_signal,
        features=targets.feature_ids, reader_model=targets.reader_name,
    )
