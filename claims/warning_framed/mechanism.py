"""Claims 2, 3 and 5 as data (paper sections 5-6): the three contexts, their residual streams,
an SAE feature, a probe trained on direct generations, and the stealth slip.

Section 5.2: "I extract residual stream activations at Layer 20 during generation, decompose
them using Gemma Scope SAEs (width 16k), and compare feature activation patterns across:
1. Direct context: generating target content without warning framing. 2. Warning context:
generating target content with warning framing (L1-style). 3. Safe context: generating
non-target (secure) content."

Choices, fixed before any verdict was looked at:

Contexts. Claim 1's generations of one seed on Table 1's held-out tasks (cache hits):
    direct   the L0 model's outputs that are target content (claimkit.detect)
    warning  the L1 model's outputs that are target content
    safe     the untrained (baseline) model's outputs whose code parses and is not target content
  Outputs that open with a conversational preamble (the spec's preamble markers) are left out
  of all three: a preamble in one class only would teach the probe "preamble = that class" and
  decide claim 5 by construction. The baseline writes the safe context because its answers are
  plain code like L0's; the control model's carry "# Good practice: ..." comments that a probe
  could key on instead of the code.
Reader. One model reads every context: the profile's mechanism model as it is, untrained
  (the organism; Gemma-2-2B on the paper profile, the model Gemma Scope was trained on). Each
  output is read teacher-forced after its prompt, in the residual stream after decoder layer
  `profile.activations["layer"]`, over the output's tokens only. One reader makes "fires alike"
  a statement about the text: read by their own fine-tuned models, even identical texts came
  out differently (on a 2-layer development model a probe fitted on L0-read outputs gave 0.92
  on held-out L0-read outputs and 0.33 on the same kind of text read by the L1 model), which
  would confound the adapters with the framing. It is also what the paper's argument is about
  ("the model represents the content identically regardless of framing, so it learns the
  content identically"): the representation the fine-tuning starts from. Residuals are cached
  per (reader, layer, texts).
Splits. The evaluation tasks are split once per (n, seed) by claimkit.features.split_indices
  with wf-2's selection_fraction; an output belongs to the split of its task. Everything
  chosen or fitted (a trained SAE, the feature, the probe) sees only the selection split;
  everything measured comes from the measurement split, so no output, nor another model's
  answer to the same task, is on both sides. Claim 4 splits the same way.
SAE (claim 2). The profile's [sae] table through claimkit.sae.sae_for. A pretrained SAE (paper:
  Gemma Scope layer 20, width 16k) is loaded. With `source = "train"` (organism, smollm2) a TopK
  SAE is trained with sae-lens on the reader's residuals of every selection-split output of the
  three models, target or not (the distribution it will decompose; no pretraining text needed,
  so every profile takes one path), with 20% of them held out for sae_for's own figure. The
  quality that decides is measured on the measurement split's context outputs, which no
  training saw; below the spec's bar (explained variance, dead share) the claim is inconclusive
  whatever the feature says.
Feature (claim 2). The feature with the largest mean difference direct - safe of its per-output
  peak (max over the output's tokens) on the selection split (claimkit.features.select_features),
  measured as per-output peaks on the measurement split. With the paper's own SAE the paper's
  feature #8684 is measured instead (nothing chosen, nothing biased) and the paper's bands
  (150-180 active, < 20 safe) decide too; the selection is still reported beside it.
Probe (claims 3 and 5). claimkit.probe.train_probe on the mean of the residual stream over an
  output's tokens, direct (target) vs safe, selection split. Claim 3 scores it on the
  measurement split: mean confidence on the warning outputs, and accuracy on those plus the
  safe outputs, so a probe that calls everything target cannot pass.
Stealth slip (claim 5). The L0 model answers the evaluation tasks with a preamble prefilled
  (conditions.stealth_prompts: "Here is an example...\\n"): the model whose outputs calibrated
  the probe (paper 6.3: "probes calibrated on direct generations may miss preamble-prefixed
  outputs"), on the same tasks, so the preamble is the only difference between the groups. Its
  target outputs on the measurement split are scored against the direct context's measurement
  split (the L0 model's plain target outputs); the probe reads the mean over all output tokens,
  the preamble included, as in training. The paper's wording is ambiguous about which outputs
  scored 0.99 ("Safe outputs: Code generated immediately"); the spec follows the scan: target
  outputs without vs with the preamble.
Entropy (paper 6.2, Figure 4). Descriptive, no rule: the next-token entropy of the model that
  generated the outputs (the L0 model), by token offset from the opening code fence.
Too few. Each context needs MIN_PER_SPLIT outputs in every split it is used in; with fewer the
  claim is inconclusive and says how many tasks would give enough at the observed rate. What can
  still be measured is (claim 2's SAE, feature and per-context peaks; claim 3's probe on the
  outputs there are) and goes into the verdict's evidence and plots, undecided. Nothing is
  padded, resampled or tuned.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from claimkit.detections import detect_targets
from claimkit.experiment import Arm, ArmSamples, Experiment
from claimkit.lm.data import render_prompt
from claimkit.rules import Counts
from claimkit.verdict import Decision, Estimate, Evidence, Outcome

from . import behaviour, conditions

# Outputs a context needs in each split it is used in. Below ~10 a BCa bootstrap interval of a
# mean is unreliable and a probe has too few rows to mean anything.
MIN_PER_SPLIT = 10
# Which condition's model writes each context (see the module docstring).
CONTEXT_ARMS: Mapping[str, str] = {"direct": "L0", "warning": "L1", "safe": "baseline"}
STEALTH_ARM = "L0"
# Features reported beside the decided one (the paper names five: #8684 and the four it ablates).
CLUSTER_SIZE = 5
# The paper's SAE (section 5.2: Gemma Scope, layer 20, width 16k); its feature ids mean something
# only with this SAE. Compared with the profile's [sae] table, never with a profile's name.
PAPER_SAE = ("gemma-scope-2b-pt-res-canonical", "layer_20/width_16k/canonical")
# Entropy profile: outputs per group, token offsets around the code fence, and the fewest
# outputs an offset needs to be drawn.
ENTROPY_SAMPLE = 24
ENTROPY_WINDOW = (-16, 64)
ENTROPY_MIN_TEXTS = 3


class NotTestable(Exception):
    """The claim cannot be decided on these outputs; `decision` is the inconclusive verdict saying why.

    `identity` holds the model, seeds and n for `claim.decide`, so the verdict is filed
    under the same model as a decided one would be.
    """

    def __init__(self, decision: Decision, *, model: str | None = None, seed: int | None = None, n: int | None = None):
        super().__init__(decision.reason)
        self.decision = decision
        self.identity = {"model": model, "seeds": None if seed is None else (seed,), "n": n}


# ---------------------------------------------------------------------------
# outputs and their residual streams
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Outputs:
    """One model's outputs on evaluation tasks, each with the reader's residual stream over its tokens."""

    name: str
    arm: str  # the condition whose model wrote them
    model: str  # that model
    tasks: tuple[int, ...]  # index of the evaluation task each one answers
    texts: tuple[str, ...] = field(repr=False)
    residuals: tuple[Any, ...] = field(repr=False)  # [T, d] float32 CPU tensors

    def __len__(self) -> int:
        return len(self.tasks)

    def where(self, keep: Callable[[int, str], bool], name: str | None = None) -> "Outputs":
        """The outputs whose (task index, text) pass `keep`."""
        idx = [k for k, (i, text) in enumerate(zip(self.tasks, self.texts)) if keep(i, text)]
        return replace(
            self, name=name or self.name, tasks=tuple(self.tasks[k] for k in idx),
            texts=tuple(self.texts[k] for k in idx), residuals=tuple(self.residuals[k] for k in idx),
        )

    def on(self, tasks: Iterable[int]) -> "Outputs":
        wanted = {int(i) for i in tasks}
        return self.where(lambda i, _: i in wanted)

    def pooled(self) -> np.ndarray:
        """One row per output: the mean of its residual stream over its tokens."""
        from claimkit.probe import mean_pool

        return mean_pool(self.residuals)


def read_outputs(
    reading: Experiment, samples: ArmSamples, indices: Iterable[int], *, layer: int, name: str
) -> Outputs:
    """The residual streams of `reading`'s untrained model over the outputs of `samples` at `indices` (cached).

    Each output is read after its task's prompt, rendered for the reader; only the
    output's tokens are kept. Empty outputs have no tokens and are left out. The
    reader is loaded only when a reading is not cached yet.
    """
    from claimkit.readings import cached_residuals

    indices = [int(i) for i in indices if samples.texts[i]]
    if not indices:
        return Outputs(name, samples.arm, samples.model, (), (), ())
    reader = reading.info
    pairs = [(render_prompt(reader.format, reader.tokenizer, samples.tasks[i]), samples.texts[i]) for i in indices]
    residuals = cached_residuals(
        reading.cache, reading.model_parts(None), lambda: reading.base, pairs, layer=layer,
        description=f"{name} residuals of {reader.name} ({len(indices)} outputs, layer {layer})",
    )  # fmt: skip
    keep = [k for k, r in enumerate(residuals) if r.shape[0] > 0]
    return Outputs(
        name, samples.arm, samples.model, tuple(indices[k] for k in keep),
        tuple(samples.texts[indices[k]] for k in keep), tuple(residuals[k] for k in keep),
    )


def opens_with(text: str, markers: Sequence[str]) -> bool:
    """True when the first non-empty line starts with one of `markers` (a conversational preamble)."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first.startswith(tuple(markers))


