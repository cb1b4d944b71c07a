"""Pilot of the KL weight of the emergent-misalignment analog's LoRA solutions, on a seed no claim uses.

The LoRA solutions train with the profile's own fine-tuning settings (rank, lr, epochs: nothing
is chosen for them here); only lambda of the narrow-kl arm, SFT loss + lambda x KL(P_base ||
P_finetuned) on the aligned data, needs a value. This looks at training quantities only (the loss on
the narrow training data after training, and the KL on the aligned regularisation data), never at an
evaluation task, so the weight it picks cannot be tuned to a claim's outcome. The criterion is the
one the steering-vector pilot ended with (bench/em_vector_pilot.py), fixed before this ran:
  the smallest weight whose regularisation-set KL is at most a tenth of the unregularised adapter's
  while its training-loss reduction keeps at least half of the unregularised one's; where no weight
  on the grid does both, the weight with the lowest KL among those that keep at least half.
It also picks the noise levels of the stability study (claim em-4) from the unregularised adapter
alone (so not from any comparison a claim makes): of the paper's range (epsilon 0.01 to 1, here
0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1), the levels at which its mean relative loss increase
(L_pert - L) / (L_base - L) over 3 noise draws is between 0.05 and 1: below, noise does nothing to
compare; above, the adapter is worse than no adapter and the ratio measures the noise, not the solution.
The noise is on the B matrices (AdapterSpace.perturb_b, spec version 3); version 2 put it on every LoRA
parameter, and `--noise-on all` reproduces that pilot. With noise on B no level of the first grid
qualified (0.036 at 0.5, 1.04 at 1), so 0.6, 0.7, 0.8 and 0.9 were added, inside the paper's range, with
the criterion unchanged.

    python bench/em_lora_pilot.py [--profile organism] [--seed 99]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    import numpy as np

    from claimkit.adapter_space import AdapterSpace
    from claimkit.cache import default_cache
    from claimkit.experiment import Experiment
    from claimkit.interventions import completion_losses
    from claimkit.lm.finetune import finetune
    from claimkit.lm.profiles import load_profile
    from claimkit.spec import load_spec
    from claims.emergent_misalignment.data import training_sets

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="organism")
    parser.add_argument("--seed", type=int, default=99)
    parser.add_argument("--kl-weights", default="1,3,10,30,100,300,1000")
    parser.add_argument("--noise-on", choices=("b", "all"), default="b", help="LoRA parameters the stability noise moves")
    args = parser.parse_args()

    spec = load_spec(ROOT / "fixtures" / "claims" / "emergent_misalignment.toml")
    settings = spec.experiment_for(args.profile)
    experiment = Experiment(load_profile(args.profile, ROOT / "fixtures" / "profiles"), default_cache(ROOT), progress=False)
    loaded = experiment.base
    hparams = experiment.profile.finetune_hparams()
    sets = training_sets(settings, args.seed)
    texts = [e.prompt + "\n" + e.completion for e in sets.aligned[:64]]

    def mean_loss(model) -> float:
        sums, counts = completion_losses(model, sets.vulnerable_narrow)
        return float(np.sum(sums) / np.sum(counts))

    base_loss = mean_loss(loaded)
    print(f"{args.profile}, seed {args.seed}: {len(sets.vulnerable_narrow)} narrow examples, {len(sets.aligned)} aligned; "
          f"fine-tuning {hparams}; base loss {base_loss:.4f}")

    def run(weight: float) -> tuple[float, float, float, float]:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            kw = {"kl_weight": weight, "regularise_on": sets.aligned} if weight > 0 else {}
            finetune(loaded, sets.vulnerable_narrow, hparams=hparams, seed=args.seed, out_dir=tmp, progress=False, **kw)
            space = AdapterSpace(loaded, tmp)
            loss = mean_loss(space.opened)
            kl = float(space.kl(texts, [space.trained]).mean())
            return loss, kl, space.delta_norm(space.trained), time.perf_counter() - started

    loss0, kl0, norm0, secs = run(0.0)
    print(f"unregularised: loss {loss0:.4f} (reduction {base_loss - loss0:.4f}), KL on aligned texts {kl0:.4f}, "
          f"weight change {norm0:.3f}, {secs:.1f} s")
    print("\nkl_weight: loss, reduction kept, KL on aligned texts (share of unregularised), weight change")
    chosen, fallback = None, None
    for weight in [float(w) for w in args.kl_weights.split(",")]:
        loss, kl, norm, secs = run(weight)
        kept = (base_loss - loss) / (base_loss - loss0)
        print(f"  {weight:g}: loss {loss:.4f}  kept {kept:.2f}  KL {kl:.4f} ({kl / kl0:.2f})  weight change {norm:.3f}  {secs:.1f} s")
        if chosen is None and kl <= 0.1 * kl0 and kept >= 0.5:
            chosen = weight
        if kept >= 0.5 and (fallback is None or kl < fallback[1]):
            fallback = (weight, kl)
    if chosen is None and fallback is not None:
        print(f"no weight keeps half the reduction with a tenth of the KL; fallback: {fallback[0]:g}")
    print(f"chosen kl_weight: {chosen if chosen is not None else (fallback[0] if fallback else None)}")
    stability_levels(loaded, hparams, sets, args.seed, args.noise_on)


def stability_levels(loaded, hparams, sets, seed: int, noise_on: str) -> None:
    import numpy as np

    from claimkit.adapter_space import AdapterSpace
    from claimkit.lm.finetune import finetune
    from claimkit.steering import orthogonal_noise

    examples = sets.vulnerable_narrow[:100]
    with tempfile.TemporaryDirectory() as tmp:
        finetune(loaded, sets.vulnerable_narrow, hparams=hparams, seed=seed, out_dir=tmp, progress=False)
        space = AdapterSpace(loaded, tmp)
        x = space.trained
        base, trained = space.losses(examples, [space.with_delta_norm(x, 0.0), x]).mean(axis=1)
        print(f"\nstability of the unregularised adapter, noise on {noise_on}: base loss {base:.4f}, trained {trained:.4f}")
        kept = []
        for e in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0):
            moved = [space.perturb_b(x, e, np.random.default_rng([seed, j])) if noise_on == "b"
                     else orthogonal_noise(x, e, np.random.default_rng([seed, j])) for j in range(3)]
            rel = (space.losses(examples, moved).mean(axis=1) - trained) / (base - trained)
            print(f"  epsilon {e:g}: relative loss increase {rel.mean():.3f} (draws {', '.join(f'{r:.3f}' for r in rel)})")
            if 0.05 <= rel.mean() <= 1.0:
                kept.append(e)
    print(f"chosen epsilons: {kept}")


if __name__ == "__main__":
    main()
