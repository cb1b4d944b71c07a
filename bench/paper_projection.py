"""What the paper profile's whole warning-framed suite would cost, from bench/paper_cost.py's per-unit figures.

    python bench/paper_projection.py cost.json                    # cost.json: paper_cost.py --variants --json on a GPU
    python bench/paper_projection.py cost.json --json projection.json

RANDOM-WEIGHT FIGURES, PROJECTED. The seconds per unit are measured on random stand-ins of
the paper's models (same shapes, same code); how many units the suite runs is counted here
from the spec's paper plan and from what the claims' code builds per seed (`plan_units`,
each line naming where it comes from). Nothing is run here and nothing is decided.

A unit's cost, from the figures:
  fine-tune   steps x seconds per step at the real tokenizers' step shape (paper_cost's
              max_length-192 variant; 16 examples of ~200 real tokens after padding), plus
              the copy-and-save overhead each fine-tune pays (wall - loop of the measured one)
  sampling    batches x seconds per batch of the profile's size (random weights end no
              answer, so every batch runs to max_new_tokens: an upper bound; real answers that
              all end early cost less); a part batch costs a whole one
  reading     texts x seconds per text (byte tokens, ~3.7 per real token: an upper bound)

On eight GPUs the units spread over eight workers, one per GPU (several workers sharing a
GPU were measured with SmolLM2 only), bounded below by what must run in order: an arm's
fine-tune and sampling, the reading of a seed's contexts (claim 4's features need them),
then the CAFT fine-tune and its samplings on the mechanism model. Claim 4's CAFT, ablation
and capability work is counted in full, though it runs only when claim 4's checks pass.
The bandit detections and sandboxed unit tests run on the CPU beside the GPU work and are
not counted.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

SESSION_S = 30 * 60  # the GPU time one session of this project may hold
BANNER = "!!! PROJECTED from RANDOM-WEIGHT stand-ins: costs of the paper profile's shapes, no verdict !!!"


@dataclass(frozen=True)
class Plan:
    """The paper profile's sizes, read from the spec and the profile."""

    seeds: int
    n: int  # held-out tasks per sampling
    capability_tasks: int
    train_examples: int
    epochs: int
    train_batch: int
    sampling_batch: int
    trained_arms: int  # Table 1's fine-tuned conditions
    sampled_arms: int  # and the untrained baseline
    system_prompts: int
    amplify_scales: int


Samplings = tuple[tuple[int, int], ...]  # (how many samplings, prompts in each)


@dataclass(frozen=True)
class Units:
    """How many of each unit the suite runs on each model."""

    behaviour_finetunes: int
    behaviour_samplings: Samplings
    mechanism_finetunes: int
    mechanism_samplings: Samplings
    mechanism_texts: int

    @property
    def behaviour_prompts(self) -> int:
        return sum(count * prompts for count, prompts in self.behaviour_samplings)

    @property
    def mechanism_prompts(self) -> int:
        return sum(count * prompts for count, prompts in self.mechanism_samplings)


def read_plan() -> Plan:
    """The paper profile's plan, read through the spec loader the claims use (claimkit.spec)."""
    from claimkit.lm.profiles import load_profile
    from claimkit.spec import load_spec
    from claims.warning_framed.conditions import SPEC_PATH
    from claims.warning_framed.feature_interventions import AMPLIFY, load_prompt_variants

    spec = load_spec(SPEC_PATH)
    profile = load_profile("paper", ROOT / "fixtures" / "profiles")
    table1, claim4 = spec.claims["wf-1"].plan("paper"), spec.claims["wf-4"].plan("paper")
    experiment = spec.experiment_for("paper")
    conditions = experiment["conditions"]
    hparams = profile.finetune_hparams()
    return Plan(seeds=len(table1.seeds), n=table1.n, capability_tasks=int(claim4.extra["capability_tasks"]),
                train_examples=int(experiment["train_examples"]),
                epochs=int(hparams["epochs"]), train_batch=int(hparams["batch_size"]),
                sampling_batch=int(profile.sampling_options()["batch_size"]),
                trained_arms=len([c for c in conditions if c != "baseline"]), sampled_arms=len(conditions),
                system_prompts=len(load_prompt_variants()), amplify_scales=len(AMPLIFY))  # fmt: skip


def plan_units(p: Plan) -> Units:
    """Per seed, what the claims build on each model of the paper profile (behaviour: Llama; mechanism: Gemma)."""
    return Units(
        # claims/warning_framed/behaviour.py: every trained condition, every seed (Table 1, claims 1-3, 5)
        behaviour_finetunes=p.trained_arms * p.seeds,
        # Table 1's arms and baseline on the held-out tasks, and claim 5's L0 with the preamble prefilled
        # (mechanism.py: build_stealth_study); wf-4.prompting: L1 under every system prompt, one sampling per seed
        behaviour_samplings=(((p.sampled_arms + 1) * p.seeds, p.n), (p.seeds, p.system_prompts * p.n)),
        # feature_interventions.py: the mechanism Experiment fine-tunes L0 (intervention_moves), L1, filler and CAFT
        mechanism_finetunes=4 * p.seeds,
        # intervention_moves: L0, L0 steered, filler; intervention_experiment: L1, ablated, CAFT on the tasks,
        # L1 and CAFT on the capability tasks, and the amplified clamps on the first seed
        mechanism_samplings=((6 * p.seeds + p.amplify_scales, p.n), (2 * p.seeds, p.capability_tasks)),
        # mechanism.py: the direct, warning and safe contexts and the preamble answers (at most n each), L0 read by
        # itself (intervention_moves), and the held-out losses of L1 and CAFT on the capability answers
        mechanism_texts=5 * p.n * p.seeds + 2 * p.capability_tasks * p.seeds,
    )


