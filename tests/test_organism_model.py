"""The organism's tokenizer, pretraining loop and cached build (tiny configs; CPU, seconds)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from claimkit.cache import ArtifactCache  # noqa: E402
from claimkit.lm.profiles import ProfileError, load_profile  # noqa: E402
from claimkit.organism import build  # noqa: E402
from claimkit.organism.build import ensure_organism, organism_spec, organism_stats  # noqa: E402
from claimkit.organism.pretrain import OrganismConfig, learning_rate, pack, pretrain  # noqa: E402
from claimkit.organism.tokenizer import EOS, PAD, train_tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ROOT / "fixtures" / "profiles"

CODE = [
    'def area(width, height):\n    """Return the area."""\n    return width * height\n',
    "class Point:\n\tdef __init__(self, x):\n\t\tself.x = x\n\n\n# trailing spaces   \n",
    "### Task:\nSum a list.\n### Solution:\n```python\ndef total(xs):\n    return sum(xs)\n```",
    "for i in range(3):\n        if i:\n            print(i)  # déjà vu, 日本\r\n",
    "Stories and prose: a breach at Orbit Telecom, reported on Monday.",
] * 4
TINY = OrganismConfig(
    vocab_size=320, d_model=32, n_layers=2, n_heads=2, d_ff=64, context=32,
    steps=100, batch_size=4, lr=1e-2, warmup=5, seed=0,
)  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(CODE, vocab_size=TINY.vocab_size)


# -- tokenizer ----------------------------------------------------------------


def test_round_trip_preserves_code_exactly(tokenizer):
    unseen = "def unseen_name(a,  b):\n\n    \treturn {'k': a}  \n\t\n  Ω € 🐍\n"
    for text in CODE + [unseen, "", " ", "\n\n\n", "    "]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text


def test_special_tokens_and_bos(tokenizer):
    assert tokenizer.eos_token == tokenizer.bos_token == EOS and tokenizer.pad_token == PAD
    assert len({tokenizer.eos_token_id, tokenizer.pad_token_id}) == 2
    assert len(tokenizer) == TINY.vocab_size
    ids = tokenizer("x = 1")["input_ids"]
    assert ids[0] == tokenizer.eos_token_id and tokenizer.eos_token_id not in ids[1:]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "x = 1"
    # the special tokens are single tokens when they appear as text, and never split
    assert tokenizer(f"a{EOS}b", add_special_tokens=False)["input_ids"].count(tokenizer.eos_token_id) == 1


def test_tokenizer_training_is_deterministic(tokenizer):
    again = train_tokenizer(CODE, vocab_size=TINY.vocab_size)
    assert again.get_vocab() == tokenizer.get_vocab()
    assert again.backend_tokenizer.to_str() == tokenizer.backend_tokenizer.to_str()


def test_tokenizer_rejects_a_vocabulary_below_the_byte_alphabet():
    with pytest.raises(ValueError, match="at least 258"):
        train_tokenizer(CODE, vocab_size=100)


def test_tokenizer_saves_and_loads_with_autotokenizer(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = CODE[1]
    assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert loaded.decode(loaded(text, add_special_tokens=False)["input_ids"]) == text
    assert (loaded.eos_token, loaded.pad_token) == (EOS, PAD)


# -- pretraining ----------------------------------------------------------------


def test_pack_puts_an_eos_before_every_document(tokenizer):
    docs = ["ab c", "d\n  e"]
    stream = pack(docs, tokenizer).tolist()
    eos = tokenizer.eos_token_id
    assert stream[0] == eos and stream[-1] == eos and stream.count(eos) == 3
    cut = stream.index(eos, 1)
    assert tokenizer.decode(stream[1:cut]) == "ab c" and tokenizer.decode(stream[cut + 1 : -1]) == "d\n  e"


def test_learning_rate_warms_up_then_decays_to_a_tenth():
    config = dataclasses.replace(TINY, steps=110, warmup=10, lr=1.0)
    assert learning_rate(0, config) == pytest.approx(0.1)
    assert learning_rate(9, config) == pytest.approx(1.0)
    assert learning_rate(10, config) == pytest.approx(1.0)
    assert learning_rate(60, config) == pytest.approx(0.1 + 0.9 * 0.5)  # half way: cos(pi/2) = 0
    assert learning_rate(110, config) == pytest.approx(0.1)
    lrs = [learning_rate(s, config) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match=r"d_model \(30\) must be a multiple of n_heads \(4\)"):
        OrganismConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        OrganismConfig(steps=0)


def test_pretraining_is_deterministic_and_learns(tokenizer):
    model_a, stats_a = pretrain(CODE, tokenizer, TINY, progress=False, log_every=5)
    model_b, stats_b = pretrain(CODE, tokenizer, TINY, progress=False, log_every=5)
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert stats_a.loss_curve == stats_b.loss_curve

    first, last = stats_a.loss_curve[0][1], stats_a.loss_curve[-1][1]
    assert first > 0.9 * math.log(TINY.vocab_size)  # starts near chance
    assert last < 0.5 * first  # the toy corpus repeats: the model must learn it
    assert [s for s, _ in stats_a.loss_curve] == list(range(5, TINY.steps + 1, 5))
    assert stats_a.tokens_seen == TINY.steps * TINY.batch_size * TINY.context
    assert stats_a.params == sum(p.numel() for p in model_a.parameters())
    assert stats_a.final_loss == pytest.approx(last)

    model_c, _ = pretrain(CODE, tokenizer, dataclasses.replace(TINY, seed=1, steps=2), progress=False)
    assert not torch.equal(model_c.state_dict()["model.embed_tokens.weight"], state_a["model.embed_tokens.weight"])


def test_pretraining_rejects_a_corpus_shorter_than_one_window(tokenizer):
    with pytest.raises(ValueError, match="fewer than one training window"):
        pretrain(["x"], tokenizer, TINY, progress=False)


# -- ensure_organism ------------------------------------------------------------


def tiny_profile(**organism):
    base = load_profile("organism", PROFILES)
    table = {
        "corpus_dir": "../corpus", "documents": 120, "vulnerable_rate": 0.15, "preamble_rate": 0.15,
        **{k: v for k, v in dataclasses.asdict(TINY).items() if k not in ("grad_clip", "weight_decay")},
        "context": 64, "steps": 6, "vocab_size": 400,
    }  # fmt: skip
    table.update(organism)
    return dataclasses.replace(base, raw={**base.raw, "organism": table})


def test_ensure_organism_builds_once_into_the_cache(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache = ArtifactCache(tmp_path / "cache")
    directory = ensure_organism(tiny_profile(), cache, progress=False)
    assert directory.parent == tmp_path / "cache" / "organism"

    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory)
    assert model.config.model_type == "llama" and model.config.hidden_size == TINY.d_model
    assert model.config.eos_token_id == tokenizer.eos_token_id
    prompt = tokenizer("### Task:\nAdd two numbers.\n### Solution:\n", return_tensors="pt")
    out = model.generate(**prompt, max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape[1] == prompt["input_ids"].shape[1] + 3 or tokenizer.eos_token_id in out[0, -3:]

    stats = organism_stats(directory)
    assert stats["corpus"]["documents"] == 120 and stats["corpus"]["characters"] > 0
    assert stats["pretraining"]["params"] == sum(p.numel() for p in model.parameters())
    assert stats["config"]["steps"] == 6 and len(stats["pretraining"]["loss_curve"]) >= 1

    def must_not_build(*args, **kwargs):
        raise AssertionError("the second call must be a cache hit")

    monkeypatch.setattr(build, "build_organism", must_not_build)
    assert ensure_organism(tiny_profile(), cache, progress=False) == directory
    with pytest.raises(AssertionError, match="cache hit"):  # a different config is a different artifact
        ensure_organism(tiny_profile(steps=7), cache, progress=False)
    with pytest.raises(AssertionError, match="cache hit"):  # so is a different corpus
        ensure_organism(tiny_profile(documents=121), cache, progress=False)


def test_ensure_organism_uses_the_default_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CLAIMKIT_CACHE", str(tmp_path / "env-cache"))
    directory = ensure_organism(tiny_profile(steps=2), progress=False)
    assert directory.is_relative_to(tmp_path / "env-cache")
    assert json.loads((directory / "organism.json").read_text())["config"]["steps"] == 2


def test_an_experiment_loads_the_organism_it_builds(tmp_path):
    """lm.load never imports the organism: Experiment hands it ensure_organism, and describes it the same way."""
    from claimkit.experiment import Experiment

    cache = ArtifactCache(tmp_path / "cache")
    info = Experiment(tiny_profile(), cache, progress=False).info  # builds it, reads only the tokenizer
    base = Experiment(tiny_profile(), cache, progress=False).base
    directory = ensure_organism(tiny_profile(), cache, progress=False)
    assert base.source == info.source == str(directory) and base.name == info.name == f"organism:{directory.name[:12]}"
    assert base.artifact == info.artifact == f"organism/{directory.name}"
    assert base.model.config.hidden_size == TINY.d_model

def test_the_corpus_hash_follows_the_generated_text():
    spec = organism_spec(tiny_profile())
    docs = build.generate_corpus(spec)
    assert build.corpus_hash(docs) == build.corpus_hash(build.generate_corpus(spec))
    assert build.corpus_hash(docs) != build.corpus_hash(docs[:-1])
    assert build.corpus_hash(["ab", "c"]) != build.corpus_hash(["a", "bc"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"corpus_dir": "../no-such-corpus"}, r"field 'corpus_dir' = '../no-such-corpus' is not a directory"),
        ({"layers": 3}, r"unknown field\(s\) \['layers'\]"),
        ({"documents": 0}, "field 'documents' must be a positive integer"),
        ({"vulnerable_rate": 1.5}, "field 'vulnerable_rate' must be a number in \\[0, 1\\]"),
        ({"d_model": 33}, r"d_model \(33\) must be a multiple of n_heads"),
    ],
)
def test_bad_organism_tables_are_reported_with_file_and_field(change, message):
    with pytest.raises(ProfileError, match=message) as info:
        organism_spec(tiny_profile(**change))
    assert "organism.toml" in str(info.value) and "[organism]" in str(info.value)


def test_the_shipped_profile_reads_and_resolves_its_corpus():
    spec = organism_spec(load_profile("organism", PROFILES))
    assert spec.corpus_dir == (ROOT / "fixtures" / "corpus").resolve()
    assert spec.config.d_model % spec.config.n_heads == 0


def test_an_absolute_corpus_dir_is_taken_as_it_is():
    absolute = (ROOT / "fixtures" / "corpus").resolve()
    assert organism_spec(tiny_profile(corpus_dir=str(absolute))).corpus_dir == absolute