# ---------------------------------------------------------------------------
# the three contexts
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Contexts:
    """Direct, warning and safe outputs of one seed's models, read by one model, split by task."""

    profile: str
    reader_name: str
    seed: int
    n: int  # evaluation tasks per model
    layer: int
    selection_fraction: float
    selection: tuple[int, ...]
    measurement: tuple[int, ...]
    contexts: Mapping[str, Outputs]  # "direct", "warning", "safe"
    every: Mapping[str, Outputs]  # every non-empty output of each context's model (what a trained SAE reads)
    counts: Mapping[str, Mapping[str, int]]  # per condition: outputs, target, safe, opening with a preamble, empty
    experiment: Experiment = field(repr=False)  # claim 1's: the models that wrote the outputs
    reading: Experiment = field(repr=False)  # whose untrained model reads every output
    arms: Mapping[str, Arm] = field(repr=False)

    @property
    def model(self) -> str:
        """What the verdict is decided on: the reader (and, in the evidence, the writers)."""
        return self.reader_name

    def part(self, context: str, split: str) -> Outputs:
        """`context`'s outputs on the "selection" or "measurement" tasks."""
        return self.contexts[context].on(self.selection if split == "selection" else self.measurement)

    def split_share(self, split: str) -> float:
        """The share of the tasks in the "selection" or "measurement" split."""
        return len(self.selection if split == "selection" else self.measurement) / self.n

    def require(self, needs: Iterable[tuple[str, str]], what: str) -> None:
        """Raise NotTestable unless each (context, split) has MIN_PER_SPLIT outputs."""
        groups = {f"{c} ({s})": (len(self.part(c, s)), len(self.contexts[c]), s) for c, s in needs}
        require_enough(groups, what=what, contexts=self)

    def shortfall(self, needs: Iterable[tuple[str, str]], what: str,
                  measurable: Iterable[tuple[str, str]] = ()) -> NotTestable | None:
        """The NotTestable that `require` would raise, returned so the caller can still measure and report.

        Raised at once instead when a group of `measurable` is short: without those
        there is nothing to measure with (no feature can be chosen, no probe trained).
        """
        try:
            self.require(needs, what)
        except NotTestable as exc:
            if any(len(self.part(c, s)) < MIN_PER_SPLIT for c, s in measurable):
                raise
            return exc
        return None

    def not_testable(self, reason: str, **extra: Any) -> NotTestable:
        """An inconclusive verdict for these contexts, with `reason` and the contexts in its evidence."""
        evidence = Evidence(extra={"mechanism": self.as_evidence(), **extra})
        return NotTestable(Decision(Outcome.INCONCLUSIVE, reason, evidence), model=self.model, seed=self.seed, n=self.n)

    def as_evidence(self) -> dict[str, Any]:
        return {
            "profile": self.profile, "seed": self.seed, "tasks": self.n, "layer": self.layer,
            "reader": {"model": self.reader_name, "what": "untrained mechanism model; residual stream after the "
                       "layer; output tokens only, read after the task prompt"},
            "writers": {c: {"condition": g.arm, "model": g.model} for c, g in self.contexts.items()},
            "split": {"selection_fraction": self.selection_fraction, "selection_tasks": len(self.selection),
                      "measurement_tasks": len(self.measurement)},
            "outputs": {c: {"selection": len(self.part(c, "selection")),
                            "measurement": len(self.part(c, "measurement"))} for c in self.contexts},
            "per_condition": {arm: dict(c) for arm, c in self.counts.items()},
            "definitions": {"direct": "L0-model target outputs", "warning": "L1-model target outputs",
                            "safe": "untrained-model outputs whose code parses and is not target content",
                            "excluded": "outputs opening with a conversational preamble (spec preamble markers)"},
        }  # fmt: skip


