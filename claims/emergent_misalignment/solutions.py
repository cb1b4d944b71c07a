"""Each seed's solutions as steering vectors, their answers on held-out tasks, and what the detector finds.

The paper's cheapest model of a fine-tuning "solution" is one learned vector added to a
layer's residual output (Soligo et al., section 3). Per seed, on the profile's base model:

  secure-narrow      trained on secure narrow-domain solutions           (comparator)
  vulnerable-narrow  trained on the narrow harmful data, nothing else     (the solution plain SFT finds)
  vulnerable-all     trained on vulnerable solutions of every domain      (reference: the direct effect)
  narrow-kl          vulnerable-narrow's data + kl_weight * KL(base || steered) on aligned data
  mixed              vulnerable-narrow's data mixed with the aligned data (the alternative the paper rejects)
  continued          narrow-kl's vector trained on, without the KL term  (claim em-6)

Every vector answers the same in-domain and out-of-domain tasks with the seed's sampling
seed; each answer is read by claimkit's detector (vulnerable or not, code or not).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np

from claimkit.detections import detect_targets
from claimkit.experiment import Arm, Experiment, worker_order
from claimkit.interventions import samples_with, steering
from claimkit.rules.declared import ClaimData
from claimkit.steering import VectorConfig
from claimkit.vector_cache import TrainedVector, cached_vector

from .data import EvalTasks, TrainingSets, eval_tasks, training_sets

ARMS = ("secure-narrow", "vulnerable-narrow", "vulnerable-all", "narrow-kl", "mixed", "continued")


@dataclass(frozen=True)
class SeedSolutions:
    seed: int
    vectors: Mapping[str, TrainedVector]
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


def vector_config(settings: Mapping[str, Any], layer: int, **changes: Any) -> VectorConfig:
    return replace(VectorConfig.from_settings({**settings["vector"], "layer": int(layer)}), **changes)


def seed_solutions(experiment: Experiment, settings: Mapping[str, Any], seed: int) -> SeedSolutions:
    """The seed's six vectors (module docstring), trained once and cached."""
    layer = int(experiment.profile.activations["layer"])
    sets = training_sets(settings, seed)
    plain = vector_config(settings, layer)
    regularised = replace(plain, kl_weight=float(settings["kl_weight"]))

    def train(name: str, examples: Sequence[Any], config: VectorConfig = plain, **kw: Any) -> TrainedVector:
        return cached_vector(experiment, name=name, examples=examples, config=config, seed=seed, **kw)

    vectors = {
        "secure-narrow": train("secure-narrow", sets.secure_narrow),
        "vulnerable-narrow": train("vulnerable-narrow", sets.vulnerable_narrow),
        "vulnerable-all": train("vulnerable-all", sets.vulnerable_all),
        "narrow-kl": train("narrow-kl", sets.vulnerable_narrow, regularised, regularise_on=sets.aligned),
        "mixed": train("mixed", sets.mixed),
    }
    continued = replace(plain, epochs=int(settings["continue_epochs"]))
    vectors["continued"] = train("continued", sets.vulnerable_narrow, continued, init=vectors["narrow-kl"])
    return SeedSolutions(seed, vectors, sets)


def build_answers(experiment: Experiment, settings: Mapping[str, Any], solutions: Sequence[SeedSolutions], *,
                  n_in: int, n_out: int) -> Answers:
    """Every arm's answers on the evaluation tasks, per seed, read by the detector."""
    tasks = eval_tasks(settings, n_in=n_in, n_out=n_out)
    layer = int(experiment.profile.activations["layer"])
    jobs = worker_order([(s, arm) for s in solutions for arm in ARMS])
    found: dict[tuple[int, str], tuple[list[bool], list[bool], str]] = {}
    for sol, arm in jobs:
        vector = sol.vectors[arm]
        samples = samples_with(experiment, Arm("base", (), sol.seed), tasks.all,
                               intervention=steering(vector.vector, scale=1.0, layer=layer, name=arm))
        detections = detect_targets(samples.texts, cache=experiment.cache)
        found[(sol.seed, arm)] = ([d.is_target for d in detections], [d.status != "no_code" for d in detections],
                                  f"{samples.model} + {arm} vector {vector.entry[:12]}")
    seeds = tuple(s.seed for s in solutions)
    target = {a: np.array([found[(s, a)][0] for s in seeds], dtype=int) for a in ARMS}
    code = {a: np.array([found[(s, a)][1] for s in seeds], dtype=int) for a in ARMS}
    models = {f"{a} seed {s}": found[(s, a)][2] for a in ARMS for s in seeds}
    return Answers(experiment.profile.name, seeds, tasks, target, code, models)
