"""Attach Table 1 (every condition's counts, intervals and the figure) to a decision's evidence."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

from claimkit.verdict import Decision

from .behaviour import Table1


def with_table(decision: Decision, table: Table1, paper_table: Mapping[str, Any]) -> Decision:
    extra = {**decision.evidence.extra, "table1": table.as_evidence(paper_table)}
    plots = list(decision.evidence.extra.get("plots", [])) + [table.plot(paper_table)]
    extra["plots"] = plots
    return replace(decision, evidence=replace(decision.evidence, extra=extra))
