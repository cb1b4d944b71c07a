"""Pilot of the steering-vector settings of the emergent-misalignment analog, on a seed no claim uses.

Looks only at training quantities (the training loss on the narrow data, and the KL term on the
aligned regularisation data), never at an evaluation task: the settings it picks cannot be tuned
to a claim's outcome. Criteria, fixed before running:
  - learning rate and epochs: the cheapest (fewest epochs, then lowest rate) setting whose training
    loss reduction (base loss minus final loss) is at least 90% of the best reduction on the grid.
    (The first run used "final loss within 2% of the best", which is blind to scale: the organism's
    loss on these answers is 0.20 before training and a vector takes 0.02 off it, so 2% of the loss
    is most of what training does. Changed after that run, which showed training losses only.);
  - kl_weight: the smallest weight whose regularisation-set KL is at most a tenth of the
    unregularised vector's, while its training-loss reduction keeps at least half of the
    unregularised one's; where no weight on the grid does both (the organism: at 20 the KL is
    0.11 of it with 0.56 kept, at 30 0.06 with 0.45 kept), the weight with the lowest KL among
    those that keep at least half (a fallback stated after that run, which showed training
    quantities only).

    python bench/em_vector_pilot.py [--profile organism] [--seed 99]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    import numpy as np

    from claimkit.cache import default_cache
    from claimkit.experiment import Experiment
    from claimkit.lm.profiles import load_profile
    from claimkit.spec import load_spec
    from claimkit.steering import VectorConfig, steering_kl, train_vector, vector_losses
    from claims.emergent_misalignment.data import training_sets

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="organism")
    parser.add_argument("--seed", type=int, default=99)
    parser.add_argument("--lrs", default="0.01,0.03,0.1")
    parser.add_argument("--epochs", default="2,4,8")
    parser.add_argument("--kl-weights", default="1,10,20,30,50,100,1000")
    args = parser.parse_args()

    spec = load_spec(ROOT / "fixtures" / "claims" / "archive" / "emergent_misalignment.v1.toml")  # the vector settings
    settings = spec.experiment_for(args.profile)
    experiment = Experiment(load_profile(args.profile, ROOT / "fixtures" / "profiles"), default_cache(ROOT), progress=False)
    loaded = experiment.base
    layer = int(experiment.profile.activations["layer"])
    sets = training_sets(settings, args.seed)
    base_loss = float(np.mean(vector_losses(loaded, sets.vulnerable_narrow, np.zeros(loaded.model.config.hidden_size), layer=layer)))
    texts = [e.prompt + "\n" + e.completion for e in sets.aligned[:64]]
    print(f"{args.profile}, seed {args.seed}, layer {layer}: {len(sets.vulnerable_narrow)} narrow examples, "
          f"base loss {base_loss:.4f}")
    # epochs and lr are what this pilot chooses: placeholders until the grid below sets them
    base_config = VectorConfig.from_settings({**settings["vector"], "layer": layer, "epochs": 1, "lr": 0.01})

    def run(config: VectorConfig, **kw):
        started = time.perf_counter()
        result = train_vector(loaded, sets.vulnerable_narrow, config=config, seed=args.seed, progress=False, **kw)
        v = result.vector.numpy()
        loss = float(np.mean(vector_losses(loaded, sets.vulnerable_narrow, v, layer=layer)))
        kl = float(steering_kl(loaded, texts, v, layer=layer, norms=[float(np.linalg.norm(v))]).mean())
        return loss, kl, float(np.linalg.norm(v)), time.perf_counter() - started

    print("\nlr, epochs: final loss, KL on aligned texts, norm, seconds")
    grid = {}
    for epochs in [int(e) for e in args.epochs.split(",")]:
        for lr in [float(x) for x in args.lrs.split(",")]:
            grid[(epochs, lr)] = run(replace(base_config, lr=lr, epochs=epochs))
            loss, kl, norm, secs = grid[(epochs, lr)]
            print(f"  lr {lr:g}, epochs {epochs}: loss {loss:.4f}  KL {kl:.4f}  norm {norm:.2f}  {secs:.1f} s")
    best = max(base_loss - v[0] for v in grid.values())
    epochs, lr = min((k for k, v in grid.items() if base_loss - v[0] >= 0.9 * best), key=lambda k: (k[0], k[1]))
    loss0, kl0, _, _ = grid[(epochs, lr)]
    print(f"chosen: lr {lr:g}, epochs {epochs} (loss reduction {base_loss - loss0:.4f}; best on the grid {best:.4f})")

    print("\nkl_weight: final loss, loss reduction kept, KL on aligned texts (share of unregularised), norm")
    chosen, fallback = None, None
    for weight in [float(w) for w in args.kl_weights.split(",")]:
        config = replace(base_config, lr=lr, epochs=epochs, kl_weight=weight)
        loss, kl, norm, secs = run(config, regularise_on=sets.aligned)
        kept = (base_loss - loss) / (base_loss - loss0)
        print(f"  {weight:g}: loss {loss:.4f}  kept {kept:.2f}  KL {kl:.4f} ({kl / kl0:.2f})  norm {norm:.2f}  {secs:.1f} s")
        if chosen is None and kl <= 0.1 * kl0 and kept >= 0.5:
            chosen = weight
        if kept >= 0.5 and (fallback is None or kl < fallback[1]):
            fallback = (weight, kl)
    if chosen is None and fallback is not None:
        print(f"no weight keeps half the reduction with a tenth of the KL; fallback: {fallback[0]:g}")
    print(f"chosen kl_weight: {chosen if chosen is not None else (fallback[0] if fallback else None)}")


if __name__ == "__main__":
    main()
