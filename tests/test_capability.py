"""Tests of claimkit.capability: the pass rate of generated answers under their tasks' checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from scipy.stats import binomtest

from claimkit.capability import NO_CODE, PassRate, functional_pass_rate
from claimkit.organism.corpus import capability_tasks, load_templates, render_answer

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "corpus"
CHECKS = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n"


def answer(code: str) -> str:
    return f"Here is the function:\n```python\n{code}```\nIt adds two numbers."


def test_answers_are_extracted_run_and_counted_in_order():
    texts = [
        answer("def add(a, b):\n    return a + b\n"),
        answer("def add(a, b):\n    return a - b\n"),
        "I cannot write that function.",
        "```python\ndef add(a, b)\n    return a +\n```",
        answer("def add(a, b):\n    while True:\n        pass\n"),
        "def add(a, b):\n    return b + a\n",  # bare code, no fence
    ]
    rate = functional_pass_rate(texts, [CHECKS] * len(texts), timeout=2.0, workers=2)
    assert isinstance(rate, PassRate) and (rate.passed, rate.n) == (2, 6)
    assert [r.outcome for r in rate.results] == ["passed", "failed", "error", "error", "timeout", "passed"]
    assert rate.results[2].reason == NO_CODE
    assert rate.results[3].reason.startswith("the answer's code does not parse")
    assert rate.outcomes() == {"passed": 2, "failed": 1, "error": 2, "timeout": 1}
    assert rate.rate == pytest.approx(2 / 6)


def test_the_interval_is_the_exact_binomial_one():
    rate = PassRate(7, 20, ())
    expected = binomtest(7, 20).proportion_ci(confidence_level=0.9, method="exact")
    interval = rate.interval(0.9)
    assert (interval.low, interval.high) == pytest.approx((expected.low, expected.high))
    assert interval.estimate == pytest.approx(0.35)


def test_reference_answers_to_capability_tasks_pass_and_wrong_ones_do_not():
    templates = load_templates(CORPUS)
    tasks = [t for t in capability_tasks(templates, n=12, seed=5) if "bcrypt" not in t.reference]
    good = functional_pass_rate([render_answer(t.reference) for t in tasks], [t.checks for t in tasks], workers=2)
    assert good.passed == good.n == len(tasks), [r.reason for r in good.results if not r.passed]
    swapped = functional_pass_rate(
        [render_answer(t.reference) for t in tasks[1:] + tasks[:1]], [t.checks for t in tasks], workers=2
    )
    assert swapped.passed == 0, [r for r in swapped.results if r.passed]


def test_mismatched_or_empty_inputs_say_what_to_pass():
    with pytest.raises(ValueError, match="2 answers but 1 checks"):
        functional_pass_rate(["a", "b"], [CHECKS])
    with pytest.raises(ValueError, match="at least one answer"):
        functional_pass_rate([], [])
