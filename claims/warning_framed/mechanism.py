"""Claims 2, 3 and 5 as data (paper sections 5-6): three contexts per training seed, read over their code.

Section 5.2: "I extract residual stream activations at Layer 20 during generation, decompose
them using Gemma Scope SAEs (width 16k), and compare feature activation patterns across:
1. Direct context: generating target content without warning framing. 2. Warning context:
generating target content with warning framing (L1-style). 3. Safe context: generating
non-target (secure) content."

Choices, fixed in the spec ([experiment.mechanism]) before any result was seen:

Contexts, per seed s of the plan (the training run is the unit). Claim 1's outputs of seed
s's models on the held-out tasks (cache hits):
    direct   L0_s's answers that are target content
    warning  L1_s's answers that are target content
    safe     the filler comparator's (`safe_arm`) answers whose code parses and is not target
  Answers that open with a conversational preamble are left out of all three, so a preamble in
  one class cannot teach a probe "preamble = that class" and decide claim 5 by construction.
  The safe writer is fine-tuned like the others: another writer would confound the writer with
  the content.
Reader. One model reads every context: the profile's mechanism model as it is, untrained (the
  organism; Gemma-2-2B on the paper profile, the model Gemma Scope was trained on), teacher-forced
  after the task's prompt, residual stream after `profile.activations["layer"]`. One reader makes
  "fires alike" a statement about the text and about the representation fine-tuning starts from.
Window (`window = "code"`). Every reading is taken over the answer's code tokens: fenced Python,
  comment and blank lines excluded (claimkit.spans), so warning lines and preambles do not dilute
  the reading the claim is about. Answers without fenced code are not read.
Splits. Each seed's tasks are split by claimkit.features.split_indices(n, selection_fraction,
  seed). What is chosen or fitted (the feature, the probe) sees only selection-split outputs;
  what decides comes from the measurement split.
SAE (claim 2). One per profile, the reader's: the profile's [sae] table through
  claimkit.sae.sae_for (Gemma Scope on the paper profile; trained with sae-lens on the code
  tokens of every selection-split answer of the three context arms of all seeds otherwise).
  Its quality on the measurement split's context outputs must meet the spec's bars, else
  claim 2 is undecided whatever the feature says.
Feature (claim 2). The feature with the largest mean difference direct - safe of its per-output
  peak over the code, on the pooled selection split (claimkit.features.select_features); with
  the paper's own SAE, the paper's feature #8684 (nothing chosen). Measured per seed as per-output
  peaks on the measurement split.
Probe (claims 3 and 5). Per seed: logistic regression (claimkit.probe) on the mean of the code
  tokens' residuals, direct vs safe, selection split, C chosen by cross-validation inside it
  (spec grid and folds). Claim 3 scores it on the measurement split's warning and safe outputs.
Stealth slip (claim 5). Per seed: L0_s answers the evaluation tasks with a preamble prefilled
  ("Here is an example...\\n"); its measurement-split target answers are read by the reader and
  scored by seed s's probe over their code, against the direct context (no preamble) and the
  safe context. Readings at the preamble's tokens and at the first code token are reported.
Entropy (paper 6.2, Figure 4). Descriptive, no rule, seed s of the first plan seed only.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from claimkit.detections import detect_targets
from claimkit.experiment import Arm, ArmSamples, Experiment
from claimkit.lm.data import render_prompt
from claimkit.rules.declared import ClaimData
from claimkit.rules.parts import Precondition
from claimkit.verdict import Decision

from . import behaviour, conditions

# The contexts and who writes them; the safe writer is the spec's `safe_arm`.
CONTEXT_WRITERS = {"direct": "L0", "warning": "L1"}
STEALTH_ARM = "L0"
# The paper's SAE (section 5.2: Gemma Scope, layer 20, width 16k); its feature ids mean something
# only with this SAE. Compared with the profile's [sae] table, never with a profile's name.
PAPER_SAE = ("gemma-scope-2b-pt-res-canonical", "layer_20/width_16k/canonical")
# Entropy profile: outputs per group, token offsets around the code fence, fewest outputs per offset.
ENTROPY_SAMPLE = 24
ENTROPY_WINDOW = (-16, 64)
ENTROPY_MIN_TEXTS = 3


# ---------------------------------------------------------------------------
# answers read over their code
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """One answer read by the reader: its task, its text, the residuals over its tokens, which tokens are code."""

    task: int
    text: str = field(repr=False)
    residuals: Any = field(repr=False)  # [T, d] float32 CPU tensor
    code: np.ndarray = field(repr=False)  # [T] bool

    def code_rows(self) -> Any:
        """The residual rows of the code tokens ([k, d])."""
        import torch

        return self.residuals[torch.from_numpy(self.code)]

    def code_mean(self) -> np.ndarray:
        """The mean of the code tokens' residuals ([d]): one probe row."""
        return self.code_rows().mean(dim=0).numpy()


