"""LoRA fine-tuning throughput and MFU on a GPU: a 3B-shaped Llama, and SmolLM2-135M through claimkit's loop.

    CLAIMKIT_SMOLLM2_GGUF=/path/SmolLM2-135M-Instruct.Q4_1.gguf python bench/gpu_finetune.py
    python bench/gpu_finetune.py --tiny      # CPU smoke test: tiny models, a few steps

(a) A randomly initialised Llama-3.2-3B-shaped model (hidden 3072, 28 layers, 24
    heads, 8 KV heads, intermediate 8192, vocab 128256; no weights needed) in
    bf16, SDPA attention without its cuDNN backend (as claimkit runs it:
    claimkit.lm.device.reproducible_attention) and forward and backward in torch's
    deterministic mode (as claimkit fine-tunes on a GPU: claimkit.lm.device.deterministic_kernels;
    `--nondeterministic` leaves it off), no gradient checkpointing, LoRA r=16 on every linear
    projection, fused AdamW, `--batch` sequences of `--seq` tokens per optimizer
    step (micro-batches of `--micro-batch`, halved on out-of-memory, with
    gradient accumulation): tokens/s, MFU and peak GPU memory over `--steps`
    timed steps after `--warmup` untimed ones; with LoRA weights in fp32 (peft's
    default, what claimkit trains), in fp32 under `[finetune] mixed_precision`
    (bf16 autocast, peft's input casting off: claimkit.lm.finetune.mixed_precision)
    and in bf16; with `--compile` also through
    torch.compile as `[finetune] compile = true` runs it. First, unless
    `--skip-configured`, one run at the paper profile's own [finetune] and [lora]
    settings (fixtures/profiles/paper.toml: batch 16 of max_length 512, LoRA
    dropout, fp32 LoRA weights, its mixed_precision): its peak GPU memory is what
    the profile needs.
(b) SmolLM2-135M-Instruct (profile smollm2-135m, claimkit's loader) fine-tuned
    on warning-framed L1 examples by `claimkit.lm.finetune.finetune` and by a
    plain peft loop of the same shape (same examples, order-free batches of the
    same size, same right padding, LoRA and AdamW settings), each after a
    warm-up: tokens/s of each. The plain loop is timed twice: at its leanest
    (batches on the GPU before timing, the timed model warmed up itself) and as
    claimkit's loop is timed (a fresh model, each batch collated in the loop); with `--compile` also claimkit's loop with
    `compile = true` (its timing includes compiling, as a claim's fine-tune would).

MFU counts, per token, 4*N_base + 6*N_lora + 12*L*S*d_attn FLOPs: the frozen base's
matmul weights N_base (lm_head included) do a forward (2N) and an activation-gradient
backward (2N) but no weight gradient; the LoRA weights do all three (6N); attention
scores and values (no weights) take 4*S*d_attn per layer forward and twice that
backward, S x S counted in full as in PaLM's appendix B (causal attention executes
about half). Peak: `--peak-tflops` (H200 SXM dense bf16 spec, 989). Prints figures,
asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import gc
import importlib
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import gpu_common
from gpu_common import device_line, load_bench_model, peak_memory_gib, reset_peak_memory, synchronize

LLAMA_3B = dict(
    hidden_size=3072, num_hidden_layers=28, num_attention_heads=24, num_key_value_heads=8,
    intermediate_size=8192, vocab_size=128256, head_dim=128, tie_word_embeddings=True,
    max_position_embeddings=8192, rope_theta=500000.0, rms_norm_eps=1e-5,
)  # fmt: skip
TINY_LLAMA = dict(
    hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    intermediate_size=128, vocab_size=512, head_dim=16, tie_word_embeddings=True, max_position_embeddings=512,
)  # fmt: skip
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny models on the CPU (smoke test)")
    parser.add_argument("--batch", type=int, help="(a) sequences per optimizer step (default 64)")
    parser.add_argument("--seq", type=int, help="(a) tokens per sequence (default 512)")
    parser.add_argument("--micro-batch", type=int, help="(a) first micro-batch to try (default 32; halved on OOM)")
    parser.add_argument("--steps", type=int, help="(a) timed optimizer steps (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="(a) untimed optimizer steps first (default 2)")
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-dtype", default="fp32,mixed,bf16",
                        help="(a) comma-separated: fp32 (peft's default), mixed (fp32 weights, bf16 autocast as "
                             "[finetune] mixed_precision), bf16 (default all three)")
    parser.add_argument("--examples", type=int, help="(b) fine-tuning examples (default 640)")
    parser.add_argument("--smol-batches", help="(b) comma-separated batch sizes (default 16,64; 16 is the profile's)")
    parser.add_argument("--repeats", type=int, default=1, help="(b) timed rounds per batch size; medians are compared (default 1)")
    parser.add_argument("--compile", action="store_true", help="also time the compiled step (claimkit's [finetune] compile = true)")
    parser.add_argument("--skip-configured", action="store_true", help="(a) skip the run at the paper profile's own settings")
    parser.add_argument("--skip-eager", action="store_true", help="(a) time only the compiled step (with --compile)")
    parser.add_argument("--skip-3b", action="store_true", help="skip part (a)")
    parser.add_argument("--skip-smollm2", action="store_true", help="skip part (b)")
    parser.add_argument("--nondeterministic", action="store_true",
                        help="(a) kernels as torch picks them, not claimkit's deterministic ones (to see what those cost)")
    parser.add_argument("--profile", action="store_true",
                        help="(a) after each timed run, profile one more step: GPU kernel time by kind and the top kernels")
    parser.add_argument("--peak-tflops", type=float, default=gpu_common.H200_BF16_FLOP_PER_S / 1e12)
    args = parser.parse_args()
    tiny = args.tiny
    peak = args.peak_tflops * 1e12

    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        from claimkit.lm.device import reproducible_attention

        reproducible_attention()  # what loading a model onto a GPU does in claimkit, before every fine-tune
    print(device_line())
    print(gpu_common.versions_line())
    print(f"attention: SDPA, cuDNN backend {'on' if torch.backends.cuda.cudnn_sdp_enabled() else 'off (as claimkit runs)'}")
    print(f"assumed peak: {args.peak_tflops:.0f} TFLOP/s dense bf16 (H200 SXM spec sheet unless --peak-tflops)")
    print("MFU FLOPs per token = 4*N_base + 6*N_lora + 12*layers*S*d_attn  (N: matmul weights, lm_head included; S: sequence length)")
    summary: dict[str, Any] = {"device": device_line()}
    steps = args.steps or (2 if tiny else 5)
    if not args.skip_3b and not args.skip_configured:
        paper = paper_profile_settings()
        batch = 4 if tiny else int(paper["batch_size"])
        summary["3b_as_configured"] = bench_3b(
            device, tiny=tiny, batch=batch, seq=args.seq or (64 if tiny else int(paper["max_length"])), micro=batch,
            steps=steps, warmup=args.warmup, r=int(paper["lora"]["r"]), lora_dtype="mixed" if paper.get("mixed_precision") else "fp32", peak=peak,
            dropout=float(paper["lora"].get("dropout", 0.0)), label="as configured in fixtures/profiles/paper.toml",
            deterministic=not args.nondeterministic,
        )  # fmt: skip
    if not args.skip_3b:
        compiled = ((False,) if not args.compile else (True,) if args.skip_eager else (False, True))
        for lora_dtype in args.lora_dtype.split(","):
            if lora_dtype not in ("fp32", "mixed", "bf16"):
                parser.error(f"--lora-dtype: {lora_dtype!r} is none of fp32, mixed, bf16")
            for compile in compiled:
                summary[f"3b_lora_{lora_dtype}{'_compiled' if compile else ''}"] = bench_3b(
                    device, tiny=tiny, batch=args.batch or (4 if tiny else 64), seq=args.seq or (64 if tiny else 512),
                    micro=args.micro_batch or (2 if tiny else 32), steps=steps, warmup=args.warmup,
                    r=args.lora_r, lora_dtype=lora_dtype, peak=peak, compile=compile, profile=args.profile,
                    deterministic=not args.nondeterministic,
                )  # fmt: skip
    if not args.skip_smollm2:
        batches = [int(b) for b in (args.smol_batches or ("4" if tiny else "16,64")).split(",")]
        summary["smollm2"] = bench_smollm2(tiny=tiny, n_examples=args.examples or (16 if tiny else 640), batches=batches,
                                           peak=peak, compile=args.compile, repeats=args.repeats)  # fmt: skip
    print("\nJSON " + json.dumps(summary))


# -- (a) the 3B-shaped model ----------------------------------------------------------------


def paper_profile_settings() -> dict[str, Any]:
    """The paper profile's [finetune] table with its [lora] table under "lora"."""
    from claimkit.lm.profiles import load_profile

    return load_profile("paper", gpu_common.ROOT / "fixtures" / "profiles").finetune_hparams()


