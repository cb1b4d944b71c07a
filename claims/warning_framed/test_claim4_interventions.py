"""Claim 4 (paper sections 7.2-7.3, Figure 5): clamping the target features at inference leaves
the L1 model's learning (88%) while training with them ablated (CAFT) removes it (0%) and keeps
function; with the prompting interventions of section 7.1 and the detection score of section 8
as sub-claims."""

import pytest

from claimkit.rules.declared import decide_rule

from .mechanism import with_extra


@pytest.mark.claim("wf-4")
def test_inference_ablation_leaves_the_learning_while_caft_removes_it(claim, manipulation, request):
    claim.require_checks(manipulation)
    mechanism, features = request.getfixturevalue("mechanism"), request.getfixturevalue("features")
    found = request.getfixturevalue("interventions")
    decision = decide_rule(claim.rule, found.data(), paper_values=claim.paper_values,
                           preconditions=[features.acceptable(mechanism.settings)])
    decision = with_extra(decision, [found.plot(claim.paper_values)], interventions=found.evidence())
    claim.decide(decision, model=found.models.get(f"L1 seed {found.seeds[0]}", ""), seeds=found.seeds, n=found.n)


@pytest.mark.claim("wf-4.prompting")
def test_system_prompts_leave_the_learning_except_permission_and_meta_awareness(claim, manipulation, request):
    claim.require_checks(manipulation)
    found = request.getfixturevalue("prompting")
    decision = decide_rule(claim.rule, found.data(), paper_values=claim.paper_values)
    decision = with_extra(decision, [found.plot()], prompting=found.evidence())
    claim.decide(decision, seeds=found.seeds)


@pytest.mark.claim("wf-4.detection")
def test_a_simple_combined_detector_tells_l1_outputs_apart(claim, manipulation, request):
    claim.require_checks(manipulation)
    found = request.getfixturevalue("detection")
    decision = decide_rule(claim.rule, found.data(), paper_values=claim.paper_values)
    decision = with_extra(decision, detection=found.evidence())
    claim.decide(decision, seeds=found.seeds, n=int(found.correct.shape[1]))