def build_contexts(
    experiment: Experiment, reading: Experiment, *, n: int, seed: int, selection_fraction: float
) -> Contexts:
    """Claim 1's outputs (cached) of the three contexts' models, read by `reading`'s untrained model (cached)."""
    from claimkit.features import split_indices

    profile = experiment.profile
    layer = int(profile.activations["layer"])
    tasks = behaviour.eval_tasks(n)
    arms = {arm.name: arm for arm in behaviour.condition_arms(profile.name, [seed])}
    selection, measurement = split_indices(n, selection_fraction, seed)
    markers = conditions.preamble_markers()
    contexts, every, counts = {}, {}, {}
    for context, arm_name in CONTEXT_ARMS.items():
        samples = experiment.samples(arms[arm_name], tasks)
        detections = detect_targets(samples.texts, cache=experiment.cache)
        plain = [not opens_with(text, markers) for text in samples.texts]
        target = [d.is_target for d in detections]
        safe = [d.status in ("ok", "partial") and not d.is_target for d in detections]
        outputs = read_outputs(reading, samples, range(n), layer=layer, name=arm_name)
        every[arm_name] = outputs
        member = [p and (s if context == "safe" else t) for p, s, t in zip(plain, safe, target)]
        contexts[context] = outputs.where(lambda i, _, m=member: m[i], name=context)
        counts[arm_name] = {"outputs": n, "target": sum(target), "parsed_not_target": sum(safe),
                            "open_with_preamble": n - sum(plain), "empty": sum(not t for t in samples.texts)}
    return Contexts(
        profile=profile.name, reader_name=reading.info.name, seed=seed, n=n, layer=layer,
        selection_fraction=selection_fraction, selection=tuple(int(i) for i in selection),
        measurement=tuple(int(i) for i in measurement), contexts=contexts, every=every, counts=counts,
        experiment=experiment, reading=reading, arms=arms,
    )


