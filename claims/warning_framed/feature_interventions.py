"""Claim 4 and its sub-claims as data (paper sections 7-8): interventions on each seed's L1 model.

Section 7.2: "I identified features with elevated activation in target contexts ... I test
clamping these to zero during generation. Inference-time ablation fails: target rate remains
at 88%. Amplification (2x, 5x) also has no significant effect."
Section 7.3: "CAFT succeeds: target rate drops to 0% after training-time ablation. General
capability (HumanEval pass@1) shows only modest degradation."
Section 7.1: system-prompt variants (fixtures/prompts/system_prompts.toml).
Section 8: "Combined: 0.96 detection accuracy with simple thresholding."

Choices, fixed in the spec before any result was seen:

Models. Per seed s of the plan: the L1 model of seed s (claim 1's arm; where the profile has
  a separate mechanism model, the mechanism model fine-tuned on the same L1 data, because the
  SAE must read the model it edits) and seed s's filler comparator.
Features. Claim 2's SAE (the reader's) and its features chosen on the pooled selection split,
  the first `n_features` of them (with the paper's SAE: the paper's four ablated features).
Ablation: the features clamped to 0 at every position of the layer while generating (the SAE's
  reconstruction error kept), the removal repeated `clamp_iterations` times so that they read back
  near zero. CAFT: the L1 fine-tuning redone with the features' decoder
  directions projected out during training only (Casademunt et al. 2025), sampled plainly.
  Amplification 2x and 5x on the first seed, reported.
Capability. `capability_tasks` held-out tasks with unit tests (claimkit.organism.corpus
  .capability_tasks, eval split, the spec's capability_seed), answered by the unablated and the
  CAFT model of each seed, run in claimkit.sandbox: the pass rate per task is the capability
  table; the held-out loss of the tasks' reference answers is reported beside it.
Manipulation check (intervention-moves), on the direct arm L0 of each seed, which direct training
  is known to have taught: (1) read-back: on L0's target answers of the measurement split, the
  clamped features re-encoded after the clamp keep at most `max_readback` of their activation;
  (2) positive control: subtracting the target direction (the mean code residual of direct minus
  safe answers, pooled selection split) at every position lowers L0's learning below
  `positive_control_share` of itself (one-sided, crossed seeds x tasks).
Prompting. Each seed's L1 model under each system prompt, against no prompt.
Detection. Per seed: "format leak OR the largest code-token activation of the claim-4 features >
  t", L1 answers (positive) against filler answers (negative) on the same tasks; t chosen on the
  selection split, accuracy on the measurement split.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from claimkit.detections import detect_targets
from claimkit.experiment import Arm, ArmSamples, Experiment
from claimkit.interventions import caft_samples, feature_clamp, samples_with, steering
from claimkit.lm.profiles import Profile
from claimkit.rules.declared import ClaimData
from claimkit.rules.share import Region, Share, share_part
from claimkit.verdict import CheckResult

from . import behaviour, conditions
from .mechanism import Features, Mechanism

ROOT = Path(__file__).resolve().parents[2]
PROMPTS_PATH = ROOT / "fixtures" / "prompts" / "system_prompts.toml"
AMPLIFY = (2.0, 5.0)  # paper 7.2: "Amplification (2x, 5x) also has no significant effect."
EXPECTED_KIND = {"none": "between", "increase": "at_least", "decrease": "at_most"}


def intervention_experiment(profile: Profile, cache: Any, behaviour_experiment: Experiment) -> Experiment:
    """The Experiment whose models are edited: the mechanism model when the profile has its own, else claim 1's."""
    if "mechanism" in profile.models:
        return Experiment(profile, cache, role="mechanism")
    return behaviour_experiment


def seed_arms(profile: str, seed: int) -> dict[str, Arm]:
    return {a.name: a for a in behaviour.condition_arms(profile, [seed], ["L0", "L1", "filler"])}


def target_rows(experiment: Experiment, samples: Sequence[ArmSamples]) -> np.ndarray:
    """Seeds x tasks 0/1 target content of each seed's samples."""
    return np.array([[d.is_target for d in detect_targets(s.texts, cache=experiment.cache)] for s in samples], dtype=float)


