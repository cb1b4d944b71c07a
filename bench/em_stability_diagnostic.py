"""What the stability study's noise does to each adapter in absolute terms, beside the relative increase em-4 reads.

Claim em-4 decides on the relative loss increase (L_pert - L) / (L_base - L). That ratio can differ
between two adapters only because their gains (L_base - L) differ, if the noise does the same
absolute damage to both. This prints, per seed, each adapter's B norm, weight-change norm, gain,
absolute and relative loss increase, for the noise of spec version 2 (every LoRA parameter, epsilon
0.5, 10 draws) or of the spec's [experiment.stability] (version 3: B matrices, epsilon 0.6-0.9, 3 draws each). It found version 2's
defect: the same absolute damage for both adapters (reports/organism-em-20261207-v3/README.md).
Reads the adapters of a finished run from the cache.

    python bench/em_stability_diagnostic.py [--profile organism] [--noise b|all]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    import numpy as np

    from claimkit.cache import default_cache
    from claimkit.experiment import Experiment
    from claimkit.lm.profiles import load_profile
    from claimkit.spec import load_spec
    from claimkit.steering import orthogonal_noise
    from claims.emergent_misalignment import measures, solutions

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="organism")
    parser.add_argument("--noise", choices=("b", "all"), default="b")
    args = parser.parse_args()

    spec = load_spec(ROOT / "fixtures" / "claims" / "emergent_misalignment.toml")
    settings = spec.experiment_for(args.profile)
    seeds = spec.claims["em-4"].plan(args.profile).seeds
    experiment = Experiment(load_profile(args.profile, ROOT / "fixtures" / "profiles"), default_cache(ROOT), progress=False)
    print(f"{args.profile}, noise on {args.noise}: per adapter |B|, weight change, gain, absolute and relative loss increase")
    for seed in seeds:
        sol = solutions.seed_solutions(experiment, settings, seed)
        space, general, narrow = measures.open_pair(experiment, sol)
        examples = sol.sets.vulnerable_narrow[: int(settings["loss_examples"])]
        base = float(space.losses(examples, [space.with_delta_norm(general, 0.0)]).mean())
        row = []
        for name, x in (("general", general), ("narrow", narrow)):
            trained = float(space.losses(examples, [x]).mean())
            if args.noise == "b":
                plan = settings["stability"]
                moved = measures.stability_points(space, x, [float(e) for e in plan["epsilons"]],
                                                  int(plan["noise_seeds"]), seed)
            else:  # version 2's noise, reproduced as it was
                moved = [orthogonal_noise(x, 0.5, np.random.default_rng([seed, j, 500])) for j in range(10)]
            increase = space.losses(examples, moved).mean(axis=1) - trained
            row.append(f"{name}: |B| {np.linalg.norm(x[space.b_entries]):.3f} weight change {space.delta_norm(x):.3f} "
                       f"gain {base - trained:.4f} absolute {increase.mean():.4f} relative {np.mean(increase / (base - trained)):.3f}")
        print(f"seed {seed}: " + " | ".join(row))


if __name__ == "__main__":
    main()