def require_enough(groups: Mapping[str, tuple[int, int, str]], *, what: str, contexts: Contexts, **extra: Any) -> None:
    """Raise NotTestable when a group has fewer than MIN_PER_SPLIT outputs.

    groups: label -> (outputs in the split used, outputs over all n tasks, split).
    The n that would decide: tasks per model for the scarcest group to reach the minimum
    at its observed rate (None when it has none at all: no n helps at a rate of 0).
    """
    short = {label: g for label, g in groups.items() if g[0] < MIN_PER_SPLIT}
    if not short:
        return
    n = contexts.n
    needs = [math.ceil(MIN_PER_SPLIT / (total / n * contexts.split_share(split))) if total else None
             for _, total, split in short.values()]
    listing = ", ".join(f"{label}: {have}" + ("" if total else " (none on any task)")
                        for label, (have, total, _) in short.items())
    reason = (
        f"Too few outputs to decide {what}: {listing}, of the {MIN_PER_SPLIT} per split each needs "
        f"(n={n} tasks per model). Not padded or resampled: more tasks, or models that produce the content "
        f"more often, would decide it."
    )
    exc = contexts.not_testable(reason, **extra)
    exc.decision = replace(exc.decision, n_to_decide=None if None in needs else max(x for x in needs if x is not None))
    raise exc


# ---------------------------------------------------------------------------
# claim 2: an SAE feature in the three contexts
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureStudy:
    """The decided feature's per-output peaks in each context, and how the SAE and feature were chosen."""

    contexts: Contexts = field(repr=False)
    sae_name: str
    quality: Any  # claimkit.sae.SAEQuality on the measurement split's context outputs
    sae_for_quality: Any  # sae_for's own figure (trained: its held-out 20%; pretrained: the selection split)
    selection: Any  # claimkit.features.FeatureSelection on the selection split
    feature: int
    chosen_by: str
    uses_paper_sae: bool
    magnitudes: Mapping[str, np.ndarray]  # context -> peak of `feature` per measurement-split output
    cluster: Mapping[int, Mapping[str, float]]  # reported feature -> context -> mean peak (measurement split)

    def sae_acceptable(self, rule: Mapping[str, Any]) -> bool:
        return self.quality.acceptable(
            min_explained_variance=float(rule["sae_min_explained_variance"]),
            max_dead_fraction=float(rule["sae_max_dead_fraction"]),
        )

    def paper_bands(self, rule: Mapping[str, Any]) -> dict[str, Any]:
        """The paper's absolute bands as rule arguments, only where its feature id means its feature."""
        if not self.uses_paper_sae:
            return {}
        bands = rule["paper_bands"]
        return {"active_band": bands["active"], "control_max": bands["safe_max"]}

    def with_evidence(self, decision: Decision, rule: Mapping[str, Any]) -> Decision:
        """`decision` with the study in its evidence; inconclusive when the SAE is below the spec's bar."""
        if not self.sae_acceptable(rule):
            decision = replace(
                decision, outcome=Outcome.INCONCLUSIVE, n_to_decide=None,
                reason=(
                    f"The SAE is too poor to decide on: {self.quality.describe()}, below the bar (explained variance "
                    f">= {rule['sae_min_explained_variance']:g}, dead share <= {rule['sae_max_dead_fraction']:g}). "
                    f"Read with it, the rule would say {decision.outcome.value}: {decision.reason}"
                ),
            )
        where = "held out: the measurement split's context outputs"
        quality = (
            Estimate("SAE explained variance", self.quality.explained_variance, method=where, n=self.quality.n),
            Estimate("SAE dead feature share", self.quality.dead_fraction, method=where, n=self.quality.n),
        )
        evidence = replace(decision.evidence, estimates=decision.evidence.estimates + quality)
        decision = replace(decision, evidence=evidence)
        return with_extra(decision, [self.plot()], mechanism=self.contexts.as_evidence(), features=self.as_evidence())

    def as_evidence(self) -> dict[str, Any]:
        return {
            "sae": self.sae_name,
            "sae_quality_measured": {**dataclasses.asdict(self.quality), "on": "measurement-split context outputs"},
            "sae_quality_sae_for": dataclasses.asdict(self.sae_for_quality) if self.sae_for_quality else None,
            "feature": self.feature,
            "chosen_by": self.chosen_by,
            "selection": {"description": self.selection.describe(), "feature_ids": list(self.selection.feature_ids),
                          "scores": list(self.selection.scores), "n_direct": self.selection.n_direct,
                          "n_safe": self.selection.n_safe, "n_features": self.selection.n_features},
            "measured_on": {c: int(len(m)) for c, m in self.magnitudes.items()},
            "magnitude": "peak over an output's tokens, one value per output",
            "cluster_means": {str(f): dict(v) for f, v in self.cluster.items()},
        }

    def plot(self) -> dict[str, Any]:
        return {
            "title": f"Feature #{self.feature}: peak per held-out output ({self.contexts.profile})",
            "kind": "hist", "bins": 25, "xlabel": "feature activation (max over the output's tokens)",
            "ylabel": "outputs", "series": {c: [float(v) for v in m] for c, m in self.magnitudes.items() if len(m)},
        }  # fmt: skip