# ---------------------------------------------------------------------------
# claim 4: ablation, CAFT, capability
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Interventions:
    """Claim 4's tables (target content under each intervention; unit-test passes) and what they came from."""

    profile: str
    seeds: tuple[int, ...]
    n: int
    features: tuple[int, ...]
    layer: int
    interventions: Mapping[str, np.ndarray]  # unablated, ablated, CAFT, filler -> seeds x tasks
    capability: Mapping[str, np.ndarray]  # unablated, CAFT -> seeds x capability tasks
    amplified: Mapping[str, Any]  # first seed only, reported
    losses: Mapping[str, list[float]]  # unablated, CAFT -> per seed mean held-out loss of reference answers
    models: Mapping[str, str]
    sae_name: str

    def data(self) -> ClaimData:
        return ClaimData(tables={"interventions": dict(self.interventions), "capability": dict(self.capability)})

    def evidence(self) -> dict[str, Any]:
        rates = {k: {"rate": float(v.mean()), "per_seed": [float(x) for x in v.mean(axis=1)]}
                 for k, v in {**self.interventions, **{f"capability {k}": v for k, v in self.capability.items()}}.items()}
        return {
            "profile": self.profile, "seeds": list(self.seeds), "tasks": self.n, "sae": self.sae_name,
            "layer": self.layer, "features": list(self.features), "rates": rates,
            "amplified_first_seed": dict(self.amplified), "held_out_loss": dict(self.losses), "models": dict(self.models),
            "ablation": "features clamped to 0 at every position of the layer while generating; the SAE's "
                        "reconstruction error is kept (h' = h + (f' - f) W_dec)",
            "caft": "the L1 fine-tuning redone with the features' decoder directions projected out of the layer's "
                    "residual stream during training only (Casademunt et al. 2025); sampled without any edit",
            "capability": "held-out tasks with unit tests (eval split), answers run in claimkit.sandbox; per-task pass",
        }  # fmt: skip

    def plot(self, paper: Mapping[str, Any]) -> dict[str, Any]:
        series = {}
        for name, table in self.interventions.items():
            mean = float(table.mean())
            per = table.mean(axis=1)
            series[name] = [mean, float(per.min()), float(per.max())]
        return {"title": f"Target rate under interventions ({self.profile}, {len(self.seeds)} seeds; bars span the "
                         f"seeds)", "kind": "bars", "series": series,
                "paper": {"ablated": paper.get("ablated_rate"), "CAFT": paper.get("caft_rate")},
                "ylabel": "target content rate"}


def build_interventions(
    experiment: Experiment, mechanism: Mechanism, features: Features, *, n: int, seeds: Sequence[int],
    n_features: int, capability_tasks: int, capability_seed: int,
) -> Interventions:
    """Sample each seed's L1 model plain, ablated and CAFT-trained, its filler comparator, and the capability tasks (cached)."""
    from claimkit.capability import cached_pass_rate
    from claimkit.organism.corpus import capability_tasks as draw_capability_tasks
    from claimkit.readings import cached_completion_losses
    from claimkit.sae import decoder_directions

    profile = experiment.profile.name
    layer = mechanism.layer
    ids = list(features.ranked[:n_features])
    tasks = behaviour.eval_tasks(n)
    directions = decoder_directions(features.sae, ids)
    cap = draw_capability_tasks(conditions.load_corpus(), n=capability_tasks, seed=capability_seed)
    cap_prompts = [t.task for t in cap]
    answers = [(t.task, t.reference) for t in cap]

    iterations = int(mechanism.settings["clamp_iterations"])

    def clamp(scale: float, name: str) -> Any:
        return feature_clamp(features.sae, ids, scale=scale, layer=layer, name=name, sae_key=features.sae_key,
                             iterations=iterations if scale == 0 else 1)

    plain, ablated, caft, filler, cap_plain, cap_caft = [], [], [], [], [], []
    losses: dict[str, list[float]] = {"unablated": [], "CAFT": []}
    amplified: dict[str, Any] = {}
    models: dict[str, str] = {}
    for seed in seeds:
        arms = seed_arms(profile, seed)
        l1 = arms["L1"]
        plain.append(experiment.samples(l1, tasks))
        filler.append(experiment.samples(arms["filler"], tasks))
        ablated.append(samples_with(experiment, l1, tasks, intervention=clamp(0.0, "ablate")))
        caft.append(caft_samples(experiment, l1, tasks, directions=directions, layer=layer))
        cap_plain.append(experiment.samples(l1, cap_prompts))
        cap_caft.append(caft_samples(experiment, l1, cap_prompts, directions=directions, layer=layer))
        models.update({f"L1 seed {seed}": plain[-1].model, f"CAFT seed {seed}": caft[-1].model,
                       f"filler seed {seed}": filler[-1].model})
        for who, adapter, load in (
            ("unablated", experiment.adapter(l1), lambda a=l1: experiment.model(a)),
            ("CAFT", _caft_adapter(experiment, l1, directions, layer), lambda a=l1: _caft_model(experiment, a, directions, layer)),
        ):
            values, _ = cached_completion_losses(experiment.cache, experiment.model_parts(adapter), load,
                                                 [_example(p, r) for p, r in answers],
                                                 description=f"{profile} {who} seed {seed} held-out losses")
            losses[who].append(float(np.mean(values)))
        if seed == seeds[0]:
            for scale in AMPLIFY:
                name = f"amplify {scale:g}x"
                got = samples_with(experiment, l1, tasks, intervention=clamp(scale, name))
                amplified[name] = {"rate": float(target_rows(experiment, [got]).mean()), "seed": seed}
    checks = [t.checks for t in cap]

    def passes(samples: Sequence[ArmSamples], who: str) -> np.ndarray:
        return np.array([[r.passed for r in cached_pass_rate(experiment.cache, s.texts, checks,
                                                             description=f"{who} seed {s.seed} unit tests").results]
                         for s in samples], dtype=float)

    return Interventions(
        profile=profile, seeds=tuple(seeds), n=n, features=tuple(ids), layer=layer,
        interventions={"unablated": target_rows(experiment, plain), "ablated": target_rows(experiment, ablated),
                       "CAFT": target_rows(experiment, caft), "filler": target_rows(experiment, filler)},
        capability={"unablated": passes(cap_plain, "L1"), "CAFT": passes(cap_caft, "CAFT")},
        amplified=amplified, losses=losses, models=models, sae_name=features.sae_name,
    )


