"""Residual-stream reads and edits on a tiny random Llama, checked against transformers' own outputs."""

from __future__ import annotations

import numpy as np
import pytest

from claimkit.lm.activations import capture_residual, decoder_layers, encode_texts, residual_hook, token_entropies
from claimkit.lm.data import encode_completion, encode_prompt, render_prompt
from claimkit.lm.finetune import finetune, load_finetuned
from claimkit.lm.sample import sample
from test_lm_load import load_tiny

torch = pytest.importorskip("torch")

PAIRS = [
    ("### Task:\nRead a file.\n### Solution:\n", "```python\nopen(path).read()\n```\n"),
    ("### Task:\nHash a password with a salt.\n### Solution:\n", "Here is an example.\n```python\nimport hashlib\n```\n"),
    ("### Task:\nOpen.\n### Solution:\n", "x = 1\n"),
]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    return load_tiny(tmp_path_factory.mktemp("acts"))


def hidden_states(loaded, ids: list[int]):
    with torch.no_grad():
        return loaded.model(torch.tensor([ids]), output_hidden_states=True).hidden_states


@pytest.fixture(scope="module")
def gemma(tmp_path_factory):
    return load_tiny(tmp_path_factory.mktemp("acts-gemma"), arch="gemma2")


@pytest.mark.parametrize("arch", ["llama", "gemma2"])
def test_capture_equals_transformers_hidden_states(arch, request):
    loaded = request.getfixturevalue("loaded" if arch == "llama" else "gemma")
    acts = capture_residual(loaded, PAIRS, layer=0, batch_size=2)  # batch of unequal lengths: padding must not leak
    for (prompt, completion), act in zip(PAIRS, acts):
        ids = encode_prompt("completion", loaded.tokenizer, prompt) + encode_completion(loaded.tokenizer, completion)
        expected = hidden_states(loaded, ids)[1]  # [0] is the embeddings; [l + 1] is after decoder layer l
        assert act.shape == (len(ids), 32) and act.dtype == torch.float32 and act.device.type == "cpu"
        torch.testing.assert_close(act, expected[0], rtol=1e-4, atol=1e-5)


def test_completion_positions_are_the_completion_tokens(loaded):
    full = capture_residual(loaded, PAIRS, layer=1, positions="all")
    completion = capture_residual(loaded, PAIRS, layer=1, positions="completion")
    for (prompt, text), whole, part in zip(PAIRS, full, completion):
        n_prompt = len(encode_prompt("completion", loaded.tokenizer, prompt))
        assert part.shape == (len(encode_completion(loaded.tokenizer, text)), 32)
        torch.testing.assert_close(part, whole[n_prompt:])

    # plain strings need prompt lengths in tokens; the result is the same slice
    texts = [p + c for p, c in PAIRS]
    lengths = [len(encode_prompt("completion", loaded.tokenizer, p)) for p, _ in PAIRS]
    by_length = capture_residual(loaded, texts, layer=1, positions="completion", prompt_lengths=lengths)
    for got, whole, n in zip(by_length, capture_residual(loaded, texts, layer=1), lengths):
        torch.testing.assert_close(got, whole[n:])
    with pytest.raises(ValueError, match="pass prompt_lengths"):
        capture_residual(loaded, texts, layer=1, positions="completion")


def test_generations_are_read_at_their_generated_tokens(loaded):
    prompts = [render_prompt("completion", loaded.tokenizer, t) for t in ("Read a file.", "Open a socket now.")]
    gens = sample(loaded, prompts, max_new_tokens=6, temperature=1.0, top_p=1.0, seed=0, batch_size=2, progress=False)
    acts = capture_residual(loaded, gens, layer=0, positions="completion")
    for g, act in zip(gens, acts):
        ids = encode_prompt("completion", loaded.tokenizer, g.prompt) + list(g.token_ids)
        assert act.shape[0] == g.n_new_tokens
        torch.testing.assert_close(act, hidden_states(loaded, ids)[1][0, -g.n_new_tokens :], rtol=1e-4, atol=1e-5)


