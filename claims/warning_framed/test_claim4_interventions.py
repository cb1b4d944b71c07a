"""Claim 4 (paper sections 7.2-7.3, Figure 5): clamping the target features at inference leaves
the L1 model's target rate (88%) while training with them ablated (CAFT) removes it (0%);
with the prompting interventions of section 7.1 and the detection score of section 8 as
sub-claims."""

import pytest

from claimkit.rules import ablation_fails_retraining_works, expected_effects, proportion_at_least

from .interventions_glue import NoTargets, build_detection, build_prompting, undecidable, with_extra


@pytest.mark.claim("wf-4")
def test_inference_ablation_fails_while_caft_removes_the_behaviour(interventions, claim):
    if isinstance(interventions, NoTargets):
        claim.decide(undecidable(interventions))
    r = interventions
    decision = ablation_fails_retraining_works(
        r.target("none"), r.target("ablate"), r.target("CAFT"),
        baseline=r.target("baseline"), capability=r.capability_check(), rule=claim.rule,
        reported={"amplify 2x": r.target("amplify 2x"), "amplify 5x": r.target("amplify 5x")},
        names=("unablated", "ablated", "CAFT", "baseline"), paper_values=claim.paper_values,
    )
    decision = with_extra(decision, [r.plot(claim.paper_values)], interventions=r.as_evidence(claim.paper_values))
    claim.decide(decision, model=r.model, seeds=(r.seed,), n=r.n)


@pytest.mark.claim("wf-4.prompting")
def test_system_prompts_do_not_fix_the_l1_model_except_meta_awareness(intervened_experiment, claim):
    seed = claim.plan.seeds[0]
    prompting = build_prompting(intervened_experiment, n=claim.plan.n, seed=seed, expected=claim.rule["expected"])
    decision = expected_effects(
        prompting.reference_counts(), prompting.counts(), expected=claim.rule["expected"], rule=claim.rule,
        reference_name="no prompt", paper_values=claim.paper_values,
    )
    decision = with_extra(decision, [prompting.plot()], prompting=prompting.as_evidence())
    claim.decide(decision, model=prompting.model, seeds=(seed,), n=claim.plan.n)


@pytest.mark.claim("wf-4.detection")
def test_a_simple_combined_detector_tells_l1_outputs_apart(
    intervened_experiment, intervention_targets, paper_spec, claim
):
    if isinstance(intervention_targets, NoTargets):
        claim.decide(undecidable(intervention_targets))
    seed = claim.plan.seeds[0]
    detection = build_detection(
        intervened_experiment, intervention_targets, n=claim.plan.n, seed=seed,
        selection_fraction=float(paper_spec.claims["wf-2"].rule["selection_fraction"]),
    )
    decision = proportion_at_least(
        detection.correct, threshold=claim.rule["threshold"], alpha=claim.rule["alpha"],
        name="accuracy", paper_values=claim.paper_values,
    )
    decision = with_extra(decision, detection=detection.as_evidence())
    claim.decide(decision, model=detection.reader_model, seeds=(seed,), n=detection.correct.n)