def read_answers(reading: Experiment, samples: ArmSamples, indices: Iterable[int], *, layer: int,
                 name: str) -> dict[int, Reading]:
    """Task index -> the reader's residuals over `samples`' answer to that task (cached), for answers with code tokens."""
    from claimkit.readings import cached_residuals
    from claimkit.spans import code_token_mask, fit

    indices = [int(i) for i in indices if samples.texts[i]]
    if not indices:
        return {}
    reader = reading.info
    pairs = [(render_prompt(reader.format, reader.tokenizer, samples.tasks[i]), samples.texts[i]) for i in indices]
    residuals = cached_residuals(
        reading.cache, reading.model_parts(None), lambda: reading.base, pairs, layer=layer,
        description=f"{name} residuals of {reader.name} ({len(indices)} answers, layer {layer})",
    )  # fmt: skip
    out = {}
    for i, r in zip(indices, residuals):
        mask = fit(code_token_mask(reader.tokenizer, samples.texts[i]), r.shape[0])
        if mask.any():
            out[i] = Reading(i, samples.texts[i], r, mask)
    return out


@dataclass(frozen=True)
class SeedContexts:
    """One seed's direct, warning and safe answers, read over their code, and its split of the tasks."""

    seed: int
    selection: tuple[int, ...]
    measurement: tuple[int, ...]
    contexts: Mapping[str, Mapping[int, Reading]]  # context -> task -> reading
    every: Mapping[str, Mapping[int, Reading]]  # arm -> task -> reading of every answer with code (SAE training)
    writers: Mapping[str, str]  # context -> the model that wrote it
    counts: Mapping[str, Mapping[str, int]]  # arm -> outputs, target, parsed not target, preamble, read
    arms: Mapping[str, Arm] = field(repr=False)

    def part(self, context: str, split: str) -> list[Reading]:
        tasks = self.selection if split == "selection" else self.measurement
        found = self.contexts[context]
        return [found[i] for i in tasks if i in found]


@dataclass(frozen=True)
class Mechanism:
    """Every seed's contexts, read by one model, and what they are for."""

    profile: str
    reader_name: str
    layer: int
    n: int
    settings: Mapping[str, Any]
    seeds: tuple[SeedContexts, ...]
    experiment: Experiment = field(repr=False)  # claim 1's: the models that wrote the answers
    reading: Experiment = field(repr=False)  # whose untrained model reads every answer

    @property
    def seed_ids(self) -> tuple[int, ...]:
        return tuple(s.seed for s in self.seeds)

    def pooled(self, context: str, split: str) -> list[Reading]:
        return [r for s in self.seeds for r in s.part(context, split)]

    def as_evidence(self) -> dict[str, Any]:
        return {
            "profile": self.profile, "tasks": self.n, "layer": self.layer, "window": self.settings["window"],
            "reader": {"model": self.reader_name, "what": "untrained mechanism model; residual stream after the "
                       "layer; the answer's code tokens (fenced Python, comment and blank lines excluded)"},
            "seeds": [{"seed": s.seed, "writers": dict(s.writers), "selection_tasks": len(s.selection),
                       "measurement_tasks": len(s.measurement),
                       "outputs": {c: {"selection": len(s.part(c, "selection")),
                                       "measurement": len(s.part(c, "measurement"))} for c in s.contexts},
                       "per_arm": {a: dict(c) for a, c in s.counts.items()}} for s in self.seeds],
            "definitions": {"direct": "L0-model target answers", "warning": "L1-model target answers",
                            "safe": f"{self.settings['safe_arm']}-model answers whose code parses and is not target",
                            "excluded": "answers opening with a conversational preamble (spec preamble markers)"},
        }  # fmt: skip