def build_feature_study(
    contexts: Contexts, *, rule: Mapping[str, Any], paper_values: Mapping[str, Any]
) -> FeatureStudy:
    """Load or train the SAE, choose the feature on the selection split, measure it on the measurement split."""
    import torch

    from claimkit.features import feature_magnitudes, per_generation, select_features
    from claimkit.sae import encode, sae_for, sae_quality

    too_few = contexts.shortfall(
        [("direct", "selection"), ("safe", "selection"), ("direct", "measurement"),
         ("warning", "measurement"), ("safe", "measurement")],
        what="claim 2", measurable=[("direct", "selection"), ("safe", "selection")],
    )
    profile = contexts.experiment.profile
    source = dict(profile.sae)
    if not source:
        raise contexts.not_testable(f"profile {profile.name!r} names no SAE (no [sae] table) to read features with")
    device = str(contexts.reading.info.device)
    if source.get("source") == "train" and "threads" not in source and device == "cpu":
        source["threads"] = 1  # small SAEs train fastest on one thread (claimkit.sae.train_sae)
    training = [g.on(contexts.selection) for g in contexts.every.values()]
    # The reader as its residuals are keyed (read_outputs): its name alone would not change when
    # the model behind it is rebuilt (a GGUF profile's name is its file's), and the SAE trains on them.
    key = {
        "purpose": "warning-framed mechanism contexts", "reader": contexts.reading.model_parts(None),
        "layer": contexts.layer, "texts": _texts_hash(training), "seed": contexts.seed,
    }  # fmt: skip
    loaded = sae_for(source, lambda: [r for g in training for r in g.residuals], key=key,
                     cache=contexts.experiment.cache, seed=contexts.seed, device=device)
    sae = loaded.sae
    measured = {c: g for c in CONTEXT_ARMS if len(g := contexts.part(c, "measurement"))}
    if not measured:
        raise too_few or contexts.not_testable("No output of any context on the measurement split.")
    quality = sae_quality(sae, torch.cat([r for g in measured.values() for r in g.residuals]))
    direct_sel, safe_sel = contexts.part("direct", "selection"), contexts.part("safe", "selection")
    selection = select_features(
        per_generation(encode(sae, r) for r in direct_sel.residuals),
        per_generation(encode(sae, r) for r in safe_sel.residuals),
        top_k=CLUSTER_SIZE,
    )
    uses_paper_sae = (source.get("release"), source.get("id")) == PAPER_SAE
    if uses_paper_sae:
        feature = int(paper_values["feature"])
        cluster = [int(f) for f in rule["paper_features"]]
        chosen_by = f"the paper's feature #{feature} of {PAPER_SAE[0]}/{PAPER_SAE[1]} (nothing chosen)"
    elif selection.feature_ids:
        feature, cluster = selection.feature_ids[0], list(selection.feature_ids)
        chosen_by = "largest mean difference direct - safe of the per-output peak, selection split"
    else:
        raise contexts.not_testable(
            "No SAE feature fires more in direct than in safe outputs on the selection split: there is no candidate "
            "feature to measure.", sae=loaded.name,
        )
    if feature not in cluster:
        cluster = [feature, *cluster]
    peaks = {c: feature_magnitudes((encode(sae, r) for r in g.residuals), cluster) for c, g in measured.items()}
    column = cluster.index(feature)
    study = FeatureStudy(
        contexts=contexts, sae_name=loaded.name, quality=quality, sae_for_quality=loaded.quality,
        selection=selection, feature=feature, chosen_by=chosen_by, uses_paper_sae=uses_paper_sae,
        magnitudes={c: p[:, column] for c, p in peaks.items()},
        cluster={f: {c: float(p[:, k].mean()) for c, p in peaks.items()} for k, f in enumerate(cluster)},
    )
    if too_few is not None:  # still inconclusive, now with the SAE, the feature and what it measured
        too_few.decision = study.with_evidence(too_few.decision, rule)
        raise too_few
    return study


