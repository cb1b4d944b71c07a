"""The `claim` fixture's object: a claim test's spec, its profile's plan, and `decide`.

A test marked `@pytest.mark.claim("wf-1")` gets a `ClaimRecorder` bound to that
claim's pre-registered spec. `claim.decide(decision)` turns the rule's Decision
into a Verdict, records it on the test's `user_properties` (which is how it
travels from an xdist worker to the controller), and maps it to a pytest outcome:
supported -> passed, refuted -> failed with the evidence, inconclusive -> skipped
with the samples that would decide it.

The verdict carries its provenance (`claimkit.provenance`), read here, in the
process that decided it: on an xdist worker the device is the worker's GPU. It
also says whether the claim's spec and inputs were the pre-registered ones
(`claimkit.preregistration`), as the session found them when the test was set up.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import pytest

import claimkit
from claimkit.provenance import verdict_provenance
from claimkit.report.markdown import format_estimate, paper_numbers
from claimkit.spec import ClaimSpec, PaperSpec, SamplePlan, SpecError, find_claim
from claimkit.verdict import CheckResult, Decision, Evidence, Outcome, Verdict

VERDICT_PROPERTY = "claimkit_verdict"
DEFAULT_PROFILE = "organism"


class ClaimRecorder:
    """What a claim test talks to. One verdict per test: sub-claims are tests of their own."""

    def __init__(
        self,
        *,
        paper_spec: PaperSpec,
        spec: ClaimSpec,
        profile: str,
        nodeid: str,
        user_properties: list[tuple[str, object]],
        claim_dir: Path | None = None,
        command: str = "",
        preregistration: Mapping[str, Any] | None = None,
    ) -> None:
        self._paper_spec = paper_spec
        self._spec = spec
        self._profile = profile
        self._nodeid = nodeid
        self._user_properties = user_properties
        self._claim_dir = claim_dir  # the test module's directory: the claim package's code
        self._command = command
        self._preregistration = dict(preregistration or {})
        self._verdict: Verdict | None = None
        self._checks: dict[str, CheckResult] = {}
        #: The model the verdict was decided on (hub id, path, organism hash); the
        #: profile's fixtures should set it. Defaults to the profile name.
        self.model: str = profile

    @property
    def spec(self) -> ClaimSpec:
        return self._spec

    @property
    def paper_spec(self) -> PaperSpec:
        return self._paper_spec

    @property
    def rule(self) -> Mapping[str, Any]:
        return self._spec.rule

    @property
    def paper_values(self) -> Mapping[str, Any]:
        return self._spec.paper_values

    @property
    def profile(self) -> str:
        return self._profile

    @property
    def plan(self) -> SamplePlan:
        """This profile's sample plan; a SpecError names the claim if there is none."""
        return self._spec.plan(self._profile)

    @property
    def verdict(self) -> Verdict | None:
        """The verdict once `decide` has been called."""
        return self._verdict

    def require_checks(self, results: Mapping[str, CheckResult | Callable[[], CheckResult]]) -> None:
        """Before any measuring: the manipulation checks this claim requires (spec `requires`) must pass.

        `results` maps check ids to results, or to callables that measure them (only the
        required ones are called). A failed check ends the test with the verdict "not
        tested", the check's numbers as evidence; a required check that was not measured
        is a usage error. Passed checks go into the verdict record.
        """
        __tracebackhide__ = True
        missing = [c for c in self._spec.requires if c not in results]
        if missing:
            raise RuntimeError(f"claim {self._spec.id!r} requires check(s) {missing} that the test did not measure "
                               f"(measured: {sorted(results)})")
        for check_id in self._spec.requires:
            found = results[check_id]
            self._checks[check_id] = found() if callable(found) else found
        failed = [r for r in self._checks.values() if not r.passed]
        if failed:
            reason = "; ".join(f"the manipulation check {r.check_id!r} failed ({r.reason})" for r in failed)
            reason = reason[0].upper() + reason[1:] + "."
            self.decide(Decision(Outcome.NOT_TESTED, reason, Evidence()))

    def decide(
        self,
        decision: Decision,
        *,
        model: str | None = None,
        seeds: Iterable[int] | None = None,
        n: int | None = None,
        models: Mapping[str, str] | None = None,
    ) -> Verdict:
        """Record the verdict for `decision` and end the test the way its outcome says.

        `seeds` and `n` default to the profile's sample plan; `model` to `claim.model`.
        `models` names the resolved models behind the verdict (e.g. arm -> model file or
        adapter hash); it goes into the verdict's provenance as `models`.
        Returns the verdict only when supported (refuted fails, inconclusive skips).
        """
        __tracebackhide__ = True  # report the test's line, not this one
        if not isinstance(decision, Decision):
            raise TypeError(
                f"claim.decide() takes a claimkit.verdict.Decision (from a rule in claimkit.rules), "
                f"got {type(decision).__name__}"
            )
        if self._spec.draft:
            raise RuntimeError(f"claim {self._spec.id!r} is a draft: its rule in {self._paper_spec.path} is empty, so "
                               "nothing pre-registered can decide it; write the rule before deciding")
        if self._verdict is not None:
            raise RuntimeError(
                f"claim {self._spec.id!r} was already decided in {self._nodeid}: one verdict per test "
                "(give each sub-claim a test of its own with its own @pytest.mark.claim)"
            )
        verdict = self._build(decision, model, seeds, n, models)
        self._verdict = verdict
        self._user_properties.append((VERDICT_PROPERTY, verdict.to_dict()))
        if verdict.outcome is Outcome.REFUTED:
            pytest.fail(evidence_message(verdict), pytrace=False)
        if verdict.outcome is Outcome.INCONCLUSIVE:
            needed = verdict.n_to_decide if verdict.n_to_decide is not None else "unknown"
            pytest.skip(f"claim {verdict.claim_id} inconclusive: {verdict.reason}; n per group to decide: {needed}")
        if verdict.outcome is Outcome.NOT_TESTED:
            pytest.skip(f"claim {verdict.claim_id} not tested: {verdict.reason}")
        return verdict

    def _build(
        self,
        decision: Decision,
        model: str | None,
        seeds: Iterable[int] | None,
        n: int | None,
        models: Mapping[str, str] | None,
    ) -> Verdict:
        plan = self._spec.profiles.get(self._profile)
        evidence = decision.evidence
        if not evidence.paper_values:  # the spec's numbers, so every verdict shows what the paper said
            evidence = dataclasses.replace(evidence, paper_values=_numbers_only(self._spec.paper_values))
        if self._spec.analog and "analog" not in evidence.extra:  # what was measured, also when nothing was decided
            evidence = dataclasses.replace(evidence, extra={**evidence.extra, "analog": self._spec.analog})
        return Verdict(
            claim_id=self._spec.id,
            paper=self._paper_spec.paper,
            scan_claim=scan_claim_of(self._paper_spec, self._spec),
            profile=self._profile,
            model=model or self.model or self._profile,
            outcome=decision.outcome,
            reason=decision.reason,
            evidence=evidence,
            rule=dict(self._spec.rule),
            spec_hash=self._paper_spec.hash,
            seeds=tuple(seeds) if seeds is not None else (plan.seeds if plan else ()),
            n=n if n is not None else (plan.n if plan else None),
            n_to_decide=decision.n_to_decide,
            decided_by=decision.decided_by,
            checks={c: r.to_dict() for c, r in self._checks.items()},
            parent=self._spec.parent,
            nodeid=self._nodeid,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            claimkit_version=claimkit.__version__,
            claim_hash=self._spec.hash,
            preregistration=self._preregistration,
            provenance=self._provenance(models),
        )

    def _provenance(self, models: Mapping[str, str] | None) -> dict[str, Any]:
        if self._claim_dir is None:  # built outside a pytest item: only what the claim passed
            return {"models": dict(models)} if models else {}
        return verdict_provenance(command=self._command, claim_dir=self._claim_dir, models=models)


