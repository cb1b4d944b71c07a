"""What a declared rule may say: its parts' shapes and keys, and regions; checked without numpy.

A spec (version 2) writes each claim's rule as parts (claimkit.rules.declared). Loading a
spec validates them here, so that reading, hashing or marking with a spec never imports
the statistics stack; measuring and deciding live in the shapes' modules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

KINDS = ("between", "at_least", "at_most")


@dataclass(frozen=True)
class Region:
    """Where the claim puts theta: between lo and hi, at least lo, or at most hi."""

    kind: str
    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"region kind must be one of {KINDS}, got {self.kind!r}")
        need = {"between": ("low", "high"), "at_least": ("low",), "at_most": ("high",)}[self.kind]
        for name in need:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"a {self.kind!r} region needs a finite {name}, got {value!r}")
        if self.kind == "between" and not self.low < self.high:  # type: ignore[operator]
            raise ValueError(f"a 'between' region needs low < high, got [{self.low}, {self.high}]")

    @classmethod
    def from_rule(cls, value: Mapping[str, float] | Sequence[float]) -> "Region":
        """From a spec: [lo, hi], {at_least = lo} or {at_most = hi}."""
        if isinstance(value, Mapping):
            if set(value) == {"at_least"}:
                return cls("at_least", low=float(value["at_least"]))
            if set(value) == {"at_most"}:
                return cls("at_most", high=float(value["at_most"]))
            raise ValueError(f"a region table holds one of 'at_least' or 'at_most', got {dict(value)}")
        if isinstance(value, (list, tuple)) and len(value) == 2:
            return cls("between", low=float(value[0]), high=float(value[1]))
        raise ValueError(f"a region is [low, high], {{at_least = x}} or {{at_most = x}}; got {value!r}")

    def describe(self) -> str:
        if self.kind == "between":
            return f"in [{self.low:g}, {self.high:g}]"
        return f">= {self.low:g}" if self.kind == "at_least" else f"<= {self.high:g}"

    def contains(self, theta: float) -> bool:
        low = -math.inf if self.low is None else self.low
        high = math.inf if self.high is None else self.high
        return low <= theta <= high


SHAPES: Mapping[str, tuple[str, ...]] = {
    "share": ("data", "treatment", "reference", "region"),
    "level": ("data", "arm", "threshold"),
    "ordering": ("data", "order"),
    "group_ratio": ("data", "numerator", "denominator", "region", "what"),
    "group_mean": ("data", "group", "threshold", "what"),
    "auroc": ("data", "positive", "negative", "threshold", "what"),
}
OPTIONAL: Mapping[str, tuple[str, ...]] = {"share": ("comparator",), "ordering": ("comparator",)}
COMMON = ("name", "shape", "calibration", "note")


class RuleError(ValueError):
    """A declared rule is malformed, or the data do not hold what it names; the message says which."""


def check_parts(rule: Mapping[str, Any], where: str) -> list[Mapping[str, Any]]:
    """The rule's parts, each with the keys its shape needs; RuleError naming the claim and the key otherwise."""
    parts = rule.get("parts")
    if not isinstance(parts, list) or not parts:
        raise RuleError(f"{where}: field 'rule.parts' must be a non-empty array of tables ([[claims.<id>.rule.parts]])")
    names = []
    for k, part in enumerate(parts):
        at = f"{where}: rule.parts[{k}]"
        if not isinstance(part, Mapping):
            raise RuleError(f"{at} must be a table")
        shape = part.get("shape")
        if shape not in SHAPES:
            raise RuleError(f"{at}: field 'shape' must be one of {sorted(SHAPES)}, got {shape!r}")
        missing = [key for key in ("name", *SHAPES[shape]) if key not in part]
        if missing:
            raise RuleError(f"{at} ({shape}): missing field(s) {missing}")
        unknown = sorted(set(part) - set(COMMON) - set(SHAPES[shape]) - set(OPTIONAL.get(shape, ())))
        if unknown:
            raise RuleError(f"{at} ({shape}): unknown field(s) {unknown}")
        if "region" in part:
            try:
                Region.from_rule(part["region"])
            except ValueError as exc:
                raise RuleError(f"{at}: field 'region': {exc}") from None
        names.append(part["name"])
    if len(set(names)) != len(names):
        raise RuleError(f"{where}: rule parts need distinct names, got {names}")
    return list(parts)


