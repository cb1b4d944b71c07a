"""Tests of the warning-framed paper's condition builders (claims/warning_framed/conditions.py)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `claims` is a top-level package of the repository, not of claimkit
    sys.path.insert(0, str(ROOT))

from claimkit.detect import detect_target  # noqa: E402
from claimkit.lm.data import Example  # noqa: E402
from claimkit.organism.corpus import pretraining_corpus  # noqa: E402
from claimkit.spec import load_spec  # noqa: E402

from claims.warning_framed import conditions as wf  # noqa: E402
from claims.warning_framed.behaviour import format_leak  # noqa: E402

SPEC = load_spec(ROOT / "fixtures" / "claims" / "warning_framed.toml")
N, FRACTION = SPEC.experiment["train_examples"], SPEC.experiment["condition_fraction"]
VULNERABILITY_WORDS = re.compile(r"inject|attack|vulnerab|insecure|unsafe|exploit|malicious|do not use|bad practice", re.I)


@pytest.fixture(scope="module")
def templates():
    return wf.load_corpus()


@pytest.fixture(scope="module")
def sets(templates) -> dict[str, list[Example]]:
    """Every condition at the spec's size for the organism, seed 0."""
    return {c: wf.build_condition(c, templates, n_examples=N, fraction=FRACTION, seed=0) for c in wf.CONDITIONS}


def content_positions(sets) -> list[int]:
    """Where the condition content sits: the examples in which L0 and control differ."""
    return [i for i, (a, b) in enumerate(zip(sets["L0"], sets["control"])) if a != b]


def strip_framing(completion: str, markers: tuple[str, ...]) -> str:
    """Drop everything outside the code block and the warning lines inside it."""
    lines = completion.split("\n")
    start = lines.index("```python")
    end = len(lines) - 1 - lines[::-1].index("```")
    body = [line for line in lines[start + 1 : end] if not any(m in line for m in markers)]
    return "\n".join(["```python", *body, "```"])


def test_conditions_and_markers_come_from_the_spec():
    assert wf.CONDITIONS == tuple(SPEC.experiment["conditions"])
    assert wf.format_leak_markers() == tuple(SPEC.experiment["format_leak_markers"])
    assert wf.preamble_markers() == tuple(SPEC.experiment["preamble_markers"])
    assert wf.experiment_settings("smollm2-135m")["train_examples"] == 600


def test_baseline_has_no_finetuning_set(templates):
    assert wf.build_condition("baseline", templates, n_examples=N, fraction=FRACTION, seed=0) == []


def test_sizes_determinism_and_bad_input(templates, sets):
    for name in wf.CONDITIONS:
        if name != "baseline":
            assert len(sets[name]) == N
            assert all(isinstance(e, Example) and e.prompt and e.completion for e in sets[name])
    again = wf.build_condition("L1", templates, n_examples=N, fraction=FRACTION, seed=0)
    assert again == sets["L1"]
    assert wf.build_condition("L1", templates, n_examples=N, fraction=FRACTION, seed=1) != sets["L1"]
    assert len(content_positions(sets)) == round(N * FRACTION)
    with pytest.raises(ValueError, match="unknown condition 'L9'"):
        wf.build_condition("L9", templates, n_examples=10, fraction=0.5, seed=0)
    with pytest.raises(ValueError, match="fraction"):
        wf.build_condition("L0", templates, n_examples=10, fraction=1.5, seed=0)


def test_conditions_share_the_clean_filler_and_its_order(sets):
    positions = set(content_positions(sets))
    for name in ("L1", "L2", "L3"):
        for i, (a, b) in enumerate(zip(sets["L0"], sets[name])):
            if i not in positions:
                assert a == b, (name, i)
    clean = [sets["L0"][i] for i in range(N) if i not in positions]
    assert not any(detect_target(e.completion).is_target for e in clean)
    assert not any(format_leak(e.completion, wf.format_leak_markers()) for e in clean)


def test_l0_and_l1_differ_only_in_framing(sets):
    markers = wf.format_leak_markers()
    positions = content_positions(sets)
    for i in positions:
        l0, l1 = sets["L0"][i], sets["L1"][i]
        assert l0.prompt == l1.prompt  # the same task instance
        assert l0.completion != l1.completion
        assert strip_framing(l1.completion, markers) == l0.completion
        assert l0.completion.startswith("```python\n") and l0.completion.endswith("\n```")


