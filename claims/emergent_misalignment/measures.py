"""What the paper measures of a solution as a vector: efficiency, stability, influence (sections 4.1-4.3).

Each study compares, per seed, the general solution (vulnerable-narrow: plain training on the
narrow data) with the narrow one (narrow-kl), and returns per-seed groups of values that the
claim's rule combines across seeds (claimkit.rules.groups):

  efficiency  per training example: the narrow vector's loss minus the general direction's, both
              rescaled to the same norms (fractions of the narrow vector's norm), in units of the
              narrow vector's own loss reduction at its norm. Positive: the general direction reaches
              lower loss at matched norm.
  stability   per noise draw (epsilon x noise seed): relative loss increase of the narrow vector minus
              the general one's, (L_pert - L) / (L_base - L). Positive: the narrow solution degrades faster.
  influence   per pre-training document: mean KL(P_base || P_steered) per token with each unit direction
              added at the same norms (general, narrow, and the mean over random directions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from claimkit.experiment import Experiment
from claimkit.rules.declared import ClaimData
from claimkit.steering import orthogonal_noise, random_directions, steering_kl, vector_losses

from .solutions import SeedSolutions

GENERAL, NARROW = "vulnerable-narrow", "narrow-kl"


@dataclass(frozen=True)
class Study:
    """Per-seed groups of one dataset, and per-seed summaries for the report."""

    dataset: str
    groups: Sequence[Mapping[str, np.ndarray]]
    summary: Sequence[Mapping[str, Any]]

    def data(self) -> ClaimData:
        return ClaimData(groups={self.dataset: list(self.groups)})


def _unit(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, float) / float(np.linalg.norm(v))


def efficiency(experiment: Experiment, solutions: Sequence[SeedSolutions], settings: Mapping[str, Any]) -> Study:
    loaded, layer = experiment.base, int(experiment.profile.activations["layer"])
    fractions = [float(f) for f in settings["efficiency"]["norm_fractions"]]
    groups, summary = [], []
    for sol in solutions:
        examples = sol.sets.vulnerable_narrow[: int(settings["loss_examples"])]
        general, narrow = sol.vectors[GENERAL].vector, sol.vectors[NARROW].vector
        norm = float(np.linalg.norm(narrow))
        base = vector_losses(loaded, examples, np.zeros_like(narrow), layer=layer)
        own = vector_losses(loaded, examples, narrow, layer=layer)
        scale = float(np.mean(base - own))
        gaps = []
        for f in fractions:
            at_narrow = vector_losses(loaded, examples, _unit(narrow) * f * norm, layer=layer)
            at_general = vector_losses(loaded, examples, _unit(general) * f * norm, layer=layer)
            gaps.append(at_narrow - at_general)
        values = np.mean(gaps, axis=0) / scale
        groups.append({"advantage": values})
        summary.append({"seed": sol.seed, "narrow_norm": norm, "general_norm": float(np.linalg.norm(general)),
                        "narrow_loss_reduction": scale, "mean_advantage": float(values.mean()),
                        "loss_gap_by_fraction": {f"{f:g}": float(g.mean()) for f, g in zip(fractions, gaps)}})
    return Study("efficiency", groups, summary)


def stability(experiment: Experiment, solutions: Sequence[SeedSolutions], settings: Mapping[str, Any]) -> Study:
    loaded, layer = experiment.base, int(experiment.profile.activations["layer"])
    plan = settings["stability"]
    epsilons, draws = [float(e) for e in plan["epsilons"]], int(plan["noise_seeds"])
    groups, summary = [], []
    for sol in solutions:
        examples = sol.sets.vulnerable_narrow[: int(settings["loss_examples"])]
        base = float(np.mean(vector_losses(loaded, examples, np.zeros_like(sol.vectors[GENERAL].vector), layer=layer)))
        increase: dict[str, list[float]] = {}
        for arm in (GENERAL, NARROW):
            x = sol.vectors[arm].vector
            trained = float(np.mean(vector_losses(loaded, examples, x, layer=layer)))
            out = []
            for e in epsilons:
                for j in range(draws):
                    rng = np.random.default_rng([sol.seed, j, int(round(e * 1000))])
                    moved = orthogonal_noise(x, e, rng)
                    perturbed = float(np.mean(vector_losses(loaded, examples, moved, layer=layer)))
                    out.append((perturbed - trained) / (base - trained))
            increase[arm] = out
        values = np.asarray(increase[NARROW]) - np.asarray(increase[GENERAL])
        groups.append({"narrow_minus_general": values})
        summary.append({"seed": sol.seed, "relative_increase": {a: float(np.mean(v)) for a, v in increase.items()},
                        "by_epsilon": {a: {f"{e:g}": float(np.mean(v[k * draws:(k + 1) * draws]))
                                           for k, e in enumerate(epsilons)} for a, v in increase.items()}})
    return Study("stability", groups, summary)


def influence(experiment: Experiment, solutions: Sequence[SeedSolutions], settings: Mapping[str, Any],
              documents: Sequence[str]) -> Study:
    loaded, layer = experiment.base, int(experiment.profile.activations["layer"])
    plan = settings["influence"]
    fractions = [float(f) for f in plan["norm_fractions"]]
    groups, summary = [], []
    for sol in solutions:
        general, narrow = sol.vectors[GENERAL].vector, sol.vectors[NARROW].vector
        scale = 0.5 * (float(np.linalg.norm(general)) + float(np.linalg.norm(narrow)))
        norms = [f * scale for f in fractions]

        def kl(direction: np.ndarray) -> np.ndarray:
            return steering_kl(loaded, documents, direction, layer=layer, norms=norms,
                               max_length=int(plan["max_tokens"])).mean(axis=0)

        randoms = random_directions(general.shape[0], int(plan["random_directions"]), seed=10_000 + sol.seed)
        found = {"general": kl(general), "narrow": kl(narrow), "random": np.mean([kl(r) for r in randoms], axis=0)}
        groups.append(found)
        summary.append({"seed": sol.seed, "norms": norms, **{k: float(v.mean()) for k, v in found.items()}})
    return Study("influence", groups, summary)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
