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

Every adapter answers the same in-domain and out-of-domain tasks with the seed's sampling
seed; each answer is read by claimkit's detector (vulnerable or not, code or not).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from claimkit.detections import detect_targets
from claimkit.experiment import Arm, Experiment, worker_order
from claimkit.rules.declared import ClaimData

from .data import EvalTasks, TrainingSets, eval_tasks, training_sets

ARMS = ("secure-narrow", "vulnerable-narrow", "vulnerable-all", "narrow-kl", "mixed", "continued")


@dataclass(frozen=True)
class SeedSolutions:
    seed: int
    arms: Mapping[str, Arm]
    adapters: Mapping[str, Path]
    sets: TrainingSets


@dataclass(frozen=True)
class Answers:
    """Per arm, seeds x tasks: vulnerable (target) and code-containing answers, in and out of the domain."""

    profile: str
    seeds: tuple[int, ...]
    tasks: EvalTasks
    target: Mapping[str, np.ndarray]  # arm -> [seeds, n_in + n_out] of 0/1
    code: Mapping[str, np.ndarray]
    models: Mapping[str, str]

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
                        "out_of_domain_among_code": float((outside * code_out).sum() / max(1, code_out.sum()))}
        return out

    def evidence(self) -> dict[str, Any]:
        return {"profile": self.profile, "seeds": list(self.seeds), "in_domain_tasks": len(self.tasks.in_domain),
                "out_of_domain_tasks": len(self.tasks.out_of_domain), "rates": self.rates(),
                "measure": "share of answers the detector calls vulnerable (unparsable and code-free answers count "
                           "as not); code_out_of_domain: share with code"}

    def plot(self) -> dict[str, Any]:
        series = {f"{arm} (out)": [r["out_of_domain"]] * 3 for arm, r in self.rates().items()}
        series |= {f"{arm} (in)": [r["in_domain"]] * 3 for arm, r in self.rates().items()}
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


def seed_solutions(experiment: Experiment, settings: Mapping[str, Any], seed: int) -> SeedSolutions:
    """The seed's six adapters, trained once and cached."""
    arms, sets = seed_arms(settings, seed)
    adapters = {name: experiment.adapter(arm) for name, arm in arms.items()}
    return SeedSolutions(seed, arms, adapters, sets)


def build_answers(experiment: Experiment, settings: Mapping[str, Any], solutions: Sequence[SeedSolutions], *,
                  n_in: int, n_out: int) -> Answers:
    """Every arm's answers on the evaluation tasks, per seed, read by the detector."""
    tasks = eval_tasks(settings, n_in=n_in, n_out=n_out)
    jobs = worker_order([(s, arm) for s in solutions for arm in ARMS])
    found: dict[tuple[int, str], tuple[list[bool], list[bool], str]] = {}
    for sol, arm in jobs:
        samples = experiment.samples(sol.arms[arm], tasks.all)
        detections = detect_targets(samples.texts, cache=experiment.cache)
        found[(sol.seed, arm)] = ([d.is_target for d in detections], [d.status != "no_code" for d in detections],
                                  samples.model)
    seeds = tuple(s.seed for s in solutions)
    target = {a: np.array([found[(s, a)][0] for s in seeds], dtype=int) for a in ARMS}
    code = {a: np.array([found[(s, a)][1] for s in seeds], dtype=int) for a in ARMS}
    models = {f"{a} seed {s}": found[(s, a)][2] for a in ARMS for s in seeds}
    return Answers(experiment.profile.name, seeds, tasks, target, code, models)
