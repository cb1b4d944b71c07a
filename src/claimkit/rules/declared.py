"""A claim's rule as its spec declares it: named parts, each of a shape, decided on measured data.

A spec (version 2) writes a claim's rule as data, so the rule can be read, hashed,
locked and simulated without running the claim:

    [claims.wf-1.rule]
    alpha = 0.05
    [[claims.wf-1.rule.parts]]
    name = "L1's share of L0's learning"
    shape = "share"                  # share | level | ordering | group_ratio | group_mean | auroc
    data = "target"                  # which measured dataset the part reads
    treatment = "L1"
    reference = "L0"
    comparator = "filler"
    region = [0.75, 1.3333]

The claim's test measures the datasets (`ClaimData`) and calls `decide_rule`; the
parts are decided by `claimkit.rules.parts.decide_parts` (intersection-union for
support, Bonferroni for refutation). `claimkit.calibration` simulates the same
declarations. Shapes and their keys:

  share        data, treatment, reference, comparator (optional), region
  level        data, arm, threshold
  ordering     data, order ("L0 >= L1 > L2 > L3"), comparator (optional)
  group_ratio  data, numerator {group = weight}, denominator {group = weight}, region, what
  group_mean   data, group, threshold, what
  auroc        data, positive, negative, threshold, what
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from claimkit.rules import groups, level, ordering, share
from claimkit.rules.declaration import COMMON, OPTIONAL, SHAPES, RuleError, check_parts  # noqa: F401
from claimkit.rules.parts import Part, Precondition, decide_parts
from claimkit.verdict import Decision

@dataclass(frozen=True)
class ClaimData:
    """What a claim measured: seeds x prompts tables by dataset and arm, and per-seed output groups by dataset."""

    tables: Mapping[str, Mapping[str, np.ndarray]] = field(default_factory=dict)
    groups: Mapping[str, Sequence[Mapping[str, np.ndarray]]] = field(default_factory=dict)


def part_of(declared: Mapping[str, Any], data: ClaimData, *, alpha: float, interval: bool = True) -> Part:
    """Measure and test one declared part on `data`."""
    shape, name = declared["shape"], declared["name"]
    if shape in ("share", "level", "ordering"):
        tables = _dataset(data.tables, declared["data"], name)
        if shape == "share":
            s = share.Share(declared["treatment"], declared["reference"], declared.get("comparator"))
            _arms(tables, [s.treatment, s.reference, *([s.comparator] if s.comparator else [])], name)
            return share.share_part(name, tables, s, share.Region.from_rule(declared["region"]), alpha=alpha,
                                    interval=interval)
        if shape == "level":
            _arms(tables, [declared["arm"]], name)
            return level.level_part(name, tables[declared["arm"]], threshold=float(declared["threshold"]), alpha=alpha)
        names, strict = ordering.order_steps(declared["order"])
        comparator = declared.get("comparator")
        _arms(tables, names + ([comparator] if comparator else []), name)
        return ordering.ordering_part(name, tables, names, strict=strict, alpha=alpha, comparator=comparator)
    seeds = _dataset(data.groups, declared["data"], name)
    what = declared["what"]
    if shape == "group_ratio":
        return groups.ratio_part(name, seeds, dict(declared["numerator"]), dict(declared["denominator"]),
                                 share.Region.from_rule(declared["region"]), alpha=alpha, what=what, interval=interval)
    if shape == "group_mean":
        return groups.mean_part(name, seeds, declared["group"], threshold=float(declared["threshold"]), alpha=alpha,
                                what=what)
    return groups.auroc_part(name, seeds, declared["positive"], declared["negative"],
                             threshold=float(declared["threshold"]), alpha=alpha, what=what)


def decide_rule(
    rule: Mapping[str, Any],
    data: ClaimData,
    *,
    paper_values: Mapping[str, Any] | None = None,
    preconditions: Sequence[Precondition] = (),
    extra: Mapping[str, Any] | None = None,
    where: str = "claim",
) -> Decision:
    """The claim's Decision: every declared part measured on `data`, then `decide_parts`."""
    declared = check_parts(rule, where)
    alpha = float(rule.get("alpha", 0.05))
    parts = [part_of(p, data, alpha=alpha) for p in declared]
    return decide_parts(parts, alpha=alpha, paper_values=paper_values, preconditions=preconditions, extra=extra)


def _dataset(found: Mapping[str, Any], name: str, part: str) -> Any:
    if name not in found:
        raise RuleError(f"part {part!r} reads dataset {name!r}, which the claim did not measure (it has: {sorted(found)})")
    return found[name]


def _arms(tables: Mapping[str, np.ndarray], names: Sequence[str], part: str) -> None:
    missing = [a for a in names if a not in tables]
    if missing:
        raise RuleError(f"part {part!r} names arms {missing} that the data do not hold (arms: {sorted(tables)})")