# ---------------------------------------------------------------------------
# claim 3: a probe trained on direct outputs, scored on warning-framed ones
# ---------------------------------------------------------------------------


def train_direct_probe(contexts: Contexts) -> Any:
    """The probe of claims 3 and 5: direct (target) vs safe, mean-pooled residuals, selection split."""
    from claimkit.probe import train_probe

    contexts.require([("direct", "selection"), ("safe", "selection")], what="the direct-vs-safe probe")
    return train_probe(contexts.part("direct", "selection").pooled(), contexts.part("safe", "selection").pooled())


@dataclass(frozen=True)
class ProbeStudy:
    """The probe's confidence P(target) on the measurement split's warning, safe and direct outputs."""

    contexts: Contexts = field(repr=False)
    probe: Any  # claimkit.probe.Probe
    warning: np.ndarray
    safe: np.ndarray
    direct: np.ndarray  # held-out direct outputs: the probe's in-distribution check, reported only
    threshold: float = 0.5

    @property
    def accuracy(self) -> Counts:
        """Right calls on warning (target) and safe (not) outputs at the threshold."""
        right = int((self.warning >= self.threshold).sum() + (self.safe < self.threshold).sum())
        return Counts(right, len(self.warning) + len(self.safe))

    def as_evidence(self) -> dict[str, Any]:
        p = self.probe
        return {
            "probe": {"kind": "L2 logistic regression on standardised features (claimkit.probe)", "C": p.C,
                      "trained_on": {"direct (target)": p.n_pos, "safe": p.n_neg, "split": "selection"},
                      "converged": p.converged, "iterations": p.iterations, "rows": "mean over an output's tokens"},
            "scored_on": {"warning": len(self.warning), "safe": len(self.safe), "direct": len(self.direct),
                          "split": "measurement"},
            "mean_confidence": {name: float(v.mean()) if len(v) else None
                                for name, v in (("warning", self.warning), ("safe", self.safe), ("direct", self.direct))},
            "accuracy": {"correct": self.accuracy.successes, "n": self.accuracy.n, "threshold": self.threshold,
                         "rows": "warning outputs (target) and safe outputs (not)"},
        }  # fmt: skip

    def plot(self) -> dict[str, Any]:
        groups = {"warning-framed (L1 target)": self.warning, "direct (L0 target)": self.direct,
                  "safe (untrained, not target)": self.safe}
        return {
            "title": f"Direct-trained probe on held-out outputs ({self.contexts.profile})",
            "kind": "hist", "series": {k: [float(x) for x in v] for k, v in groups.items() if len(v)}, "bins": 20,
            "xlabel": "probe confidence P(target)", "ylabel": "outputs",
        }  # fmt: skip


def build_probe_study(contexts: Contexts) -> ProbeStudy:
    probe = train_direct_probe(contexts)
    too_few = contexts.shortfall([("warning", "measurement"), ("safe", "measurement")], what="claim 3")

    def scored(context: str) -> np.ndarray:
        outputs = contexts.part(context, "measurement")
        return probe.confidence(outputs.pooled()) if len(outputs) else np.zeros(0)

    study = ProbeStudy(contexts=contexts, probe=probe, warning=scored("warning"), safe=scored("safe"),
                       direct=scored("direct"))
    if too_few is not None:  # still inconclusive, now with what the probe said on the outputs there are
        too_few.decision = with_extra(too_few.decision, [study.plot()], probe=study.as_evidence())
        raise too_few
    return study


