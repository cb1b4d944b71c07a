"""Pilot of the emergent-misalignment analog's KL weight by what the narrow-kl arm still learns in the domain.

Spec version 4 chose each profile's KL weight from training quantities (bench/em_lora_pilot.py:
a tenth of the plain adapter's KL, half its loss reduction kept). On SmolLM2 that weight (3)
kept 0.90 of the loss reduction but only 0.13 of the plain adapter's in-domain vulnerable
effect and 0.14 of its annotation effect (reports/gpu-20261207-smollm2-rerun/): most of a code
fine-tune's loss reduction is the answers' format, not the trait, so the KL arm learned the
format and little of the trait, and the manipulation checks kl-narrows / style-kl-narrows
failed on their in-domain half.

This pilot reads the in-domain half only, on a seed no claim uses and on in-domain tasks of its
own draw (eval split, sampling seed = the pilot seed); it never samples an out-of-domain task,
so it cannot see whether a weight makes the solution narrow, which is what claim em-2 tests.
Criterion, fixed before this ran, per trait (vulnerable code; annotated parameters):
  the largest weight on the grid whose KL arm keeps at least half (the checks' min_in_domain_share)
  of the plain arm's in-domain effect over the comparator (secure-narrow); where none does, the
  smallest weight on the grid, reported as such.
The largest such weight, because the KL term is what makes a solution narrow if anything does
(the paper: lambda about 1e5), and keeping half the in-domain learning is what the checks require.

    python bench/em_kl_pilot.py --profile smollm2-135m --seed 99 --kl-weights 0.03,0.1,0.3,1 [--traits typed]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TRAITS = ("vulnerable", "typed")


def in_domain_rates(experiment, arm, tasks) -> dict[str, float]:
    """Per trait, the share of the arm's in-domain answers that show it (the detector's target; annotated parameters)."""
    from claimkit.detections import detect_targets
    from claims.emergent_misalignment.style import is_typed

    detections = detect_targets(experiment.samples(arm, tasks).texts, cache=experiment.cache)
    return {"vulnerable": sum(d.is_target for d in detections) / len(detections),
            "typed": sum(is_typed(d.extraction) for d in detections) / len(detections)}


def choose(shares: dict[float, float], min_share: float) -> tuple[float, bool]:
    """The criterion (module docstring): (weight, whether it met min_share)."""
    kept = [w for w, s in shares.items() if s >= min_share]
    return (max(kept), True) if kept else (min(shares), False)


def main() -> None:
    from claimkit.cache import default_cache
    from claimkit.experiment import Arm, Experiment
    from claimkit.lm.profiles import load_profile
    from claimkit.organism.corpus import sample_tasks
    from claimkit.spec import load_spec
    from claims.emergent_misalignment.data import Domains, corpus, training_sets

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="organism")
    parser.add_argument("--seed", type=int, default=99)
    parser.add_argument("--kl-weights", default="30,100,300,1000,3000")
    parser.add_argument("--tasks", type=int, default=150, help="in-domain tasks (the suite's n_in on both profiles)")
    parser.add_argument("--traits", default=",".join(TRAITS), help="which traits' weights to pilot (one process each, "
                                                                 "to share a GPU)")
    args = parser.parse_args()

    spec = load_spec(ROOT / "fixtures" / "claims" / "emergent_misalignment.toml")
    settings = spec.experiment_for(args.profile)
    min_shares = {trait: float(spec.checks[check].for_profile(args.profile)["min_in_domain_share"])
                  for trait, check in zip(TRAITS, ("kl-narrows", "style-kl-narrows"))}
    experiment = Experiment(load_profile(args.profile, ROOT / "fixtures" / "profiles"), default_cache(ROOT),
                            progress=False)
    sets = training_sets(settings, args.seed)
    domains = Domains.from_settings(settings, corpus())
    tasks = tuple(i.task for i in sample_tasks(corpus(), n=args.tasks, seed=args.seed, split="eval",
                                               families=domains.narrow))
    weights = [float(w) for w in args.kl_weights.split(",")]
    print(f"{args.profile}, seed {args.seed}: {len(tasks)} in-domain tasks of the pilot's own draw; "
          f"criterion: the largest weight keeping at least {min_shares} of the plain arm's in-domain effect", flush=True)
    data = {"vulnerable": sets.vulnerable_narrow, "typed": sets.typed_narrow}
    started = time.perf_counter()
    comparator_rates = in_domain_rates(experiment, Arm("secure-narrow", sets.secure_narrow, args.seed), tasks)
    for trait in args.traits.split(","):
        comparator = comparator_rates[trait]
        plain = in_domain_rates(experiment, Arm(f"{trait}-plain", data[trait], args.seed), tasks)[trait]
        effect = plain - comparator
        print(f"\n{trait}: secure-narrow {comparator:.3f}, plain {plain:.3f} (effect {effect:+.3f}); "
              f"{time.perf_counter() - started:.0f} s", flush=True)
        shares = {}
        for weight in weights:
            arm = Arm(f"{trait}-kl", data[trait], args.seed, kl_weight=weight, regularise_on=sets.aligned)
            rate = in_domain_rates(experiment, arm, tasks)[trait]
            shares[weight] = (rate - comparator) / effect if effect > 0 else float("nan")
            print(f"  kl_weight {weight:g}: in-domain {rate:.3f}, keeps {shares[weight]:.2f} of the effect; "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
        weight, met = choose(shares, min_shares[trait])
        print(f"chosen {trait} kl_weight: {weight:g}" + ("" if met else " (no weight on the grid keeps "
                                                                       f"{min_shares[trait]}: the smallest)"), flush=True)


if __name__ == "__main__":
    main()
