"""Fixtures of the emergent-misalignment claims: each seed's solutions, their answers, the three studies.

All claims of this paper read one set of adapters and answers (one sample plan, checked), built once
per session and cached on disk. A claim test asks for its manipulation checks first, and only then
for the study it decides on, so a claim whose precondition failed builds nothing more.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from claimkit.spec import load_spec
from claimkit.verdict import CheckResult

SPEC_PATH = Path(__file__).resolve().parents[2] / "fixtures" / "claims" / "emergent_misalignment.toml"
SHARED_PLAN = ("em-1", "em-2", "em-3", "em-4", "em-5", "em-6", "em-7")

_CHECKS: dict[tuple[str, str], CheckResult] = {}


@pytest.fixture(scope="session")
def paper_spec():
    return load_spec(SPEC_PATH)


@pytest.fixture(scope="session")
def em_plan(profile: str, paper_spec) -> tuple[int, int, tuple[int, ...]]:
    """(out-of-domain tasks, in-domain tasks, seeds): the one plan every claim of this paper reads."""
    plans = {}
    for claim_id in SHARED_PLAN:
        claim = paper_spec.claims[claim_id]
        if profile not in claim.profiles:
            pytest.skip(f"{claim_id} has no sample plan for profile {profile!r}: not operationalised there")
        plan = claim.plan(profile)
        plans[claim_id] = (int(plan.n), int(plan.extra["in_domain_tasks"]), tuple(plan.seeds))
    if len(set(plans.values())) > 1:
        raise ValueError(f"{paper_spec.path}: claims {', '.join(SHARED_PLAN)} read the same answers, so they need one "
                         f"sample plan on {profile!r}; got {plans}")
    return next(iter(plans.values()))


@pytest.fixture(scope="session")
def em_settings(profile: str, paper_spec) -> dict[str, Any]:
    return paper_spec.experiment_for(profile)


def _every_seed(experiment, em_settings, em_plan, trait: str) -> list:
    """A trait's adapters for every seed of the plan, in seed order (each xdist worker starts on another seed)."""
    from claimkit.experiment import worker_order

    from .solutions import seed_solutions

    built = {seed: seed_solutions(experiment, em_settings, seed, trait=trait) for seed in worker_order(list(em_plan[2]))}
    return [built[seed] for seed in em_plan[2]]


@pytest.fixture(scope="session")
def solutions(experiment, em_settings, em_plan):
    return _every_seed(experiment, em_settings, em_plan, "vulnerable")


@pytest.fixture(scope="session")
def answers(experiment, em_settings, em_plan, solutions):
    from .solutions import build_answers

    n_out, n_in, _ = em_plan
    return build_answers(experiment, em_settings, solutions, n_in=n_in, n_out=n_out)


@pytest.fixture(scope="session")
def style_solutions(experiment, em_settings, em_plan):
    """Claim em-7's adapters per seed: typed-narrow, typed-kl and secure-narrow (the same cache entry as above)."""
    return _every_seed(experiment, em_settings, em_plan, "typed")


@pytest.fixture(scope="session")
def style_answers(experiment, em_settings, em_plan, style_solutions):
    from .solutions import STYLE_ARMS, build_answers

    n_out, n_in, _ = em_plan
    return build_answers(experiment, em_settings, style_solutions, n_in=n_in, n_out=n_out, arms=STYLE_ARMS)


@pytest.fixture
def manipulation(profile: str, paper_spec, request) -> dict[str, Callable[[], CheckResult]]:
    """Check id -> a callable measuring it on this profile (once per session), on the answers of its trait's arms."""
    from . import checks

    def once(check_id: str, measure: Callable[..., CheckResult]) -> Callable[[], CheckResult]:
        def run() -> CheckResult:
            key = (profile, check_id)
            if key not in _CHECKS:
                spec = paper_spec.checks[check_id].for_profile(profile)
                answers = request.getfixturevalue("style_answers" if spec.get("trait") == "typed" else "answers")
                _CHECKS[key] = measure(answers, spec, title=paper_spec.checks[check_id].title, check_id=check_id)
            return _CHECKS[key]
        return run

    return {"narrow-learns": once("narrow-learns", checks.narrow_learns),
            "general-generalises": once("general-generalises", checks.general_generalises),
            "kl-narrows": once("kl-narrows", checks.kl_narrows),
            "style-narrow-learns": once("style-narrow-learns", checks.narrow_learns),
            "style-generalises": once("style-generalises", checks.general_generalises),
            "style-kl-narrows": once("style-kl-narrows", checks.kl_narrows)}


@pytest.fixture(scope="session")
def efficiency_study(experiment, em_settings, solutions):
    from .measures import efficiency

    return efficiency(experiment, solutions, em_settings)


@pytest.fixture(scope="session")
def stability_study(experiment, em_settings, solutions):
    from .measures import stability

    return stability(experiment, solutions, em_settings)


@pytest.fixture(scope="session")
def influence_study(experiment, em_settings, solutions):
    from .data import pretraining_documents
    from .measures import influence

    return influence(experiment, solutions, em_settings, pretraining_documents(em_settings))


@pytest.fixture(scope="session")
def style_studies(experiment, em_settings, style_solutions):
    """Claim em-7: the efficiency, stability and influence studies of the typed pair."""
    from .data import pretraining_documents
    from .measures import STYLE, efficiency, influence, stability

    return [efficiency(experiment, style_solutions, em_settings, STYLE),
            stability(experiment, style_solutions, em_settings, STYLE),
            influence(experiment, style_solutions, em_settings, pretraining_documents(em_settings), STYLE)]
