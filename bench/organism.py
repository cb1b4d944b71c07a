"""Measure the organism on this machine: corpus, model, pretraining, one fine-tune, sampling,
the baseline target rate, and (with --table1) every condition of claim 1 end to end.

    python bench/organism.py              # cold cache in a temp dir: pretrain, fine-tune once, sample
    python bench/organism.py --table1     # ... then all six conditions x seeds at the spec's n
    python bench/organism.py --cache .claimkit-cache --compare-samplers   # generate vs the fast loop, one thread

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
    parser.add_argument("--compare-samplers", action="store_true",
                        help="time generate (batch 100, 200) against the fast loop (batch 200) on one thread, as an "
                             "xdist worker has, and a LoRA fine-tune against a full one")
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

    if args.compare_samplers:
        compare_samplers(experiment, tasks, arms["L0"])

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


def compare_samplers(experiment, tasks, arm) -> None:
    """Seconds to sample `tasks` with each sampler, and to fine-tune `arm` with LoRA and fully, on one thread."""
    import tempfile

    import torch

    from claimkit.lm.data import render_prompt
    from claimkit.lm.finetune import finetune
    from claimkit.lm.sample import sample

    torch.set_num_threads(1)
    base = experiment.base
    prompts = [render_prompt(base.format, base.tokenizer, t) for t in tasks]
    options = experiment.profile.sampling_options()
    for sampler, batch in (("generate", 100), ("generate", 200), ("fast", 200)):
        started = time.perf_counter()
        out = sample(base, prompts, seed=0, progress=False, max_new_tokens=options["max_new_tokens"],
                     temperature=options["temperature"], top_p=options["top_p"], batch_size=batch, sampler=sampler)
        print(f"sampling {sampler} batch {batch}: {time.perf_counter() - started:.2f} s, "
              f"{sum(g.n_new_tokens for g in out)} new tokens ({len(prompts)} tasks, 1 thread)", flush=True)
    for full in (False, True):
        started = time.perf_counter()
        result = finetune(base, arm.examples, hparams=experiment.profile.finetune_hparams(), seed=0,
                          out_dir=tempfile.mkdtemp(prefix="claimkit-bench-ft-"), full=full, progress=False)
        print(f"fine-tune {'full' if full else 'LoRA'}: {time.perf_counter() - started:.2f} s, {result.steps} steps, "
              f"final loss {result.final_loss:.3f} (1 thread)", flush=True)


if __name__ == "__main__":
    main()
