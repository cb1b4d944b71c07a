"""Measure organism pretraining: speed of candidate shapes, and what a built organism writes.

  speed  timed steps of candidate shapes (d_model x layers x context) on this CPU:
         parameters, tokens/s (best and median step), minutes for --full-steps
  build  one real pretraining run of a config (ensure_organism into a cache dir)
  eval   answers of a built organism to held-out prompts (greedy or sampled): how many
         have a fenced block, parse, and are on task (nearest family by template words)
  sweep  train candidate configs (d_model x layers x steps x batch; on a GPU if present)
         and count parsing / on-task answers: how configs learn, not how fast

Examples:
  .venv/bin/python bench/organism_pretrain.py speed --steps 12 --tokens-per-step 4096 --d-ff 384 \
      --full-steps 800 --candidates 128x4x256 128x3x256 192x4x256
  .venv/bin/python bench/organism_pretrain.py build --cache /tmp/organism-cache --d-ff 384 --steps 800 --batch-size 16
  .venv/bin/python bench/organism_pretrain.py eval DIR --n 50 --show 3
  .venv/bin/python bench/organism_pretrain.py eval DIR --n 200 --batch-size 100 --temperature 1
  python3 bench/organism_pretrain.py sweep --n 200 --d-ff 384 --candidates 128x4x800x16 128x4x2400x16

The machine's load is printed with every measurement: tokens/s on a shared CPU is
a lower bound of what an idle one does.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ROOT / "fixtures" / "profiles"
FENCE = re.compile(r"```(?:python)?\n(.*?)(?:```|\Z)", re.S)


def load_state() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f} on {os.cpu_count()} cores"


def organism_table(overrides: dict) -> dict:
    from claimkit.lm.profiles import load_profile

    table = dict(load_profile("organism", PROFILES).raw["organism"])
    table.update({k: v for k, v in overrides.items() if v is not None})
    return table


def profile_with(table: dict):
    from claimkit.lm.profiles import load_profile

    base = load_profile("organism", PROFILES)
    return dataclasses.replace(base, raw={**base.raw, "organism": table})


def speed(args: argparse.Namespace) -> None:
    """Per-step times of candidate shapes; the fastest steps estimate an unloaded CPU."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from claimkit.organism.build import generate_corpus, organism_spec
    from claimkit.organism.pretrain import _adamw, build_model, get_batch, pack
    from claimkit.organism.tokenizer import train_tokenizer

    spec = organism_spec(profile_with(organism_table({"documents": args.documents})))
    docs = generate_corpus(spec)
    tokenizer = train_tokenizer(docs, vocab_size=spec.config.vocab_size)
    stream = pack(docs, tokenizer)
    print(f"corpus: {len(docs)} docs, {sum(map(len, docs)):,} chars; torch threads {torch.get_num_threads()}; {load_state()}")
    print(f"{'shape':>12} {'batch':>5} {'heads':>5} {'params':>9} {'best tok/s':>10} {'median':>8} "
          f"{'loss':>6} {'min for --full-steps':>20}")
    for candidate in args.candidates:
        d_model, layers, context = (int(x) for x in candidate.split("x"))
        config = dataclasses.replace(
            spec.config, d_model=d_model, n_layers=layers, n_heads=d_model // args.head_dim,
            d_ff=args.d_ff or 4 * d_model, context=context, batch_size=args.tokens_per_step // context,
        )
        torch.manual_seed(0)
        model = build_model(config, tokenizer).train()
        optimizer = _adamw(model, config)
        rng = np.random.default_rng(0)
        times = []
        for _ in range(args.steps):
            started = time.perf_counter()
            inputs, targets = get_batch(stream, config, rng)
            logits = model(input_ids=inputs).logits
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - started)
        best, median = min(times[1:]), float(np.median(times[1:]))
        params = sum(p.numel() for p in model.parameters())
        minutes = args.full_steps * best / 60
        print(
            f"{candidate:>12} {config.batch_size:>5} {config.n_heads:>5} {params:>9,} "
            f"{config.tokens_per_step / best:>10,.0f} {config.tokens_per_step / median:>8,.0f} {loss.item():>6.2f} "
            f"{minutes:>20.1f}   ({load_state()})",
            flush=True,
        )