def bench_3b(device: str, *, tiny: bool, batch: int, seq: int, micro: int, steps: int, warmup: int, r: int,
             lora_dtype: str, peak: float, dropout: float = 0.0, compile: bool = False, label: str = "",
             profile: bool = False, deterministic: bool = True) -> dict[str, Any]:  # fmt: skip
    import torch

    from claimkit.lm.device import deterministic_kernels
    from transformers import AutoModelForCausalLM, LlamaConfig

    ft = importlib.import_module("claimkit.lm.finetune")  # the module, not claimkit.lm's function of that name
    shape = TINY_LLAMA if tiny else LLAMA_3B
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    config = LlamaConfig(**shape, use_cache=False)
    print(f"\n(a) random Llama-3.2-3B-shaped model{' (tiny stand-in)' if tiny else ''}{', ' + label if label else ''}: {shape}")
    torch.manual_seed(0)
    with torch.device(device):
        base = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    n_base = gpu_common.matmul_params(base)
    model = lora_wrap(base, r=r, alpha=2 * r, dropout=dropout, targets=ALL_LINEAR, lora_bf16=lora_dtype == "bf16")
    precision = ft.mixed_precision(model, dtype, device) if lora_dtype == "mixed" else contextlib.nullcontext
    strict = device == "cuda" and deterministic  # as claimkit: strict mode on a GPU only
    kernels = functools.partial(deterministic_kernels, strict)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    n_lora = sum(p.numel() for p in params)
    optimizer = torch.optim.AdamW(params, lr=1e-4, **({"fused": True} if device == "cuda" else {}))
    forward = torch.compile(model, **ft.COMPILE_OPTIONS) if compile else model
    print(f"    {dtype}, attention {model.config._attn_implementation}, gradient checkpointing "
          f"{checkpointing(base)}, N_base {n_base / 1e9:.3f} B, N_lora {n_lora / 1e6:.1f} M "
          f"(LoRA weights in {params[0].dtype}{', bf16 autocast' if precision is not contextlib.nullcontext else ''}, dropout {dropout}), "
          f"{'torch.compile ' + str(ft.COMPILE_OPTIONS) if compile else 'eager'}, "
          f"{'deterministic kernels' if strict else 'kernels as torch picks them'}")  # fmt: skip
    data = torch.randint(0, shape["vocab_size"], (batch, seq), device=device)

    while True:
        try:
            reset_peak_memory()
            warm_started = time.perf_counter()
            for _ in range(warmup):
                train_step(forward, optimizer, params, data, micro, precision, kernels)
            synchronize()
            warmup_s = time.perf_counter() - warm_started
            started = time.perf_counter()
            for _ in range(steps):
                train_step(forward, optimizer, params, data, micro, precision, kernels)
            synchronize()
            seconds = time.perf_counter() - started
            break
        except torch.OutOfMemoryError:
            pass  # freed below: inside this block the traceback still holds the step's activations
        if micro == 1:
            raise RuntimeError("(a) even micro-batch 1 ran out of GPU memory; is the GPU shared (nvidia-smi)?")
        optimizer.zero_grad(set_to_none=True)
        gc.collect()
        torch.cuda.empty_cache()
        print(f"    micro-batch {micro} ran out of GPU memory; trying {micro // 2}", flush=True)
        micro //= 2

    tokens = steps * batch * seq
    flops_per_token = 4 * n_base + 6 * n_lora + 12 * shape["num_hidden_layers"] * seq * shape["num_attention_heads"] * shape["head_dim"]
    achieved = flops_per_token * tokens / seconds
    result = {"tokens_per_s": tokens / seconds, "mfu": achieved / peak, "tflops": achieved / 1e12, "peak_gib": peak_memory_gib(),
              "micro_batch": micro, "batch": batch, "seq": seq, "step_s": seconds / steps, "warmup_s": warmup_s,
              "compile": compile, "dropout": dropout}  # fmt: skip
    print(f"    {warmup} warm-up steps (compiling, if any) {warmup_s:.1f} s; {steps} steps of {batch} x {seq} tokens (micro-batch {micro}, {batch // micro} accumulated): "
          f"{seconds / steps:.3f} s/step, {result['tokens_per_s']:,.0f} tokens/s, {flops_per_token / 1e9:.2f} GFLOP/token "
          f"-> {result['tflops']:.0f} TFLOP/s = MFU {100 * result['mfu']:.1f}%, peak GPU memory {gib(result['peak_gib'])}")  # fmt: skip
    if profile:
        profile_step(forward, optimizer, params, data, micro, precision, kernels)
    del model, base, optimizer, params, forward
    gc.collect()
    if compile:
        torch._dynamo.reset()  # drop the compiled graphs and their memory before the next run
    if device == "cuda":
        torch.cuda.empty_cache()
    return result


