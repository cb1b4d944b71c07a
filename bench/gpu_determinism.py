"""Are seeded samples reproducible on a GPU? The same sampling, repeated in one process and in several at once.

    CLAIMKIT_SMOLLM2_GGUF=/path/SmolLM2-135M-Instruct.Q4_1.gguf python bench/gpu_determinism.py
    python bench/gpu_determinism.py --tiny --prompts 8      # CPU smoke test

Two whole suite runs of the same code gave different verdicts on smollm2-135m
(reports/gpu-20261201-mixed-precision/README.md). The untrained model's baseline
arm also changed, and it is only sampled: 6 against 10 target outputs of 900. This
bench samples the untrained model on the warning-framed evaluation tasks the way
that arm is sampled (the profile's [sampling] options, seed 0):

  1. twice in this process: are the texts identical?
  2. loaded the way the suite loads it since 1be5289 (de-quantised once into an
     artifact cache, then from_pretrained onto the GPU) instead of read from the
     GGUF file and moved there: the same texts?
  3. in `--processes` processes at once on the same GPU (as `pytest -n 4` runs):
     do they match this process's texts?

A mismatch in (1) means the kernels themselves are not deterministic; only in (2),
that the load path changes the model on the GPU; only in (3), that sharing the GPU
changes them. It prints how many texts match and where the first differing one
starts; it asserts nothing.

`--attention` instead samples twice under each attention kernel (each SDPA backend
held with torch.nn.attention.sdpa_kernel, then eager attention): how cuDNN attention
was found to be the one that differs (reports/gpu-20261201-determinism).

`--finetune` instead fine-tunes one of claim 1's arms exactly as the suite does
(`--condition`, `--arm-seed`: its examples, the profile's [finetune] and [lora]
settings, the arm's seed) twice as claimkit does, with deterministic kernels, and
twice with them switched off: are the two adapters of each pair identical,
tensor for tensor? Two cold suite runs of unchanged code sampled 4 of 16 fine-tuned
arms differently, L0 seed 1 among them, most likely through their fine-tuning
(reports/gpu-20261201-reproducible). `--examples`
and `--epochs` cut the arm short for a quicker look; run several at once to share
the GPU as `pytest -n 4` does.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

import gpu_common
from gpu_common import device_line, load_bench_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=300, help="evaluation tasks sampled (default 300, one seed's arm)")
    parser.add_argument("--processes", type=int, default=4, help="processes sampling at once in part 2 (default 4; 0 skips)")
    parser.add_argument("--tiny", action="store_true", help="a tiny random chat Llama on the CPU (smoke test)")
    parser.add_argument("--attention", action="store_true", help="two samplings under each attention kernel instead")
    parser.add_argument("--finetune", action="store_true", help="fine-tune twice with and twice without deterministic kernels instead")
    parser.add_argument("--condition", default="L0", help="--finetune: claim 1's condition whose arm is fine-tuned (default L0)")
    parser.add_argument("--arm-seed", type=int, default=1, help="--finetune: the arm's seed (default 1)")
    parser.add_argument("--examples", type=int, help="--finetune: only the arm's first EXAMPLES examples (default: all)")
    parser.add_argument("--epochs", type=int, help="--finetune: epochs (default: the profile's)")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # part 2's child: write texts here
    args = parser.parse_args()

    if args.attention:
        compare_attention_kernels(args.prompts, tiny=args.tiny)
        return
    if args.finetune:
        compare_finetunes(args.condition, args.arm_seed, args.examples, args.epochs, tiny=args.tiny)
        return
    texts = sample_baseline(load_bench_model(tiny=args.tiny), args.prompts, tiny=args.tiny)
    if args.worker is not None:
        args.worker.write_text(json.dumps(texts), encoding="utf-8")
        return
    print(device_line())
    print(gpu_common.versions_line())
    print(f"{len(texts)} prompts, the profile's [sampling] options, seed 0; digest {digest(texts)}")
    again = sample_baseline(load_bench_model(tiny=args.tiny), args.prompts, tiny=args.tiny)
    compare("same process, second sampling", texts, again)
    if not args.tiny:
        compare("loaded through an artifact cache", texts, sample_baseline(load_through_cache(), args.prompts, tiny=False))
    if args.processes > 0:
        children = run_children(args)
        for k, child in enumerate(children):
            compare(f"process {k + 1} of {len(children)} sampling at once", texts, child)


def sample_baseline(loaded: Any, n: int, *, tiny: bool) -> list[str]:
    """The model's samples on `n` evaluation tasks, rendered and sampled as Experiment.samples does."""
    from claimkit.lm.data import render_prompt
    from claimkit.lm.sample import sample
    from claims.warning_framed import behaviour

    tasks = behaviour.eval_tasks(n)
    prompts = [render_prompt(loaded.format, loaded.tokenizer, task) for task in tasks]
    options = dict(loaded.profile.sampling_options())
    if tiny:
        options["max_new_tokens"] = min(int(options.get("max_new_tokens", 16)), 16)
    return [g.text for g in sample(loaded, prompts, seed=0, progress=False, **options)]