def build_mechanism(
    experiment: Experiment, reading: Experiment, *, n: int, seeds: Sequence[int], settings: Mapping[str, Any]
) -> Mechanism:
    """Claim 1's answers (cached) of each seed's context models, read over their code by `reading`'s untrained model."""
    from claimkit.features import split_indices

    profile = experiment.profile
    layer = int(profile.activations["layer"])
    tasks = behaviour.eval_tasks(n)
    writers = {**CONTEXT_WRITERS, "safe": settings["safe_arm"]}
    markers = conditions.preamble_markers()
    per_seed = []
    for seed in seeds:
        arms = {arm.name: arm for arm in behaviour.condition_arms(profile.name, [seed], list(dict.fromkeys(writers.values())))}
        selection, measurement = split_indices(n, float(settings["selection_fraction"]), seed)
        contexts, every, counts = {}, {}, {}
        for context, arm_name in writers.items():
            samples = experiment.samples(arms[arm_name], tasks)
            detections = detect_targets(samples.texts, cache=experiment.cache)
            plain = [not behaviour.opens_with(text, markers) for text in samples.texts]
            member = [p and (d.status in ("ok", "partial") and not d.is_target if context == "safe" else d.is_target)
                      for p, d in zip(plain, detections)]
            read = read_answers(reading, samples, range(n), layer=layer, name=f"{arm_name} seed {seed}")
            every[arm_name] = read
            contexts[context] = {i: r for i, r in read.items() if member[i]}
            counts[arm_name] = {"outputs": n, "target": sum(d.is_target for d in detections),
                                "parsed_not_target": sum(d.status in ("ok", "partial") and not d.is_target
                                                         for d in detections),
                                "open_with_preamble": n - sum(plain), "read_with_code": len(read)}
        per_seed.append(SeedContexts(seed, tuple(int(i) for i in selection), tuple(int(i) for i in measurement),
                                     contexts, every, {c: f"{a} seed {seed}" for c, a in writers.items()}, counts, arms))
    return Mechanism(profile.name, reading.info.name, layer, n, dict(settings), tuple(per_seed), experiment, reading)


# ---------------------------------------------------------------------------
# claim 2: an SAE feature in the three contexts
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Features:
    """The reader's SAE, its quality on held-out code, and the features chosen on the pooled selection split."""

    sae: Any = field(repr=False)
    sae_name: str
    sae_key: str  # fingerprint of the SAE's weights (cache keys of edits made with it)
    quality: Any  # claimkit.sae.SAEQuality on the measurement split's context outputs
    sae_for_quality: Any
    selection: Any  # claimkit.features.FeatureSelection
    ranked: tuple[int, ...]  # the decided feature first, then the rest of the cluster
    chosen_by: str
    uses_paper_sae: bool

    def acceptable(self, settings: Mapping[str, Any]) -> Precondition:
        ok = self.quality.acceptable(min_explained_variance=float(settings["sae_min_explained_variance"]),
                                     max_dead_fraction=float(settings["sae_max_dead_fraction"]))
        reason = (f"the SAE is too poor to read features with: {self.quality.describe()}, below the bar "
                  f"(explained variance >= {settings['sae_min_explained_variance']:g}, dead share <= "
                  f"{settings['sae_max_dead_fraction']:g})") if not ok else f"SAE quality {self.quality.describe()}"
        return Precondition("SAE quality", ok, reason)


def peaks(sae: Any, readings: Sequence[Reading], feature_ids: Sequence[int]) -> np.ndarray:
    """Per reading, the largest activation of each feature over its code tokens ([N, k])."""
    from claimkit.sae import encode

    if not readings:
        return np.zeros((0, len(feature_ids)))
    return np.stack([encode(sae, r.code_rows())[:, list(feature_ids)].max(dim=0).values.numpy() for r in readings])


def all_peaks(sae: Any, readings: Sequence[Reading]) -> np.ndarray:
    """Per reading, every feature's largest activation over its code tokens ([N, F])."""
    from claimkit.features import per_generation
    from claimkit.sae import encode

    return per_generation(encode(sae, r.code_rows()) for r in readings)