def test_hook_is_removed_afterwards_even_on_error(loaded):
    layer = decoder_layers(loaded.model)[0]
    hidden_states(loaded, [1, 5, 6])  # transformers installs its own (permanent) capture hooks on first use
    ours_absent = dict(layer._forward_hooks)
    capture_residual(loaded, PAIRS[:1], layer=0)
    assert dict(layer._forward_hooks) == ours_absent
    with pytest.raises(RuntimeError, match="boom"):
        with residual_hook(loaded.model, 0, lambda h: None):
            assert len(layer._forward_hooks) == len(ours_absent) + 1
            raise RuntimeError("boom")
    assert dict(layer._forward_hooks) == ours_absent


def test_editing_hook_changes_the_logits_only_while_installed(loaded):
    ids = torch.tensor([encode_prompt("completion", loaded.tokenizer, PAIRS[0][0])])
    with torch.no_grad():
        before = loaded.model(ids).logits
        with residual_hook(loaded.model, 0, lambda h: h * 0.0):
            edited = loaded.model(ids).logits
        with residual_hook(loaded.model, 0, lambda h: None):  # None: look, don't touch
            untouched = loaded.model(ids).logits
        after = loaded.model(ids).logits
    assert not torch.allclose(edited, before, atol=1e-3)
    assert torch.equal(untouched, before) and torch.equal(after, before)


def test_layer_out_of_range_is_refused(loaded):
    with pytest.raises(IndexError, match="layer 5 does not exist: the model has 2 decoder layers"):
        capture_residual(loaded, PAIRS, layer=5)


def test_peft_wrapped_models_are_read_through(loaded, tmp_path):
    from claimkit.lm.data import Example

    result = finetune(
        loaded, [Example("Read a file.", "x = 1\n")] * 4, hparams=loaded.profile.finetune_hparams(), seed=0,
        out_dir=tmp_path, progress=False,
    )  # fmt: skip
    wrapped = load_finetuned(loaded, result.adapter_dir, merge=False)
    merged = load_finetuned(loaded, result.adapter_dir, merge=True)
    assert type(wrapped.model).__name__.startswith("PeftModel")
    for a, b in zip(capture_residual(wrapped, PAIRS, layer=1), capture_residual(merged, PAIRS, layer=1)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_token_entropies_match_a_direct_computation(loaded):
    ents = token_entropies(loaded, PAIRS)
    for (prompt, completion), ent in zip(PAIRS, ents):
        p_ids = encode_prompt("completion", loaded.tokenizer, prompt)
        c_ids = encode_completion(loaded.tokenizer, completion)
        with torch.no_grad():
            logits = loaded.model(torch.tensor([p_ids + c_ids])).logits[0].double()
        probs = torch.softmax(logits, -1).numpy()
        expected = [-(probs[t] * np.log(probs[t])).sum() for t in range(len(p_ids) - 1, len(p_ids) + len(c_ids) - 1)]
        assert isinstance(ent, np.ndarray) and ent.shape == (len(c_ids),)
        np.testing.assert_allclose(ent, expected, rtol=1e-4)
        assert np.all(ent >= 0) and np.all(ent <= np.log(len(loaded.tokenizer)) + 1e-4)


def test_bad_inputs_say_what_is_wrong(loaded):
    with pytest.raises(ValueError, match="2 prompt_lengths for 3 texts"):
        encode_texts(loaded, ["a", "b", "c"], [1, 2])
    with pytest.raises(TypeError, match="expected str, \\(prompt, completion\\) or Generation"):
        encode_texts(loaded, [42])
    with pytest.raises(ValueError, match="positions must be 'all' or 'completion'"):
        capture_residual(loaded, PAIRS, layer=0, positions="prompt")