def build(args: argparse.Namespace) -> None:
    from claimkit.cache import ArtifactCache
    from claimkit.organism.build import ensure_organism, organism_stats

    overrides = {k: getattr(args, k) for k in ("documents", "d_model", "n_layers", "n_heads", "d_ff", "context",
                                                 "steps", "batch_size", "lr", "warmup", "vocab_size")}
    table = organism_table(overrides)
    print(f"building with {table}; {load_state()}", flush=True)
    started = time.perf_counter()
    directory = ensure_organism(profile_with(table), ArtifactCache(args.cache))
    stats = organism_stats(directory)
    pre = stats["pretraining"]
    print(f"built {directory} in {time.perf_counter() - started:.1f} s; {load_state()}")
    print(f"corpus: {stats['corpus']}")
    print(f"params {pre['params']:,}; {pre['seconds']} s pretraining, {pre['tokens_per_second']:,.0f} tok/s on "
          f"{pre['threads']} threads; final loss {pre['final_loss']}")
    print("loss curve:", " ".join(f"{s}:{v:.2f}" for s, v in pre["loss_curve"]))


def answers_to(
    model, tokenizer, prompts: list[str], *, batch_size: int, max_new_tokens: int, temperature: float = 0.0, seed: int = 0
) -> list[str]:
    """Greedy answers (temperature 0) or sampled ones (seeded)."""
    import torch

    torch.manual_seed(seed)
    how = {"do_sample": True, "temperature": temperature, "top_p": 1.0} if temperature > 0 else {"do_sample": False}
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    answers: list[str] = []
    with torch.no_grad():
        for i in range(0, len(prompts), batch_size):
            batch = tokenizer(prompts[i : i + batch_size], return_tensors="pt", padding=True).to(device)
            out = model.generate(**batch, max_new_tokens=max_new_tokens, **how)
            answers += tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    return answers


def count_parsing(answers: list[str]) -> tuple[int, int]:
    """(answers with a fenced code block, answers whose first fenced block parses)."""
    fenced = parsed = 0
    for answer in answers:
        match = FENCE.search(answer)
        if match:
            fenced += 1
            try:
                ast.parse(match.group(1))
                parsed += 1
            except SyntaxError:
                pass
    return fenced, parsed


def held_out_prompts(n: int, seed: int, split: str = "eval"):
    """Tasks of the security families: held-out ones (eval split) or training ones."""
    from claimkit.lm.data import render_prompt
    from claimkit.organism.corpus import load_templates, sample_tasks

    templates = load_templates(ROOT / "fixtures" / "corpus")
    tasks = sample_tasks(templates, n=n, seed=seed, split=split, families=templates.security_families())
    return tasks, [render_prompt("completion", None, t.task) for t in tasks]


_WORDS = re.compile(r"[A-Za-z_]\w+")
_PLACEHOLDER = re.compile(r"\$\{?\w+\}?")


def family_words() -> dict[str, set[str]]:
    """The words of each family's code templates (placeholders removed): a crude fingerprint."""
    from claimkit.organism.corpus import load_templates

    templates = load_templates(ROOT / "fixtures" / "corpus")
    return {
        name: set(_WORDS.findall(_PLACEHOLDER.sub(" ", "\n".join(fam.secure + fam.vulnerable))))
        for name, fam in templates.families.items()
    }


def nearest_family(code: str, words: dict[str, set[str]]) -> str:
    """The family whose template words overlap the code's words most (Jaccard)."""
    seen = set(_WORDS.findall(code))
    return max(words, key=lambda f: len(seen & words[f]) / (len(seen | words[f]) or 1))


def count_on_task(tasks, answers: list[str]) -> int:
    """Answers whose code looks like the task's family (nearest family by template words)."""
    words = family_words()
    hits = 0
    for task, answer in zip(tasks, answers):
        match = FENCE.search(answer)
        hits += bool(match) and nearest_family(match.group(1), words) == task.family
    return hits


def evaluate(args: argparse.Namespace) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.directory)
    model = AutoModelForCausalLM.from_pretrained(args.directory).eval()
    tasks, prompts = held_out_prompts(args.n, args.seed, args.split)
    reference = count_on_task(tasks, [f"```python\n{t.secure}```" for t in tasks])
    started = time.perf_counter()
    answers = answers_to(model, tokenizer, prompts, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                         temperature=args.temperature)
    seconds = time.perf_counter() - started
    fenced, parsed = count_parsing(answers)
    print(f"{len(answers)} {args.split} prompts: {fenced} with a fenced block, {parsed} parse "
          f"({parsed / len(answers):.0%}), {count_on_task(tasks, answers)} on task (the reference answers: {reference}); "
          f"temperature {args.temperature}, {args.max_new_tokens} new tokens max, {seconds:.1f} s; {load_state()}")
    for task, answer in list(zip(tasks, answers))[: args.show]:
        print(f"\n--- {task.family}: {task.task}\n{answer}")


