"""Attach what a claim read (every arm's rates, or a study's per-seed numbers) and its analog to a decision."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping, Sequence

from claimkit.verdict import Decision


def with_answers(decision: Decision, answers: Any, analog: str, **more: Any) -> Decision:
    extra = {**decision.evidence.extra, "analog": analog, "answers": answers.evidence(), "models": dict(answers.models),
             **more}
    extra["plots"] = list(decision.evidence.extra.get("plots", [])) + [answers.plot()]
    return replace(decision, evidence=replace(decision.evidence, extra=extra))


def with_study(decision: Decision, name: str, summary: Sequence[Mapping[str, Any]], analog: str) -> Decision:
    extra = {**decision.evidence.extra, "analog": analog, name: list(summary)}
    return replace(decision, evidence=replace(decision.evidence, extra=extra))
