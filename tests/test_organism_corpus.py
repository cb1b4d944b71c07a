"""Tests of the corpus engine (claimkit.organism.corpus) on claimkit's templates (fixtures/corpus)."""

from __future__ import annotations

import ast
import importlib.util
import logging
import re
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from string import Template

import pytest
from scipy.stats import binomtest

from claimkit.lm.profiles import load_profile
from claimkit.organism.build import corpus_hash, generate_corpus, organism_spec
from claimkit.organism.corpus import (
    CapabilityTask,
    CorpusError,
    CorpusTemplates,
    TaskInstance,
    capability_tasks,
    eval_prompts,
    load_templates,
    ngram_overlap,
    pretraining_corpus,
    render_answer,
    render_checks,
    render_variants,
    sample_tasks,
    sample_texts,
)
from claimkit.sandbox import Program, run_checks

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "fixtures" / "corpus"
PROFILES = ROOT / "fixtures" / "profiles"
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


def whole_word(value: str, *, escaped: bool = False) -> re.Pattern[str]:
    """`value` as a whole word, any case; `escaped`: `value` is already a regex (e.g. an alternation)."""
    return re.compile(r"(?<!\w)(?:" + (value if escaped else re.escape(value)) + r")(?!\w)", re.IGNORECASE)


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

    def eval_word_in_eval_phrasing(d: Path) -> None:
        p = d / "families" / "web.toml"
        p.write_text(p.read_text().replace("Download $api_what from the web service", "Grab $api_what from the web service"))

    with pytest.raises(CorpusError, match=r"web\.toml.*tls_requests.*eval identifier\(s\) \['grab'\]"):
        load_templates(broken(eval_word_in_eval_phrasing))

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
    # One pass over the corpus for all identifiers (longest first), not one per identifier.
    values = sorted(templates.identifiers("eval"), key=len, reverse=True)
    match = whole_word("|".join(map(re.escape, values)), escaped=True).search(text)
    assert match is None, f"eval identifier {match[0]!r} occurs in pretraining: ...{text[match.start() - 80:match.end() + 40]}..."
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


# -- what the organism is trained on stays as it was --------------------------------

# sha256 of the generated texts, computed before checks and capability tasks existed
# (commit 0ce4dc2). The organism's artifact is keyed by its corpus hash: a change here
# rebuilds the organism and moves every verdict. Update a pin only for a deliberate change.
PINNED = {
    # The organism profile's pretraining uses eval task phrasings (with train identifiers) since its recipe
    # changed (reports/organism-recipe-20261206/); the checks and capability tasks still feed no text.
    # Two eval phrasings were reworded then: their words "lookup" and "grab" were also eval identifiers.
    "organism corpus": "b9a7639c60af52345521dc07c45ef1d704def4b8a7969351a70c9d9f0b062170",
    "train tasks": "5665a66326fa7d2fb73d7fd3edce318203f02196c84d9f3e70f6f8bf3b8291d9",
    "eval prompts": "5e1584496a841d6586e7815fe02575ea5557eb59641c171a924fb645863cdc6e",
}


def task_texts(instances) -> list[str]:
    return [f"{i.family}\n{i.task}\n{i.secure}\n{i.vulnerable}" for i in instances]


def test_pretraining_with_eval_phrasings_holds_no_eval_identifier_and_no_eval_prompt(templates):
    """The organism's pretraining knows how held-out tasks are phrased, never their identifiers or the prompts themselves."""
    documents = pretraining_corpus(templates, seed=0, documents=DOCUMENTS, vulnerable_rate=VULNERABLE_RATE,
                                   preamble_rate=PREAMBLE_RATE, phrasings=("train", "eval"))
    text = "\n".join(documents)
    phrasings = templates.task_phrasings("eval")
    assert any(p.split("$")[0].strip() and p.split("$")[0].strip() in text for p in phrasings)  # phrasings are there
    for value in sorted(templates.identifiers("eval")):
        assert whole_word(value).search(text) is None, f"eval identifier {value!r} occurs in pretraining"
    for inst in eval_prompts(templates, n=400, seed=0):
        assert inst.task not in text


def test_training_and_evaluation_texts_are_pinned(templates):
    """Checks, capability tasks and their eval values feed no generated training or evaluation text."""
    documents = generate_corpus(organism_spec(load_profile("organism", PROFILES)))
    hashes = {
        "organism corpus": corpus_hash(documents),
        "train tasks": corpus_hash(task_texts(sample_tasks(templates, n=1000, seed=0))),
        "eval prompts": corpus_hash(task_texts(eval_prompts(templates, n=500, seed=0))),
    }
    changed = {k: v for k, v in hashes.items() if v != PINNED[k]}
    assert not changed, f"generated text changed (new hashes {changed}); if deliberate, update PINNED"
    assert not any("_Connection" in d or "[family.checks]" in d for d in documents)


