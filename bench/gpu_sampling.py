"""Sampling throughput on a GPU: transformers' generate (claimkit's default) against claimkit's fast loop.

    CLAIMKIT_SMOLLM2_GGUF=/path/SmolLM2-135M-Instruct.Q4_1.gguf python bench/gpu_sampling.py
    python bench/gpu_sampling.py --compile          # also the compiled (CUDA graph) decode step
    python bench/gpu_sampling.py --tiny             # CPU smoke test: tiny random Llama, few prompts

One run, SmolLM2-135M-Instruct (profile smollm2-135m, claimkit's loader, bf16 on
CUDA), `--prompts` chat prompts built from the warning-framed claims' held-out
tasks, `--new-tokens` new tokens each at temperature 1, top_p 1:

  1. greedy equality: the fast path against generate on `--greedy-check` prompts
  2. plain generate at batch `--plain-batch` (the current default path)
  3. the fast path at each of `--fast-batches`
  4. a roofline estimate for the same work on the assumed peaks (H200 spec sheet)

Each timed run follows an untimed warm-up. Prints its figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import gpu_common
from claimkit.lm.device import CompileFallbackWarning
from gpu_common import device_line, load_bench_model, peak_memory_gib, reset_peak_memory, synchronize


@dataclass(frozen=True)
class Run:
    label: str
    batch: int
    seconds: float
    new_tokens: int  # real new tokens (eos and padding not counted), as Generation.n_new_tokens
    finished: int  # rows that ended with eos before the limit
    rows: int
    peak_gib: float

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, help="number of prompts (default 1000; 24 with --tiny)")
    parser.add_argument("--new-tokens", type=int, help="new tokens per prompt (default 160; 16 with --tiny)")
    parser.add_argument("--plain-batch", type=int, default=256, help="batch size of the generate path (default 256)")
    parser.add_argument("--fast-batches", default=None, help="comma-separated batch sizes of the fast path (default 1000,512)")
    parser.add_argument("--greedy-check", type=int, default=64, help="prompts compared greedily, fast vs generate (default 64)")
    parser.add_argument("--compile", action="store_true", help="also time the fast path with its compiled decode step")
    parser.add_argument("--skip-plain", action="store_true", help="do not time the generate path (it is the slow one)")
    parser.add_argument("--tiny", action="store_true", help="a tiny random Llama (CPU smoke test) instead of SmolLM2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=["default", "float32", "bfloat16"], default="default",
                        help="model dtype (default: the loader's, bf16 on CUDA); float32 separates bf16 near-ties from bugs")
    parser.add_argument("--greedy-only", action="store_true", help="only the greedy checks, no timed runs")
    parser.add_argument("--profile", action="store_true",
                        help="after the timed runs, profile one fast run (compiled with --compile) at the first fast batch")
    parser.add_argument("--hbm-tbps", type=float, default=gpu_common.H200_HBM_BYTES_PER_S / 1e12, help="assumed HBM TB/s")
    parser.add_argument("--peak-tflops", type=float, default=gpu_common.H200_BF16_FLOP_PER_S / 1e12, help="assumed bf16 TFLOP/s")
    args = parser.parse_args()
    n_prompts = args.prompts or (24 if args.tiny else 1000)
    new_tokens = args.new_tokens or (16 if args.tiny else 160)
    fast_batches = [int(b) for b in (args.fast_batches or ("8,24" if args.tiny else "1000,512")).split(",")]

    print(device_line())
    print(gpu_common.versions_line())
    loaded = load_bench_model(tiny=args.tiny, dtype=None if args.dtype == "default" else args.dtype)
    print(f"model: {loaded.name} on {loaded.device} in {loaded.dtype}, format {loaded.format}, "
          f"attention {getattr(loaded.model.config, '_attn_implementation', '?')}")  # fmt: skip
    prompts = build_prompts(loaded, n_prompts)
    lengths = prompt_lengths(loaded, prompts)
    print(f"prompts: {len(prompts)} chat prompts, {min(lengths)}-{max(lengths)} tokens (mean {sum(lengths) / len(lengths):.0f}); "
          f"{new_tokens} new tokens each, temperature 1, top_p 1")  # fmt: skip

    greedy_check(loaded, prompts[: args.greedy_check], new_tokens, compile=False)
    if args.compile and loaded.device.startswith("cuda"):
        greedy_check(loaded, prompts[: args.greedy_check], new_tokens, compile=True)
    elif args.compile:
        print("note: compile applies on CUDA only; the fast+compile runs below are eager")
    generate_against_itself(loaded, prompts[: args.greedy_check], new_tokens)
    if args.greedy_only:
        return

    timings: list[Run | None] = []
    if not args.skip_plain:
        timings.append(timed(loaded, prompts, new_tokens, args.seed, "generate", args.plain_batch, sampler="generate"))
    for batch in fast_batches:
        timings.append(timed(loaded, prompts, new_tokens, args.seed, "fast", batch, sampler="fast"))
    if args.compile:
        for batch in fast_batches:
            timings.append(timed(loaded, prompts, new_tokens, args.seed, "fast+compile", batch, sampler="fast", compile=True))

    runs = [run for run in timings if run is not None]  # None: a compiled path that fell back, not timed
    print("\nthroughput (new tokens, eos excluded, over wall time incl. prefill; warm-up excluded):")
    for run in runs:
        print(f"  {run.label:<13} batch {run.batch:>5}: {run.new_tokens:>8} tokens in {run.seconds:7.2f} s = "
              f"{run.tokens_per_s:>9.0f} tok/s; {run.finished}/{run.rows} rows ended with eos; peak GPU memory {gib(run.peak_gib)}")  # fmt: skip
    plain = next((r for r in runs if r.label == "generate"), None)
    if plain is not None:
        for run in runs:
            if run is not plain:
                print(f"  ratio {run.label} batch {run.batch} / generate batch {plain.batch}: {run.tokens_per_s / plain.tokens_per_s:.1f}x")

    roofline(loaded, lengths, new_tokens, fast_batches, args.hbm_tbps * 1e12, args.peak_tflops * 1e12, runs)
    if args.profile and args.compile and not any(run.label == "fast+compile" for run in runs):
        print("\nno profile: the compiled step fell back to eager, so a profile would show the eager loop")
    elif args.profile:
        profile_run(loaded, prompts, new_tokens, args.seed, fast_batches[0], compile=args.compile)
    summary = {"device": device_line(), "model": loaded.name, "prompts": len(prompts), "new_tokens": new_tokens,
               "runs": [{"label": r.label, "batch": r.batch, "tok_per_s": round(r.tokens_per_s, 1), "seconds": round(r.seconds, 3),
                         "new_tokens": r.new_tokens, "peak_gib": None if r.peak_gib != r.peak_gib else round(r.peak_gib, 2)} for r in runs]}  # fmt: skip
    print("\nJSON " + json.dumps(summary))


# -- the pieces ------------------------------------------------------------------------------


def build_prompts(loaded: Any, n: int) -> list[str]:
    """`n` rendered chat prompts: the warning-framed claims' held-out tasks (they repeat past ~170 distinct)."""
    from claimkit.lm.data import render_prompt
    from claims.warning_framed import conditions

    tasks = [t.task for t in conditions.eval_set(conditions.load_corpus(), n=n, seed=0)]
    if len(tasks) < n:  # eval_set samples with replacement today; cycle in case that changes
        tasks = [tasks[i % len(tasks)] for i in range(n)]
    return [render_prompt(loaded.format, loaded.tokenizer, task) for task in tasks[:n]]


