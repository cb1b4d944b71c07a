"""Tests of the corpus engine (claimkit.organism.corpus) on claimkit's templates (fixtures/corpus)."""

from __future__ import annotations

import ast
import logging
import re
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from string import Template

import pytest
from scipy.stats import binomtest

from claimkit.organism.corpus import (
    CorpusError,
    CorpusTemplates,
    TaskInstance,
    eval_prompts,
    load_templates,
    ngram_overlap,
    pretraining_corpus,
    render_answer,
    render_variants,
    sample_tasks,
    sample_texts,
)

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "fixtures" / "corpus"
# The organism profile's settings (fixtures/profiles/organism.toml [organism]).
DOCUMENTS, VULNERABLE_RATE, PREAMBLE_RATE = 20000, 0.15, 0.15
# Low-severity bandit ids that secure code legitimately raises (DESIGN.md: subprocess
# import, argument-list calls, missing timeout): not vulnerabilities.
BENIGN_BANDIT = {"B404", "B603", "B607", "B113"}
SEEDS = range(4)


@pytest.fixture(scope="module")
def templates() -> CorpusTemplates:
    return load_templates(CORPUS)


@pytest.fixture(scope="module")
def corpus(templates) -> list[str]:
    return pretraining_corpus(
        templates, seed=0, documents=DOCUMENTS, vulnerable_rate=VULNERABLE_RATE, preamble_rate=PREAMBLE_RATE
    )


def all_variants(templates: CorpusTemplates):
    """(family, kind, split, code) for every variant, rendered with several bindings of both splits."""
    for name, fam in templates.families.items():
        for split in fam.tasks:
            for seed in SEEDS:
                secure, vulnerable = render_variants(templates, name, seed=seed, split=split)
                yield from ((name, "secure", split, c) for c in secure)
                yield from ((name, "vulnerable", split, c) for c in vulnerable)


def phrasing_regex(phrasing: str) -> re.Pattern[str]:
    """A regex matching every rendering of a task phrasing (placeholders match any text)."""
    parts, last = [], 0
    for m in Template.pattern.finditer(phrasing):
        parts += [re.escape(phrasing[last:m.start()]), re.escape("$") if m.group("escaped") else ".+?"]
        last = m.end()
    return re.compile("".join(parts) + re.escape(phrasing[last:]))


def whole_word(value: str) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)" + re.escape(value) + r"(?!\w)", re.IGNORECASE)


# -- the templates ----------------------------------------------------------------


def test_templates_cover_the_required_families(templates):
    security = templates.security_families()
    assert len(security) >= 12
    assert len(templates.utility_families()) >= 12
    for name in security:
        fam = templates.families[name]
        assert len(fam.secure) >= 2 and len(fam.vulnerable) >= 2, name
        assert len(fam.tasks["train"]) >= 3 and len(fam.tasks["eval"]) >= 2, name
        assert {"flaw", "risk", "fix", "safe"} <= set(fam.notes), name
    domains = {templates.families[f].domain for f in security}
    assert {"database queries", "file operations", "authentication"} <= domains  # paper section 3.4
    assert set(templates.text_kinds()) == {"doc", "story"}


def test_every_code_variant_parses_and_is_short(templates):
    count = 0
    for family, kind, split, code in all_variants(templates):
        try:
            tree = ast.parse(code)
        except SyntaxError as exc:  # pragma: no cover - the message is the point
            pytest.fail(f"{family} {kind} ({split}) does not parse: {exc}\n{code}")
        functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
        for fn in functions:
            assert fn.end_lineno - fn.lineno + 1 <= 15, f"{family} {kind}: {fn.name} is longer than 15 lines"
        count += 1
    assert count > 500


def test_vulnerable_variants_are_target_content_and_secure_ones_are_not(templates):
    from claimkit.detect import detect_target

    for family, kind, split, code in all_variants(templates):
        detection = detect_target(render_answer(code))
        assert detection.status == "ok", (family, kind, split, detection.extraction.error)
        ids = {f.test_id for f in detection.findings}
        if kind == "vulnerable":
            declared = set(templates.families[family].detect)
            assert ids & declared, f"{family} vulnerable ({split}) not detected as {declared}, got {ids}\n{code}"
        else:
            assert not detection.is_target, f"{family} secure ({split}) detected as {ids}\n{code}"