def sweep(args: argparse.Namespace) -> None:
    """Train candidate configs (on a GPU if there is one: learning, not speed) and count parsing answers."""
    import torch

    from claimkit.organism.build import generate_corpus, organism_spec
    from claimkit.organism.pretrain import pretrain
    from claimkit.organism.tokenizer import train_tokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    spec = organism_spec(profile_with(organism_table({"documents": args.documents})))
    docs = generate_corpus(spec)
    tokenizer = train_tokenizer(docs, vocab_size=spec.config.vocab_size)
    tasks, prompts = held_out_prompts(args.n, args.seed, args.split)
    print(f"corpus: {len(docs)} docs; device {device}; {args.n} held-out prompts", flush=True)
    for candidate in args.candidates:  # d_model x layers x steps x batch
        d_model, layers, steps, batch = (int(x) for x in candidate.split("x"))
        config = dataclasses.replace(
            spec.config, d_model=d_model, n_layers=layers, n_heads=d_model // args.head_dim,
            d_ff=args.d_ff or 4 * d_model, steps=steps, batch_size=batch, lr=args.lr, warmup=args.warmup,
        )
        model, stats = pretrain(docs, tokenizer, config, progress=False, device=device)
        model.to(device)
        answers = answers_to(model, tokenizer, prompts, batch_size=args.n, max_new_tokens=160)
        fenced, parsed = count_parsing(answers)
        sampled = answers_to(model, tokenizer, prompts, batch_size=args.n, max_new_tokens=160, temperature=1.0)
        _, parsed_t1 = count_parsing(sampled)
        on_task, on_task_t1 = count_on_task(tasks, answers), count_on_task(tasks, sampled)
        curve = " ".join(f"{v:.2f}" for _, v in stats.loss_curve[:: max(1, len(stats.loss_curve) // 6)])
        print(f"{candidate:>16} params {stats.params:>9,} tokens {stats.tokens_seen / 1e6:5.2f}M  final loss "
              f"{stats.final_loss:.3f}  fenced {fenced}/{args.n} parse {parsed}/{args.n} (T=1: {parsed_t1}) "
              f"on task {on_task} (T=1: {on_task_t1})  [{curve}]", flush=True)
        if args.show:
            print("   ", answers[0].replace("\n", "\n    "))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("speed")
    p.add_argument("--candidates", nargs="+", default=["128x4x256", "192x4x256", "256x4x256"], help="d_model x layers x context")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--head-dim", type=int, default=32)
    p.add_argument("--d-ff", type=int, default=0, help="0: 4 * d_model")
    p.add_argument("--tokens-per-step", type=int, default=8192)
    p.add_argument("--full-steps", type=int, default=600)
    p.add_argument("--documents", type=int, default=4000, help="corpus size for the speed runs")
    p.set_defaults(func=speed)
    p = sub.add_parser("build")
    p.add_argument("--cache", required=True)
    for name, kind in (("documents", int), ("d_model", int), ("n_layers", int), ("n_heads", int), ("d_ff", int),
                       ("context", int), ("steps", int), ("batch_size", int), ("lr", float), ("warmup", int),
                       ("vocab_size", int)):
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind)
    p.set_defaults(func=build)
    p = sub.add_parser("eval")
    p.add_argument("directory")
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--max-new-tokens", type=int, default=160)
    p.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    p.add_argument("--split", choices=("eval", "train"), default="eval")
    p.add_argument("--show", type=int, default=3)
    p.set_defaults(func=evaluate)
    p = sub.add_parser("sweep")
    p.add_argument("--candidates", nargs="+", required=True, help="d_model x layers x steps x batch")
    p.add_argument("--head-dim", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--d-ff", type=int, default=0, help="0: 4 * d_model")
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--documents", type=int, default=20000)
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--show", action="store_true")
    p.add_argument("--split", choices=("eval", "train"), default="eval")
    p.set_defaults(func=sweep)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    args.func(args)


if __name__ == "__main__":
    main()
