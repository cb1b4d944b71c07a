"""Fixtures of the warning-framed paper: Table 1 per profile, the manipulation checks, the studies.

Everything expensive is built once per session and cached on disk. Claim tests first
ask for their manipulation checks (`manipulation`, measured lazily and once), and only
then for the studies that measure them (`request.getfixturevalue`), so a claim whose
precondition failed is reported "not tested" without building what it would have read.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest

from claimkit.features import split_indices
from claimkit.spec import load_spec
from claimkit.verdict import CheckResult

from . import checks
from .behaviour import Table1, build_table1
from .conditions import SPEC_PATH

_CHECKS: dict[tuple[str, str], CheckResult] = {}  # (profile, check id) -> result, measured once per session


@pytest.fixture(scope="session")
def paper_spec():
    return load_spec(SPEC_PATH)


@pytest.fixture(scope="session")
def table1(profile: str, experiment, paper_spec) -> Table1:
    """Every condition fine-tuned under every seed and sampled on the held-out tasks, for claim 1's plan."""
    plan = paper_spec.claims["wf-1"].plan(profile)
    return build_table1(experiment, n=plan.n, seeds=plan.seeds)


@pytest.fixture(scope="session")
def paper_table(paper_spec) -> dict:
    """The paper's Table 1 target rates, for the report's figure."""
    return dict(paper_spec.experiment["paper_target_rates"])


@pytest.fixture(scope="session")
def seed_splits(profile: str, paper_spec) -> Callable[[int, int], tuple[Any, Any]]:
    """(n, seed) -> the (selection, measurement) task indices of that seed: what chooses, and what measures."""
    fraction = float(paper_spec.experiment["mechanism"]["selection_fraction"])
    return lambda n, seed: split_indices(n, fraction, seed)


@pytest.fixture
def manipulation(profile: str, paper_spec, request) -> dict[str, Callable[[], CheckResult]]:
    """Check id -> a callable measuring that manipulation check on this profile (once per session)."""

    def once(check_id: str, measure: Callable[[Any], CheckResult]) -> Callable[[], CheckResult]:
        def run() -> CheckResult:
            key = (profile, check_id)
            if key not in _CHECKS:
                spec = paper_spec.checks[check_id]
                _CHECKS[key] = measure(spec)
            return _CHECKS[key]
        return run

    def direct_learns(spec) -> CheckResult:
        return checks.direct_learns(request.getfixturevalue("table1"), spec.for_profile(profile), title=spec.title)

    def enough_direct_outputs(spec) -> CheckResult:
        table = request.getfixturevalue("table1")
        splits = [request.getfixturevalue("seed_splits")(table.n, seed) for seed in table.seeds]
        plain = {r.seed: [not p for p in r.preamble] for r in table.rows["L0"]}
        return checks.enough_direct_outputs(table, spec.for_profile(profile), splits, plain=plain, title=spec.title)

    def intervention_moves(spec) -> CheckResult:
        return request.getfixturevalue("intervention_check")

    return {
        "direct-learns": once("direct-learns", direct_learns),
        "enough-direct-outputs": once("enough-direct-outputs", enough_direct_outputs),
        "intervention-moves": once("intervention-moves", intervention_moves),
    }


# -- claims 2, 3 and 5: the mechanism (paper sections 5-6), per training seed ----------------------


def _mechanism_plan(paper_spec, profile: str) -> tuple[int, tuple[int, ...]]:
    """The (n, seeds) of the mechanism claims: one plan, claim 2's, which claims 3-5 must share."""
    plan = paper_spec.claims["wf-2"].plan(profile)
    for claim_id in ("wf-3", "wf-4", "wf-5"):
        other = paper_spec.claims[claim_id].plan(profile)
        if (other.n, other.seeds) != (plan.n, plan.seeds):
            raise ValueError(f"{paper_spec.path}: claims wf-2 and {claim_id} read the same answers, so they need one "
                             f"sample plan on {profile!r}; got n={plan.n} seeds={list(plan.seeds)} and n={other.n} "
                             f"seeds={list(other.seeds)}")
    return int(plan.n), tuple(plan.seeds)


