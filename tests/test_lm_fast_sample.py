"""The fast sampler: greedy answers equal generate's exactly, eos ends rows and the loop,
samples follow softmax(logits / T) (nucleus-filtered), and a failing compile falls back."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from claimkit.lm.data import encode_prompt, render_prompt
from claimkit.lm.fast_sample import FINISHED_CHECK_EVERY, Decoder, sample_fast
from claimkit.lm.generation import left_pad
from claimkit.lm.sample import sample
from test_lm_load import load_tiny
from test_lm_sample import TASKS, greedy_by_hand, prompts  # noqa: F401 - prompts: the shared fixture

torch = pytest.importorskip("torch")
stats = pytest.importorskip("scipy.stats")

ALPHA = 1e-3  # generous: with fixed seeds the tests are deterministic, never flaky


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    return load_tiny(tmp_path_factory.mktemp("fast"))


def first_token_probs(loaded, prompt: str, temperature: float = 1.0) -> np.ndarray:
    """Independent reference: softmax(logits / T) of the next token, one unpadded forward pass in float64."""
    ids = encode_prompt(loaded.format, loaded.tokenizer, prompt)
    with torch.no_grad():
        logits = loaded.model(torch.tensor([ids])).logits[0, -1].double()
    return torch.softmax(logits / temperature, dim=-1).numpy()


def nucleus(probs: np.ndarray, top_p: float) -> np.ndarray:
    """The top-p distribution written independently: keep tokens (most likely first) while the mass before them < top_p."""
    order = np.argsort(-probs, kind="stable")
    before = np.concatenate([[0.0], np.cumsum(probs[order])[:-1]])
    kept = np.zeros_like(probs)
    kept[order[before < top_p]] = probs[order[before < top_p]]
    return kept / kept.sum()


def goodness_of_fit(tokens, probs: np.ndarray) -> float:
    """Chi-square p-value of observed tokens against `probs`; tokens expected < 5 times share one bin."""
    counts = np.bincount(np.asarray(tokens), minlength=len(probs)).astype(float)
    expected = probs * len(tokens)
    big = expected >= 5
    assert counts[probs == 0].sum() == 0, "a token of probability 0 was drawn"
    observed = np.append(counts[big], counts[~big].sum())
    wanted = np.append(expected[big], expected[~big].sum())
    if wanted[-1] == 0:
        observed, wanted = observed[:-1], wanted[:-1]
    return float(stats.chisquare(observed, wanted * observed.sum() / wanted.sum()).pvalue)


def first_tokens(generations, eos: int) -> list[int]:
    """Each generation's first token; an empty finished answer began with eos."""
    return [g.token_ids[0] if g.token_ids else eos for g in generations]


# -- greedy: exactly generate's answers ----------------------------------------------------


def test_greedy_equals_generate_and_by_hand_with_left_padding(loaded, prompts):
    kw = dict(max_new_tokens=12, temperature=0.0, top_p=1.0, seed=0, progress=False)
    plain = sample(loaded, prompts, batch_size=len(prompts), **kw)
    fast = sample_fast(loaded, prompts, batch_size=len(prompts), **kw)
    assert [g.token_ids for g in fast] == [g.token_ids for g in plain]
    assert [(g.prompt, g.text, g.n_new_tokens, g.finished) for g in fast] == [
        (g.prompt, g.text, g.n_new_tokens, g.finished) for g in plain
    ]
    for prompt, generation in zip(prompts, fast):
        assert list(generation.token_ids) == greedy_by_hand(loaded, prompt, 12, loaded.tokenizer.eos_token_id)
    # batches of 2: other paddings, a short last batch
    assert [g.token_ids for g in sample_fast(loaded, prompts, batch_size=2, **kw)] == [g.token_ids for g in plain]


def test_greedy_equals_generate_on_a_sliding_window_model(tmp_path, prompts):
    gemma = load_tiny(tmp_path, arch="gemma2")
    kw = dict(max_new_tokens=10, temperature=0.0, top_p=1.0, seed=0, batch_size=len(prompts), progress=False)
    assert [g.token_ids for g in sample_fast(gemma, prompts, **kw)] == [g.token_ids for g in sample(gemma, prompts, **kw)]


