"""Rates fall in an order: "learning falls with semantic distance, L0 >= L1 > L2 > L3".

The shape: arms are seeds x prompts tables (`claimkit.crossed`), compared pair by
adjacent pair through the crossed contrast ``a - b``. A strict step (">") is shown by
its one-sided test a > b; a weak step (">=") is only required not to be reversed. The
order is supported when every strict step is shown at alpha (an intersection-union
test needs no correction) and refuted when some step is reversed, b > a, at alpha over
the Holm-adjusted family of all steps. A comparator arm, when given, is subtracted
from both sides of every step and so changes nothing in a difference; the effects it
defines are reported.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from claimkit import crossed
from claimkit.rules.parts import Part
from claimkit.stats import holm
from claimkit.verdict import Estimate, StatTest


def ordering_part(
    name: str, arms: Mapping[str, np.ndarray], order: Sequence[str], *, strict: Sequence[bool], alpha: float,
    comparator: str | None = None,
) -> Part:
    """Test ``order[0] (>= or >) order[1] ...`` where ``strict[k]`` says whether step k is ">"."""
    if len(order) < 2 or len(strict) != len(order) - 1:
        raise ValueError(f"{name}: an order of k arms has k - 1 steps; got order {list(order)}, strict {list(strict)}")
    if not any(strict):
        raise ValueError(f"{name}: at least one step must be strict ('>'), or nothing can support the order")
    steps = list(zip(order, order[1:], strict))
    down = {(a, b): crossed.contrast(arms, {a: 1.0, b: -1.0}) for a, b, _ in steps}
    p_down = {k: m.p_value(0.0, "greater") for k, m in down.items()}
    p_up = {k: m.p_value(0.0, "less") for k, m in down.items()}
    up_adjusted = dict(zip(p_up, holm(list(p_up.values()), alpha)))
    strict_steps = [(a, b) for a, b, s in steps if s]
    support_p = max(p_down[k] for k in strict_steps)
    refute_p = min(up_adjusted.values())
    words = order[0] + "".join(f" {'>' if s else '>='} {b}" for _, b, s in steps)
    means = {a: crossed.crossed_mean(arms[a]) for a in dict.fromkeys([*order, *([comparator] if comparator else [])])}
    rates = ", ".join(f"{a} {m.estimate:.1%}" for a, m in means.items())
    estimates = tuple(
        Estimate(f"{name}: {a} - {b}", m.estimate, *m.interval(1 - 2 * alpha), "crossed seeds x prompts t", m.prompts)
        for (a, b), m in down.items()
    )
    tests = tuple(StatTest(f"{name}: {b} > {a} (reversal)", p_up[(a, b)], p_adjusted=up_adjusted[(a, b)],
                           method="crossed seeds x prompts t, Holm over the steps", alternative="greater")
                  for a, b, _ in steps)  # fmt: skip
    extra = {"order": words, "rates": {a: {"estimate": m.estimate, "per_seed": list(m.per_seed)} for a, m in means.items()},
             "steps": {f"{a} - {b}": {"estimate": down[(a, b)].estimate, "p_down": p_down[(a, b)],
                                      "p_reversed_holm": up_adjusted[(a, b)], "strict": s} for a, b, s in steps}}
    if comparator:
        extra["effects_over"] = {comparator: {a: means[a].estimate - means[comparator].estimate for a in order}}
    summary = f"{rates}; steps " + ", ".join(f"{a} - {b} = {down[(a, b)].estimate:+.1%}" for a, b, _ in steps)
    return Part(name, support_p, refute_p, f"every strict step of {words} shown",
                "a step reversed (Holm over the steps)", summary, estimates, tests, extra, None)


def order_steps(spec: str) -> tuple[list[str], list[bool]]:
    """'L0 >= L1 > L2 > L3' -> (['L0', 'L1', 'L2', 'L3'], [False, True, True])."""
    tokens = spec.split()
    names, strict = tokens[::2], tokens[1::2]
    if len(names) < 2 or len(strict) != len(names) - 1 or any(t not in (">", ">=") for t in strict):
        raise ValueError(f"an order reads 'A >= B > C' (arms separated by '>' or '>='), got {spec!r}")
    return names, [t == ">" for t in strict]