def figure(cost: dict[str, Any], phase: str, key: str) -> float:
    if phase not in cost or key not in cost[phase]:
        raise SystemExit(f"cost file has no {phase}.{key}: run bench/paper_cost.py --variants on a GPU "
                         f"(a phase out of memory or out of budget has no figures)")  # fmt: skip
    return float(cost[phase][key])


def finetune_seconds(cost: dict[str, Any], phase: str, p: Plan) -> float:
    """One fine-tune of the plan: its steps at the measured real-shape seconds per step, plus its save overhead."""
    steps = math.ceil(p.train_examples / p.train_batch) * p.epochs
    overhead = figure(cost, phase, "wall_seconds") - figure(cost, phase, "loop_seconds")
    return steps * figure(cost, phase, "seconds_per_step") + overhead


def sampling_seconds_per_batch(cost: dict[str, Any], phase: str, p: Plan) -> float:
    """Seconds per batch of the profile's size (every answer run to max_new_tokens, so a part batch costs as much)."""
    measured = int(figure(cost, phase, "prompts"))
    return figure(cost, phase, "seconds") / math.ceil(measured / p.sampling_batch)


def sampling_seconds(samplings: Samplings, per_batch: float, p: Plan) -> float:
    return sum(count * math.ceil(prompts / p.sampling_batch) * per_batch for count, prompts in samplings)


def project(cost: dict[str, Any], gpus: int = 8) -> dict[str, Any]:
    plan = read_plan()
    units = plan_units(plan)
    ft_b = finetune_seconds(cost, "variant_max_length_192", plan)
    ft_m = finetune_seconds(cost, "finetune_mechanism_real_shape", plan)
    sample_b = sampling_seconds_per_batch(cost, "sampling", plan)  # the profile's own sampler: what a run uses
    sampler = cost["sampling"].get("options", {}).get("sampler", "the profile's sampler")
    sample_m = sampling_seconds_per_batch(cost, "sampling_mechanism", plan)
    read = figure(cost, "residuals", "seconds_per_text") + figure(cost, "sae_encode", "seconds_per_text")
    parts = {
        "behaviour fine-tunes": units.behaviour_finetunes * ft_b,
        f"behaviour sampling ({sampler})": sampling_seconds(units.behaviour_samplings, sample_b, plan),
        "mechanism fine-tunes": units.mechanism_finetunes * ft_m,
        f"mechanism sampling ({sampler})": sampling_seconds(units.mechanism_samplings, sample_m, plan),
        "mechanism readings": units.mechanism_texts * read,
        "model loads": figure(cost, "load_behaviour", "seconds") + figure(cost, "load_mechanism", "seconds"),
    }
    one_gpu = sum(parts.values())
    # what must run in order, whatever the GPUs: an arm's fine-tune and sampling, the reading of a seed's three
    # contexts (the features need them), then the CAFT fine-tune and its samplings on the tasks and capability tasks
    chain = (ft_b + sampling_seconds(((1, plan.n),), sample_b, plan) + 3 * plan.n * read + ft_m
             + sampling_seconds(((1, plan.n), (1, plan.capability_tasks)), sample_m, plan))  # fmt: skip
    many = {"gpus": gpus, "seconds": max(one_gpu / gpus, chain), "longest_chain_s": chain}
    counted = {**asdict(units), "behaviour_prompts": units.behaviour_prompts, "mechanism_prompts": units.mechanism_prompts}
    return {"random_weights": True, "warning": BANNER, "plan": asdict(plan), "units": counted,
            "per_unit": {"behaviour_finetune_s": ft_b, "mechanism_finetune_s": ft_m,
                         "behaviour_sampling_s_per_batch": sample_b, "mechanism_sampling_s_per_batch": sample_m,
                         "reading_s_per_text": read},
            "parts_s": parts, "one_gpu_s": one_gpu, "many_gpus": many, "session_s": SESSION_S,
            "sessions_on_one_gpu": one_gpu / SESSION_S, "gpu": cost.get("run", {}).get("gpu")}  # fmt: skip


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cost", type=Path, help="bench/paper_cost.py --variants --json output, measured on a GPU")
    parser.add_argument("--gpus", type=int, default=8, help="the multi-GPU projection (default 8)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the projection as JSON")
    args = parser.parse_args()
    if not args.cost.is_file():
        parser.error(f"{args.cost}: no such file")
    if args.gpus < 1:
        parser.error(f"--gpus {args.gpus}: at least one GPU")
    cost = json.loads(args.cost.read_text(encoding="utf-8"))
    if cost.get("run", {}).get("gpu") is None:
        print("warning: these figures were not measured on a GPU; the projection is for that device", file=sys.stderr)
    out = project(cost, gpus=args.gpus)
    print(BANNER)
    print(f"measured on: {out['gpu'] or cost.get('run', {}).get('device_line')}")
    print("plan: " + ", ".join(f"{k} {v}" for k, v in out["plan"].items()))
    print("units: " + ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in out["units"].items()))
    for name, seconds in out["parts_s"].items():
        print(f"  {name:<34}{seconds:>10,.0f} s  {hours(seconds)}")
    print(f"one GPU: {out['one_gpu_s']:,.0f} s ({hours(out['one_gpu_s'])}), {out['sessions_on_one_gpu']:.1f} sessions of "
          f"{SESSION_S // 60} min")  # fmt: skip
    many = out["many_gpus"]
    print(f"{many['gpus']} GPUs: {many['seconds']:,.0f} s ({hours(many['seconds'])}); a seed's longest chain "
          f"{many['longest_chain_s']:,.0f} s")  # fmt: skip
    print(BANNER)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