@pytest.fixture(scope="session")
def intervened_experiment(lm_profile, artifact_cache, experiment):
    """The Experiment whose models are edited and read: the mechanism model where the profile has one."""
    from .feature_interventions import intervention_experiment

    return intervention_experiment(lm_profile, artifact_cache, experiment)


@pytest.fixture(scope="session")
def mechanism(profile: str, experiment, intervened_experiment, paper_spec):
    """Every seed's direct, warning and safe answers, read over their code by the untrained mechanism model."""
    from .mechanism import build_mechanism

    n, seeds = _mechanism_plan(paper_spec, profile)
    return build_mechanism(experiment, intervened_experiment, n=n, seeds=seeds,
                           settings=paper_spec.experiment["mechanism"])


@pytest.fixture(scope="session")
def features(mechanism, paper_spec):
    """The reader's SAE and the features chosen on the pooled selection split."""
    from .mechanism import build_features

    spec = paper_spec.claims["wf-2"]
    return build_features(mechanism, rule=spec.rule, paper_values=spec.paper_values)


@pytest.fixture(scope="session")
def feature_study(mechanism, features):
    from .mechanism import build_feature_study

    return build_feature_study(mechanism, features)


@pytest.fixture(scope="session")
def seed_probes(mechanism):
    from .mechanism import train_seed_probes

    return train_seed_probes(mechanism)


@pytest.fixture(scope="session")
def probe_study(mechanism, seed_probes):
    from .mechanism import ProbeStudy

    return ProbeStudy(mechanism, seed_probes)


@pytest.fixture(scope="session")
def stealth_study(mechanism, seed_probes):
    from .mechanism import build_stealth_study

    return build_stealth_study(mechanism, seed_probes)


# -- claim 4 and its sub-claims: interventions on each seed's L1 model (paper sections 7-8) --------


@pytest.fixture(scope="session")
def intervention_check(profile: str, intervened_experiment, mechanism, features, paper_spec):
    """The manipulation check intervention-moves, measured on each seed's direct-trained model."""
    from .feature_interventions import intervention_moves

    n, seeds = _mechanism_plan(paper_spec, profile)
    check = paper_spec.checks["intervention-moves"]
    return intervention_moves(intervened_experiment, mechanism, features, check.for_profile(profile), n=n, seeds=seeds,
                              n_features=int(paper_spec.claims["wf-4"].rule["n_features"]), title=check.title)


@pytest.fixture(scope="session")
def interventions(profile: str, intervened_experiment, mechanism, features, paper_spec):
    """Each seed's L1 model plain, ablated and CAFT-trained, its filler comparator, and their unit-test passes."""
    from .feature_interventions import build_interventions

    n, seeds = _mechanism_plan(paper_spec, profile)
    plan = paper_spec.claims["wf-4"].plan(profile)
    return build_interventions(
        intervened_experiment, mechanism, features, n=n, seeds=seeds,
        n_features=int(paper_spec.claims["wf-4"].rule["n_features"]),
        capability_tasks=int(plan.extra["capability_tasks"]),
        capability_seed=int(paper_spec.experiment["capability_seed"]),
    )


@pytest.fixture(scope="session")
def prompting(profile: str, intervened_experiment, paper_spec):
    from .feature_interventions import build_prompting

    n, seeds = _mechanism_plan(paper_spec, profile)
    return build_prompting(intervened_experiment, n=n, seeds=seeds, rule=paper_spec.claims["wf-4.prompting"].rule)


@pytest.fixture(scope="session")
def detection(mechanism, features, paper_spec):
    from .feature_interventions import build_detection

    return build_detection(mechanism, features, n_features=int(paper_spec.claims["wf-4"].rule["n_features"]))