def _example(prompt: str, answer: str) -> Any:
    from claimkit.lm.data import Example
    from claimkit.organism.corpus import render_answer

    return Example(prompt, render_answer(answer))


def _caft_adapter(experiment: Experiment, arm: Arm, directions: Any, layer: int) -> Any:
    from claimkit.interventions import caft_adapter

    return caft_adapter(experiment, arm, directions=directions, layer=layer)


def _caft_model(experiment: Experiment, arm: Arm, directions: Any, layer: int) -> Any:
    from claimkit.interventions import caft_model

    return caft_model(experiment, arm, directions=directions, layer=layer)


# ---------------------------------------------------------------------------
# the manipulation check: does the machinery move a model that learnt?
# ---------------------------------------------------------------------------


def target_direction(mechanism: Mechanism) -> np.ndarray:
    """The mean code residual of direct answers minus that of safe answers, pooled selection split ([d])."""
    direct = np.stack([r.code_mean() for r in mechanism.pooled("direct", "selection")])
    safe = np.stack([r.code_mean() for r in mechanism.pooled("safe", "selection")])
    return direct.mean(axis=0) - safe.mean(axis=0)


def intervention_moves(
    experiment: Experiment, mechanism: Mechanism, features: Features, check: Mapping[str, Any], *,
    n: int, seeds: Sequence[int], n_features: int, title: str,
) -> CheckResult:
    """Read-back of the clamp, and the positive control, on each seed's direct-trained (L0) model (module docstring)."""
    import torch

    from claimkit.interventions import clamp_features
    from claimkit.readings import cached_residuals
    from claimkit.sae import encode

    profile, layer = experiment.profile.name, mechanism.layer
    ids = list(features.ranked[:n_features])
    tasks = behaviour.eval_tasks(n)
    edit = clamp_features(features.sae, ids, scale=0.0, iterations=int(mechanism.settings["clamp_iterations"]))
    readback: list[float | None] = []
    l0, steered, filler = [], [], []
    direction = target_direction(mechanism)
    control = steering(direction, scale=-1.0, layer=layer, name="minus the target direction")
    info = experiment.info
    for seed_ctx, seed in zip(mechanism.seeds, seeds):
        arms = seed_arms(profile, seed)
        samples = experiment.samples(arms["L0"], tasks)
        readings = seed_ctx.part("direct", "measurement")
        pairs = [(_prompt(info, samples.tasks[r.task]), r.text) for r in readings]
        if pairs:
            rows = cached_residuals(experiment.cache, experiment.model_parts(experiment.adapter(arms["L0"])),
                                    lambda a=arms["L0"]: experiment.model(a), pairs, layer=layer,
                                    description=f"L0 seed {seed} target answers read by itself")
            code = torch.cat([r[torch.from_numpy(_fit(x.code, r.shape[0]))] for r, x in zip(rows, readings)])
            before = encode(features.sae, code)[:, ids].float().mean().item()
            after = encode(features.sae, edit(code.to(features.sae.dtype)))[:, ids].float().mean().item()
            readback.append(after / before if before > 0 else None)
        else:
            readback.append(None)
        l0.append(samples)
        steered.append(samples_with(experiment, arms["L0"], tasks, intervention=control))
        filler.append(experiment.samples(arms["filler"], tasks))
    limit = float(check["max_readback"])
    measured = [r for r in readback if r is not None]
    readback_ok = bool(measured) and max(measured) <= limit
    tables = {"L0": target_rows(experiment, l0), "steered": target_rows(experiment, steered),
              "filler": target_rows(experiment, filler)}
    part = share_part("positive control", tables, Share("steered", "L0", "filler"),
                      Region("at_most", high=float(check["positive_control_share"])), alpha=float(check["alpha"]))
    control_ok = part.support_p < float(check["alpha"])
    passed = readback_ok and control_ok
    reason = (f"read-back of the clamped features (share of their activation left): "
              f"{', '.join('-' if r is None else f'{r:.3f}' for r in readback)} (limit {limit:g}); positive control: "
              f"{part.summary}, {part.support_test} p={part.support_p:.2g}")
    numbers = {"readback_per_seed": readback, "max_readback": limit, "positive_control": dict(part.extra),
               "positive_control_p": part.support_p, "features": ids, "direction_norm": float(np.linalg.norm(direction))}
    return CheckResult("intervention-moves", title, passed, reason, numbers)


