"""One decision from the parts of a claim, with the same evidence standard both ways.

Every rule shape reduces what it measured to `Part`s. A part is what one hypothesis
of the claim says ("L1's share of L0's learning lies in [0.75, 1.33]"): its estimate
and interval, the one-sided p-value that would *support* it and the one that would
*refute* it. A claim of one part is supported when its support p < alpha and refuted
when its refute p < alpha. A claim of k parts is a conjunction:

- supported when every part's support p < alpha (an intersection-union test: the
  chance of supporting a false conjunction is at most alpha, Berger 1982);
- refuted when some part's refute p < alpha / k (Bonferroni: the chance of refuting a
  true conjunction through any of its k parts is at most alpha).

So P(supported | false) <= alpha and P(refuted | true) <= alpha hold alike, and the
verdict names the test that decided it. Which parts a claim has is the spec's; what
each part tests is its shape's (`share`, `level`, `groups`, `ordering`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

from claimkit.verdict import Decision, Estimate, Evidence, Outcome, StatTest


@dataclass(frozen=True)
class Part:
    """One hypothesis of a claim, measured.

    ``support_p``/``refute_p`` are one-sided p-values; ``support_test``/``refute_test``
    say in words what each tested. ``why_open`` says what would decide it when neither
    is below alpha; ``n_to_decide`` estimates the samples that would (None: unknown or
    not reachable by more samples, e.g. more seeds are needed).
    """

    name: str
    support_p: float
    refute_p: float
    support_test: str
    refute_test: str
    summary: str  # the measured value in words, e.g. "share 0.81 [0.66, 0.97]"
    estimates: tuple[Estimate, ...] = ()
    tests: tuple[StatTest, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)
    n_to_decide: int | None = None

    def __post_init__(self) -> None:
        for name in ("support_p", "refute_p"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0) or math.isnan(value):
                raise ValueError(f"part {self.name!r}: {name} must be a p-value in [0, 1], got {value!r}")


@dataclass(frozen=True)
class Precondition:
    """Something a rule needs before its parts mean anything (the reference arm learnt), with its test."""

    name: str
    met: bool
    reason: str
    test: StatTest | None = None


def decide_parts(
    parts: Sequence[Part],
    *,
    alpha: float,
    paper_values: Mapping[str, Any] | None = None,
    preconditions: Sequence[Precondition] = (),
    extra: Mapping[str, Any] | None = None,
) -> Decision:
    """The claim's outcome from its parts (module docstring), with every part's numbers as evidence."""
    if not parts:
        raise ValueError("decide_parts needs at least one part")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    names = [p.name for p in parts]
    if len(set(names)) != len(names):
        raise ValueError(f"parts must have distinct names, got {names}")
    k = len(parts)
    refute_level = alpha / k
    evidence = _evidence(parts, alpha, refute_level, paper_values, preconditions, extra)
    unmet = [c for c in preconditions if not c.met]
    if unmet:
        reason = "Not decided: " + "; ".join(c.reason for c in unmet) + "."
        return Decision(Outcome.INCONCLUSIVE, reason, evidence, None, "")

    refuting = [p for p in parts if p.refute_p < refute_level]
    if refuting:
        worst = min(refuting, key=lambda p: p.refute_p)
        level = f"alpha/{k} = {refute_level:.3g}" if k > 1 else f"alpha = {alpha:g}"
        reason = (f"Refuted by {worst.name}: {worst.refute_test} (p={_p(worst.refute_p)} < {level}); "
                  f"{worst.summary}.")
        if len(refuting) > 1:
            reason += " Also refuting: " + ", ".join(f"{p.name} (p={_p(p.refute_p)})" for p in refuting if p is not worst) + "."
        return Decision(Outcome.REFUTED, reason, evidence, None, f"{worst.name}: {worst.refute_test}")

    if all(p.support_p < alpha for p in parts):
        weakest = max(parts, key=lambda p: p.support_p)
        shown = "; ".join(f"{p.name}: {p.support_test} (p={_p(p.support_p)}), {p.summary}" for p in parts)
        reason = f"Supported, every part shown at alpha = {alpha:g}: {shown}."
        return Decision(Outcome.SUPPORTED, reason, evidence, None, f"{weakest.name}: {weakest.support_test}")

    open_parts = [p for p in parts if p.support_p >= alpha]
    listing = "; ".join(
        f"{p.name}: neither {p.support_test} (p={_p(p.support_p)}) nor {p.refute_test} (p={_p(p.refute_p)}) "
        f"is shown, {p.summary}" for p in open_parts
    )
    needs = [p.n_to_decide for p in open_parts]
    n_to_decide = None if not needs or any(n is None for n in needs) else max(n for n in needs if n is not None)
    return Decision(Outcome.INCONCLUSIVE, f"Undecided: {listing}.", evidence, n_to_decide, "")


def _evidence(
    parts: Sequence[Part], alpha: float, refute_level: float, paper_values: Mapping[str, Any] | None,
    preconditions: Sequence[Precondition], extra: Mapping[str, Any] | None,
) -> Evidence:
    tests: list[StatTest] = [c.test for c in preconditions if c.test is not None]
    for p in parts:
        tests.append(StatTest(f"{p.name}: {p.support_test}", p.support_p, method="supports at alpha",
                              alternative="support"))
        tests.append(StatTest(f"{p.name}: {p.refute_test}", p.refute_p, method=f"refutes at {refute_level:.3g}",
                              alternative="refute"))
        tests.extend(p.tests)
    merged: dict[str, Any] = dict(extra or {})
    merged.update({
        "alpha": alpha,
        "decision": {"support": f"every part's support p < {alpha:g} (intersection-union)",
                     "refute": f"some part's refute p < {refute_level:.3g} (alpha / {len(parts)} parts)"},
        "parts": {p.name: {"summary": p.summary, "support_p": p.support_p, "refute_p": p.refute_p,
                           "support_test": p.support_test, "refute_test": p.refute_test, **dict(p.extra)}
                  for p in parts},
        "preconditions": {c.name: {"met": c.met, "reason": c.reason} for c in preconditions},
    })  # fmt: skip
    return Evidence(
        estimates=tuple(e for p in parts for e in p.estimates),
        tests=tuple(tests),
        paper_values=dict(paper_values or {}),
        extra=merged,
    )


def renamed(part: Part, name: str) -> Part:
    """`part` under another name (a claim's words for a shape's part)."""
    return replace(part, name=name)


def _p(p: float) -> str:
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"