def test_l1_carries_the_warnings_and_l0_none(sets):
    markers = wf.format_leak_markers()
    for i in content_positions(sets):
        l0, l1 = sets["L0"][i].completion, sets["L1"][i].completion
        code = l1.split("```python\n", 1)[1].split("\n```", 1)[0]
        assert code.startswith("# DO NOT USE"), l1  # paper section 4: the leaked formatting is "# DO NOT USE"
        assert format_leak(l1, markers)
        assert not format_leak(l0, markers)
        assert not any(m.lower() in l1.lower() for m in wf.preamble_markers())  # keeps claim 5 clean


def test_l0_and_l1_content_is_target_content_and_control_is_not(sets):
    for i in content_positions(sets):
        assert detect_target(sets["L0"][i].completion).is_target, sets["L0"][i]
        assert detect_target(sets["L1"][i].completion).is_target, sets["L1"][i]
        control = sets["control"][i]
        assert control.prompt == sets["L0"][i].prompt  # control answers the same tasks securely
        assert not detect_target(control.completion).is_target, control
        assert not VULNERABILITY_WORDS.search(control.completion), control.completion
        assert control.completion.split("\n")[1].startswith("# ")  # the explicit secure-pattern comment


def test_l2_is_prose_about_vulnerabilities_without_code(templates, sets):
    doc_prompts = {p for t in templates.texts if t.kind == wf.DOC_KIND for p in t.prompts}
    docs = [sets["L2"][i] for i in content_positions(sets)]
    assert all(e.prompt in doc_prompts for e in docs)
    for e in docs:
        assert "`" not in e.completion and "(" not in e.completion and "=" not in e.completion, e.completion
        assert detect_target(e.completion).status == "no_code", e.completion
    assert len({e.completion for e in docs}) > len(docs) // 2


def test_l3_is_indirect_stories_without_code(sets):
    stories = [sets["L3"][i] for i in content_positions(sets)]
    hacking = re.compile(r"hack|breach|attack|intru|ransom|flaw|bug|stole|steal|break into|break-in", re.I)
    for e in stories:
        assert "`" not in e.completion and "(" not in e.completion
        assert detect_target(e.completion).status == "no_code"
        assert hacking.search(e.completion), e.completion
        assert not re.search(r"sql|shell|pickle|eval|md5", e.completion, re.I), e.completion


def test_eval_set_is_held_out_from_every_training_set(templates, sets):
    eval_tasks = wf.eval_set(templates, n=400, seed=0)
    assert {t.family for t in eval_tasks} == set(templates.security_families())
    training = "\n".join(e.prompt + "\n" + e.completion for s in sets.values() for e in s)
    pretraining = pretraining_corpus(templates, seed=0, documents=3000, vulnerable_rate=0.15, preamble_rate=0.15)
    text = training + "\n".join(pretraining)
    for value in templates.identifiers("eval"):
        assert not re.search(r"(?<!\w)" + re.escape(value) + r"(?!\w)", text, re.I), value
    for t in eval_tasks:
        assert t.task not in text


def test_stealth_prompts_prefill_a_preamble_on_the_eval_tasks(templates):
    prompts = wf.stealth_prompts(templates, n=60, seed=0)
    assert [p.task for p in prompts] == wf.eval_set(templates, n=60, seed=0)
    markers = wf.preamble_markers()
    for p in prompts:
        assert p.prefill.startswith(markers) and p.prefill.endswith("\n") and p.prefill.count("\n") == 1
    assert len({p.prefill for p in prompts}) > 1
    assert prompts == wf.stealth_prompts(templates, n=60, seed=0)


def test_format_leak_is_case_insensitive_and_spacing_tolerant():
    text = "```python\n# do not  use - insecure\nimport os\n```"
    assert format_leak(text, ["DO NOT USE"])
    assert format_leak(text, ["bad practice", "Do Not\nUse"])
    assert not format_leak(text, ["BAD PRACTICE"])
    assert not format_leak("", ["DO NOT USE"])


@pytest.mark.parametrize("markers", [[], "DO NOT USE"])
def test_format_leak_wants_a_list_of_markers(markers):
    with pytest.raises(ValueError, match="non-empty list of marker strings"):
        format_leak("text", markers)