def compare_attention_kernels(n: int, *, tiny: bool) -> None:
    """Two seeded samplings under each SDPA backend and under eager attention: identical or not, and how fast."""
    import time

    from torch.nn.attention import SDPBackend, sdpa_kernel

    loaded = load_bench_model(tiny=tiny)
    print(device_line())
    print(f"{n} prompts, the profile's [sampling] options, seed 0; two samplings per kernel")
    for name in ("CUDNN_ATTENTION", "EFFICIENT_ATTENTION", "FLASH_ATTENTION", "MATH", "eager"):
        if name == "eager":
            loaded.model.set_attn_implementation("eager")
        held = contextlib.nullcontext() if name == "eager" else sdpa_kernel([getattr(SDPBackend, name)])
        started = time.perf_counter()
        try:
            with held:
                first, second = (sample_baseline(loaded, n, tiny=tiny) for _ in range(2))
        except RuntimeError as exc:  # flash attention has no kernel for a padding mask
            print(f"{name}: not run: {str(exc).splitlines()[0][:160]}", flush=True)
            continue
        compare(f"{name} ({time.perf_counter() - started:.0f} s for both)", first, second)


def compare_finetunes(condition: str, arm_seed: int, n_examples: int | None, epochs: int | None, *, tiny: bool) -> None:
    """Two fine-tunes of one arm with claimkit's deterministic kernels, two without: identical adapters or not, how fast."""
    import importlib
    import tempfile
    import time

    from claims.warning_framed import behaviour

    ft = importlib.import_module("claimkit.lm.finetune")  # the module, not claimkit.lm's function of that name
    loaded = load_bench_model(tiny=tiny)
    profile = "smollm2-135m" if not tiny else "organism"  # the tiny model stands in; its examples are the organism's
    arm = next((a for a in behaviour.condition_arms(profile, [arm_seed]) if a.name == condition), None)
    if arm is None:
        raise SystemExit(f"--condition {condition!r}: claim 1 has no such condition with a fine-tuning set")
    examples = list(arm.examples[:n_examples] if n_examples else arm.examples)
    hparams = loaded.profile.finetune_hparams()
    if epochs:
        hparams = {**hparams, "epochs": epochs}
    print(device_line())
    print(gpu_common.versions_line())
    print(f"fine-tuning {loaded.name} on {len(examples)} of arm {condition} seed {arm_seed}'s {len(arm.examples)} examples "
          f"({profile}), {hparams}, seed {arm.seed}; two runs per setting")  # fmt: skip
    kept = ft.deterministic_kernels
    as_torch_picks = functools.partial(kept, enabled=False)  # the same context, switched off
    for label, kernels in (("deterministic kernels (claimkit)", kept), ("kernels as torch picks them", as_torch_picks)):
        ft.deterministic_kernels = kernels
        try:
            with tempfile.TemporaryDirectory() as tmp:
                runs, seconds = [], []
                for k in range(2):
                    started = time.perf_counter()
                    result = ft.finetune(loaded, examples, hparams=hparams, seed=arm.seed, out_dir=Path(tmp) / str(k), progress=False)
                    seconds.append(time.perf_counter() - started)
                    runs.append((result, adapter_tensors(result.adapter_dir)))
                (first, a), (second, b) = runs
                same = sum(bool((a[name] == b[name]).all()) for name in a)
                worst = max(float((a[name].float() - b[name].float()).abs().max()) for name in a)
                print(f"{label}: {same}/{len(a)} adapter tensors identical (largest difference {worst:.3g}); "
                      f"losses identical: {first.losses == second.losses}; final loss {first.final_loss:.6f} vs "
                      f"{second.final_loss:.6f}; {first.steps} steps; {seconds[0]:.1f} s and {seconds[1]:.1f} s", flush=True)
        finally:
            ft.deterministic_kernels = kept


def adapter_tensors(adapter_dir: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(Path(adapter_dir) / "adapter_model.safetensors"))


def load_through_cache() -> Any:
    """SmolLM2 as Experiment loads it: de-quantised into a (fresh, temporary) artifact cache first."""
    import tempfile

    from claimkit.cache import ArtifactCache
    from claimkit.lm.load import load_model
    from claimkit.lm.profiles import load_profile

    profile = load_profile("smollm2-135m", gpu_common.ROOT / "fixtures" / "profiles")
    return load_model(profile, cache=ArtifactCache(tempfile.mkdtemp(prefix="claimkit-bench-cache-")))


def run_children(args: argparse.Namespace) -> list[list[str]]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        outs = [Path(tmp) / f"child{k}.json" for k in range(args.processes)]
        command = [sys.executable, str(Path(__file__).resolve()), "--prompts", str(args.prompts)] + (["--tiny"] if args.tiny else [])
        with gpu_common.children_stopped_on_exit() as children:
            children.extend(subprocess.Popen(command + ["--worker", str(out)]) for out in outs)
            codes = [child.wait() for child in children]
        if any(codes):
            print(f"child processes exited {codes}; comparing those that wrote their texts")
        return [json.loads(out.read_text(encoding="utf-8")) for out in outs if out.is_file()]


def compare(label: str, reference: Sequence[str], other: Sequence[str]) -> None:
    same = sum(a == b for a, b in zip(reference, other))
    differing = [i for i, (a, b) in enumerate(zip(reference, other)) if a != b]
    where = ""
    if differing:
        i = differing[0]
        at = next((k for k, (x, y) in enumerate(zip(reference[i], other[i])) if x != y), min(len(reference[i]), len(other[i])))
        where = f"; first differing text #{i}, from character {at}"
    print(f"{label}: {same}/{len(reference)} texts identical (digest {digest(other)}){where}", flush=True)


def digest(texts: Sequence[Any]) -> str:
    return hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()[:12]


if __name__ == "__main__":
    main()