def build_features(mechanism: Mechanism, *, rule: Mapping[str, Any], paper_values: Mapping[str, Any]) -> Features:
    """Load or train the reader's SAE and choose the features on the pooled selection split."""
    import torch

    from claimkit.features import select_features
    from claimkit.interventions import sae_fingerprint
    from claimkit.sae import sae_for, sae_quality

    profile = mechanism.experiment.profile
    source = dict(profile.sae)
    if not source:
        raise ValueError(f"profile {profile.name!r} names no SAE (no [sae] table) to read features with")
    device = str(mechanism.reading.info.device)
    if source.get("source") == "train" and "threads" not in source and device == "cpu":
        source["threads"] = 1  # small SAEs train fastest on one thread (claimkit.sae.train_sae)
    training = [r for s in mechanism.seeds for arm in s.every.values() for i, r in arm.items() if i in set(s.selection)]
    key = {"purpose": "warning-framed mechanism, code tokens", "reader": mechanism.reading.model_parts(None),
           "layer": mechanism.layer, "texts": _texts_hash(training), "seeds": list(mechanism.seed_ids)}
    loaded = sae_for(source, lambda: [r.code_rows() for r in training], key=key, cache=mechanism.experiment.cache,
                     seed=mechanism.seed_ids[0], device=device)
    sae = loaded.sae
    measured = [r for c in ("direct", "warning", "safe") for r in mechanism.pooled(c, "measurement")]
    if not measured:
        raise ValueError("no context answer on any seed's measurement split: nothing to measure the SAE on")
    quality = sae_quality(sae, torch.cat([r.code_rows() for r in measured]))
    cluster = int(mechanism.settings["cluster_size"])
    selection = select_features(all_peaks(sae, mechanism.pooled("direct", "selection")),
                                all_peaks(sae, mechanism.pooled("safe", "selection")), top_k=cluster)
    uses_paper_sae = (source.get("release"), source.get("id")) == PAPER_SAE
    if uses_paper_sae:
        ranked = tuple(int(f) for f in rule["paper_features"])
        chosen_by = f"the paper's features of {PAPER_SAE[0]}/{PAPER_SAE[1]}, #{ranked[0]} decided (nothing chosen)"
    else:
        ranked = tuple(selection.feature_ids)
        chosen_by = "largest mean difference direct - safe of the per-answer code peak, pooled selection split"
    return Features(sae, loaded.name, sae_fingerprint(sae), quality, loaded.quality, selection, ranked, chosen_by,
                    uses_paper_sae)


@dataclass(frozen=True)
class FeatureStudy:
    """The decided feature's per-answer code peaks in each context, per seed, on the measurement split."""

    mechanism: Mechanism = field(repr=False)
    features: Features
    groups: tuple[Mapping[str, np.ndarray], ...]  # per seed: context -> peaks
    cluster_means: Mapping[int, Mapping[str, float]]

    def data(self) -> ClaimData:
        return ClaimData(groups={"feature": self.groups})

    def preconditions(self) -> list[Precondition]:
        found = bool(self.features.ranked)
        return [self.features.acceptable(self.mechanism.settings),
                Precondition("a candidate feature", found, "a feature fires more in direct than in safe answers"
                             if found else "no SAE feature fires more in direct than in safe answers on the "
                             "selection split: there is no feature to measure")]

    def evidence(self) -> dict[str, Any]:
        f = self.features
        return {
            "mechanism": self.mechanism.as_evidence(),
            "features": {
                "sae": f.sae_name, "sae_quality_measured": {**_asdict(f.quality), "on": "measurement-split code tokens"},
                "sae_quality_sae_for": _asdict(f.sae_for_quality) if f.sae_for_quality else None,
                "feature": f.ranked[0] if f.ranked else None, "chosen_by": f.chosen_by,
                "selection": {"description": f.selection.describe(), "feature_ids": list(f.selection.feature_ids),
                              "scores": list(f.selection.scores)},
                "magnitude": "peak over an answer's code tokens, one value per answer",
                "cluster_means": {str(k): dict(v) for k, v in self.cluster_means.items()},
            },
        }  # fmt: skip

    def plot(self) -> dict[str, Any]:
        feature = self.features.ranked[0] if self.features.ranked else "-"
        series = {c: [float(v) for g in self.groups for v in g.get(c, ())] for c in ("direct", "warning", "safe")}
        return {"title": f"Feature #{feature}: code peak per held-out answer, all seeds ({self.mechanism.profile})",
                "kind": "hist", "bins": 25, "xlabel": "feature activation (max over the code tokens)",
                "ylabel": "answers", "series": {k: v for k, v in series.items() if v}}