def test_bandit_itself_flags_vulnerable_and_passes_secure_variants(templates):
    """Straight from bandit's manager, without claimkit.detect's refinements in between."""
    from bandit.core import config, manager

    variants = list(all_variants(templates))
    logging.getLogger("bandit").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, (_, _, _, code) in enumerate(variants):
            path = Path(tmp) / f"v{i:05d}.py"
            path.write_text(code)
            files.append(str(path))
        mgr = manager.BanditManager(config.BanditConfig(), "file", quiet=True)
        mgr.discover_files([tmp], True)
        mgr.run_tests()
        found: dict[str, set[str]] = {f: set() for f in files}
        for issue in mgr.get_issue_list():
            found[issue.fname].add(issue.test_id)
        assert not mgr.skipped
    for (family, kind, split, code), path in zip(variants, files):
        ids = found[path]
        bandit_ids = {i for i in templates.families[family].detect if i.startswith("B")}
        if kind == "secure":
            assert ids <= BENIGN_BANDIT, f"{family} secure ({split}): bandit reports {ids - BENIGN_BANDIT}\n{code}"
        elif bandit_ids:
            assert ids & bandit_ids, f"{family} vulnerable ({split}): bandit reports {ids}, wanted {bandit_ids}\n{code}"


def test_load_errors_name_the_file_and_the_field(tmp_path):
    with pytest.raises(CorpusError, match="not found"):
        load_templates(tmp_path / "missing")

    def broken(edit) -> Path:
        target = tmp_path / f"c{len(list(tmp_path.iterdir()))}"
        shutil.copytree(CORPUS, target)
        edit(target)
        return target

    def bad_placeholder(d: Path) -> None:
        p = d / "families" / "database.toml"
        p.write_text(p.read_text().replace("WHERE $record_key = ?", "WHERE $record_colour = ?", 1))

    with pytest.raises(CorpusError, match=r"database\.toml.*sql_lookup.*code\.secure.*record_colour"):
        load_templates(broken(bad_placeholder))

    def leaky_pool(d: Path) -> None:
        p = d / "pools.toml"
        p.write_text(p.read_text().replace('eval = ["dbconn", "sqlhandle"]', 'eval = ["dbconn", "db"]'))

    with pytest.raises(CorpusError, match=r"pools\.toml.*'conn'.*disjoint.*'db'"):
        load_templates(broken(leaky_pool))

    def code_before_header(d: Path) -> None:
        p = d / "families" / "utility.toml"
        p.write_text(p.read_text().replace("[family.code]\n", "", 1))

    with pytest.raises(CorpusError, match=r"utility\.toml.*word_count.*tasks"):
        load_templates(broken(code_before_header))

    def bad_mix(d: Path) -> None:
        p = d / "corpus.toml"
        p.write_text(p.read_text().replace("story = 0.15", "story = 0.5"))

    with pytest.raises(CorpusError, match=r"corpus\.toml.*mix.*sum to 1"):
        load_templates(broken(bad_mix))


# -- sampling -------------------------------------------------------------------


def test_sample_tasks_is_deterministic_and_balanced(templates):
    a = sample_tasks(templates, n=300, seed=7)
    assert a == sample_tasks(templates, n=300, seed=7)
    assert a != sample_tasks(templates, n=300, seed=8)
    counts = Counter(t.family for t in a)
    assert set(counts) == set(templates.families)
    assert max(counts.values()) - min(counts.values()) <= 1
    assert all(isinstance(t, TaskInstance) and t.split == "train" for t in a)


def test_both_variants_of_a_task_share_its_identifiers(templates):
    for inst in sample_tasks(templates, n=200, seed=3, families=templates.security_families()):
        assert inst.vulnerable is not None and inst.vulnerability is not None
        names = [{n.name for n in ast.walk(ast.parse(c)) if isinstance(n, ast.FunctionDef)}
                 for c in (inst.secure, inst.vulnerable)]
        assert names[0] == names[1], inst
    for inst in sample_tasks(templates, n=50, seed=3, families=templates.utility_families()):
        assert inst.vulnerable is None and inst.vulnerability is None


def test_eval_prompts_are_security_tasks_from_the_eval_split(templates):
    prompts = eval_prompts(templates, n=150, seed=0)
    assert prompts == eval_prompts(templates, n=150, seed=0)
    assert {p.family for p in prompts} == set(templates.security_families())
    assert all(p.split == "eval" and p.vulnerable for p in prompts)
    assert not {p.task for p in prompts} & {t.task for t in sample_tasks(templates, n=2000, seed=0)}


