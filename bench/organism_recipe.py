"""Choose the organism's recipe by its manipulation check: does direct training teach?

For one candidate recipe (the organism profile with some [organism] and [finetune]
settings overridden) this builds the organism, fine-tunes the direct arm (L0) and the
fine-tuned comparator (filler) for each seed, samples them and the untrained model on
the held-out evaluation tasks, and prints per seed and arm:

  target   outputs that are target content (claimkit.detect)
  code     outputs with a fenced code block
  on task  outputs whose code is nearest the asked task's family (template words)

and the direct arm's learning, L0 - filler, with its one-sided Fisher p per seed. It
looks only at the direct arm and the comparators, never at an arm a claim compares
(issue 21): a recipe is chosen by whether direct training teaches, not by a verdict.

    python bench/organism_recipe.py --cache /tmp/recipe-a
    python bench/organism_recipe.py --cache /tmp/recipe-b --organism pretraining_phrasings=train,eval
    python bench/organism_recipe.py --cache /tmp/recipe-b --organism pretraining_phrasings=train,eval \\
        --finetune epochs=3 --seeds 0 1 2 --n 200

Prints its figures and the seconds each stage took; asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

ARMS = ("L0", "filler")  # the direct arm and the fine-tuned comparator; "baseline" is sampled too


def overrides(pairs: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs as TOML-ish values: ints, floats, true/false, comma lists, else strings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if not key or not _:
            raise SystemExit(f"override {pair!r} is not KEY=VALUE")
        out[key] = _value(value)
    return out


def _value(text: str) -> Any:
    if "," in text:
        return [_value(part) for part in text.split(",")]
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def candidate_profile(organism: dict[str, Any], finetune: dict[str, Any]) -> Any:
    from claimkit.lm.profiles import load_profile

    base = load_profile("organism", ROOT / "fixtures" / "profiles")
    raw = {**base.raw, "organism": {**base.raw["organism"], **organism}}
    return dataclasses.replace(base, raw=raw, finetune={**base.finetune, **finetune})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True, help="artifact cache (a fresh directory: a cold build)")
    parser.add_argument("--organism", nargs="*", default=[], metavar="KEY=VALUE", help="[organism] overrides")
    parser.add_argument("--finetune", nargs="*", default=[], metavar="KEY=VALUE", help="[finetune] overrides")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--n", type=int, default=200, help="held-out evaluation tasks per arm and seed")
    args = parser.parse_args()

    import torch

    from claimkit.cache import ArtifactCache
    from claimkit.detect import detect_target
    from claimkit.experiment import Arm, Experiment
    from claimkit.organism.build import organism_stats
    from claimkit.stats import fisher, proportion_ci
    from claims.warning_framed import behaviour, conditions
    from organism_pretrain import FENCE, family_words, nearest_family

    organism, finetune = overrides(args.organism), overrides(args.finetune)
    profile = candidate_profile(organism, finetune)
    cache = ArtifactCache(args.cache)
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}; load {os.getloadavg()[0]:.2f}; cache {cache.root}")
    print(f"recipe: [organism] {organism or 'as in the profile'}; [finetune] {finetune or 'as in the profile'}")
    experiment = Experiment(profile, cache, progress=False)

    started = time.perf_counter()
    base = experiment.base
    stats = organism_stats(Path(base.source))["pretraining"]
    print(f"organism: {time.perf_counter() - started:.1f} s to build or load ({stats['seconds']} s pretraining on "
          f"{stats['threads']} threads, {stats['params']:,} parameters, final loss {stats['final_loss']})", flush=True)

    templates = conditions.load_corpus()
    instances = conditions.eval_set(templates, n=args.n, seed=int(conditions.experiment_settings("organism")["eval_seed"]))
    tasks = [i.task for i in instances]
    words = family_words()
    settings = conditions.experiment_settings("organism")

    def arm(name: str, seed: int) -> Arm:
        if name == "baseline":
            return Arm("baseline", (), seed)
        examples = conditions.build_condition(name, templates, n_examples=settings["train_examples"],
                                              fraction=settings["condition_fraction"], seed=seed)
        return Arm(name, tuple(examples), seed)

    def measure(texts: tuple[str, ...]) -> tuple[int, int, int]:
        target = code = on_task = 0
        for inst, text in zip(instances, texts):
            target += detect_target(text).is_target
            block = FENCE.search(text)
            code += bool(block)
            on_task += bool(block) and nearest_family(block.group(1), words) == inst.family
        return target, code, on_task

    print(f"{'seed':>4} {'arm':>9} {'target':>16} {'code':>5} {'on task':>7} {'fine-tune s':>11} {'sample s':>8}")
    for seed in args.seeds:
        rates = {}
        for name in ("baseline", *ARMS):
            a = arm(name, seed)
            t0 = time.perf_counter()
            experiment.adapter(a)
            t1 = time.perf_counter()
            samples = experiment.samples(a, tasks)
            t2 = time.perf_counter()
            target, code, on_task = measure(samples.texts)
            rates[name] = target
            ci = proportion_ci(target, args.n)
            print(f"{seed:>4} {name:>9} {target:>4}/{args.n} {target / args.n:5.1%} [{ci.low:.0%},{ci.high:.0%}] "
                  f"{code:>5} {on_task:>7} {t1 - t0:>11.1f} {t2 - t1:>8.1f}", flush=True)
        test = fisher(rates["L0"], args.n, rates["filler"], args.n, "greater")
        print(f"{seed:>4} L0 - filler = {(rates['L0'] - rates['filler']) / args.n:+.1%} (one-sided Fisher p={test.p_value:.2g})"
              f"; L0 - baseline = {(rates['L0'] - rates['baseline']) / args.n:+.1%}", flush=True)


if __name__ == "__main__":
    main()