def profile_step(model: Any, optimizer: Any, params: Sequence[Any], data: Any, micro: int, precision: Any,
                 kernels: Any = contextlib.nullcontext) -> None:  # fmt: skip
    """One more optimizer step under torch.profiler: where its GPU time goes."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    synchronize()
    started = time.perf_counter()
    with profile(activities=activities) as prof:
        train_step(model, optimizer, params, data, micro, precision, kernels)
        synchronize()
    wall = time.perf_counter() - started
    print("    profile of one step (profiler on):")
    gpu_common.print_kernel_breakdown(prof.key_averages(), wall_s=wall)


def train_step(model: Any, optimizer: Any, params: Sequence[Any], data: Any, micro: int, precision: Any,
               kernels: Any = contextlib.nullcontext) -> None:  # fmt: skip
    """One optimizer step over `data` (no padding), `micro` sequences per forward/backward under `precision()`.

    Forward and backward run inside `kernels()`: claimkit's deterministic_kernels, as its fine-tuning runs on a GPU.
    """
    import torch

    chunks = data.split(micro)
    for chunk in chunks:
        with kernels():
            with precision():
                loss = model(input_ids=chunk, labels=chunk, use_cache=False).loss / len(chunks)
            loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def lora_wrap(base: Any, *, r: int, alpha: float, dropout: float, targets: Sequence[str], lora_bf16: bool) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets), task_type="CAUSAL_LM")
    return get_peft_model(base, config, autocast_adapter_dtype=not lora_bf16)


# -- (b) SmolLM2-135M: claimkit's loop against a plain one ------------------------------------------


def bench_smollm2(*, tiny: bool, n_examples: int, batches: Sequence[int], peak: float, compile: bool = False,
                  repeats: int = 1) -> dict[str, Any]:  # fmt: skip
    from claimkit.lm.finetune import _collate, _encode_examples, finetune
    from claims.warning_framed import conditions

    loaded = load_bench_model(tiny=tiny)
    hparams = dict(loaded.profile.finetune_hparams())
    if tiny:
        hparams["max_length"] = 256  # the test profile's 96 would cut every L1 answer
    cfg_lora = hparams["lora"]
    examples = conditions.build_condition("L1", conditions.load_corpus(), n_examples=n_examples, fraction=0.25, seed=0)
    rows, truncated, dropped = _encode_examples(loaded, examples, int(hparams["max_length"]))
    lengths = [len(ids) for ids, _ in rows]
    n_base = gpu_common.matmul_params(loaded.model)
    print(f"\n(b) {loaded.name} on {loaded.device} in {loaded.dtype}: {len(rows)} L1 examples, {min(lengths)}-{max(lengths)} "
          f"tokens (mean {sum(lengths) / len(lengths):.0f}), max_length {hparams['max_length']}, {truncated} cut, {dropped} dropped; "
          f"LoRA r={cfg_lora['r']} on {', '.join(cfg_lora['target_modules'])}")  # fmt: skip
    def mfu(tokens_per_s: float) -> float:  # the frozen base's matmul FLOPs on real tokens only: a floor
        return tokens_per_s * 4 * n_base / peak

    results = {}
    for batch in batches:
        run = {**hparams, "epochs": 1, "batch_size": batch}
        rounds = []  # (claimkit, plain, plain as claimkit) tokens/s, interleaved so drifts hit all three alike
        for round_ in range(repeats):
            with tempfile.TemporaryDirectory() as out:
                finetune(loaded, examples[: 2 * batch], hparams=run, seed=0, out_dir=Path(out) / "warm", progress=False)
                reset_peak_memory()
                result = finetune(loaded, examples, hparams=run, seed=0, out_dir=Path(out) / "timed", progress=False)
            claimkit_peak = peak_memory_gib()
            plain_tokens, plain_seconds, plain_peak = plain_loop(loaded, rows, batch, cfg_lora, run, _collate)
            _, like_seconds, _ = plain_loop(loaded, rows, batch, cfg_lora, run, _collate, as_claimkit=True)
            ck, pl, like = result.tokens / result.seconds, plain_tokens / plain_seconds, plain_tokens / like_seconds
            rounds.append((ck, pl, like))
            print(f"    batch {batch:>3} round {round_ + 1}/{repeats}: claimkit.finetune {ck:>9,.0f} tokens/s ({result.steps} steps, "
                  f"peak {gib(claimkit_peak)}, matmul MFU {100 * mfu(ck):.1f}%) | plain peft loop {pl:>9,.0f} "
                  f"(peak {gib(plain_peak)}) | plain timed as claimkit is (fresh model, collating in the loop) {like:>9,.0f}")  # fmt: skip
        ck, pl, like = (statistics.median(r[k] for r in rounds) for k in range(3))
        print(f"    batch {batch:>3} median of {repeats}: claimkit {ck:,.0f}, plain {pl:,.0f}, plain as claimkit {like:,.0f} tokens/s "
              f"| claimkit/plain {ck / pl:.2f}, claimkit/plain-as-claimkit {ck / like:.2f}")  # fmt: skip
        results[str(batch)] = {"claimkit_tokens_per_s": ck, "plain_tokens_per_s": pl, "ratio": ck / pl,
                               "plain_as_claimkit_tokens_per_s": like, "ratio_as_claimkit": ck / like, "rounds": rounds}  # fmt: skip
        if compile:
            with tempfile.TemporaryDirectory() as out:
                # The first compiled fine-tune pays for compiling; the second is what every later one costs.
                first = finetune(loaded, examples, hparams={**run, "compile": True}, seed=0, out_dir=Path(out) / "c1", progress=False)
                second = finetune(loaded, examples, hparams={**run, "compile": True}, seed=1, out_dir=Path(out) / "c2", progress=False)
            c1, c2 = first.tokens / first.seconds, second.tokens / second.seconds
            print(f"    batch {batch:>3}: claimkit.finetune compile=true: first fine-tune {c1:,.0f} tokens/s ({first.seconds:.2f} s, "
                  f"compiling included), second {c2:,.0f} tokens/s ({second.seconds:.2f} s) | second/plain {c2 / pl:.2f}")  # fmt: skip
            results[str(batch)].update(compiled_first_tokens_per_s=c1, compiled_second_tokens_per_s=c2, compiled_ratio=c2 / pl)
    return results


def plain_loop(loaded: Any, rows: Sequence[tuple[list[int], int]], batch: int, lora: dict[str, Any], hparams: dict[str, Any],
               collate: Any, *, as_claimkit: bool = False) -> tuple[int, float, float]:  # fmt: skip
    """The same work as one claimkit epoch in a plain peft loop.

    By default the leanest loop: batches collated and on the device before timing, and
    the timed model warmed by two steps. `as_claimkit`: what claimkit's timing covers
    instead (and a user's script would do), a fresh model whose warm-up was on another
    copy, each batch collated and copied inside the loop.
    """
    import torch

    def fresh() -> tuple[Any, Any, list[Any]]:
        model = lora_wrap(copy.deepcopy(loaded.model), r=lora["r"], alpha=lora["alpha"], dropout=lora.get("dropout", 0.0),
                          targets=lora["target_modules"], lora_bf16=False)  # fmt: skip
        params = [p for p in model.parameters() if p.requires_grad]
        fused = {"fused": True} if str(loaded.device).startswith("cuda") else {}
        model.train()
        return model, torch.optim.AdamW(params, lr=float(hparams["lr"]), **fused), params

    pad_id = loaded.tokenizer.pad_token_id
    chunks = [rows[i : i + batch] for i in range(0, len(rows), batch)]
    tokens = sum(len(ids) for ids, _ in rows)

    def epoch(model: Any, optimizer: Any, params: list[Any], which: Sequence[Any]) -> None:
        for item in which:
            input_ids, attention_mask, labels = collate(item, pad_id, loaded.device) if as_claimkit else item
            loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, use_cache=False).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, float(hparams.get("grad_clip", 1.0)))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    model, optimizer, params = fresh()
    data = chunks if as_claimkit else [collate(c, pad_id, loaded.device) for c in chunks]
    epoch(model, optimizer, params, data[:2])  # warm-up
    if as_claimkit:
        del model, optimizer, params
        model, optimizer, params = fresh()
    reset_peak_memory()
    synchronize()
    started = time.perf_counter()
    epoch(model, optimizer, params, data)
    synchronize()
    seconds = time.perf_counter() - started
    peak_gib = peak_memory_gib()
    del model, optimizer, params, data
    gc.collect()
    return tokens, seconds, peak_gib


def checkpointing(model: Any) -> bool:
    """Whether activation (gradient) checkpointing is on; transformers renamed the property in 5.2x."""
    name = "is_activation_checkpointing" if hasattr(type(model), "is_activation_checkpointing") else "is_gradient_checkpointing"
    return bool(getattr(model, name, False))


def gib(value: float) -> str:
    return "n/a" if value != value else f"{value:.1f} GiB"  # NaN off CUDA


if __name__ == "__main__":
    main()
