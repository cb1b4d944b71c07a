"""Measure the organism on this machine: corpus, model, pretraining, one fine-tune, sampling,
the baseline target rate, and (with --table1) every condition of claim 1 end to end.

    python bench/organism.py              # cold cache in a temp dir: pretrain, fine-tune once, sample
    python bench/organism.py --table1     # ... then all six conditions x seeds at the spec's n

Prints its figures; asserts nothing. Run on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", help="artifact cache to use (default: a new temp dir, i.e. cold)")
    parser.add_argument("--table1", action="store_true", help="also run every condition and seed of claim 1")
    args = parser.parse_args()

    from claimkit.cache import ArtifactCache
    from claimkit.detect import detect_target, summarise
    from claimkit.experiment import Arm, Experiment
    from claimkit.lm.profiles import load_profile
    from claimkit.organism.build import organism_stats
    from claimkit.spec import load_spec
    from claimkit.stats import proportion_ci
    from claims.warning_framed import behaviour, conditions

    import torch

    cache = ArtifactCache(args.cache or tempfile.mkdtemp(prefix="claimkit-bench-"))
    profile = load_profile("organism", ROOT / "fixtures" / "profiles")
    spec = load_spec(conditions.SPEC_PATH)
    plan = spec.claims["wf-1"].plan("organism")
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads; cache {cache.root}")

    experiment = Experiment(profile, cache)
    started = time.perf_counter()
    base = experiment.base
    build_seconds = time.perf_counter() - started
    stats = organism_stats(Path(base.source))
    print(f"organism: built (corpus + tokenizer + pretraining + save) in {build_seconds:.1f} s")
    print("organism stats:", json.dumps(stats, indent=None, default=str)[:1500])

    tasks = behaviour.eval_tasks(plan.n)
    arms = {arm.name: arm for arm in behaviour.condition_arms("organism", plan.seeds[:1])}

    started = time.perf_counter()
    experiment.adapter(arms["L0"])
    finetune_seconds = time.perf_counter() - started
    print(f"fine-tune: L0 seed {plan.seeds[0]} ({len(arms['L0'].examples)} examples) in {finetune_seconds:.1f} s")

    started = time.perf_counter()
    samples = experiment.samples(Arm("baseline", (), plan.seeds[0]), tasks)
    sample_seconds = time.perf_counter() - started
    tokens = sum(samples.new_tokens)
    print(f"sampling: {len(tasks)} samples, {tokens} new tokens in {sample_seconds:.1f} s "
          f"= {len(tasks) / sample_seconds:.1f} samples/s, {tokens / sample_seconds:.0f} tokens/s")

    summary = summarise(detect_target(t) for t in samples.texts)
    ci = proportion_ci(summary.target, summary.n)
    print(f"baseline target rate: {summary.target}/{summary.n} = {summary.target / summary.n:.1%} "
          f"[{ci.low:.1%}, {ci.high:.1%}] exact 95%; parsed {summary.parsed}, partial {summary.partial}, "
          f"unparsable {summary.unparsable}, no code {summary.no_code}")

    if args.table1:
        started = time.perf_counter()
        table = behaviour.build_table1(experiment, n=plan.n, seeds=plan.seeds)
        seconds = time.perf_counter() - started
        print(f"table 1: {len(table.rows)} conditions x {len(plan.seeds)} seeds x n={plan.n} in {seconds:.1f} s "
              f"(after the above); whole bench {seconds + build_seconds + finetune_seconds + sample_seconds:.1f} s")
        for name in table.rows:
            counts, leak = table.target(name), table.format_leak(name)
            ci = proportion_ci(counts.successes, counts.n)
            print(f"  {name:9s} target {counts.successes:4d}/{counts.n} = {counts.rate:6.1%} [{ci.low:.1%}, {ci.high:.1%}]"
                  f"  format leak {leak.rate:6.1%}")


if __name__ == "__main__":
    main()