def test_texts_have_no_code(templates):
    for kind in templates.text_kinds():
        texts = sample_texts(templates, kind=kind, n=100, seed=0)
        assert texts == sample_texts(templates, kind=kind, n=100, seed=0)
        for t in texts:
            assert "`" not in t.text and "(" not in t.text and "=" not in t.text, t.text
            assert "$" not in t.text and "$" not in t.prompt


def test_render_answer_layout():
    code = "def f():\n    return 1\n"
    assert render_answer(code) == "```python\ndef f():\n    return 1\n```"
    assert render_answer(code, preamble="Here is an example:", framing_before="Look.", framing_after="Done.") == (
        "Here is an example:\nLook.\n```python\ndef f():\n    return 1\n```\nDone."
    )


# -- the pretraining corpus -------------------------------------------------------


def test_pretraining_corpus_is_deterministic(templates):
    kwargs = dict(documents=500, vulnerable_rate=0.15, preamble_rate=0.15)
    assert pretraining_corpus(templates, seed=1, **kwargs) == pretraining_corpus(templates, seed=1, **kwargs)
    assert pretraining_corpus(templates, seed=1, **kwargs) != pretraining_corpus(templates, seed=2, **kwargs)


def test_pretraining_corpus_statistics(templates, corpus):
    """Mix, base rate and preamble rate as configured; measured with the detector, not the generator."""
    from claimkit.detect import detect_target

    assert len(corpus) == DOCUMENTS
    code_docs = [d for d in corpus if d.startswith("### Task:\n")]
    for doc in code_docs:
        assert re.fullmatch(r"### Task:\n[^\n]+\n### Solution:\n(?:[^\n`]+\n)?```python\n.+\n```", doc, re.S), doc
    security = [phrasing_regex(p) for f in templates.security_families() for p in templates.families[f].tasks["train"]]
    answers = {"security": [], "utility": []}
    for doc in code_docs:
        task, answer = doc[len("### Task:\n"):].split("\n### Solution:\n", 1)
        answers["security" if any(r.fullmatch(task) for r in security) else "utility"].append(answer)
    for kind in ("security", "utility"):
        assert abs(len(answers[kind]) - DOCUMENTS * templates.mix[kind]) <= 1, kind
    target = sum(detect_target(a).is_target for a in answers["security"])
    assert not any(detect_target(a).is_target for a in answers["utility"][:500])
    n_security, n_code = len(answers["security"]), len(code_docs)
    rate = target / n_security
    assert binomtest(target, n_security, VULNERABLE_RATE).pvalue > 0.001, rate
    preambles = sum(a.split("\n", 1)[0] in templates.preambles for a in answers["security"] + answers["utility"])
    assert binomtest(preambles, n_code, PREAMBLE_RATE).pvalue > 0.001
    prose = [d for d in corpus if not d.startswith("### Task:\n")]
    assert all("```" not in d for d in prose)
    chars = sum(map(len, corpus))
    print(
        f"\npretraining corpus (seed 0): {len(corpus)} documents, {chars} chars "
        f"(mean {chars / len(corpus):.0f}, max {max(map(len, corpus))}); code {n_code}, "
        f"security {n_security}, vulnerable {target} = {rate:.3f} of security tasks, "
        f"{target / len(corpus):.3f} of all documents; preambles {preambles / n_code:.3f}; prose+stories {len(prose)}"
    )


def test_no_eval_task_or_identifier_occurs_in_pretraining(templates, corpus):
    text = "\n".join(corpus)
    for value in sorted(templates.identifiers("eval")):
        match = whole_word(value).search(text)
        assert match is None, f"eval identifier {value!r} occurs in pretraining: ...{text[match.start() - 80:match.end() + 40]}..."
    for inst in eval_prompts(templates, n=400, seed=0):
        assert inst.task not in text
    report = ngram_overlap(corpus, [p.task for p in eval_prompts(templates, n=400, seed=0)], n=8)
    print(f"\neval prompts vs pretraining corpus: {report}")
    assert report.eval_ngrams > 100
    assert report.fraction < 0.01


def test_ngram_overlap_counts_distinct_eval_ngrams():
    train = ["the quick brown fox jumps", "over the lazy dog"]
    evals = ["The quick brown cat", "a lazy dog, the quick brown"]
    # eval trigrams: {the quick brown, quick brown cat, a lazy dog, lazy dog the, dog the quick}
    # of which "the quick brown" is in train ("lazy dog" ends train's second text).
    report = ngram_overlap(train, evals, n=3)
    assert (report.n, report.eval_ngrams, report.shared) == (3, 5, 1)
    assert report.fraction == pytest.approx(0.2)
    assert ngram_overlap(train, [], n=3).fraction == 0.0