def prompt_lengths(loaded: Any, prompts: Sequence[str]) -> list[int]:
    from claimkit.lm.data import encode_prompt

    return [len(encode_prompt(loaded.format, loaded.tokenizer, p)) for p in prompts]


def timed(loaded: Any, prompts: Sequence[str], new_tokens: int, seed: int, label: str, batch: int, **how: Any) -> Run | None:
    """One warm-up (untimed), then the timed run of all prompts; None if a compiled path fell back to eager.

    A fallback would time the eager loop under the compiled path's name, and spend
    minutes of GPU time doing it (it did once: an eager FlexAttention reference).
    """
    from claimkit.lm.sample import sample

    kw = dict(max_new_tokens=new_tokens, temperature=1.0, top_p=1.0, seed=seed, batch_size=batch, progress=False, **how)
    # Eager: a short warm-up of the first batch's shape. Compiled: the whole run, so that every
    # batch shape (rows, cache length) is compiled and captured before the timing starts.
    print(f"\n{label} batch {batch}: warm-up ...", flush=True)
    if how.get("compile"):
        _, fallback = watching_for_fallback(lambda: sample(loaded, list(prompts), **kw))
        if fallback:
            print(f"{label} batch {batch}: not timed, the compiled step fell back to eager: {fallback}", flush=True)
            return None
    else:
        sample(loaded, list(prompts[:batch]), **{**kw, "max_new_tokens": min(new_tokens, 8)})
    reset_peak_memory()
    synchronize()
    started = time.perf_counter()
    generations = sample(loaded, list(prompts), **kw)
    synchronize()
    seconds = time.perf_counter() - started
    run = Run(label, batch, seconds, sum(g.n_new_tokens for g in generations), sum(g.finished for g in generations),
              len(generations), peak_memory_gib())  # fmt: skip
    print(f"{label} batch {batch}: {run.tokens_per_s:.0f} tok/s ({run.new_tokens} tokens, {seconds:.2f} s)", flush=True)
    return run


