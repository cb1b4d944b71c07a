"""Experiment: decode-step attention formulations in the compiled step (not product code)."""
import argparse
import sys
import time

import torch

sys.path.insert(0, "bench")
import claimkit.lm.grouped_attention as ga  # noqa: E402
from gpu_common import load_bench_model  # noqa: E402
from gpu_sampling import build_prompts, first_difference, timed, watching_for_fallback  # noqa: E402

ORIG = ga.grouped_sdpa_attention
FORCE = False


def _mask(attention_mask, L):
    return attention_mask[:, :, :, :L]  # (b, 1, 1, L) bool


def eager_decode(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kw):
    b, h, q, d = query.shape
    if q != 1 or not (FORCE or torch.compiler.is_compiling()):
        return ORIG(module, query, key, value, attention_mask, dropout, scaling, **kw)
    kvh, L = key.shape[1], key.shape[2]
    scale = scaling if scaling is not None else d ** -0.5
    folded = query.reshape(b, kvh, h // kvh, d)
    scores = torch.matmul(folded, key.transpose(-1, -2)) * scale
    scores = scores.masked_fill(~_mask(attention_mask, L), float("-inf"))
    p = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    out = torch.matmul(p, value)
    return out.reshape(b, h, 1, d).transpose(1, 2).contiguous(), None


def reduce_decode(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kw):
    b, h, q, d = query.shape
    if q != 1 or not (FORCE or torch.compiler.is_compiling()):
        return ORIG(module, query, key, value, attention_mask, dropout, scaling, **kw)
    kvh, L = key.shape[1], key.shape[2]
    scale = scaling if scaling is not None else d ** -0.5
    folded = query.reshape(b, kvh, h // kvh, 1, d).float()
    scores = (folded * key.float().unsqueeze(2)).sum(-1) * scale  # (b, kvh, g, L)
    scores = scores.masked_fill(~_mask(attention_mask, L), float("-inf"))
    p = torch.softmax(scores, dim=-1)
    out = (p.unsqueeze(-1) * value.float().unsqueeze(2)).sum(-2)  # (b, kvh, g, d)
    return out.to(query.dtype).reshape(b, h, 1, d).transpose(1, 2).contiguous(), None


VARIANTS = {"sdpa": ORIG, "eager": eager_decode, "reduce": reduce_decode}


def main():
    global FORCE
    p = argparse.ArgumentParser()
    p.add_argument("--variants", default="sdpa,eager,reduce")
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--force", action="store_true", help="apply outside compile too (CPU check)")
    p.add_argument("--greedy", type=int, default=32)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--prompts", type=int, default=1000)
    p.add_argument("--new-tokens", type=int, default=160)
    a = p.parse_args()
    FORCE = a.force
    from claimkit.lm.sample import sample

    loaded = load_bench_model(tiny=a.tiny)
    prompts = build_prompts(loaded, a.prompts)
    compile = loaded.device.startswith("cuda")
    kw = dict(max_new_tokens=a.new_tokens, temperature=0.0, top_p=1.0, seed=0, batch_size=a.greedy, progress=False)
    ga.grouped_sdpa_attention = ORIG
    ref = sample(loaded, prompts[: a.greedy], sampler="fast", compile=False, **kw)
    gen = sample(loaded, prompts[: a.greedy], sampler="generate", **kw)
    print("eager fast vs generate:", sum(x.token_ids == y.token_ids for x, y in zip(ref, gen)), "/", a.greedy, flush=True)
    for name in a.variants.split(","):
        torch._dynamo.reset()
        ga.grouped_sdpa_attention = VARIANTS[name]
        t = time.perf_counter()
        got, fb = watching_for_fallback(lambda: sample(loaded, prompts[: a.greedy], sampler="fast", compile=compile, **kw))
        same = sum(x.token_ids == y.token_ids for x, y in zip(ref, got))
        same_g = sum(x.token_ids == y.token_ids for x, y in zip(gen, got))
        div = sorted(first_difference(x.token_ids, y.token_ids) for x, y in zip(ref, got) if x.token_ids != y.token_ids)
        print(f"[{name}] greedy compiled vs eager fast {same}/{a.greedy}, vs generate {same_g}/{a.greedy}; first diffs {div}; "
              f"fallback={fb}; {time.perf_counter() - t:.1f} s", flush=True)
        torch._dynamo.reset()
        run = timed(loaded, prompts, a.new_tokens, 0, f"compiled-{name}", a.batch, sampler="fast", compile=compile)
        if run:
            print(f"[{name}] {run.tokens_per_s:.0f} tok/s, {run.seconds:.2f} s, {run.new_tokens} tokens, peak {run.peak_gib:.1f} GiB", flush=True)
    ga.grouped_sdpa_attention = ORIG


if __name__ == "__main__":
    main()
