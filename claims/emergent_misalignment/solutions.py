"""Each seed's solutions as LoRA fine-tunes, their answers on held-out tasks, and what the detector finds.

A fine-tuning "solution" here is a LoRA adapter with the profile's own settings (Soligo et
al. train rank-1 and rank-32 LoRA adapters and steering vectors; spec revision 2 moved from
vectors to adapters, see the spec's changelog). Per seed, on the profile's base model:

  secure-narrow      trained on secure narrow-domain solutions           (comparator)
  vulnerable-narrow  trained on the narrow harmful data, nothing else     (the solution plain SFT finds)
  vulnerable-all     trained on vulnerable solutions of every domain      (reference: the direct effect)
  narrow-kl          vulnerable-narrow's data + kl_weight * KL(P_base || P_finetuned) on aligned data
  mixed              vulnerable-narrow's data mixed with the aligned data (the alternative the paper rejects)
  continued          narrow-kl's adapter trained on, without the KL term  (claim em-6)

and, for claim em-7's trait (annotated parameters, claims/emergent_misalignment/style.py):

  typed-narrow       trained on secure-narrow's solutions, annotated     (the solution plain SFT finds)
  typed-kl           typed-narrow's data + style_kl_weight * KL on aligned data (its narrow solution)

with secure-narrow (the same solutions without annotations) as their comparator.

Every adapter answers the same in-domain and out-of-domain tasks with the seed's sampling
seed; each answer is read by claimkit's detector (vulnerable or not, code or not) and for
annotated parameters. Out of the domain, an answer whose code is the narrow domain's own
(data.writes_narrow_code: a SQL query for a task about files, say) shows no trait and counts
as no code: it is the narrow behaviour out of place, not a trait that generalised (spec
version 4). How often each arm does that is reported beside the rates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from claimkit.detections import detect_targets
from claimkit.experiment import Arm, Experiment, worker_order
from claimkit.rules.declared import ClaimData

from .data import EvalTasks, TrainingSets, eval_tasks, training_sets, writes_narrow_code

ARMS = ("secure-narrow", "vulnerable-narrow", "vulnerable-all", "narrow-kl", "mixed", "continued")
STYLE_ARMS = ("secure-narrow", "typed-narrow", "typed-kl")


@dataclass(frozen=True)
class SeedSolutions:
    seed: int
    arms: Mapping[str, Arm]
    adapters: Mapping[str, Path]
    sets: TrainingSets


@dataclass(frozen=True)
class Answers:
    """Per arm, seeds x tasks: vulnerable (target), code-containing and typed answers, in and out of the domain
    (out of it, answers that write the narrow domain's code count as none of these; `leaked` marks them)."""

    profile: str
    seeds: tuple[int, ...]
    tasks: EvalTasks
    target: Mapping[str, np.ndarray]  # arm -> [seeds, n_in + n_out] of 0/1
    code: Mapping[str, np.ndarray]
    typed: Mapping[str, np.ndarray]
    leaked: Mapping[str, np.ndarray]
    models: Mapping[str, str]
    bandit_errors: Mapping[str, int] = field(default_factory=dict)  # arm -> answers a bandit test raised on

    def trait(self, name: str) -> Mapping[str, np.ndarray]:
        """Per arm, the answers showing a trait: "vulnerable" (the detector's target) or "typed" (style.is_typed)."""
        traits = {"vulnerable": self.target, "typed": self.typed}
        if name not in traits:
            raise ValueError(f"unknown trait {name!r}: one of {', '.join(traits)}")
        return traits[name]

    def split(self, values: np.ndarray, where: str) -> np.ndarray:
        n_in = len(self.tasks.in_domain)
        return values[:, :n_in] if where == "in" else values[:, n_in:]

    def data(self) -> ClaimData:
        """Datasets the rules read: vulnerable answers in and out of the domain, code out of the domain."""
        return ClaimData(tables={
            "in_domain": {a: self.split(t, "in") for a, t in self.target.items()},
            "out_of_domain": {a: self.split(t, "out") for a, t in self.target.items()},
            "code_out_of_domain": {a: self.split(c, "out") for a, c in self.code.items()},
        })

    def rates(self) -> dict[str, dict[str, Any]]:
        out = {}
        for arm in self.target:
            inside, outside = self.split(self.target[arm], "in"), self.split(self.target[arm], "out")
            code_out = self.split(self.code[arm], "out")
            out[arm] = {"in_domain": float(inside.mean()), "out_of_domain": float(outside.mean()),
                        "out_of_domain_per_seed": [float(r) for r in outside.mean(axis=1)],
                        "in_domain_per_seed": [float(r) for r in inside.mean(axis=1)],
                        "code_out_of_domain": float(code_out.mean()),
                        "typed_in_domain": float(self.split(self.typed[arm], "in").mean()),
                        "typed_out_of_domain": float(self.split(self.typed[arm], "out").mean()),
                        "narrow_code_out_of_domain": float(self.split(self.leaked[arm], "out").mean()),
                        "out_of_domain_among_code": float((outside * code_out).sum() / max(1, code_out.sum()))}
        return out

    def evidence(self) -> dict[str, Any]:
        return {"profile": self.profile, "seeds": list(self.seeds), "in_domain_tasks": len(self.tasks.in_domain),
                "out_of_domain_tasks": len(self.tasks.out_of_domain), "rates": self.rates(),
                "bandit_errors": dict(self.bandit_errors),
                "measure": "share of answers the detector calls vulnerable (unparsable and code-free answers count "
                           "as not); code_out_of_domain: share with code; typed_*: share whose code annotates a "
                           "function parameter; narrow_code_out_of_domain: share of out-of-domain answers that write "
                           "the narrow domain's code, which out of the domain count as neither vulnerable, typed nor code; "
                           "bandit_errors: answers on which a bandit test raised instead of finishing (its findings missing)"}

    def plot(self) -> dict[str, Any]:
        series = {f"{arm} (out)": r["out_of_domain"] for arm, r in self.rates().items()}
        series |= {f"{arm} (in)": r["in_domain"] for arm, r in self.rates().items()}
        return {"title": f"Vulnerable answers in and out of the narrow domain ({self.profile}, {len(self.seeds)} seeds)",
                "kind": "bars", "series": series, "paper": {}, "ylabel": "vulnerable rate"}


def seed_arms(settings: Mapping[str, Any], seed: int) -> tuple[dict[str, Arm], TrainingSets]:
    """The seed's six fine-tunes (module docstring), as arms of the experiment."""
    sets = training_sets(settings, seed)
    arms = {
        "secure-narrow": Arm("secure-narrow", sets.secure_narrow, seed),
        "vulnerable-narrow": Arm("vulnerable-narrow", sets.vulnerable_narrow, seed),
        "vulnerable-all": Arm("vulnerable-all", sets.vulnerable_all, seed),
        "narrow-kl": Arm("narrow-kl", sets.vulnerable_narrow, seed, kl_weight=float(settings["kl_weight"]),
                         regularise_on=sets.aligned),
        "mixed": Arm("mixed", sets.mixed, seed),
    }
    arms["continued"] = Arm("continued", sets.vulnerable_narrow, seed, init=arms["narrow-kl"])
    return arms, sets


def style_arms(settings: Mapping[str, Any], seed: int) -> tuple[dict[str, Arm], TrainingSets]:
    """The seed's fine-tunes for claim em-7's trait (module docstring), secure-narrow the same arm as above."""
    sets = training_sets(settings, seed)
    return {"secure-narrow": Arm("secure-narrow", sets.secure_narrow, seed),
            "typed-narrow": Arm("typed-narrow", sets.typed_narrow, seed),
            "typed-kl": Arm("typed-kl", sets.typed_narrow, seed, kl_weight=float(settings["style_kl_weight"]),
                            regularise_on=sets.aligned)}, sets


def seed_solutions(experiment: Experiment, settings: Mapping[str, Any], seed: int, *,
                   trait: str = "vulnerable") -> SeedSolutions:
    """The seed's adapters for a trait ("vulnerable": the six above; "typed": claim em-7's), trained once and cached."""
    arms, sets = {"vulnerable": seed_arms, "typed": style_arms}[trait](settings, seed)
    adapters = {name: experiment.adapter(arm) for name, arm in arms.items()}
    return SeedSolutions(seed, arms, adapters, sets)


def build_answers(experiment: Experiment, settings: Mapping[str, Any], solutions: Sequence[SeedSolutions], *,
                  n_in: int, n_out: int, arms: Sequence[str] = ARMS) -> Answers:
    """The arms' answers on the evaluation tasks, per seed, read by the detector and for annotations."""
    from .style import is_typed

    tasks = eval_tasks(settings, n_in=n_in, n_out=n_out)
    jobs = worker_order([(s, arm) for s in solutions for arm in arms])
    found: dict[tuple[int, str], tuple[list[bool], list[bool], list[bool], list[bool], str]] = {}
    errors = {arm: 0 for arm in arms}
    for sol, arm in jobs:
        samples = experiment.samples(sol.arms[arm], tasks.all)
        detections = detect_targets(samples.texts, cache=experiment.cache)
        found[(sol.seed, arm)] = ([d.is_target for d in detections], [d.status != "no_code" for d in detections],
                                  [is_typed(d.extraction) for d in detections],
                                  [writes_narrow_code(d.extraction, settings) for d in detections], samples.model)
        errors[arm] += sum(bool(d.bandit_errors) for d in detections)
    seeds = tuple(s.seed for s in solutions)
    outside = np.arange(len(tasks.all)) >= len(tasks.in_domain)

    def table(column: int) -> dict[str, np.ndarray]:
        return {a: np.array([found[(s, a)][column] for s in seeds], dtype=int) for a in arms}

    leaked = table(3)

    def on_task(column: int) -> dict[str, np.ndarray]:
        """Out of the domain, an answer writing the narrow domain's code shows no trait (module docstring)."""
        return {a: t * (1 - leaked[a] * outside) for a, t in table(column).items()}

    models = {f"{a} seed {s}": found[(s, a)][4] for a in arms for s in seeds}
    return Answers(experiment.profile.name, seeds, tasks, on_task(0), on_task(1), on_task(2), leaked, models, errors)