def build_feature_study(mechanism: Mechanism, features: Features) -> FeatureStudy:
    """Measure the decided feature (and report its cluster) per seed on the measurement split."""
    groups: list[dict[str, np.ndarray]] = []
    cluster_sums: dict[int, dict[str, list[float]]] = {f: {} for f in features.ranked}
    for seed in mechanism.seeds:
        found = {}
        for context in ("direct", "warning", "safe"):
            values = peaks(features.sae, seed.part(context, "measurement"), features.ranked) if features.ranked \
                else np.zeros((0, 0))
            found[context] = values[:, 0] if values.size else np.zeros(0)
            for k, f in enumerate(features.ranked):
                cluster_sums[f].setdefault(context, []).extend(values[:, k].tolist() if values.size else [])
        groups.append(found)
    cluster = {f: {c: float(np.mean(v)) for c, v in per.items() if v} for f, per in cluster_sums.items()}
    return FeatureStudy(mechanism, features, tuple(groups), cluster)


# ---------------------------------------------------------------------------
# claim 3: a probe per seed, trained on direct answers, scored on warning-framed ones
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedProbe:
    seed: int
    probe: Any  # claimkit.probe.Probe
    c: float
    cv: Mapping[str, Any]
    scores: Mapping[str, np.ndarray]  # measurement split: warning, safe, direct -> P(target)


def train_seed_probes(mechanism: Mechanism) -> tuple[SeedProbe | None, ...]:
    """Per seed: the direct-vs-safe probe on the selection split's code means, C by cross-validation (None: too few)."""
    from claimkit.probe import choose_c, train_probe

    settings = mechanism.settings
    minimum = int(settings["min_per_split"])
    out: list[SeedProbe | None] = []
    for seed in mechanism.seeds:
        pos, neg = seed.part("direct", "selection"), seed.part("safe", "selection")
        if len(pos) < minimum or len(neg) < minimum:
            out.append(None)
            continue
        x_pos, x_neg = np.stack([r.code_mean() for r in pos]), np.stack([r.code_mean() for r in neg])
        c, cv = choose_c(x_pos, x_neg, grid=[float(x) for x in settings["probe_c_grid"]],
                         folds=int(settings["probe_folds"]), seed=seed.seed)
        probe = train_probe(x_pos, x_neg, C=c)

        def scored(context: str) -> np.ndarray:
            rows = seed.part(context, "measurement")
            return probe.confidence(np.stack([r.code_mean() for r in rows])) if rows else np.zeros(0)

        out.append(SeedProbe(seed.seed, probe, c, cv, {c_: scored(c_) for c_ in ("warning", "safe", "direct")}))
    return tuple(out)


@dataclass(frozen=True)
class ProbeStudy:
    mechanism: Mechanism = field(repr=False)
    probes: tuple[SeedProbe | None, ...]

    def data(self) -> ClaimData:
        return ClaimData(groups={"probe": tuple(dict(p.scores) if p else {} for p in self.probes)})

    def evidence(self) -> dict[str, Any]:
        per_seed = []
        for seed, p in zip(self.mechanism.seeds, self.probes):
            if p is None:
                per_seed.append({"seed": seed.seed, "probe": None, "why": "fewer than min_per_split direct or safe "
                                 "answers on the selection split"})
                continue
            per_seed.append({
                "seed": p.seed, "C": p.c, "cross_validation": dict(p.cv),
                "trained_on": {"direct": p.probe.n_pos, "safe": p.probe.n_neg, "split": "selection"},
                "scored_on": {k: int(len(v)) for k, v in p.scores.items()},
                "mean_confidence": {k: float(v.mean()) if len(v) else None for k, v in p.scores.items()},
            })
        return {"mechanism": self.mechanism.as_evidence(),
                "probe": {"kind": "L2 logistic regression on standardised code-token means (claimkit.probe)",
                          "per_seed": per_seed}}

    def plot(self) -> dict[str, Any]:
        labels = {"warning": "warning-framed (L1 target)", "direct": "direct (L0 target)",
                  "safe": f"safe ({self.mechanism.settings['safe_arm']}, not target)"}
        series = {labels[k]: [float(x) for p in self.probes if p for x in p.scores[k]] for k in labels}
        return {"title": f"Direct-trained probes on held-out answers, all seeds ({self.mechanism.profile})",
                "kind": "hist", "bins": 20, "xlabel": "probe confidence P(target)", "ylabel": "answers",
                "series": {k: v for k, v in series.items() if v}}


