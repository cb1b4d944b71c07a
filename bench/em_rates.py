"""Every arm's vulnerable rates of the emergent-misalignment analog, read back from the cache after a run.

Prints, per arm, the in-domain and out-of-domain vulnerable rates, the out-of-domain code rate and the
per-seed out-of-domain rates, then each seed's vector norms and training losses. Builds whatever the
cache lacks (the same artifacts `pytest claims/emergent_misalignment` builds).

    python bench/em_rates.py [--profile organism]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from claimkit.cache import default_cache
    from claimkit.experiment import Experiment
    from claimkit.lm.profiles import load_profile
    from claimkit.spec import load_spec
    from claims.emergent_misalignment import solutions

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="organism")
    args = parser.parse_args()
    spec = load_spec(ROOT / "fixtures" / "claims" / "emergent_misalignment.toml")
    plan = spec.claims["em-1"].plan(args.profile)
    settings = spec.experiment_for(args.profile)
    experiment = Experiment(load_profile(args.profile, ROOT / "fixtures" / "profiles"), default_cache(ROOT), progress=False)
    sols = [solutions.seed_solutions(experiment, settings, seed) for seed in plan.seeds]
    answers = solutions.build_answers(experiment, settings, sols, n_in=int(plan.extra["in_domain_tasks"]), n_out=plan.n)
    print("arm: in-domain vulnerable rate | out-of-domain vulnerable rate | out-of-domain code rate | per-seed out-of-domain")
    for arm, r in answers.rates().items():
        per_seed = " ".join(f"{x:.3f}" for x in r["out_of_domain_per_seed"])
        print(f"{arm:18s} {r['in_domain']:.3f} | {r['out_of_domain']:.3f} | {r['code_out_of_domain']:.3f} | {per_seed}")
    print("adapters' final training loss (and KL term, where trained with one):")
    for s in sols:
        records = {k: json.loads((d.parent / "finetune.json").read_text()) for k, d in s.adapters.items()}
        print(s.seed, {k: (round(r["final_loss"], 4), round(r.get("final_kl", 0.0), 5)) for k, r in records.items()})


if __name__ == "__main__":
    main()
