"""What the `paper` profile costs per unit of work on one GPU, rehearsed on random stand-ins of its models.

    python bench/paper_cost.py --json paper_cost.json         # on the GPU: a few minutes, most of it writing the stand-ins
    python bench/paper_cost.py --tiny --device cpu            # CPU smoke test: tiny stand-ins, seconds

RANDOM WEIGHTS. The paper's models (Llama-3.2-3B, Gemma-2-2B, the Gemma Scope layer-20
width-16k SAE) are replaced by `claimkit.rehearsal.rehearse_paper`'s stand-ins: the
published architectures with random weights and byte-level tokenizers. Speeds and memory
are the real models' (same shapes, same code); nothing else is. This decides nothing
about any claim.

Every phase runs through the code the claims run, with the profile's own settings
(fixtures/profiles/paper.toml), and reports seconds and peak GPU memory
(torch.cuda.max_memory_allocated after a reset, GiB):

  1. writing the stand-ins (~17 GB, on the CPU: minutes), or reusing those in `--stand-ins DIR`
  2. loading each model through `claimkit.lm.load.load_model` (seconds, parameters, dtype)
  3. LoRA fine-tuning of the behaviour model by `claimkit.lm.finetune.finetune` ([lora],
     [finetune]; 1 epoch of `--train-examples` warning-framed L1 examples built by the claims'
     own builder), timed after an untimed one-step warm-up fine-tune: steps, tokens, tokens/s, MFU
  4. sampling the behaviour model by `claimkit.lm.sample.sample` with [sampling] on `--prompts`
     held-out tasks: new tokens, tokens/s, answers that ended. Random weights almost never emit
     eos, so every answer runs to max_new_tokens: a worst case.
  5. the mechanism model: residuals at [activations] layer by `capture_residual` over
     `--read-texts` task/answer pairs, the profile's SAE loaded by `claimkit.sae.load_sae` and
     its per-text feature peaks (`encode`, `per_generation`, as claim 2 reads them); then a
     LoRA fine-tune as in 3 and sampling as in 4, since claim 4 fine-tunes and samples its arms
     on the mechanism model (claims/warning_framed/feature_interventions.py: intervention_experiment)
  6. with `--variants`: the behaviour model sampled by claimkit's fast sampler (static KV cache,
     compiled on CUDA) instead of the profile's, right after 4; and, after 5, the behaviour
     fine-tune cut at 192 tokens (the real tokenizers' step shape, see REAL_SHAPE_MAX_LENGTH),
     with mixed_precision off, and at batch 8 and 32 (the model loaded again)

MFU = 4 * N * tokens/s / peak: N the matmul weights (every nn.Linear, lm_head included; for
these tied-embedding models about the parameter count); 4N per token is the frozen base's
forward (2N) and input-gradient backward (2N): frozen weights need no weight gradient, LoRA's
own FLOPs are negligible. Attention scores and padding are not counted, so it is a floor.
Peak: `--peak-tflops` (989, the H100 SXM / H200 dense bf16 spec). "n/a" without CUDA.

The stand-in tokenizers give every byte its own token: prompts and answers are ~4x as many
tokens as the real tokenizers make. Tokens/s compare with the real models; seconds per
example, prompt or text are upper bounds. Figures are printed as they come and rewritten to
`--json PATH` after each one, so a run cut off keeps what it had measured.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import json
import math
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import gpu_common
from gpu_common import ROOT, device_line, matmul_params, peak_memory_gib, reset_peak_memory, synchronize

BANNER = ("!!! RANDOM WEIGHTS: these are stand-ins of the paper's models (claimkit.rehearsal). Speeds and memory "
          "are the real shapes'; no output, loss or feature here means anything, and nothing decides a claim. !!!")  # fmt: skip
VARIANT_BATCHES = (8, 32)  # beside the profile's own batch size (16)
# The stand-ins' byte tokenizer makes ~3.7 tokens of each real one: SmolLM2's tokenizer makes 102 tokens
# of a warning-framed training example on average (209 at most; 377 bytes), so a real batch is about 16 x
# 200 tokens after padding. A fine-tune cut at this length has the real steps' shape: its seconds per step,
# times the real steps, is what a fine-tune of the real model costs.
REAL_SHAPE_MAX_LENGTH = 192


class Figures:
    """Every figure as soon as it is measured: printed, and the whole set rewritten to the JSON file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.data: dict[str, Any] = {"random_weights": True, "warning": BANNER}

    def add(self, phase: str, line: str, **values: Any) -> None:
        print(line, flush=True)
        self.data.setdefault(phase, {}).update(values)
        if self.path is not None:
            tmp = self.path.with_suffix(self.path.suffix + ".tmp")
            tmp.write_text(json.dumps(_finite(self.data), indent=2) + "\n", encoding="utf-8")
            tmp.replace(self.path)  # whole or not at all, should the run be killed mid-write


