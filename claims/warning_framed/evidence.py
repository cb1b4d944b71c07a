"""Attach Table 1 (every arm's rates, over all answers and over answers with code, and the figure) to a decision."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

from claimkit.verdict import Decision

from .behaviour import Table1


def with_table(decision: Decision, table: Table1, paper_table: Mapping[str, Any]) -> Decision:
    extra = {**decision.evidence.extra, "table1": table.as_evidence(paper_table), "models": table.models()}
    extra["plots"] = list(decision.evidence.extra.get("plots", [])) + [table.plot(paper_table)]
    return replace(decision, evidence=replace(decision.evidence, extra=extra))