def test_greedy_equals_generate_under_a_residual_edit_and_an_unmerged_adapter(loaded, prompts, tmp_path):
    """What interventions and merge=False arms hand the sampler: hooks on decoder layers, a peft wrapper."""
    from claimkit.lm.activations import residual_hook
    from claimkit.lm.finetune import finetune, load_finetuned
    from test_lm_finetune import examples, hparams

    kw = dict(max_new_tokens=8, temperature=0.0, top_p=1.0, seed=0, batch_size=len(prompts), progress=False)
    with residual_hook(loaded.model, 0, lambda hidden: hidden * 1.5):
        edited = sample_fast(loaded, prompts, **kw)
        assert [g.token_ids for g in edited] == [g.token_ids for g in sample(loaded, prompts, **kw)]
    assert [g.token_ids for g in edited] != [g.token_ids for g in sample_fast(loaded, prompts, **kw)]

    adapter = tmp_path / "adapter"
    finetune(loaded, examples(8), hparams=hparams(loaded, epochs=1), seed=0, out_dir=adapter, progress=False)
    peft_model = load_finetuned(loaded, adapter, merge=False)
    assert hasattr(peft_model.model, "get_base_model")
    assert [g.token_ids for g in sample_fast(peft_model, prompts, **kw)] == [g.token_ids for g in sample(peft_model, prompts, **kw)]


def test_sample_with_sampler_fast_is_the_fast_path(loaded, prompts):
    kw = dict(max_new_tokens=6, temperature=1.0, top_p=0.9, seed=3, batch_size=2, progress=False)
    assert sample(loaded, prompts, sampler="fast", **kw) == sample_fast(loaded, prompts, **kw)
    with pytest.raises(ValueError, match="unknown sampler 'vllm'; use one of generate, fast"):
        sample(loaded, prompts, sampler="vllm", **kw)


# -- eos -------------------------------------------------------------------------------------


def test_eos_ends_a_row_and_is_not_returned(tmp_path):
    loaded = load_tiny(tmp_path)
    prompt = render_prompt("completion", loaded.tokenizer, TASKS[1])
    other = render_prompt("completion", loaded.tokenizer, TASKS[0])
    eos = loaded.tokenizer.eos_token_id
    free = greedy_by_hand(loaded, prompt, 8, eos)
    with torch.no_grad():  # as in test_lm_sample: eos now outscores the 4th greedy token
        loaded.model.lm_head.weight[eos] = 10 * loaded.model.lm_head.weight[free[3]]
    expected = greedy_by_hand(loaded, prompt, 8, eos)
    assert len(expected) < 8, "the edited model should emit eos within 8 tokens"
    kw = dict(max_new_tokens=8, temperature=0.0, top_p=1.0, seed=0, batch_size=2, progress=False)
    short, long = sample_fast(loaded, [prompt, other], **kw)
    assert short.finished and list(short.token_ids) == expected
    assert eos not in short.token_ids and "</s>" not in short.text
    assert list(long.token_ids) == greedy_by_hand(loaded, other, 8, eos)
    assert long.finished == (len(long.token_ids) < 8)
    assert [short, long] == sample(loaded, [prompt, other], **kw)


def test_the_loop_stops_once_every_row_has_ended(tmp_path, prompts):
    loaded = load_tiny(tmp_path)
    eos = loaded.tokenizer.eos_token_id
    calls = []

    def eos_first(module, inputs, logits):  # eos is every row's most likely token at every step
        calls.append(1)
        logits[..., eos] += 1e4
        return logits

    handle = loaded.model.lm_head.register_forward_hook(eos_first)
    try:
        gens = sample_fast(loaded, prompts, max_new_tokens=100, temperature=1.0, top_p=1.0, seed=0,
                           batch_size=len(prompts), progress=False)  # fmt: skip
    finally:
        handle.remove()
    assert all(g.finished and g.n_new_tokens == 0 and g.text == "" for g in gens)
    assert len(calls) <= FINISHED_CHECK_EVERY  # one prefill + at most the steps before the first check


# -- sampling: the distribution of generate --------------------------------------------------


@pytest.mark.parametrize("temperature, top_p", [(1.0, 1.0), (0.7, 0.8)])
def test_first_tokens_follow_softmax_of_the_logits(loaded, prompts, temperature, top_p):
    """Rows alternate a short (left-padded) and a long prompt; each row's first token follows its own prompt."""
    short, long = min(prompts, key=len), max(prompts, key=len)
    n = 3000
    gens = sample_fast(loaded, [short, long] * n, max_new_tokens=1, temperature=temperature, top_p=top_p, seed=11,
                       batch_size=2 * n, progress=False)  # fmt: skip
    eos = loaded.tokenizer.eos_token_id
    tokens_short, tokens_long = first_tokens(gens[0::2], eos), first_tokens(gens[1::2], eos)
    p_short = nucleus(first_token_probs(loaded, short, temperature), top_p)
    p_long = nucleus(first_token_probs(loaded, long, temperature), top_p)
    assert goodness_of_fit(tokens_short, p_short) > ALPHA
    assert goodness_of_fit(tokens_long, p_long) > ALPHA
    # the test can fail: the same draws are far from the other prompt's distribution
    assert goodness_of_fit(tokens_short, nucleus(first_token_probs(loaded, long, temperature), 1.0)) < 1e-6