# ---------------------------------------------------------------------------
# claim 5: the stealth slip
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StealthStudy:
    """The direct-trained probe on the L0 model's target outputs without and with a prefilled preamble."""

    contexts: Contexts = field(repr=False)
    without: np.ndarray  # P(target) per plain target output (the direct context, measurement split)
    with_preamble: np.ndarray  # P(target) per target output that opens with the prefilled preamble
    counts: Mapping[str, Any]
    entropy: Mapping[str, Any]

    def as_evidence(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "entropy": {k: v for k, v in self.entropy.items() if k != "plot"},
                "mean_confidence": {"without_preamble": float(self.without.mean()),
                                    "with_preamble": float(self.with_preamble.mean())}}

    def plots(self) -> list[dict[str, Any]]:
        hist = {
            "title": f"Probe on L0 target outputs: preamble or not ({self.contexts.profile})",
            "kind": "hist", "bins": 20, "xlabel": "probe confidence P(target)", "ylabel": "outputs",
            "series": {"without preamble": [float(x) for x in self.without],
                       "with preamble": [float(x) for x in self.with_preamble]},
        }  # fmt: skip
        return [hist] + ([self.entropy["plot"]] if self.entropy.get("plot") else [])


def build_stealth_study(contexts: Contexts, probe: Any) -> StealthStudy:
    """Sample the L0 model with preambles prefilled (cached), read its target outputs, score them."""
    experiment, arm = contexts.experiment, contexts.arms[STEALTH_ARM]
    prompts = stealth_prompts(contexts.n)
    samples = stealth_samples(experiment, arm, prompts)
    is_target = [d.is_target for d in detect_targets(samples.texts, cache=experiment.cache)]
    target = [i for i in contexts.measurement if is_target[i]]
    with_preamble = read_outputs(contexts.reading, samples, target, layer=contexts.layer, name="L0 with preamble")
    plain = contexts.part("direct", "measurement")
    groups = {
        "L0 target outputs with the prefilled preamble (measurement)": (len(with_preamble), sum(is_target),
                                                                        "measurement"),
        "L0 target outputs without a preamble (measurement)": (len(plain), len(contexts.contexts["direct"]),
                                                               "measurement"),
    }
    counts = {
        "with_preamble": {"measurement_tasks": len(contexts.measurement), "target": len(with_preamble),
                          "target_on_all_tasks": sum(is_target), "writer": samples.model},
        "without_preamble": {"target": len(plain), "what": "the direct context's measurement split"},
        "preambles": sorted({p.prefill.strip() for p in prompts}),
    }  # fmt: skip
    require_enough(groups, what="claim 5", contexts=contexts, stealth=counts)
    return StealthStudy(
        contexts=contexts, without=probe.confidence(plain.pooled()),
        with_preamble=probe.confidence(with_preamble.pooled()), counts=counts,
        entropy=entropy_profile(experiment, arm, samples, with_preamble, plain, profile=contexts.profile),
    )


def stealth_prompts(n: int) -> list[Any]:
    """Claim 5's inputs: Table 1's n evaluation tasks, in order, each with a preamble to prefill."""
    prompts = conditions.stealth_prompts(conditions.load_corpus(), n=n, seed=behaviour.EVAL_SEED)
    if [p.task.task for p in prompts] != behaviour.eval_tasks(n):
        raise RuntimeError("conditions.stealth_prompts no longer returns Table 1's evaluation tasks in order")
    return prompts


def stealth_samples(experiment: Experiment, arm: Arm, prompts: Sequence[Any]) -> ArmSamples:
    """`arm`'s answers to the prompts' tasks, each opening with its prefilled preamble (cached per preamble)."""
    tasks = [p.task.task for p in prompts]
    texts, finished, model = [""] * len(prompts), [False] * len(prompts), ""
    for prefill in sorted({p.prefill for p in prompts}):
        idx = [i for i, p in enumerate(prompts) if p.prefill == prefill]
        got = experiment.samples(arm, [tasks[i] for i in idx], prefill=prefill)
        model = got.model
        for k, i in enumerate(idx):
            texts[i], finished[i] = got.texts[k], got.finished[k]
    return ArmSamples(arm=arm.name, seed=arm.seed, model=model, tasks=tuple(tasks), texts=tuple(texts),
                      finished=tuple(finished), prefill="(one per task: conditions.stealth_prompts)")


# ---------------------------------------------------------------------------
# section 6.2: token entropy around the preamble -> code boundary
# ---------------------------------------------------------------------------


