"""What the paper measures of a solution: efficiency, stability, influence (sections 4.1-4.3), for LoRA adapters.

Each study compares, per seed, the general solution (vulnerable-narrow: plain training on the
narrow data) with the narrow one (narrow-kl), both read as points of one adapter space
(claimkit.adapter_space), and returns per-seed groups of values that the claim's rule combines
across seeds (claimkit.rules.groups). Claim em-7 runs the same studies on another `Pair`
(typed-narrow and typed-kl, on the annotated data):

  efficiency  per training example: the narrow adapter's loss minus the general one's, both rescaled
              to the same weight-change norms (fractions of the narrow adapter's), in units of the
              narrow adapter's own loss reduction. Positive: the general solution reaches lower loss
              at matched norm.
  stability   per noise draw (epsilon x noise seed): relative loss increase of the narrow adapter minus
              the general one's, (L_pert - L) / (L_base - L), the noise orthogonal to the adapter's B
              matrices and of their norm (the paper's perturbation, on the part of the adapter the weight
              change is linear in; spec version 3).
              Positive: the narrow solution degrades faster.
  influence   per pre-training document: mean KL(P_base || P_adapter) per token with each solution
              rescaled to the same weight-change norms (general, narrow, and the mean over random
              adapters of the same shape).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from claimkit.adapter_space import AdapterSpace
from claimkit.experiment import Experiment
from claimkit.lm.data import Example
from claimkit.rules.declared import ClaimData

from .solutions import SeedSolutions


@dataclass(frozen=True)
class Pair:
    """A trait's general and narrow solutions (arm names) and the training set their losses are read on."""

    general: str
    narrow: str
    examples: str  # a field of data.TrainingSets

    def loss_examples(self, sol: SeedSolutions, settings: Mapping[str, Any]) -> Sequence[Example]:
        return getattr(sol.sets, self.examples)[: int(settings["loss_examples"])]


MISALIGNMENT = Pair("vulnerable-narrow", "narrow-kl", "vulnerable_narrow")
STYLE = Pair("typed-narrow", "typed-kl", "typed_narrow")  # claim em-7


@dataclass(frozen=True)
class Study:
    """Per-seed groups of one dataset, and per-seed summaries for the report."""

    dataset: str
    groups: Sequence[Mapping[str, np.ndarray]]
    summary: Sequence[Mapping[str, Any]]

    def data(self) -> ClaimData:
        return ClaimData(groups={self.dataset: list(self.groups)})


def combined(studies: Sequence[Study]) -> ClaimData:
    """Several studies' groups as one claim's data (claim em-7 decides on all three)."""
    return ClaimData(groups={s.dataset: list(s.groups) for s in studies})


def open_pair(experiment: Experiment, sol: SeedSolutions,
              pair: Pair = MISALIGNMENT) -> tuple[AdapterSpace, np.ndarray, np.ndarray]:
    """The seed's adapter space (opened on the general adapter), its general point and its narrow point."""
    space = AdapterSpace(experiment.base, sol.adapters[pair.general], cache=experiment.cache,
                         model_parts=experiment.base_parts())
    return space, space.trained, space.point_of(sol.adapters[pair.narrow])


def efficiency(experiment: Experiment, solutions: Sequence[SeedSolutions], settings: Mapping[str, Any],
               pair: Pair = MISALIGNMENT) -> Study:
    fractions = [float(f) for f in settings["efficiency"]["norm_fractions"]]
    groups, summary = [], []
    for sol in solutions:
        examples = pair.loss_examples(sol, settings)
        space, general, narrow = open_pair(experiment, sol, pair)
        norm = space.delta_norm(narrow)
        base, own = space.losses(examples, [space.with_delta_norm(narrow, 0.0), narrow])
        scale = float(np.mean(base - own))
        points = [space.with_delta_norm(p, f * norm) for f in fractions for p in (narrow, general)]
        losses = space.losses(examples, points)
        gaps = [losses[2 * k] - losses[2 * k + 1] for k in range(len(fractions))]
        values = np.mean(gaps, axis=0) / scale
        groups.append({"advantage": values})
        summary.append({"seed": sol.seed, "narrow_weight_change": norm, "general_weight_change": space.delta_norm(general),
                        "narrow_loss_reduction": scale, "mean_advantage": float(values.mean()),
                        "loss_gap_by_fraction": {f"{f:g}": float(g.mean()) for f, g in zip(fractions, gaps)}})
    return Study("efficiency", groups, summary)