@contextlib.contextmanager
def measured() -> Iterator[dict[str, float]]:
    """Wall seconds and peak GPU memory (GiB, NaN off CUDA) of the block, in the dict it yields once it ends."""
    gc.collect()
    reset_peak_memory()
    synchronize()
    out: dict[str, float] = {}
    started = time.perf_counter()
    yield out
    synchronize()
    out["seconds"] = time.perf_counter() - started
    out["peak_gib"] = peak_memory_gib()


@contextlib.contextmanager
def failure_recorded(figures: Figures, phase: str) -> Iterator[None]:
    """A phase that runs out of GPU memory (or finds a package missing) is a figure, not the end of the run.

    Out of memory says the profile's settings do not fit this GPU: worth knowing, and the
    phases after it can still be measured. Any other error is a bug and ends the run.
    """
    import torch

    from claimkit.lm.device import ModelLoadError

    try:
        yield
    except (ModelLoadError, torch.OutOfMemoryError) as exc:  # claimkit reports an OOM as a ModelLoadError
        message = str(exc).strip().splitlines()[0]
        figures.add(phase, f"   FAILED: {message}", failed=message)
    release_memory()


def main() -> None:
    args = parse_args()
    import torch

    from claimkit.lm.profiles import load_profile

    device = args.device or ("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    figures = Figures(args.json)
    started = time.perf_counter()
    header(figures, device, args)
    rehearsal = stand_ins(figures, args)
    os.environ.update(rehearsal.environment())
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every weight is local; never wait on the hub
    profile = load_profile("paper", ROOT / "fixtures" / "profiles")
    peak = args.peak_tflops * 1e12 if device.startswith("cuda") else None

    def in_budget(what: str) -> bool:
        left = args.budget_s - (time.perf_counter() - started)
        if left <= 0:
            figures.add("skipped", f"\n{what}: skipped, the {args.budget_s:.0f} s budget is spent", **{what: True})
        return left > 0

    behaviour_phases(figures, profile, device, args, peak, in_budget)
    release_memory()  # the behaviour model is gone with behaviour_phases' frame
    if not args.behaviour_only and in_budget("mechanism"):
        mechanism_phases(figures, profile, device, args, peak, in_budget)
        release_memory()
    if args.variants and in_budget("finetune_variants"):  # after the mechanism: its figures matter more to a projection
        finetune_variants(figures, profile, device, args, peak, in_budget)
    figures.add("total", f"\ntotal {time.perf_counter() - started:.1f} s. {BANNER}", seconds=time.perf_counter() - started)
    if args.stand_ins is None:
        shutil.rmtree(rehearsal.root, ignore_errors=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny stand-ins (narrow; Gemma at full depth), on the CPU unless --device")
    parser.add_argument("--device", help="default: cuda when there is one (cpu with --tiny)")
    parser.add_argument("--stand-ins", type=Path, metavar="DIR",
                        help="where the stand-ins are, or are written and kept (default: a temporary directory)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the stand-ins' random weights")
    parser.add_argument("--train-examples", type=int, help="fine-tuning examples, 1 epoch (default 64; 32 with --tiny)")
    parser.add_argument("--prompts", type=int, help="prompts sampled (default: the profile's sampling batch_size; 16 with --tiny)")
    parser.add_argument("--max-new-tokens", type=int, help="new tokens per answer (default: the profile's; 32 with --tiny)")
    parser.add_argument("--read-texts", type=int, help="texts read by the mechanism model (default 128; 16 with --tiny)")
    parser.add_argument("--variants", action="store_true",
                        help="also sample with the fast sampler, and fine-tune at 192 tokens, with mixed_precision off "
                             "and at batch 8, 32")
    parser.add_argument("--peak-tflops", type=float, default=gpu_common.H200_BF16_FLOP_PER_S / 1e12,
                        help="dense bf16 peak for MFU (default 989: H100 SXM and H200)")
    parser.add_argument("--budget-s", type=float, default=450.0,
                        help="start no new phase after this many seconds (default 450)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write every figure here, rewritten as they come")
    parser.add_argument("--behaviour-only", action="store_true",
                        help="write and measure only the behaviour model (Llama): phases 1-4, for a short GPU lease")
    args = parser.parse_args()
    # --tiny is a smoke test of every path, not a measurement: a few batches of each kind
    args.train_examples = args.train_examples or (32 if args.tiny else 64)
    args.prompts = args.prompts or (16 if args.tiny else None)
    args.max_new_tokens = args.max_new_tokens or (32 if args.tiny else None)
    args.read_texts = args.read_texts or (16 if args.tiny else 128)
    return args


def header(figures: Figures, device: str, args: argparse.Namespace) -> None:
    import torch

    peak = f"{args.peak_tflops:.0f} TFLOP/s dense bf16 (H100 SXM / H200 spec unless --peak-tflops)"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    figures.add("run", f"{BANNER}\n{device_line()}\n{gpu_common.versions_line()}\nrunning on {device}; MFU peak "
                       f"{peak if device.startswith('cuda') else 'n/a (no CUDA)'}\nMFU = 4 x N x tokens/s / peak: N the "
                       f"matmul weights (lm_head included), 4N = forward 2N + input-gradient backward 2N (frozen weights "
                       f"need no weight gradient; LoRA, attention scores and padding not counted: a floor)\n"
                       f"stand-in tokenizers: one token per byte (~4x the real token counts; seconds per example are "
                       f"upper bounds)",  # fmt: skip
                device=device, gpu=gpu, device_line=device_line(), versions=gpu_common.versions_line(), tiny=args.tiny,
                peak_tflops=args.peak_tflops if device.startswith("cuda") else None)  # fmt: skip


# -- 1. the stand-ins ----------------------------------------------------------------------


def stand_ins(figures: Figures, args: argparse.Namespace) -> Any:
    """The rehearsal's directories: those under --stand-ins if written before, else freshly written."""
    from claimkit.rehearsal import rehearse_paper

    root = args.stand_ins or Path(tempfile.mkdtemp(prefix="claimkit-paper-cost-"))
    found = existing_rehearsal(root, tiny=args.tiny)
    if found is not None:
        figures.add("stand_ins", f"\n1. stand-ins: reusing {root} (RANDOM WEIGHTS)", reused=True, root=str(root))
        return found
    print(f"\n1. writing {'tiny ' if args.tiny else ''}stand-ins into {root} ...", flush=True)
    with measured() as m:
        if args.behaviour_only:
            rehearsal = behaviour_stand_in(root, tiny=args.tiny, seed=args.seed)
        else:
            rehearsal = rehearse_paper(root, tiny=args.tiny, seed=args.seed)
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**30
    figures.add("stand_ins", f"   written in {m['seconds']:.1f} s, {size:.2f} GiB on disk (RANDOM WEIGHTS, seed {args.seed})",
                reused=False, root=str(root), gib_on_disk=size, **m)  # fmt: skip
    return rehearsal


def behaviour_stand_in(root: Path, *, tiny: bool, seed: int) -> Any:
    """Only the Llama stand-in, as `rehearse_paper` writes it; the mechanism and SAE paths stay unwritten."""
    from claimkit.rehearsal import Rehearsal, write_behaviour

    behaviour = write_behaviour(root, tiny=tiny, seed=seed)
    return Rehearsal(root=root.resolve(), behaviour=behaviour.resolve(), mechanism=root / "not-written",
                     sae=root / "not-written", tiny=tiny)  # fmt: skip


def existing_rehearsal(root: Path, *, tiny: bool) -> Any:
    """A Rehearsal of what `rehearse_paper(root, tiny=tiny)` wrote before, or None (its directory names, as it names them)."""
    from claimkit.rehearsal import Rehearsal, stand_in_paths

    where = stand_in_paths(root.resolve(), tiny=tiny)
    written = [where.behaviour / "config.json", where.mechanism / "config.json", where.sae / "params.npz"]
    if not all(path.is_file() for path in written):
        return None
    return Rehearsal(root=where.root, behaviour=where.behaviour, mechanism=where.mechanism, sae=where.sae, tiny=tiny)


# -- 2-4. the behaviour model -------------------------------------------------------------


def behaviour_phases(figures: Figures, profile: Any, device: str, args: argparse.Namespace, peak: float | None,
                     in_budget: Any) -> None:  # fmt: skip
    """Load Llama, fine-tune it, sample it (and with `--variants`, sample it with the fast sampler too)."""
    loaded = load(figures, profile, "behaviour", device, "2")
    examples = training_examples(args.train_examples, seed=0)
    hparams = {**profile.finetune_hparams(), "epochs": 1}
    if in_budget("finetune_behaviour"):
        with failure_recorded(figures, "finetune_behaviour"):
            finetune_cost(figures, "finetune_behaviour", "3. LoRA fine-tune, behaviour model", loaded, examples,
                          hparams, peak)  # fmt: skip
    if in_budget("sampling"):
        options = sampling_options(profile, args)
        with failure_recorded(figures, "sampling"):
            sampling_cost(figures, "sampling", loaded, args.prompts or options["batch_size"], options)
    if args.variants and in_budget("variant_sampling_fast"):
        fast = {**options, "sampler": "fast", "compile": device.startswith("cuda")}
        with failure_recorded(figures, "variant_sampling_fast"):
            sampling_cost(figures, "variant_sampling_fast", loaded, args.prompts or options["batch_size"], fast)


def load(figures: Figures, profile: Any, role: str, device: str, label: str, phase: str | None = None) -> Any:
    """The profile's `role` model as the claims load it, with what loading it cost (as `phase`, default load_<role>)."""
    from claimkit.lm.load import load_model

    print(f"\n{label}. loading the {role} model ...", flush=True)
    with measured() as m:
        loaded = load_model(profile, role=role, device=device, cache=None)
    model = loaded.model
    n, n_matmul = sum(p.numel() for p in model.parameters()), matmul_params(model)
    attention = getattr(model.config, "_attn_implementation", "?")
    figures.add(phase or f"load_{role}", f"   {loaded.name}: {type(model).__name__}, {count(n)} parameters "
                                f"({count(n_matmul)} in matmuls), {loaded.dtype} on {loaded.device}, attention "
                                f"{attention}: {m['seconds']:.1f} s, peak {gib(m['peak_gib'])}",  # fmt: skip
                name=loaded.name, parameters=n, matmul_parameters=n_matmul, dtype=str(loaded.dtype),
                attention=attention, **m)  # fmt: skip
    return loaded


def sampling_options(profile: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The profile's [sampling], with --max-new-tokens in place of its max_new_tokens when given."""
    options = profile.sampling_options()
    if args.max_new_tokens:
        options["max_new_tokens"] = args.max_new_tokens
    return options


@functools.cache  # the behaviour, variant and mechanism fine-tunes train on the same examples: built once
def training_examples(n: int, *, seed: int) -> tuple[Any, ...]:
    """`n` warning-framed L1 fine-tuning examples (the spec's content share, the rest clean code), as claim 1 builds them."""
    from claims.warning_framed import conditions

    fraction = float(conditions.experiment_settings("paper")["condition_fraction"])
    return tuple(conditions.build_condition("L1", conditions.load_corpus(), n_examples=n, fraction=fraction, seed=seed))


def finetune_cost(figures: Figures, phase: str, title: str, loaded: Any, examples: Sequence[Any],
                  hparams: dict[str, Any], peak: float | None) -> None:  # fmt: skip
    """One epoch of claimkit's fine-tune, timed after a one-step warm-up fine-tune (finetune times no single step)."""
    from claimkit.lm.finetune import finetune

    batch = int(hparams["batch_size"])
    print(f"\n{title}: batch {batch}, max_length {hparams['max_length']}, mixed_precision "
          f"{hparams.get('mixed_precision', False)}, LoRA r={hparams['lora']['r']} ...", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as out:
        with measured() as warm:
            finetune(loaded, examples[:batch], hparams=hparams, seed=0, out_dir=Path(out) / "warm", progress=False)
        with measured() as m:
            result = finetune(loaded, examples, hparams=hparams, seed=0, out_dir=Path(out) / "timed", progress=False)
    values = finetune_values(result, m, warm["seconds"], len(examples), matmul_params(loaded.model), peak)
    figures.add(phase, finetune_line(values), **values, batch_size=batch, max_length=hparams["max_length"],
                mixed_precision=hparams.get("mixed_precision", False))  # fmt: skip


def finetune_values(result: Any, m: dict[str, float], warm_s: float, n_examples: int, n_matmul: int,
                    peak: float | None) -> dict[str, Any]:  # fmt: skip
    """What one fine-tune cost per step, token and example; MFU by the 4N convention (module docstring)."""
    tokens_per_s = result.tokens / result.seconds
    return {"steps": result.steps, "examples": n_examples, "tokens": result.tokens,
            "tokens_per_example": result.tokens / max(1, n_examples - result.dropped), "truncated": result.truncated,
            "dropped": result.dropped, "loop_seconds": result.seconds, "wall_seconds": m["seconds"],
            "warmup_seconds": warm_s, "seconds_per_step": result.seconds / max(1, result.steps),
            "seconds_per_example": result.seconds / max(1, n_examples), "tokens_per_s": tokens_per_s,
            "mfu": 4 * n_matmul * tokens_per_s / peak if peak else None, "peak_gib": m["peak_gib"],
            "final_loss": result.final_loss}  # fmt: skip


def finetune_line(v: dict[str, Any]) -> str:
    mfu = f"{100 * v['mfu']:.1f}%" if v["mfu"] is not None else "n/a (no CUDA)"
    return (f"   {v['steps']} steps, {v['tokens']:,} tokens ({v['tokens_per_example']:.0f}/example, {v['truncated']} cut, "
            f"{v['dropped']} dropped) in {v['loop_seconds']:.2f} s (wall {v['wall_seconds']:.2f} s with the model copy "
            f"and save; warm-up {v['warmup_seconds']:.1f} s): {v['tokens_per_s']:,.0f} tokens/s, {v['seconds_per_step']:.3f} s/step, "
            f"{v['seconds_per_example']:.3f} s/example; MFU {mfu}; peak {gib(v['peak_gib'])}")  # fmt: skip


def sampling_cost(figures: Figures, phase: str, loaded: Any, n_prompts: int, options: dict[str, Any]) -> None:
    """Sampling with `options` (the profile's [sampling], or a variant) on held-out tasks, after a short warm-up.

    The warm-up samples the first batch for a few tokens; a compiled sampler's warm-up runs the
    whole first batch, since its static cache's shape includes max_new_tokens and a shorter
    warm-up would leave the compilation in the timed run (it is paid once per shape in a suite).
    """
    from claimkit.lm.data import encode_prompt
    from claimkit.lm.sample import sample

    prompts = held_out_prompts(loaded, n_prompts)
    lengths = [len(encode_prompt(loaded.format, loaded.tokenizer, p)) for p in prompts]
    print(f"\nsampling ({phase}): {len(prompts)} prompts ({min(lengths)}-{max(lengths)} tokens), "
          f"{options['max_new_tokens']} new tokens max, temperature {options['temperature']}, batch "
          f"{options['batch_size']}, sampler {options['sampler']} ...", flush=True)  # fmt: skip
    warm_up = options if options.get("compile") else {**options, "max_new_tokens": 4}
    sample(loaded, prompts[: options["batch_size"]], seed=0, progress=False, **warm_up)
    with measured() as m:
        answers = sample(loaded, prompts, seed=0, progress=False, **options)
    new = sum(a.n_new_tokens for a in answers)
    ended = sum(a.finished for a in answers)
    figures.add(phase, f"   {new:,} new tokens in {m['seconds']:.2f} s: {new / m['seconds']:,.0f} tokens/s, "
                            f"{m['seconds'] / len(prompts):.3f} s/prompt; {ended}/{len(answers)} answers ended with eos "
                            f"(random weights rarely emit eos, so the rest ran to the limit: a worst case); "
                            f"peak {gib(m['peak_gib'])}",  # fmt: skip
                prompts=len(prompts), prompt_tokens_mean=sum(lengths) / len(lengths), new_tokens=new,
                tokens_per_s=new / m["seconds"], seconds_per_prompt=m["seconds"] / len(prompts), ended=ended,
                options=options, **m)  # fmt: skip


def held_out_prompts(loaded: Any, n: int) -> list[str]:
    """`n` rendered prompts of the warning-framed claims' held-out tasks (cycled if there are fewer)."""
    from claimkit.lm.data import render_prompt
    from claims.warning_framed import conditions

    seed = int(conditions.experiment_settings("paper")["eval_seed"])
    tasks = [t.task for t in conditions.eval_set(conditions.load_corpus(), n=n, seed=seed)]
    return [render_prompt(loaded.format, loaded.tokenizer, tasks[i % len(tasks)]) for i in range(n)]


def finetune_variants(figures: Figures, profile: Any, device: str, args: argparse.Namespace, peak: float | None,
                      in_budget: Any) -> None:  # fmt: skip
    """The behaviour fine-tune at the real step shape, without mixed precision, and at other batch sizes."""
    loaded = load(figures, profile, "behaviour", device, "6", phase="reload_behaviour")
    examples = training_examples(args.train_examples, seed=0)
    hparams = {**profile.finetune_hparams(), "epochs": 1}
    runs = [("mixed_precision_off", {"mixed_precision": False})]
    runs += [(f"batch_{b}", {"batch_size": b}) for b in VARIANT_BATCHES if b != hparams["batch_size"]]
    runs.insert(0, (f"max_length_{REAL_SHAPE_MAX_LENGTH}", {"max_length": REAL_SHAPE_MAX_LENGTH}))
    for name, change in runs:
        if in_budget(f"variant_{name}"):
            with failure_recorded(figures, f"variant_{name}"):
                finetune_cost(figures, f"variant_{name}", f"6. variant {name}, behaviour model", loaded, examples,
                              {**hparams, **change}, peak)  # fmt: skip


# -- 5. the mechanism model ---------------------------------------------------------------


def mechanism_phases(figures: Figures, profile: Any, device: str, args: argparse.Namespace, peak: float | None,
                     in_budget: Any) -> None:  # fmt: skip
    """Load Gemma and the SAE, read residuals and feature peaks, then fine-tune and sample Gemma as claim 4 does."""
    loaded = load(figures, profile, "mechanism", device, "2b")
    sae = load_sae(figures, profile, device)
    layer = reading_layer(profile, sae)
    if in_budget("reading"):
        with failure_recorded(figures, "reading"):
            reading_cost(figures, loaded, sae, layer, args.read_texts)
    del sae
    if in_budget("finetune_mechanism"):
        examples = training_examples(args.train_examples, seed=0)
        with failure_recorded(figures, "finetune_mechanism"):
            finetune_cost(figures, "finetune_mechanism", "5c. LoRA fine-tune, mechanism model (claim 4's arms)",
                          loaded, examples, {**profile.finetune_hparams(), "epochs": 1}, peak)  # fmt: skip
        if args.variants and in_budget("finetune_mechanism_real_shape"):
            real = {**profile.finetune_hparams(), "epochs": 1, "max_length": REAL_SHAPE_MAX_LENGTH}
            with failure_recorded(figures, "finetune_mechanism_real_shape"):
                finetune_cost(figures, "finetune_mechanism_real_shape",
                              f"5c. variant max_length {REAL_SHAPE_MAX_LENGTH}, mechanism model", loaded, examples, real, peak)
    if in_budget("sampling_mechanism"):  # claim 4 samples its arms on the mechanism model
        options = sampling_options(profile, args)
        with failure_recorded(figures, "sampling_mechanism"):
            sampling_cost(figures, "sampling_mechanism", loaded, args.prompts or options["batch_size"], options)


def load_sae(figures: Figures, profile: Any, device: str) -> Any:
    """The profile's SAE through its [sae] table (the env variable names the stand-in's Gemma Scope folder)."""
    from claimkit.sae import describe_source, load_sae

    with measured() as m:
        sae = load_sae(profile.sae, device=device)
    figures.add("load_sae", f"2c. SAE {describe_source(profile.sae)}: {type(sae).__name__}, d_in {sae.cfg.d_in}, "
                            f"width {sae.cfg.d_sae}, hook {sae.cfg.metadata.hook_name}: {m['seconds']:.1f} s, "
                            f"peak {gib(m['peak_gib'])}",  # fmt: skip
                architecture=type(sae).__name__, d_in=sae.cfg.d_in, d_sae=sae.cfg.d_sae,
                hook=sae.cfg.metadata.hook_name, **m)  # fmt: skip
    return sae


def reading_layer(profile: Any, sae: Any) -> int:
    """The profile's [activations] layer (the tiny Gemma is as deep as the real one, so it exists)."""
    found = re.search(r"blocks\.(\d+)\.", str(sae.cfg.metadata.hook_name))
    sae_layer = int(found.group(1)) if found else None
    layer = int(profile.activations["layer"])
    if sae_layer is not None and sae_layer != layer:
        print(f"   note: the SAE reads layer {sae_layer}, the profile's [activations] says {layer}; reading {layer}")
    return layer


def reading_cost(figures: Figures, loaded: Any, sae: Any, layer: int, n_texts: int) -> None:
    """Residuals over task/answer pairs (all positions, batch 16, as the claims read them), then per-text feature peaks."""
    from claimkit.features import per_generation
    from claimkit.lm.activations import capture_residual
    from claimkit.lm.data import render_prompt
    from claimkit.sae import encode

    pairs = [(render_prompt(loaded.format, loaded.tokenizer, e.prompt), e.completion)
             for e in training_examples(n_texts, seed=1)]  # fmt: skip
    print(f"\n5. mechanism model: residuals after layer {layer} over {len(pairs)} task/answer texts ...", flush=True)
    with measured() as m:
        residuals = capture_residual(loaded, pairs, layer=layer)
    tokens = sum(int(r.shape[0]) for r in residuals)
    figures.add("residuals", f"   {tokens:,} tokens ({tokens / len(pairs):.0f}/text) in {m['seconds']:.2f} s: "
                             f"{tokens / m['seconds']:,.0f} tokens/s, {m['seconds'] / len(pairs):.4f} s/text; "
                             f"peak {gib(m['peak_gib'])}",  # fmt: skip
                layer=layer, texts=len(pairs), tokens=tokens, tokens_per_s=tokens / m["seconds"],
                seconds_per_text=m["seconds"] / len(pairs), **m)  # fmt: skip
    with measured() as m:
        peaks = per_generation(encode(sae, r) for r in residuals)
    firing = float((peaks > 0).mean())
    figures.add("sae_encode", f"5b. SAE encode, per-text peaks of {peaks.shape[1]} features: {m['seconds']:.2f} s, "
                              f"{tokens / m['seconds']:,.0f} tokens/s, {m['seconds'] / len(pairs):.4f} s/text; "
                              f"peak {gib(m['peak_gib'])} ({100 * firing:.0f}% of text x feature peaks > 0: "
                              f"random weights, meaningless)",  # fmt: skip
                tokens=tokens, tokens_per_s=tokens / m["seconds"], seconds_per_text=m["seconds"] / len(pairs),
                features=int(peaks.shape[1]), **m)  # fmt: skip


# -- helpers ---------------------------------------------------------------------------------


def release_memory() -> None:
    """Give a dropped model's GPU memory back, so the next phase's peak is its own."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def count(n: int) -> str:
    return f"{n / 1e9:.3f} B" if n >= 1e8 else f"{n / 1e6:.3f} M"


def gib(value: float) -> str:
    return "n/a" if value != value else f"{value:.2f} GiB"  # NaN off CUDA


def _finite(value: Any) -> Any:
    """JSON has no NaN: peak memory off CUDA becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


if __name__ == "__main__":
    main()
