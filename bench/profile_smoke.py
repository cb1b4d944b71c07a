"""Does a profile's model run in claimkit on this machine? Load it, sample two answers, take one LoRA step.

For a profile no claim has run on yet (gemma3-270m, qwen2.5-14b-instruct): the same calls the
claims make, on two tasks, with the times each took. It decides nothing about any claim.

    CLAIMKIT_GEMMA3_GGUF=/path/gemma-3-270m-q4_k_m.gguf python bench/profile_smoke.py gemma3-270m [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

TASKS = ("Write a Python function that returns the sum of a list of numbers.",
         "Write a function that reads a file and returns its lines.")
SOLUTIONS = ("```python\ndef total(xs):\n    return sum(xs)\n```\n",
             "```python\ndef lines(path):\n    with open(path) as f:\n        return f.read().splitlines()\n```\n")


def main() -> None:
    from claimkit.cache import default_cache
    from claimkit.lm.data import Example, render_prompt
    from claimkit.lm.finetune import finetune
    from claimkit.lm.load import load_model
    from claimkit.lm.profiles import load_profile
    from claimkit.lm.sample import sample

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile")
    parser.add_argument("--device", default=None, help="default: cuda when there is one, else cpu")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args()

    profile = load_profile(args.profile, ROOT / "fixtures" / "profiles")
    started = time.perf_counter()
    loaded = load_model(profile, device=args.device, cache=default_cache(ROOT))
    print(f"{args.profile}: {loaded.name} ({type(loaded.model).__name__}, "
          f"{sum(p.numel() for p in loaded.model.parameters()) / 1e6:.1f}M parameters) loaded in "
          f"{time.perf_counter() - started:.1f} s; eos {loaded.tokenizer.eos_token!r}, pad {loaded.tokenizer.pad_token!r}")
    prompts = [render_prompt(loaded.format, loaded.tokenizer, task) for task in TASKS]
    started = time.perf_counter()
    for answer in sample(loaded, prompts, max_new_tokens=args.max_new_tokens, temperature=1.0, top_p=1.0, seed=0,
                         batch_size=len(prompts), progress=False):
        print(f"  answer ({answer.n_new_tokens} tokens, ended: {answer.finished}): {answer.text[:160]!r}")
    print(f"sampled in {time.perf_counter() - started:.1f} s")
    examples = [Example(task, solution) for task, solution in zip(TASKS, SOLUTIONS)]
    hparams = {**profile.finetune_hparams(), "epochs": 1, "batch_size": len(examples)}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        result = finetune(loaded, examples, hparams=hparams, seed=0, out_dir=out, progress=False)
    print(f"one LoRA step (the profile's [lora]): loss {result.final_loss:.3f} in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