def stability(experiment: Experiment, solutions: Sequence[SeedSolutions], settings: Mapping[str, Any],
              pair: Pair = MISALIGNMENT) -> Study:
    plan = settings["stability"]
    epsilons, draws = [float(e) for e in plan["epsilons"]], int(plan["noise_seeds"])
    groups, summary = [], []
    for sol in solutions:
        examples = pair.loss_examples(sol, settings)
        space, general, narrow = open_pair(experiment, sol, pair)
        base = float(np.mean(space.losses(examples, [space.with_delta_norm(general, 0.0)])))
        increase: dict[str, np.ndarray] = {}
        for arm, x in ((pair.general, general), (pair.narrow, narrow)):
            moved = stability_points(space, x, epsilons, draws, sol.seed)
            trained = float(np.mean(space.losses(examples, [x])))
            perturbed = space.losses(examples, moved).mean(axis=1)
            increase[arm] = (perturbed - trained) / (base - trained)
        values = increase[pair.narrow] - increase[pair.general]
        groups.append({"narrow_minus_general": values})
        summary.append({"seed": sol.seed, "relative_increase": {a: float(np.mean(v)) for a, v in increase.items()},
                        "by_epsilon": {a: {f"{e:g}": float(np.mean(v[k * draws:(k + 1) * draws]))
                                           for k, e in enumerate(epsilons)} for a, v in increase.items()}})
    return Study("stability", groups, summary)


def stability_points(space: AdapterSpace, x: np.ndarray, epsilons: Sequence[float], draws: int,
                     seed: int) -> list[np.ndarray]:
    """The stability study's perturbed points of `x`: `draws` noise seeds at each epsilon, in that order."""
    return [space.perturb_b(x, e, np.random.default_rng([seed, j, int(round(e * 1000))]))
            for e in epsilons for j in range(draws)]


def influence(experiment: Experiment, solutions: Sequence[SeedSolutions], settings: Mapping[str, Any],
              documents: Sequence[str], pair: Pair = MISALIGNMENT) -> Study:
    plan = settings["influence"]
    fractions = [float(f) for f in plan["norm_fractions"]]
    groups, summary = [], []
    for sol in solutions:
        space, general, narrow = open_pair(experiment, sol, pair)
        scale = 0.5 * (space.delta_norm(general) + space.delta_norm(narrow))
        norms = [f * scale for f in fractions]
        rng = np.random.default_rng(10_000 + sol.seed)
        randoms = [space.random_point(rng) for _ in range(int(plan["random_directions"]))]

        def kl(point: np.ndarray) -> np.ndarray:
            at = [space.with_delta_norm(point, n) for n in norms]
            return space.kl(documents, at, max_length=int(plan["max_tokens"])).mean(axis=0)

        found = {"general": kl(general), "narrow": kl(narrow), "random": np.mean([kl(r) for r in randoms], axis=0)}
        groups.append(found)
        summary.append({"seed": sol.seed, "weight_change_norms": norms, **{k: float(v.mean()) for k, v in found.items()}})
    return Study("influence", groups, summary)


def weight_change_cosines(experiment: Experiment, sol: SeedSolutions) -> dict[str, float]:
    """Cosine of narrow-kl's and of continued's weight change with vulnerable-narrow's (claim em-6 reports them)."""
    space, general, narrow = open_pair(experiment, sol)
    continued = space.point_of(sol.adapters["continued"])
    return {"seed": sol.seed, "narrow_kl": space.delta_cosine(narrow, general),
            "continued": space.delta_cosine(continued, general)}