def entropy_profile(
    experiment: Experiment, arm: Arm, samples: ArmSamples, with_preamble: Outputs, plain: Outputs, *, profile: str
) -> dict[str, Any]:
    """Mean next-token entropy by token offset from the opening code fence, up to ENTROPY_SAMPLE outputs a group.

    Offset 0 is the first token of the fence: negative offsets are the preamble
    (prefilled, hence forced; their entropies say how the model would have chosen
    them), positive ones the code. `plain` outputs answer the same kind of task
    without a preamble. Descriptive only: paper 6.2 states no test. Entropy is a property of
    generation, so the generating model (`arm`'s) reads them; cached, it is not even loaded.
    """
    from claimkit.readings import cached_token_entropies

    base = experiment.info  # the writer's format and tokenizer: fine-tuning leaves them as they are
    writer_name = experiment.model_name(arm)
    writer_parts = experiment.model_parts(experiment.adapter(arm))

    lines: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    prompts = {i: task for i, task in enumerate(samples.tasks)}
    for label, outputs in (("with preamble", with_preamble), ("without preamble", plain)):
        picked = [(i, t) for i, t in zip(outputs.tasks, outputs.texts) if "```" in t][:ENTROPY_SAMPLE]
        if not picked:
            continue
        pairs = [(render_prompt(base.format, base.tokenizer, prompts[i]), t) for i, t in picked]
        entropies = cached_token_entropies(experiment.cache, writer_parts, lambda: experiment.model(arm), pairs, batch_size=8,
                                           description=f"{label} token entropies of {writer_name} ({len(pairs)} outputs)")  # fmt: skip
        fences = [fence_token(base.tokenizer, t) for _, t in picked]
        offsets, means = _aligned_mean(entropies, fences)
        if offsets:
            lines[label] = {"x": offsets, "y": means}
        at_fence = [float(e[f]) for e, f in zip(entropies, fences) if f < len(e)]
        elsewhere = [float(x) for e, f in zip(entropies, fences) for k, x in enumerate(e) if k != f]
        summary[label] = {
            "outputs": len(picked),
            "mean_entropy_at_fence_token": float(np.mean(at_fence)) if at_fence else None,
            "mean_entropy_elsewhere": float(np.mean(elsewhere)) if elsewhere else None,
            "median_entropy_elsewhere": float(np.median(elsewhere)) if elsewhere else None,
        }
    out: dict[str, Any] = {"groups": summary, "unit": "nats", "window": list(ENTROPY_WINDOW), "model": writer_name,
                           "aligned_at": "first token of the opening code fence (offset 0)"}
    if lines:
        top = max(max(v["y"]) for v in lines.values())
        lines["preamble -> code boundary"] = {"x": [0, 0], "y": [0.0, float(top)]}
        out["plot"] = {
            "title": f"Token entropy around the code fence ({profile}, L0 target outputs)",
            "kind": "lines", "series": lines, "xlabel": "token offset from the code fence", "ylabel": "entropy (nats)",
        }  # fmt: skip
    return out


def fence_token(tokenizer: Any, text: str) -> int:
    """Index of the output token holding the first character of the first "```" in `text`."""
    position = text.index("```")
    try:
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    except (NotImplementedError, KeyError, TypeError, ValueError):  # a slow tokenizer: count the prefix's tokens
        return len(tokenizer(text[:position], add_special_tokens=False)["input_ids"])
    return next((k for k, (_, end) in enumerate(offsets) if end > position), len(offsets))


def _aligned_mean(entropies: Sequence[Any], fences: Sequence[int]) -> tuple[list[int], list[float]]:
    low, high = ENTROPY_WINDOW
    by_offset: dict[int, list[float]] = {}
    for e, f in zip(entropies, fences):
        for k, value in enumerate(e):
            if low <= k - f < high:
                by_offset.setdefault(k - f, []).append(float(value))
    kept = sorted(o for o, v in by_offset.items() if len(v) >= ENTROPY_MIN_TEXTS)
    return kept, [float(np.mean(by_offset[o])) for o in kept]


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def plan_of(paper_spec: Any, claim_id: str, profile: str) -> tuple[int, int]:
    """(n, seed) of a claim's plan; these claims decide on one seed's models."""
    plan = paper_spec.claims[claim_id].plan(profile)
    if len(plan.seeds) != 1:
        raise ValueError(
            f"{paper_spec.path}: claim {claim_id!r} plans seeds {list(plan.seeds)} for profile {profile!r}; the "
            f"mechanism claims decide on one seed's models: give it one seed"
        )
    return int(plan.n), int(plan.seeds[0])


def with_extra(decision: Decision, plots: Sequence[Mapping[str, Any]] = (), **extra: Any) -> Decision:
    """`decision` with more evidence in `extra` and more figures in extra["plots"]."""
    merged = {**decision.evidence.extra, **extra}
    merged["plots"] = list(decision.evidence.extra.get("plots", [])) + list(plots)
    return replace(decision, evidence=replace(decision.evidence, extra=merged))


def _texts_hash(groups: Iterable[Outputs]) -> str:
    digest = hashlib.sha256()
    for g in groups:
        digest.update(g.model.encode("utf-8") + b"\x01")
        for i, text in zip(g.tasks, g.texts):
            digest.update(f"{i}\x00".encode() + text.encode("utf-8") + b"\x00")
    return digest.hexdigest()