# ---------------------------------------------------------------------------
# claim 5: the stealth slip
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StealthStudy:
    mechanism: Mechanism = field(repr=False)
    groups: tuple[Mapping[str, np.ndarray], ...]  # per seed: without, with, safe -> P(target) over the code
    other_windows: tuple[Mapping[str, Any], ...]  # per seed: preamble-token and first-code-token readings
    counts: tuple[Mapping[str, Any], ...]
    entropy: Mapping[str, Any]

    def data(self) -> ClaimData:
        return ClaimData(groups={"stealth": self.groups})

    def evidence(self) -> dict[str, Any]:
        return {"mechanism": self.mechanism.as_evidence(),
                "stealth": {"per_seed": [{**dict(c), "other_windows": dict(w)} for c, w in
                                         zip(self.counts, self.other_windows)],
                            "decided_on": "the probe's confidence over the answers' code tokens",
                            "entropy": {k: v for k, v in self.entropy.items() if k != "plot"}}}

    def plots(self) -> list[dict[str, Any]]:
        series = {k: [float(x) for g in self.groups for x in g.get(k, ())] for k in ("without", "with", "safe")}
        hist = {"title": f"Probe over the code of L0 target answers: preamble or not, all seeds ({self.mechanism.profile})",
                "kind": "hist", "bins": 20, "xlabel": "probe confidence P(target)", "ylabel": "answers",
                "series": {f"{k} preamble" if k != "safe" else "safe": v for k, v in series.items() if v}}
        return [hist] + ([self.entropy["plot"]] if self.entropy.get("plot") else [])


def build_stealth_study(mechanism: Mechanism, probes: Sequence[SeedProbe | None]) -> StealthStudy:
    """Per seed: L0 answers with a prefilled preamble (cached), their target answers read and scored over the code."""
    from claimkit.spans import first_code_token, before_code_token_mask

    experiment, reader = mechanism.experiment, mechanism.reading.info
    prompts = stealth_prompts(mechanism.n)
    groups, windows, counts = [], [], []
    entropy: Mapping[str, Any] = {}
    for seed, probe in zip(mechanism.seeds, probes):
        arm = seed.arms[STEALTH_ARM]
        samples = stealth_samples(experiment, arm, prompts)
        is_target = [d.is_target for d in detect_targets(samples.texts, cache=experiment.cache)]
        wanted = [i for i in seed.measurement if is_target[i]]
        read = read_answers(mechanism.reading, samples, wanted, layer=mechanism.layer, name=f"L0 with preamble seed {seed.seed}")
        with_preamble = [read[i] for i in wanted if i in read]
        plain = seed.part("direct", "measurement")
        safe = seed.part("safe", "measurement")
        counts.append({"seed": seed.seed, "with_preamble_target": len(with_preamble), "target_on_all_tasks": sum(is_target),
                       "without_preamble_target": len(plain), "safe": len(safe), "writer": samples.model,
                       "preambles": sorted({p.prefill.strip() for p in prompts})})
        if probe is None:
            groups.append({})
            windows.append({"why": "no probe for this seed"})
            continue

        def confidence(rows: Sequence[np.ndarray]) -> np.ndarray:
            return probe.probe.confidence(np.stack(rows)) if rows else np.zeros(0)

        groups.append({"without": confidence([r.code_mean() for r in plain]),
                       "with": confidence([r.code_mean() for r in with_preamble]),
                       "safe": confidence([r.code_mean() for r in safe])})
        pre = [r.residuals[_fit_mask(before_code_token_mask(reader.tokenizer, r.text), r)].mean(dim=0).numpy()
               for r in with_preamble if _fit_mask(before_code_token_mask(reader.tokenizer, r.text), r).any()]
        first = {name: [r.residuals[k].numpy() for r in rows if (k := first_code_token(reader.tokenizer, r.text)) is not None
                        and k < r.residuals.shape[0]] for name, rows in (("with", with_preamble), ("without", plain))}
        windows.append({
            "preamble_tokens_with": _mean_or_none(confidence(pre)),
            "first_code_token_with": _mean_or_none(confidence(first["with"])),
            "first_code_token_without": _mean_or_none(confidence(first["without"])),
            "n": {"preamble": len(pre), "first_with": len(first["with"]), "first_without": len(first["without"])},
        })
        if not entropy:
            entropy = entropy_profile(experiment, arm, samples, with_preamble, plain, profile=mechanism.profile)
    return StealthStudy(mechanism, tuple(groups), tuple(windows), tuple(counts), entropy)