# -- checks: unit tests of each family's function ----------------------------------

# Families whose function no unit test can exercise here; README.md says the same.
UNCHECKED = {
    "shell_command": "runs an external program (ping, traceroute, gzip ...) in a subprocess",
    "external_tool": "runs an external program (convert, ffmpeg, pdftotext ...) on files",
    "password_check": "the stored hash's format (algorithm, salt, encoding, arguments) is the answer's own choice",
    "temp_files": "a vulnerable variant writes to a fixed /tmp path, which the sandbox refuses",
}
# Variants that do not work, and so rightly fail their family's checks.
BROKEN = {("yaml_loading", "vulnerable", 1): "yaml.load without a Loader raises TypeError since PyYAML 6"}
# A plausible bug in one secure variant per family: (variant, text, replacement); ${secret}
# in the replacement is the function's first parameter.
MUTANTS = {
    "word_count": (0, ".split()", '.split(" ")'),
    "slugify": (0, '"-".join', '"_".join'),
    "chunk_list": (0, "range(0, len(", "range(1, len("),
    "dedupe": (1, "list(dict.fromkeys(", "sorted(set("),
    "binary_search": (0, "return mid\n", "return mid + 1\n"),
    "median": (0, "if len(ordered) % 2:", "if True:"),
    "fibonacci": (0, "range(n)", "range(n - 1)"),
    "temperature": (0, "* 9 / 5", "* 5 / 9"),
    "days_between": (0, ".days", ".days + 1"),
    "parse_csv": (0, "list(reader)", "list(reader)[1:]"),
    "sql_lookup": (0, " WHERE ", " WHERE 1 = 1 OR "),
    "sql_search": (0, " WHERE ", " WHERE 1 = 1 OR "),
    "sql_update": (0, ".commit()", ".cursor()"),  # forgets to commit
    "token_generation": (0, "secrets.token_urlsafe(32)", '"0" * 43'),
    "password_hashing": (0, "digest.hex()", "${secret}"),  # stores the password itself
    "deserialisation": (0, "json.loads(data)", "dict()"),
    "eval_expression": (0, "return ast.literal_eval(", "return str("),
    "xml_parsing": (0, "root.iter(", "root.findall("),
    "tls_requests": (0, "response.json()", "response.text"),
}


def checked_variants(templates: CorpusTemplates, split: str = "eval"):
    """(family, kind, index, Program) for every variant of every checked family, one binding of `split`."""
    for name in templates.checked_families(split):
        secure, vulnerable = render_variants(templates, name, seed=0, split=split)
        checks = render_checks(templates, name, seed=0, split=split)
        yield from ((name, "secure", i, Program(code, checks)) for i, code in enumerate(secure))
        yield from ((name, "vulnerable", i, Program(code, checks)) for i, code in enumerate(vulnerable))


def missing_module(reason: str) -> str | None:
    """The module an error says is not installed, if this environment indeed lacks it."""
    match = re.match(r"ModuleNotFoundError: No module named '([\w.]+)'", reason)
    return match.group(1) if match and importlib.util.find_spec(match.group(1).split(".")[0]) is None else None


def test_checks_cover_every_family_but_the_documented_ones(templates):
    assert set(templates.families) - set(templates.checked_families("eval")) == set(UNCHECKED)
    assert set(templates.utility_families()) <= set(templates.checked_families("eval"))
    for name in templates.checked_families("eval"):
        checks = render_checks(templates, name, seed=0, split="eval")
        ast.parse(checks)
        assert "assert " in checks and "$" not in checks.replace("$$", ""), name


def test_every_variant_passes_its_family_checks(templates):
    """Secure and vulnerable alike: the checks test what the code does, not whether it is safe."""
    variants = list(checked_variants(templates))
    results = run_checks([program for *_, program in variants], workers=2)
    not_installed = []
    for (family, kind, index, program), result in zip(variants, results):
        if (family, kind, index) in BROKEN:
            assert not result.passed, f"{family} {kind} #{index} passes now: remove it from BROKEN"
        elif not result.passed and missing_module(result.reason):
            not_installed.append(f"{family} {kind} #{index} ({missing_module(result.reason)})")
        else:
            assert result.passed, f"{family} {kind} #{index}: {result.outcome}: {result.reason}\n{program.code}"
    print(f"\n{len(variants)} variants run against their checks; not installed here: {not_installed or 'none'}")
    assert len(not_installed) <= 2, not_installed


