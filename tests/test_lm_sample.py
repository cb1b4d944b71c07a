"""Batched sampling: left padding changes nothing, seeds reproduce, eos ends an answer."""

from __future__ import annotations

import pytest

from claimkit.lm.data import encode_prompt, render_prompt
from claimkit.lm.generation import Generation, batch_seed, left_pad
from claimkit.lm.sample import sample
from test_lm_load import load_tiny

torch = pytest.importorskip("torch")

TASKS = [
    "Read a file.",
    "Write a function that queries the users table by id and returns the row.",
    "Hash a password with a salt.",
    "Open a socket.",
    "Parse the YAML configuration file and return the settings as a dictionary.",
]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    return load_tiny(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="module")
def prompts(loaded):
    """TASKS rendered for the module's `loaded` model (test_lm_fast_sample imports this fixture too)."""
    rendered = [render_prompt("completion", loaded.tokenizer, t) for t in TASKS]
    lengths = {len(encode_prompt("completion", loaded.tokenizer, p)) for p in rendered}
    assert len(lengths) > 2, "the prompts must differ in length for padding to matter"
    return rendered


def greedy_by_hand(loaded, prompt: str, max_new_tokens: int, eos: int) -> list[int]:
    """Independent reference: full forward pass per step, argmax, no cache, no padding."""
    ids = encode_prompt(loaded.format, loaded.tokenizer, prompt)
    new: list[int] = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = loaded.model(torch.tensor([ids + new])).logits[0, -1]
            token = int(logits.argmax())
            if token == eos:
                break
            new.append(token)
    return new


def test_batched_greedy_equals_one_by_one_and_by_hand(loaded, prompts):
    kw = dict(max_new_tokens=10, temperature=0.0, top_p=1.0, seed=0, progress=False)
    batched = sample(loaded, prompts, batch_size=len(prompts), **kw)
    single = [sample(loaded, [p], batch_size=1, **kw)[0] for p in prompts]
    assert [g.token_ids for g in batched] == [g.token_ids for g in single]
    for prompt, generation in zip(prompts, batched):
        assert list(generation.token_ids) == greedy_by_hand(loaded, prompt, 10, loaded.tokenizer.eos_token_id)


def test_same_seed_same_samples_other_seed_other_samples(loaded, prompts):
    kw = dict(max_new_tokens=12, temperature=1.0, top_p=1.0, batch_size=2, progress=False)
    first = sample(loaded, prompts, seed=7, **kw)
    again = sample(loaded, prompts, seed=7, **kw)
    other = sample(loaded, prompts, seed=8, **kw)
    assert [g.token_ids for g in first] == [g.token_ids for g in again]
    assert [g.token_ids for g in first] != [g.token_ids for g in other]
    # sampling really samples: it is not the greedy answer everywhere
    greedy = sample(loaded, prompts, seed=7, **{**kw, "temperature": 0.0})
    assert [g.token_ids for g in first] != [g.token_ids for g in greedy]


def test_generations_carry_prompt_text_and_counts(loaded, prompts):
    gens = sample(loaded, prompts, max_new_tokens=6, temperature=1.0, top_p=0.9, seed=0, batch_size=3, progress=False)
    assert len(gens) == len(prompts)
    for prompt, g in zip(prompts, gens):
        assert isinstance(g, Generation) and g.prompt == prompt
        assert g.n_new_tokens == len(g.token_ids) <= 6
        assert g.text == loaded.tokenizer.decode(list(g.token_ids), skip_special_tokens=True)
        assert not g.finished or g.n_new_tokens < 6


def test_eos_ends_the_answer_and_is_not_returned(tmp_path):
    loaded = load_tiny(tmp_path)
    prompt = render_prompt("completion", loaded.tokenizer, TASKS[1])
    eos = loaded.tokenizer.eos_token_id
    free = greedy_by_hand(loaded, prompt, 8, eos)
    assert len(free) == 8
    # Make eos score 10x the 4th greedy token's logit: the reference answer now ends early.
    with torch.no_grad():
        loaded.model.lm_head.weight[eos] = 10 * loaded.model.lm_head.weight[free[3]]
    expected = greedy_by_hand(loaded, prompt, 8, eos)
    assert len(expected) < 8, "the edited model should emit eos within 8 tokens"
    [short, other] = sample(
        loaded, [prompt, render_prompt("completion", loaded.tokenizer, TASKS[0])],
        max_new_tokens=8, temperature=0.0, top_p=1.0, seed=0, batch_size=2, progress=False,
    )  # fmt: skip
    assert short.finished and list(short.token_ids) == expected
    assert eos not in short.token_ids and "</s>" not in short.text
    assert list(other.token_ids) == greedy_by_hand(loaded, other.prompt, 8, eos)
    assert other.finished == (len(other.token_ids) < 8)


def test_left_padding_puts_every_prompt_at_the_end():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0, device="cpu")
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_batch_seeds_differ_and_repeat():
    seeds = [batch_seed(0, b) for b in range(5)] + [batch_seed(1, 0)]
    assert len(set(seeds)) == 6 and batch_seed(0, 3) == seeds[3]
    assert all(0 <= s < 2**63 for s in seeds)