def test_later_tokens_are_distributed_as_generates(loaded, prompts):
    """Second and third tokens (decode steps through the cache) of fast and plain sampling, other seeds: one distribution."""
    rows = prompts * 400
    kw = dict(max_new_tokens=3, temperature=1.0, top_p=1.0, batch_size=len(rows), progress=False)
    fast = sample_fast(loaded, rows, seed=1, **kw)
    plain = sample(loaded, rows, seed=2, **kw)
    for position in (1, 2):
        a = [g.token_ids[position] for g in fast if g.n_new_tokens > position]
        b = [g.token_ids[position] for g in plain if g.n_new_tokens > position]
        assert two_sample_p(a, b) > ALPHA
    # the test can fail: a shifted distribution (each token id + 1) is told apart
    shifted = [g.token_ids[1] + 1 for g in fast if g.n_new_tokens > 1]
    assert two_sample_p(shifted, [g.token_ids[1] for g in plain if g.n_new_tokens > 1]) < 1e-6


def two_sample_p(a, b) -> float:
    """Chi-square test of homogeneity on the token counts of two samples; rare tokens share one bin."""
    size = max(max(a), max(b)) + 1
    table = np.stack([np.bincount(a, minlength=size), np.bincount(b, minlength=size)]).astype(float)
    common = table.sum(axis=0) >= 10
    merged = np.column_stack([table[:, common], table[:, ~common].sum(axis=1)])
    merged = merged[:, merged.sum(axis=0) > 0]
    return float(stats.chi2_contingency(merged).pvalue)


def test_same_seed_same_samples_other_seed_other_samples(loaded, prompts):
    kw = dict(max_new_tokens=12, temperature=1.0, top_p=1.0, batch_size=2, progress=False)
    first = sample_fast(loaded, prompts, seed=7, **kw)
    assert first == sample_fast(loaded, prompts, seed=7, **kw)
    assert [g.token_ids for g in first] != [g.token_ids for g in sample_fast(loaded, prompts, seed=8, **kw)]
    greedy = sample_fast(loaded, prompts, seed=7, **{**kw, "temperature": 0.0})
    assert [g.token_ids for g in first] != [g.token_ids for g in greedy]


# -- compile ---------------------------------------------------------------------------------


def test_a_failing_compiled_step_falls_back_to_eager(loaded, prompts):
    input_ids, attention_mask = left_pad(
        [encode_prompt("completion", loaded.tokenizer, p) for p in prompts], loaded.tokenizer.pad_token_id, "cpu"
    )
    kw = dict(max_new_tokens=6, temperature=1.0, top_p=1.0, stop_ids=[2], pad_id=0, seed=5)
    eager = Decoder(loaded.model).generate(input_ids, attention_mask, **kw)

    def broken(*args):
        raise RuntimeError("inductor exploded")

    decoder = Decoder(loaded.model, compile=True)
    decoder._compiled_step = lambda: broken
    with pytest.warns(RuntimeWarning, match="compiled decode step failed .*inductor exploded"):
        again = decoder.generate(input_ids, attention_mask, **kw)
    assert torch.equal(again, eager) and not decoder.compile


def test_the_compiled_step_traces_and_gives_the_eager_answers(loaded, prompts, monkeypatch):
    """The decode step under torch.compile (aot_eager on a CPU: dynamo and functionalisation, no C++ compiler)."""
    import claimkit.lm.fast_sample as fast_sample

    monkeypatch.setattr(fast_sample, "COMPILE_OPTIONS", {"backend": "aot_eager", "dynamic": False})
    input_ids, attention_mask = left_pad(
        [encode_prompt("completion", loaded.tokenizer, p) for p in prompts], loaded.tokenizer.pad_token_id, "cpu"
    )
    kw = dict(max_new_tokens=6, temperature=1.0, top_p=1.0, stop_ids=[2], pad_id=0, seed=5)
    eager = Decoder(loaded.model).generate(input_ids, attention_mask, **kw)
    decoder = Decoder(loaded.model, compile=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback to eager would warn
        compiled = [decoder.generate(input_ids, attention_mask, **kw) for _ in range(2)]  # the 2nd: a new cache
    assert decoder.compile and all(torch.equal(c, eager) for c in compiled)


def test_compile_is_ignored_off_cuda(loaded, prompts):
    kw = dict(max_new_tokens=5, temperature=0.0, top_p=1.0, seed=0, batch_size=5, progress=False)
    assert sample_fast(loaded, prompts, compile=True, **kw) == sample_fast(loaded, prompts, **kw)