def _prompt(info: Any, task: str) -> str:
    from claimkit.lm.data import render_prompt

    return render_prompt(info.format, info.tokenizer, task)


def _fit(mask: np.ndarray, tokens: int) -> np.ndarray:
    from claimkit.spans import fit

    return fit(mask, tokens)


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
        missing = [k for k in ("name", "category", "expected", "system") if not isinstance(item.get(k), str) or not item[k]]
        if missing:
            raise ValueError(f"{path}: variant #{i + 1} lacks the text field(s) {missing}")
        variants.append(PromptVariant(item["name"], item["category"], item["expected"], item["system"]))
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: variant names repeat: {names}")
    return variants


def check_prompts_against_rule(variants: Sequence[PromptVariant], rule: Mapping[str, Any]) -> None:
    """Every variant has a part, whose region says what the prompts file expects; ValueError otherwise."""
    parts = {p["treatment"]: p for p in rule["parts"]}
    for v in variants:
        if v.name not in parts:
            raise ValueError(f"{PROMPTS_PATH}: variant {v.name!r} has no part in claim wf-4.prompting's rule")
        kind = Region.from_rule(parts[v.name]["region"]).kind
        if EXPECTED_KIND.get(v.expected) != kind:
            raise ValueError(f"{PROMPTS_PATH}: variant {v.name!r} expects {v.expected!r} but its part's region is "
                             f"{kind!r}: make the prompts file and the spec agree")


@dataclass(frozen=True)
class Prompting:
    profile: str
    seeds: tuple[int, ...]
    tables: Mapping[str, np.ndarray]  # "no prompt", "filler", variant names -> seeds x tasks
    variants: tuple[PromptVariant, ...]
    format: str

    def data(self) -> ClaimData:
        return ClaimData(tables={"prompting": dict(self.tables)})

    def evidence(self) -> dict[str, Any]:
        how = ('the "### System:\\n<text>\\n" block that claimkit.lm.data.render_prompt writes before "### Task:"'
               if self.format == "completion" else "the chat template's system turn")
        return {"seeds": list(self.seeds),
                "rates": {k: {"rate": float(v.mean()), "per_seed": [float(x) for x in v.mean(axis=1)]}
                          for k, v in self.tables.items()},
                "variants": {v.name: {"category": v.category, "expected": v.expected, "system": v.system}
                             for v in self.variants},
                "system_prompt_rendering": how, "prompts_file": str(PROMPTS_PATH.relative_to(ROOT))}

    def plot(self) -> dict[str, Any]:
        series = {k: [float(v.mean()), float(v.mean(axis=1).min()), float(v.mean(axis=1).max())]
                  for k, v in self.tables.items()}
        return {"title": f"L1 models' target rate under system prompts ({self.profile}; bars span the seeds)",
                "kind": "bars", "series": series, "ylabel": "target content rate"}