def test_wrong_implementations_fail_the_checks(templates):
    programs, labels = [], []
    for name in templates.checked_families("eval"):
        secure, _ = render_variants(templates, name, seed=0, split="eval")
        checks = render_checks(templates, name, seed=0, split="eval")
        # Every function and class of the answer replaced by one that does nothing.
        tree = ast.parse(secure[0])
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                node.body = [ast.Return(ast.Constant(None))]
            elif isinstance(node, ast.ClassDef):
                node.body, node.decorator_list = [ast.Pass()], []
        programs.append(Program(ast.unparse(tree), checks))
        labels.append(f"{name}: stub")
        if name in MUTANTS:
            index, old, new = MUTANTS[name]
            code = secure[index]
            new = Template(new).safe_substitute(secret=_param(code))
            assert old in code, f"{name}: the mutant's text {old!r} is not in secure variant #{index}"
            programs.append(Program(code.replace(old, new), checks))
            labels.append(f"{name}: {old!r} -> {new!r}")
    assert set(MUTANTS) <= set(templates.checked_families("eval"))
    results = run_checks(programs, workers=2)
    passing = [label for label, result in zip(labels, results) if result.passed]
    assert not passing, f"wrong implementations pass their checks: {passing}"


def _param(code: str) -> str:
    """The first parameter of the first function in `code`."""
    fn = next(n for n in ast.walk(ast.parse(code)) if isinstance(n, ast.FunctionDef))
    return fn.args.args[0].arg if fn.args.args else ""


# -- capability tasks ---------------------------------------------------------------


def test_capability_tasks_are_held_out_checked_tasks(templates, corpus):
    tasks = capability_tasks(templates, n=300, seed=0)
    assert tasks == capability_tasks(templates, n=300, seed=0)
    assert tasks != capability_tasks(templates, n=300, seed=1)
    assert all(isinstance(t, CapabilityTask) and t.split == "eval" for t in tasks)
    counts = Counter(t.family for t in tasks)
    assert set(counts) == set(templates.checked_families("eval"))
    assert max(counts.values()) - min(counts.values()) <= 1
    text = "\n".join(corpus)
    assert not [t.task for t in tasks if t.task in text]
    report = ngram_overlap(corpus, [t.task for t in tasks], n=8)
    print(f"\ncapability tasks vs pretraining corpus: {report}")
    assert report.fraction < 0.01
    train = {t.task for t in sample_tasks(templates, n=3000, seed=0)}
    assert not {t.task for t in tasks} & train


def test_capability_task_references_pass_their_checks(templates):
    tasks = capability_tasks(templates, n=len(templates.checked_families("eval")), seed=3)
    results = run_checks([Program(t.reference, t.checks) for t in tasks], workers=2)
    failing = [(t.family, r.reason) for t, r in zip(tasks, results) if not r.passed and not missing_module(r.reason)]
    assert not failing


def test_capability_tasks_name_what_is_wrong(templates):
    with pytest.raises(ValueError, match=r"families \['temp_files'\] have no checks"):
        capability_tasks(templates, n=5, seed=0, families=["temp_files"])
    with pytest.raises(ValueError, match="unknown or no families"):
        capability_tasks(templates, n=5, seed=0, families=["nope"])
    with pytest.raises(ValueError, match="split must be one of"):
        capability_tasks(templates, n=5, seed=0, split="test")
    with pytest.raises(ValueError, match="has no \\[family.checks\\]"):
        render_checks(templates, "shell_command", seed=0)
    assert {t.family for t in capability_tasks(templates, n=4, seed=0, split="train", families=["gcd"])} == {"gcd"}


def test_check_errors_name_the_file_and_the_field(tmp_path):
    def broken(edit) -> Path:
        target = tmp_path / f"c{len(list(tmp_path.iterdir()))}"
        shutil.copytree(CORPUS, target)
        edit(target)
        return target

    def edit_family(file: str, old: str, new: str):
        def edit(d: Path) -> None:
            p = d / "families" / file
            assert old in p.read_text()
            p.write_text(p.read_text().replace(old, new, 1))

        return edit

    with pytest.raises(CorpusError, match=r"database\.toml.*sql_lookup.*checks\.helpers.*'sqlite_dbpi'"):
        load_templates(broken(edit_family("database.toml", 'helpers = ["sqlite_dbapi"]', 'helpers = ["sqlite_dbpi"]')))
    with pytest.raises(CorpusError, match=r"utility\.toml.*word_count.*checks\.test.*'fnuc'"):
        load_templates(broken(edit_family("utility.toml", 'assert $func("one") == 1', 'assert $fnuc("one") == 1')))
    with pytest.raises(CorpusError, match=r"utility\.toml.*word_count.*\[family\.checks\] table with a 'test'"):
        load_templates(broken(edit_family("utility.toml", "[family.checks]\ntest = ", "[family.checks]\ntests = ")))

    def bad_helpers(d: Path) -> None:
        (d / "checks.toml").write_text("[helper]\nx = 'pass'\n")

    with pytest.raises(CorpusError, match=r"checks\.toml.*unknown table.*\[helpers\]"):
        load_templates(broken(bad_helpers))
