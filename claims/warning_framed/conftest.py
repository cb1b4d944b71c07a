"""Fixtures of the warning-framed paper: Table 1's counts per profile, built once and cached."""

from __future__ import annotations

import pytest

from claimkit.spec import load_spec

from .behaviour import Table1, build_table1
from .conditions import SPEC_PATH


@pytest.fixture(scope="session")
def paper_spec():
    return load_spec(SPEC_PATH)


@pytest.fixture(scope="session")
def table1(profile: str, experiment, paper_spec) -> Table1:
    """Every condition fine-tuned and sampled on the held-out tasks, for claim 1's plan."""
    plan = paper_spec.claims["wf-1"].plan(profile)
    return build_table1(experiment, n=plan.n, seeds=plan.seeds)


@pytest.fixture(scope="session")
def paper_table(paper_spec) -> dict:
    """The paper's Table 1 target rates, for the report's figure."""
    return dict(paper_spec.experiment["paper_target_rates"])


# -- claim 4 and its sub-claims: interventions on the L1 model (paper sections 7-8) ----------


@pytest.fixture(scope="session")
def intervened_experiment(lm_profile, artifact_cache, experiment):
    """The Experiment whose L1 model is edited (the mechanism model where the profile has one)."""
    from .interventions_glue import intervention_experiment

    return intervention_experiment(lm_profile, artifact_cache, experiment)


@pytest.fixture(scope="session")
def intervention_targets(profile: str, intervened_experiment, paper_spec):
    """The SAE, layer and features to clamp; a NoTargets (not raised) when none can be chosen."""
    from .interventions_glue import NoTargets, target_features

    plan = paper_spec.claims["wf-4"].plan(profile)
    try:
        return target_features(
            intervened_experiment, n=plan.n, seed=plan.seeds[0],
            n_features=int(paper_spec.claims["wf-4"].rule["n_features"]),
            selection_fraction=float(paper_spec.claims["wf-2"].rule["selection_fraction"]),
        )
    except NoTargets as exc:
        return exc


@pytest.fixture(scope="session")
def interventions(profile: str, intervened_experiment, intervention_targets, paper_spec):
    """Claim 4's target rates (none / ablate / 2x / 5x / CAFT) and capability check, or NoTargets."""
    from .interventions_glue import NoTargets, build_claim4

    if isinstance(intervention_targets, NoTargets):
        return intervention_targets
    plan = paper_spec.claims["wf-4"].plan(profile)
    return build_claim4(intervened_experiment, intervention_targets, n=plan.n, seed=plan.seeds[0])


# -- claims 2, 3 and 5: the mechanism (paper sections 5-6) ---------------------------------------


@pytest.fixture(scope="session")
def mechanism_contexts(profile: str, experiment, intervened_experiment, paper_spec):
    """claim id -> the direct / warning / safe contexts of that claim's plan, built once per (n, seed).

    The outputs are claim 1's (cache hits); one model reads them all: the profile's
    mechanism model as it is (claim 4's Experiment's base, so it is loaded once).
    """
    import functools

    from .mechanism import build_contexts, plan_of

    fraction = float(paper_spec.claims["wf-2"].rule["selection_fraction"])

    @functools.cache
    def build(n: int, seed: int):
        return build_contexts(experiment, intervened_experiment, n=n, seed=seed, selection_fraction=fraction)

    return lambda claim_id: build(*plan_of(paper_spec, claim_id, profile))


@pytest.fixture(scope="session")
def feature_study(mechanism_contexts, paper_spec):
    """Claim 2's SAE feature in the three contexts, or a NotTestable saying why it cannot be measured."""
    from .mechanism import NotTestable, build_feature_study

    spec = paper_spec.claims["wf-2"]
    try:
        return build_feature_study(mechanism_contexts("wf-2"), rule=spec.rule, paper_values=spec.paper_values)
    except NotTestable as exc:
        return exc


@pytest.fixture(scope="session")
def probe_study(mechanism_contexts):
    """Claim 3's direct-trained probe scored on held-out warning-framed and safe outputs, or a NotTestable."""
    from .mechanism import NotTestable, build_probe_study

    try:
        return build_probe_study(mechanism_contexts("wf-3"))
    except NotTestable as exc:
        return exc


@pytest.fixture(scope="session")
def stealth_study(mechanism_contexts):
    """Claim 5's probe confidences on L0 target outputs with and without a prefilled preamble, or a NotTestable."""
    from .mechanism import NotTestable, build_stealth_study, train_direct_probe

    contexts = mechanism_contexts("wf-5")
    try:
        return build_stealth_study(contexts, train_direct_probe(contexts))
    except NotTestable as exc:
        return exc