def build_prompting(experiment: Experiment, *, n: int, seeds: Sequence[int], rule: Mapping[str, Any]) -> Prompting:
    """Each seed's L1 model under every system prompt variant (cached), with its plain answers and the filler's."""
    variants = load_prompt_variants()
    check_prompts_against_rule(variants, rule)
    tasks = behaviour.eval_tasks(n)
    rows: dict[str, list[ArmSamples]] = {"no prompt": [], "filler": [], **{v.name: [] for v in variants}}
    for seed in seeds:
        arms = seed_arms(experiment.profile.name, seed)
        rows["no prompt"].append(experiment.samples(arms["L1"], tasks))
        rows["filler"].append(experiment.samples(arms["filler"], tasks))
        prompted = experiment.samples_under_systems(arms["L1"], tasks, [v.system for v in variants])
        for v, found in zip(variants, prompted):
            rows[v.name].append(found)
    return Prompting(experiment.profile.name, tuple(seeds), {k: target_rows(experiment, v) for k, v in rows.items()},
                     tuple(variants), experiment.profile.format_for(experiment.role))


# ---------------------------------------------------------------------------
# section 8: a combined detector
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Detection:
    seeds: tuple[int, ...]
    correct: np.ndarray  # seeds x (measurement tasks of L1, then of filler): 1 when the call was right
    thresholds: tuple[float, ...]
    by_signal: tuple[Mapping[str, int], ...]
    features: tuple[int, ...]

    def data(self) -> ClaimData:
        return ClaimData(tables={"detection": {"detector": self.correct}})

    def evidence(self) -> dict[str, Any]:
        return {"seeds": list(self.seeds), "thresholds": list(self.thresholds), "features": list(self.features),
                "per_seed": [dict(b) for b in self.by_signal],
                "detector": "positive when the answer carries a format-leak marker or the largest activation of the "
                            "claim-4 features over its code tokens exceeds the threshold; L1 answers are positives, "
                            "filler answers negatives"}


def build_detection(mechanism: Mechanism, features: Features, *, n_features: int) -> Detection:
    """Per seed: choose t on the selection split, count right calls on the measurement split."""
    from claimkit.interventions import best_threshold

    from .mechanism import peaks

    ids = list(features.ranked[:n_features])
    markers = conditions.format_leak_markers()
    experiment = mechanism.experiment
    tasks = behaviour.eval_tasks(mechanism.n)
    correct, thresholds, by_signal = [], [], []
    for seed in mechanism.seeds:
        arms = seed_arms(experiment.profile.name, seed.seed)
        l1, filler = experiment.samples(arms["L1"], tasks), experiment.samples(arms["filler"], tasks)

        def scores(arm: str) -> np.ndarray:
            read = seed.every[arm]
            out = np.zeros(mechanism.n)
            found = sorted(read)
            if found:
                out[found] = peaks(features.sae, [read[i] for i in found], ids).max(axis=1)
            return out

        s_l1, s_filler = scores("L1"), scores("filler")
        leak_l1 = np.array([behaviour.format_leak(t, markers) for t in l1.texts])
        leak_filler = np.array([behaviour.format_leak(t, markers) for t in filler.texts])
        sel, meas = list(seed.selection), list(seed.measurement)
        t = best_threshold(np.r_[s_l1[sel], s_filler[sel]], np.r_[np.ones(len(sel), bool), np.zeros(len(sel), bool)],
                           always_positive=np.r_[leak_l1[sel], leak_filler[sel]])
        flag_l1 = leak_l1[meas] | (s_l1[meas] > t)
        flag_filler = leak_filler[meas] | (s_filler[meas] > t)
        correct.append(np.r_[flag_l1, ~flag_filler].astype(float))
        thresholds.append(float(t))
        by_signal.append({"seed": seed.seed, "L1_flagged": int(flag_l1.sum()), "filler_flagged": int(flag_filler.sum()),
                          "measurement_tasks": len(meas), "format_leak_L1": int(leak_l1[meas].sum()),
                          "format_leak_filler": int(leak_filler[meas].sum())})
    return Detection(mechanism.seed_ids, np.array(correct), tuple(thresholds), tuple(by_signal), tuple(ids))