def _fit_mask(mask: np.ndarray, reading: Reading) -> Any:
    import torch

    from claimkit.spans import fit

    return torch.from_numpy(fit(mask, reading.residuals.shape[0]))


def _mean_or_none(values: np.ndarray) -> float | None:
    return float(values.mean()) if len(values) else None


@functools.lru_cache(maxsize=4)
def stealth_prompts(n: int) -> tuple[Any, ...]:
    """Claim 5's inputs: Table 1's n evaluation tasks, in order, each with a preamble to prefill."""
    seed = int(conditions.experiment_settings("")["eval_seed"])
    prompts = conditions.stealth_prompts(conditions.load_corpus(), n=n, seed=seed)
    if [p.task.task for p in prompts] != behaviour.eval_tasks(n):
        raise RuntimeError("conditions.stealth_prompts no longer returns Table 1's evaluation tasks in order")
    return tuple(prompts)


def stealth_samples(experiment: Experiment, arm: Arm, prompts: Sequence[Any]) -> ArmSamples:
    """`arm`'s answers to the prompts' tasks, each opening with its own prefilled preamble (cached, one sampling)."""
    return experiment.samples(arm, [p.task.task for p in prompts], prefill=[p.prefill for p in prompts])


# ---------------------------------------------------------------------------
# section 6.2: token entropy around the preamble -> code boundary
# ---------------------------------------------------------------------------


def entropy_profile(
    experiment: Experiment, arm: Arm, samples: ArmSamples, with_preamble: Sequence[Reading],
    plain: Sequence[Reading], *, profile: str,
) -> dict[str, Any]:
    """Mean next-token entropy by token offset from the opening code fence, up to ENTROPY_SAMPLE answers a group.

    Offset 0 is the first token of the fence: negative offsets are the preamble
    (prefilled, hence forced; their entropies say how the model would have chosen
    them), positive ones the code. Descriptive only: paper 6.2 states no test. Entropy
    is a property of generation, so the generating model (`arm`'s) reads them.
    """
    from claimkit.readings import cached_token_entropies

    base = experiment.info
    writer_name = experiment.model_name(arm)
    writer_parts = experiment.model_parts(experiment.adapter(arm))
    lines: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    for label, readings in (("with preamble", with_preamble), ("without preamble", plain)):
        picked = [r for r in readings if "```" in r.text][:ENTROPY_SAMPLE]
        if not picked:
            continue
        pairs = [(render_prompt(base.format, base.tokenizer, samples.tasks[r.task]), r.text) for r in picked]
        entropies = cached_token_entropies(experiment.cache, writer_parts, lambda: experiment.model(arm), pairs,
                                           batch_size=8,
                                           description=f"{label} token entropies of {writer_name} ({len(pairs)} answers)")
        fences = [fence_token(base.tokenizer, r.text) for r in picked]
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
            "title": f"Token entropy around the code fence ({profile}, L0 target answers, first seed)",
            "kind": "lines", "series": lines, "xlabel": "token offset from the code fence", "ylabel": "entropy (nats)",
        }  # fmt: skip
    return out


def fence_token(tokenizer: Any, text: str) -> int:
    """Index of the answer token holding the first character of the first "```" in `text`."""
    from claimkit.spans import token_char_spans

    position = text.index("```")
    spans = token_char_spans(tokenizer, text)
    return next((k for k, (_, end) in enumerate(spans) if end > position), len(spans))


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


def with_extra(decision: Decision, plots: Sequence[Mapping[str, Any]] = (), **extra: Any) -> Decision:
    """`decision` with more evidence in `extra` and more figures in extra["plots"]."""
    merged = {**decision.evidence.extra, **extra}
    merged["plots"] = list(decision.evidence.extra.get("plots", [])) + list(plots)
    return replace(decision, evidence=replace(decision.evidence, extra=merged))


def _asdict(value: Any) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(value)


def _texts_hash(readings: Iterable[Reading]) -> str:
    digest = hashlib.sha256()
    for r in readings:
        digest.update(f"{r.task}\x00".encode() + r.text.encode("utf-8") + b"\x00")
    return digest.hexdigest()