def claim_for(
    request: pytest.FixtureRequest,
    specs: Callable[[], Mapping[str, PaperSpec]],
    *,
    command: str = "",
    preregistration: Callable[[PaperSpec, ClaimSpec], Mapping[str, Any]] | None = None,
) -> ClaimRecorder:
    """The recorder for the test behind `request`; usage errors fail its setup with a plain message.

    `preregistration` gives the verdict's pre-registration field for a claim (the
    session compares each spec with its lock once per run).
    """
    node = request.node
    marker = node.get_closest_marker("claim")
    if marker is None:
        pytest.fail(
            f"{node.nodeid}: uses the 'claim' fixture but has no @pytest.mark.claim(\"<claim id>\") "
            "naming the claim spec it decides",
            pytrace=False,
        )
    if len(marker.args) != 1 or not isinstance(marker.args[0], str) or marker.kwargs:
        pytest.fail(
            f"{node.nodeid}: @pytest.mark.claim takes exactly one claim id string, "
            f"got args={marker.args!r} kwargs={marker.kwargs!r}",
            pytrace=False,
        )
    try:
        paper_spec, spec = find_claim(specs(), marker.args[0])
    except SpecError as exc:  # `from None`: the message says it all, no chained traceback
        raise pytest.fail.Exception(f"{node.nodeid}: @pytest.mark.claim({marker.args[0]!r}): {exc}", pytrace=False) from None
    return ClaimRecorder(
        paper_spec=paper_spec,
        spec=spec,
        profile=profile_of(request),
        nodeid=node.nodeid,
        user_properties=node.user_properties,
        claim_dir=Path(node.path).parent,
        command=command,
        preregistration=preregistration(paper_spec, spec) if preregistration else None,
    )


