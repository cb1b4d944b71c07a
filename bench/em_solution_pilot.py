"""Can a solution type learn the analog's behaviour at all? The reference effect of each, on a seed no claim uses.

The emergent-misalignment analog compares solutions trained on narrow data; before asking whether
narrow training generalises (claim em-1), a solution type must be able to learn the out-of-domain
behaviour when it is trained on it directly. This bench measures only that: the out-of-domain
vulnerable rate of a solution trained on vulnerable code of every security family (vulnerable-all)
against one trained on secure narrow-domain code (secure-narrow), for a steering vector (the spec's
settings) and for the profile's LoRA fine-tuning. It never trains or samples vulnerable-narrow, so it
cannot show claim em-1's answer. Seed 99 and an evaluation draw (eval seed 8) that no claim reads.

    python bench/em_solution_pilot.py [--profile organism] [--tasks 200]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from claimkit.cache import default_cache
    from claimkit.detections import detect_targets
    from claimkit.experiment import Arm, Experiment
    from claimkit.interventions import samples_with, steering
    from claimkit.lm.profiles import load_profile
    from claimkit.spec import load_spec
    from claimkit.stats import fisher
    from claimkit.vector_cache import cached_vector
    from claims.emergent_misalignment.data import eval_tasks, training_sets
    from claimkit.steering import VectorConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="organism")
    parser.add_argument("--seed", type=int, default=99)
    parser.add_argument("--eval-seed", type=int, default=8)
    parser.add_argument("--tasks", type=int, default=200)
    args = parser.parse_args()

    spec = load_spec(ROOT / "fixtures" / "claims" / "archive" / "emergent_misalignment.v1.toml")  # the vector settings
    settings = {**spec.experiment_for(args.profile), "eval_seed": args.eval_seed}
    experiment = Experiment(load_profile(args.profile, ROOT / "fixtures" / "profiles"), default_cache(ROOT), progress=False)
    sets = training_sets(settings, args.seed)
    tasks = eval_tasks(settings, n_in=1, n_out=args.tasks).out_of_domain
    layer = int(experiment.profile.activations["layer"])
    vector_settings = VectorConfig.from_settings({**settings["vector"], "layer": layer})

    def rate(texts) -> tuple[int, int]:
        found = detect_targets(texts, cache=experiment.cache)
        return sum(d.is_target for d in found), len(found)

    print(f"{args.profile}, seed {args.seed}: out-of-domain vulnerable rate on {len(tasks)} held-out tasks (eval seed {args.eval_seed})")
    for kind in ("steering vector", "LoRA"):
        counts = {}
        started = time.perf_counter()
        for name, examples in (("secure-narrow", sets.secure_narrow), ("vulnerable-all", sets.vulnerable_all)):
            if kind == "LoRA":
                samples = experiment.samples(Arm(f"em-{name}", tuple(examples), args.seed), tasks)
            else:
                vector = cached_vector(experiment, name=name, examples=examples, config=vector_settings,
                                       seed=args.seed)
                samples = samples_with(experiment, Arm("base", (), args.seed), tasks,
                                       intervention=steering(vector.vector, scale=1.0, layer=layer, name=name))
            counts[name] = rate(samples.texts)
        (a, n), (b, m) = counts["vulnerable-all"], counts["secure-narrow"]
        p = fisher(a, n, b, m, "greater").p_value
        print(f"  {kind:15s} vulnerable-all {a}/{n} vs secure-narrow {b}/{m}: {100 * (a / n - b / m):+.1f} points "
              f"(one-sided Fisher p={p:.2g}); {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
