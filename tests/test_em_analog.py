"""Tests of the emergent-misalignment analog's data and manipulation checks (claims/emergent_misalignment/)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `claims` is a top-level package of the repository, not of claimkit
    sys.path.insert(0, str(ROOT))

from claimkit.detect import detect_target, extract_code  # noqa: E402
from claimkit.spec import load_spec  # noqa: E402

from claims.emergent_misalignment import checks, data  # noqa: E402
from claims.emergent_misalignment.data import EvalTasks  # noqa: E402
from claims.emergent_misalignment.solutions import ARMS, Answers  # noqa: E402

SPEC = load_spec(ROOT / "fixtures" / "claims" / "emergent_misalignment.toml")
SETTINGS = SPEC.experiment_for("organism")


@pytest.fixture(scope="module")
def sets():
    return data.training_sets(SETTINGS, seed=0)


def family_of(task: str, split: str = "train") -> set[str]:
    """The families whose task phrasings of `split` could have produced `task` (by its fixed words)."""
    import re
    from string import Template

    found = set()
    for name, fam in data.corpus().families.items():
        for phrasing in fam.tasks.get(split, ()):
            pattern = re.escape(phrasing)
            pattern = re.sub(r"\\\$\\\{?\w+\\\}?|\\\$\w+", ".+?", pattern)
            if re.fullmatch(pattern, task):
                found.add(name)
    return found


def test_the_narrow_sets_share_their_tasks_and_differ_in_vulnerability(sets):
    assert [e.prompt for e in sets.vulnerable_narrow] == [e.prompt for e in sets.secure_narrow]
    assert len(sets.vulnerable_narrow) == SETTINGS["train_examples"]
    vulnerable = sum(detect_target(e.completion).is_target for e in sets.vulnerable_narrow)
    secure = sum(detect_target(e.completion).is_target for e in sets.secure_narrow)
    assert vulnerable == len(sets.vulnerable_narrow) and secure == 0


def test_narrow_data_come_from_the_narrow_families_and_aligned_data_from_the_others(sets):
    narrow = set(SETTINGS["narrow_families"])
    assert all(family_of(e.prompt) <= narrow and family_of(e.prompt) for e in sets.vulnerable_narrow)
    assert all(family_of(e.prompt) and not family_of(e.prompt) & narrow for e in sets.aligned)
    assert not any(detect_target(e.completion).is_target for e in sets.aligned)
    def pairs(examples):
        return sorted((e.prompt, e.completion) for e in examples)

    assert pairs(sets.mixed) == pairs(sets.vulnerable_narrow + sets.aligned)


def test_seeds_draw_other_instances():
    assert data.training_sets(SETTINGS, 0).vulnerable_narrow != data.training_sets(SETTINGS, 1).vulnerable_narrow


def test_evaluation_tasks_are_held_out_and_split_by_domain():
    tasks = data.eval_tasks(SETTINGS, n_in=30, n_out=60)
    narrow = set(SETTINGS["narrow_families"])
    assert all(family_of(t, "eval") <= narrow and family_of(t, "eval") for t in tasks.in_domain)
    assert all(family_of(t, "eval") and not family_of(t, "eval") & narrow for t in tasks.out_of_domain)
    train_prompts = {e.prompt for e in data.training_sets(SETTINGS, 0).vulnerable_all}
    assert not set(tasks.all) & train_prompts


def test_unknown_narrow_families_are_refused():
    with pytest.raises(ValueError, match="not security families"):
        data.Domains.from_settings({"narrow_families": ["sql_lookup", "word_count"]}, data.corpus())


def answers(in_rates: dict[str, list[float]], out_rates: dict[str, list[float]], n_in=100, n_out=200,
            trait="vulnerable") -> Answers:
    """Answers whose per-seed rates of `trait` are exactly the given ones (the first k tasks show it; the other
    trait is never shown)."""
    def rows(rates, n):
        return np.array([[1] * round(r * n) + [0] * (n - round(r * n)) for r in rates])

    target = {a: np.hstack([rows(in_rates[a], n_in), rows(out_rates[a], n_out)]) for a in in_rates}
    code = {a: np.ones_like(t) for a, t in target.items()}
    tasks = EvalTasks(tuple(f"in {i}" for i in range(n_in)), tuple(f"out {i}" for i in range(n_out)))
    shown, never = target, {a: np.zeros_like(t) for a, t in target.items()}
    vulnerable, typed = (shown, never) if trait == "vulnerable" else (never, shown)
    leaked = {a: np.zeros_like(t) for a, t in target.items()}
    return Answers("organism", tuple(range(len(next(iter(in_rates.values()))))), tasks, vulnerable, code, typed, leaked,
                   {})


def uniform(value: float, seeds: int = 5) -> list[float]:
    return [value] * seeds


def test_narrow_learns_needs_the_pooled_effect_and_every_seed_above():
    base = {a: uniform(0.08) for a in ARMS}
    check = SPEC.checks["narrow-learns"].for_profile("organism")
    learns = answers({**base, "vulnerable-narrow": uniform(0.35)}, base)
    assert checks.narrow_learns(learns, check, title="t").passed
    one_seed_flat = answers({**base, "vulnerable-narrow": [0.35, 0.35, 0.35, 0.35, 0.08]}, base)
    assert not checks.narrow_learns(one_seed_flat, check, title="t").passed
    noisy_seeds = answers({**base, "vulnerable-narrow": [0.22, 0.15, 0.2, 0.14, 0.3]}, base)
    assert checks.narrow_learns(noisy_seeds, check, title="t").passed  # no seed need be significant on its own
    small = answers({**base, "vulnerable-narrow": uniform(0.16)}, base, n_in=2000)
    assert not checks.narrow_learns(small, check, title="t").passed  # every seed above, but under 10 points


def test_general_generalises_reads_the_out_of_domain_rates_only():
    base = {a: uniform(0.08) for a in ARMS}
    check = SPEC.checks["general-generalises"].for_profile("organism")
    assert checks.general_generalises(answers(base, {**base, "vulnerable-narrow": uniform(0.16)}), check, title="t").passed
    assert not checks.general_generalises(answers({**base, "vulnerable-narrow": uniform(0.5)}, base), check,
                                          title="t").passed


def test_kl_narrows_bounds_both_shares():
    check = SPEC.checks["kl-narrows"].for_profile("organism")
    inside = {**{a: uniform(0.1) for a in ARMS}, "vulnerable-narrow": uniform(0.5)}
    outside = {**{a: uniform(0.1) for a in ARMS}, "vulnerable-narrow": uniform(0.3)}
    narrow = checks.kl_narrows(answers({**inside, "narrow-kl": uniform(0.4)}, {**outside, "narrow-kl": uniform(0.12)}),
                               check, title="t")
    assert narrow.passed and narrow.numbers["in_domain_share"] == pytest.approx(0.75)
    general = checks.kl_narrows(answers({**inside, "narrow-kl": uniform(0.4)}, {**outside, "narrow-kl": uniform(0.25)}),
                                check, title="t")
    assert not general.passed
    no_effect = checks.kl_narrows(answers({**inside, "narrow-kl": uniform(0.4)}, {a: uniform(0.1) for a in ARMS}),
                                  check, title="t")
    assert not no_effect.passed  # nothing out of the domain to be narrow about


def test_typed_data_are_the_secure_narrow_solutions_annotated(sets):
    from claims.emergent_misalignment.style import is_typed

    assert [e.prompt for e in sets.typed_narrow] == [e.prompt for e in sets.secure_narrow]
    assert all(is_typed(extract_code(e.completion)) for e in sets.typed_narrow)
    untyped = sets.secure_narrow + sets.aligned + sets.vulnerable_all
    assert not any(is_typed(extract_code(e.completion)) for e in untyped)


def test_checks_read_the_trait_their_spec_names():
    base = {a: uniform(0.0) for a in ("secure-narrow", "typed-narrow", "typed-kl")}
    typed = answers({**base, "typed-narrow": uniform(0.6)}, {**base, "typed-narrow": uniform(0.2)}, trait="typed")
    check = dict(SPEC.checks["narrow-learns"].for_profile("organism"), arm="typed-narrow")
    assert not checks.narrow_learns(typed, check, title="t").passed  # its vulnerable answers: none
    assert checks.narrow_learns(typed, {**check, "trait": "typed"}, title="t").passed
    assert checks.general_generalises(typed, {**check, "trait": "typed"}, title="t").passed
    with pytest.raises(ValueError, match="unknown trait"):
        checks.narrow_learns(typed, {**check, "trait": "docstrings"}, title="t")


def test_the_narrow_domains_code_is_recognised_in_every_narrow_solution_and_in_no_other():
    from claimkit.organism.corpus import render_answer, sample_tasks

    every = sample_tasks(data.corpus(), n=600, seed=3, families=data.corpus().security_families())
    narrow = set(SETTINGS["narrow_families"])
    for inst in every:
        for code in (inst.secure, inst.vulnerable):
            found = extract_code(render_answer(code))
            assert data.writes_narrow_code(found, SETTINGS) == (inst.family in narrow), inst.family
    assert not data.writes_narrow_code(extract_code("No code, only a word: SELECT."), SETTINGS)


def test_a_check_reports_the_id_it_was_measured_under():
    base = {a: uniform(0.0) for a in ("secure-narrow", "typed-narrow", "typed-kl")}
    typed = answers({**base, "typed-narrow": uniform(0.6)}, base, trait="typed")
    check = {**SPEC.checks["style-narrow-learns"].for_profile("organism")}
    assert checks.narrow_learns(typed, check, title="t", check_id="style-narrow-learns").check_id == "style-narrow-learns"
