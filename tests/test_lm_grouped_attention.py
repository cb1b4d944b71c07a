"""Grouped-query attention without repeat_kv: the same attention, and the fast sampler takes it on GQA models."""

from __future__ import annotations

import pytest

from claimkit.lm import grouped_attention as ga
from claimkit.lm.fast_sample import sample_fast
from claimkit.lm.sample import sample
from test_lm_load import load_tiny

torch = pytest.importorskip("torch")


class Module(torch.nn.Module):
    num_key_value_groups = 3


def repeat_kv_attention(query, key, value, mask):
    """transformers' SDPA path with a padding mask: copy each KV head per query head, then attend."""
    group = query.shape[1] // key.shape[1]
    key, value = (t.repeat_interleave(group, dim=1) for t in (key, value))
    return torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask).transpose(1, 2)


@pytest.mark.parametrize("q_len", [1, 5])  # a decode step, a prefill
def test_the_same_attention_as_copying_the_kv_heads(q_len):
    gen = torch.Generator().manual_seed(0)
    batch, heads, kv_heads, slots, dim = 3, 6, 2, 9, 8
    query = torch.randn(batch, heads, q_len, dim, generator=gen)
    key, value = (torch.randn(batch, kv_heads, slots, dim, generator=gen) for _ in range(2))
    mask = torch.rand(batch, 1, q_len, slots, generator=gen) > 0.3
    mask[..., 0] = True  # no fully masked row
    out, weights = ga.grouped_sdpa_attention(Module().eval(), query, key, value, mask)
    assert weights is None and out.shape == (batch, q_len, heads, dim)
    torch.testing.assert_close(out, repeat_kv_attention(query, key, value, mask))


def test_unsupported_attention_variants_are_refused():
    q = torch.zeros(1, 2, 1, 4)
    kv = torch.zeros(1, 1, 3, 4)
    with pytest.raises(ValueError, match="soft-capped or sliding-window"):
        ga.grouped_sdpa_attention(Module().eval(), q, kv, kv, None, softcap=50.0)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    return load_tiny(tmp_path_factory.mktemp("grouped"))


def test_only_sdpa_models_that_share_kv_heads_are_grouped(loaded, tmp_path):
    config = loaded.model.config
    assert config.num_key_value_heads < config.num_attention_heads and ga.can_group(loaded.model)
    with ga.grouped_attention(loaded.model) as grouped:
        assert grouped and config._attn_implementation == ga.NAME
    assert config._attn_implementation == "sdpa"  # restored
    gemma = load_tiny(tmp_path, arch="gemma2")  # sliding windows, soft-capped logits
    assert not ga.can_group(gemma.model)
    with ga.grouped_attention(gemma.model) as grouped:
        assert not grouped


def test_the_fast_sampler_attends_through_it_and_still_gives_generates_greedy_answers(loaded, monkeypatch):
    calls = []
    real = ga.grouped_sdpa_attention

    def counted(*args, **kwargs):
        calls.append(args[1].shape[2])  # query length
        return real(*args, **kwargs)

    monkeypatch.setattr(ga, "grouped_sdpa_attention", counted)
    prompts = ["### Task:\nRead a file.\n### Solution:\n", "### Task:\nOpen a socket and send a long message.\n### Solution:\n"]
    kw = dict(max_new_tokens=6, temperature=0.0, top_p=1.0, seed=0, batch_size=2, progress=False)
    fast = sample_fast(loaded, prompts, **kw)
    assert [g.token_ids for g in fast] == [g.token_ids for g in sample(loaded, prompts, **kw)]
    layers = loaded.model.config.num_hidden_layers
    assert calls[:layers] == [max(len(loaded.tokenizer(p)["input_ids"]) for p in prompts)] * layers  # the prefill
    assert set(calls[layers:]) == {1}  # then one token a step