def watching_for_fallback(call: Any) -> tuple[Any, str | None]:
    """`call()`'s result, and the warning of a compiled path that fell back to eager during it, if one did."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = call()
    fallback = None
    for w in caught:
        if fallback is None and issubclass(w.category, CompileFallbackWarning):
            fallback = str(w.message)
        else:  # everything else is shown as it would have been
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return result, fallback


def profile_run(loaded: Any, prompts: Sequence[str], new_tokens: int, seed: int, batch: int, *, compile: bool) -> None:
    """Where one (already warm) fast run spends its time: GPU kernel time against the host's, top operators of each.

    Kernel time well under wall time means the GPU waits on the host (launches,
    Python, syncs); a `cudaGraphLaunch` row means the step replayed a CUDA graph.
    """
    import torch
    from torch.profiler import ProfilerActivity, profile

    from claimkit.lm.sample import sample

    kw = dict(max_new_tokens=new_tokens, temperature=1.0, top_p=1.0, seed=seed, batch_size=batch, progress=False,
              sampler="fast", compile=compile)  # fmt: skip
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    synchronize()
    started = time.perf_counter()
    with profile(activities=activities) as prof:
        generations = sample(loaded, list(prompts), **kw)
        synchronize()
    wall = time.perf_counter() - started
    events = prof.key_averages()
    kernel_us = sum(e.self_device_time_total for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
    steps = max(g.n_new_tokens for g in generations) * -(-len(prompts) // batch)
    label = "fast+compile" if compile else "fast"
    print(f"\nprofile of {label} batch {batch} ({steps} decode steps, profiler on): wall {wall:.2f} s, "
          f"GPU kernels {kernel_us / 1e6:.2f} s ({100 * kernel_us / 1e6 / wall:.0f}% busy), "
          f"{1e3 * wall / steps:.2f} ms wall and {kernel_us / 1e3 / steps:.2f} ms of kernels per step")  # fmt: skip
    if torch.cuda.is_available():
        print(events.table(sort_by="self_device_time_total", row_limit=12))
    print(events.table(sort_by="self_cpu_time_total", row_limit=12))


def greedy_check(loaded: Any, prompts: Sequence[str], new_tokens: int, *, compile: bool) -> None:
    """How many greedy answers of the fast path are token for token generate's (bf16 near-ties may differ)."""
    from claimkit.lm.sample import sample

    kw = dict(max_new_tokens=new_tokens, temperature=0.0, top_p=1.0, seed=0, batch_size=len(prompts), progress=False)
    plain = sample(loaded, list(prompts), sampler="generate", **kw)
    fast, fallback = watching_for_fallback(lambda: sample(loaded, list(prompts), sampler="fast", compile=compile, **kw))
    same = sum(a.token_ids == b.token_ids for a, b in zip(plain, fast))
    diverge = [first_difference(a.token_ids, b.token_ids) for a, b in zip(plain, fast) if a.token_ids != b.token_ids]
    where = f"; differing answers first differ at token {sorted(diverge)}" if diverge else ""
    label = "fast+compile" if compile else "fast"
    if fallback:
        label += " (fell back to eager: these are the eager loop's answers)"
    print(f"greedy equality, {label} vs generate: {same}/{len(prompts)} answers identical{where}", flush=True)


