"""Verdicts and the evidence behind them.

A claim test ends in a `Decision` (what the pre-registered rule concluded and
why); the plugin turns it into a `Verdict` by adding who/what/where (claim,
profile, model, spec and claim hashes, seeds, whether the spec was locked before
the run, and the provenance: commit, code hashes, package versions, device). Both
are frozen, JSON-round-trippable records: they cross xdist workers, reports and
scan files. Fields added later default to empty, so older records still load.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from typing import Any, Mapping


class Outcome(str, enum.Enum):
    SUPPORTED = "supported"
    REFUTED = "refuted"
    INCONCLUSIVE = "inconclusive"
    #: A manipulation check the claim requires failed: its preconditions did not hold, so the
    #: record says nothing about the claim (spec v2). Reports must read and compare such records.
    NOT_TESTED = "not tested"


@dataclass(frozen=True)
class Estimate:
    """An observed value with its interval, e.g. a rate with a Clopper-Pearson CI."""

    name: str
    value: float
    low: float | None = None
    high: float | None = None
    method: str = ""
    n: int | None = None
    successes: int | None = None

    def describe(self, as_percent: bool = False) -> str:
        fmt = (lambda x: f"{100 * x:.1f}%") if as_percent else (lambda x: f"{x:.3g}")
        text = f"{self.name}={fmt(self.value)}"
        if self.low is not None and self.high is not None:
            text += f" [{fmt(self.low)}, {fmt(self.high)}]"
        if self.successes is not None and self.n is not None:
            text += f" ({self.successes}/{self.n})"
        elif self.n is not None:
            text += f" (n={self.n})"
        return text


@dataclass(frozen=True)
class StatTest:
    """One hypothesis test: its statistic, raw and (if corrected) adjusted p-value."""

    name: str
    p_value: float
    statistic: float | None = None
    p_adjusted: float | None = None
    method: str = ""
    alternative: str = ""

    def describe(self) -> str:
        text = f"{self.name}: p={self.p_value:.3g}"
        if self.p_adjusted is not None:
            text += f" (adj. {self.p_adjusted:.3g})"
        return text


@dataclass(frozen=True)
class Power:
    """What the sample could detect, and what a decisive verdict would need."""

    n_per_group: int
    alpha: float
    power: float
    detectable_difference: float | None = None
    n_needed_per_group: int | None = None
    note: str = ""


@dataclass(frozen=True)
class Evidence:
    estimates: tuple[Estimate, ...] = ()
    tests: tuple[StatTest, ...] = ()
    paper_values: Mapping[str, float] = field(default_factory=dict)
    power: Power | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def estimate(self, name: str) -> Estimate:
        for item in self.estimates:
            if item.name == name:
                return item
        raise KeyError(f"no estimate named {name!r} in this evidence")


@dataclass(frozen=True)
class Decision:
    """What a decision rule concluded: the outcome, one sentence why, the evidence."""

    outcome: Outcome
    reason: str
    evidence: Evidence = field(default_factory=Evidence)
    n_to_decide: int | None = None
    decided_by: str = ""  # the test whose result set the outcome ("" when no test did: inconclusive)


@dataclass(frozen=True)
class Verdict:
    """A decision bound to its claim, profile, model and pre-registered spec."""

    claim_id: str
    paper: str
    scan_claim: str
    profile: str
    model: str
    outcome: Outcome
    reason: str
    evidence: Evidence
    rule: Mapping[str, Any]
    spec_hash: str
    seeds: tuple[int, ...] = ()
    n: int | None = None
    n_to_decide: int | None = None
    parent: str | None = None
    nodeid: str = ""
    created: str = ""
    claimkit_version: str = ""
    decided_by: str = ""  # the test whose result set the outcome
    claim_hash: str = ""  # ClaimSpec.hash: this claim's rule, plans, parent and [experiment]
    #: claimkit.preregistration: {"status", "lock", "locked_at", "differs"}, plus
    #: "changed_after_result" when history holds a result decided under another claim hash.
    preregistration: Mapping[str, Any] = field(default_factory=dict)
    #: claimkit.provenance.verdict_provenance: commit, dirty, code hashes, versions, device, command.
    provenance: Mapping[str, Any] = field(default_factory=dict)

    @property
    def preregistered(self) -> bool | None:
        """Whether the spec and inputs were the locked ones; None for a record that does not say."""
        status = self.preregistration.get("status")
        return None if status is None else status == "preregistered"

    def to_dict(self) -> dict[str, Any]:
        return _to_jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Verdict":
        ev = data.get("evidence") or {}
        power = ev.get("power")
        evidence = Evidence(
            estimates=tuple(Estimate(**e) for e in ev.get("estimates", ())),
            tests=tuple(StatTest(**t) for t in ev.get("tests", ())),
            paper_values=dict(ev.get("paper_values", {})),
            power=Power(**power) if power else None,
            extra=dict(ev.get("extra", {})),
        )
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in fields}
        kwargs.update(
            outcome=Outcome(data["outcome"]),
            evidence=evidence,
            seeds=tuple(data.get("seeds", ())),
            rule=dict(data.get("rule", {})),
            preregistration=dict(data.get("preregistration") or {}),
            provenance=dict(data.get("provenance") or {}),
        )
        return cls(**kwargs)

    def summary(self) -> str:
        """One line: outcome, key numbers with intervals, the paper's numbers."""
        parts = [e.describe() for e in self.evidence.estimates[:4]]
        paper = ", ".join(f"{k}={v:g}" for k, v in self.evidence.paper_values.items())
        text = f"{self.outcome.value.upper()}: {self.reason}"
        if parts:
            text += " | " + "; ".join(parts)
        if paper:
            text += f" | paper: {paper}"
        return text


def _to_jsonable(value: Any) -> Any:
    """Plain JSON types only: enums by value, tuples as lists, NaN/inf as None."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _to_jsonable(value.item())
    return value