def profile_of(request: pytest.FixtureRequest) -> str:
    """The test's profile: its `profile` fixture's value (a name, or an object with .name)."""
    if "profile" not in request.fixturenames:
        return DEFAULT_PROFILE
    value = request.getfixturevalue("profile")
    return value if isinstance(value, str) else str(getattr(value, "name", value))


def scan_claim_of(paper_spec: PaperSpec, spec: ClaimSpec) -> str:
    """The scan's exact claim text; a sub-claim answers to its parent's (spec validates parents)."""
    seen = set()
    while not spec.scan_claim and spec.parent and spec.id not in seen:
        seen.add(spec.id)
        spec = paper_spec.claims[spec.parent]
    return spec.scan_claim or ""


def verdict_dicts(user_properties: Iterable[Any]) -> list[dict[str, Any]]:
    """The verdicts recorded on a test report's user_properties."""
    return [value for name, value in user_properties if name == VERDICT_PROPERTY]


def evidence_message(verdict: Verdict) -> str:
    """The failure message of a refuted claim: everything needed to judge it without the report."""
    ev = verdict.evidence
    lines = [
        f"claim {verdict.claim_id} REFUTED on profile {verdict.profile} (model {verdict.model})",
        f"  scan claim: {verdict.scan_claim}",
        f"  reason: {verdict.reason}",
    ]
    lines += [f"  estimate: {format_estimate(e)}" for e in ev.estimates]
    lines += [f"  test: {t.describe()}" for t in ev.tests]
    if ev.paper_values:
        lines.append(f"  paper: {paper_numbers(verdict)}")
    lines.append(f"  n: {verdict.n}, seeds: {', '.join(map(str, verdict.seeds)) or '-'}, spec: {verdict.spec_hash}")
    return "\n".join(lines)


def _numbers_only(values: Mapping[str, Any]) -> dict[str, float]:
    return {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