def generate_against_itself(loaded: Any, prompts: Sequence[str], new_tokens: int) -> None:
    """The control for greedy_check: generate at batch 8 against generate at the whole batch.

    Different batching changes padding and kernels, and in bf16 that alone flips
    near-ties; as many differences here as in greedy_check point at numerics, not a bug.
    """
    from claimkit.lm.sample import sample

    kw = dict(max_new_tokens=new_tokens, temperature=0.0, top_p=1.0, seed=0, progress=False, sampler="generate")
    whole = sample(loaded, list(prompts), batch_size=len(prompts), **kw)
    small = sample(loaded, list(prompts), batch_size=min(8, len(prompts)), **kw)
    same = sum(a.token_ids == b.token_ids for a, b in zip(whole, small))
    print(f"greedy equality, generate batch {min(8, len(prompts))} vs generate batch {len(prompts)}: "
          f"{same}/{len(prompts)} answers identical", flush=True)


def gib(value: float) -> str:
    return "n/a" if value != value else f"{value:.1f} GiB"  # NaN off CUDA


def first_difference(a: Sequence[int], b: Sequence[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def roofline(loaded: Any, lengths: Sequence[int], new_tokens: int, batches: Sequence[int], hbm: float, flops: float,
             runs: Sequence[Run]) -> None:  # fmt: skip
    """Lower bounds on the time of the same work: bytes moved / HBM bandwidth and FLOPs / peak, per decode step."""
    config = loaded.model.config
    element = loaded.model.dtype.itemsize if hasattr(loaded.model.dtype, "itemsize") else 2
    layers = config.num_hidden_layers
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    n_matmul = gpu_common.matmul_params(loaded.model)
    kv_per_token = 2 * layers * kv_heads * head_dim * element
    mean_prompt = sum(lengths) / len(lengths)
    print(f"\nroofline (assumed peaks: HBM {hbm / 1e12:.1f} TB/s, dense bf16 {flops / 1e12:.0f} TFLOP/s; "
          f"H200 SXM spec sheet unless --hbm-tbps/--peak-tflops say otherwise):")  # fmt: skip
    print(f"  matmul weights N = {n_matmul / 1e6:.1f} M ({n_matmul * element / 1e6:.0f} MB), KV cache {kv_per_token / 1e3:.1f} kB/token; "
          f"prompts {mean_prompt:.0f} tokens mean, {max(lengths)} max")  # fmt: skip
    print("  per decode step at batch B, context L: bytes = N*elem + B*L*kv; FLOPs = 2*N*B + 4*B*L*layers*heads*head_dim")
    print("  (every row decodes all new tokens; prefill adds 2*N*prompt tokens of FLOPs; context L runs from the prompt to prompt + new)")
    measured: dict[int, list[Run]] = {}
    for r in runs:
        if r.label.startswith("fast"):
            measured.setdefault(r.batch, []).append(r)
    for batch in batches:
        total_rows = len(lengths)
        n_batches = -(-total_rows // batch)
        seconds_bw = seconds_compute = 0.0
        for t in range(new_tokens):
            context = mean_prompt + t  # the tokens a row really attends to
            b = min(batch, total_rows)
            seconds_bw += (n_matmul * element + b * context * kv_per_token) / hbm
            seconds_compute += (2 * n_matmul * b + 4 * b * context * layers * heads * head_dim) / flops
        seconds_bw *= n_batches
        seconds_compute = seconds_compute * n_batches + 2 * n_matmul * sum(lengths) / flops
        bound = max(seconds_bw, seconds_compute)
        work = total_rows * new_tokens
        line = (f"  batch {batch:>5}: memory-bound {seconds_bw * 1e3:8.1f} ms, compute-bound {seconds_compute * 1e3:8.1f} ms "
                f"-> at most {work / bound:,.0f} tok/s for {work} tokens")  # fmt: skip
        static_read = (n_matmul * element + min(batch, total_rows) * (max(lengths) + new_tokens) * kv_per_token) / hbm
        line += f"; the static cache reads all {max(lengths) + new_tokens} slots: {static_read * 1e3:.2f} ms/step"
        for run in measured.get(batch, []):
            line += f"; measured {run.label} {run.tokens_per_s:,.0f} tok/s of real tokens ({100 * run.tokens_per_s * bound / work:.1f}% of the bound)"
        print(line)


if __name__ == "__main__":
    main()
