"""Generic decision rules: plain counts + a pre-registered rule -> a Decision.

A rule knows shapes of claims ("A about equals B and both beat a baseline",
"a rate reaches a threshold", "rates fall in this order", "A is below B"), never
a paper. Each returns a `claimkit.verdict.Decision` whose evidence carries every
number behind it: rates with exact intervals, raw and Holm-adjusted p-values,
the paper's values passed through, and a power statement.

Seeds. Counts may carry per-seed counts. Pooling them into one sample is only
justified when the seeds look like draws from one rate: every rule first tests
each group's seeds for heterogeneity (`claimkit.stats.heterogeneity`) at the
rule's alpha. If no group is heterogeneous the rule decides on pooled counts. If
any is, the rule is applied to each seed run on its own, and the verdict is
supported or refuted only when every run agrees; otherwise it is inconclusive
(see `decide_per_seed_if_heterogeneous`).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from claimkit import stats
from claimkit.verdict import Decision, Estimate, Evidence, Outcome, Power, StatTest

# ---------------------------------------------------------------------------
# counts and pooling
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    """How many of ``n`` samples showed the outcome; optionally per seed run."""

    successes: int
    n: int
    per_seed: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        stats.check_counts(self.successes, self.n)
        object.__setattr__(self, "successes", int(self.successes))  # numpy ints in, plain ints out
        object.__setattr__(self, "n", int(self.n))
        object.__setattr__(self, "per_seed", tuple((int(s), int(n)) for s, n in self.per_seed))
        for i, (s, n) in enumerate(self.per_seed):
            stats.check_counts(s, n, f"seed run {i + 1}")
        if self.per_seed and (
            sum(s for s, _ in self.per_seed) != self.successes or sum(n for _, n in self.per_seed) != self.n
        ):
            raise ValueError(
                f"per_seed {self.per_seed} does not add up to {self.successes}/{self.n}; "
                "build pooled counts with Counts.pooled(per_seed)"
            )

    @property
    def rate(self) -> float:
        return self.successes / self.n

    @classmethod
    def pooled(cls, per_seed: Iterable[tuple[int, int]]) -> "Counts":
        """Counts summed over seed runs, keeping the runs for the heterogeneity check."""
        runs = tuple((int(s), int(n)) for s, n in per_seed)
        if not runs:
            raise ValueError("per_seed is empty: give at least one (successes, n) pair")
        return cls(sum(s for s, _ in runs), sum(n for _, n in runs), runs)

    def describe(self) -> str:
        return f"{self.successes}/{self.n} = {_pct(self.rate)}"


@dataclass(frozen=True)
class PooledCounts:
    """One group's seeds pooled, with the evidence that pooling is justified."""

    name: str
    counts: Counts
    heterogeneity: stats.TestResult | None  # None with fewer than two seed runs
    between_seed_sd: float | None  # sample SD of the per-seed rates
    justified: bool


def pool_seeds(name: str, per_seed: Counts | Sequence[tuple[int, int]], alpha: float = 0.05) -> PooledCounts:
    """Pool a group's seed runs; ``justified`` when their rates are not significantly different.

    Policy: pool when the heterogeneity test (`claimkit.stats.heterogeneity`) has
    p >= alpha. With fewer than two runs there is nothing to test and pooling is
    trivially justified.
    """
    counts = per_seed if isinstance(per_seed, Counts) else Counts.pooled(per_seed)
    runs = counts.per_seed
    if len(runs) < 2:
        return PooledCounts(name, counts, None, None, True)
    test = stats.heterogeneity([s for s, _ in runs], [n for _, n in runs])
    sd = statistics.stdev(s / n for s, n in runs)
    return PooledCounts(name, counts, test, sd, test.p_value >= alpha)


def decide_per_seed_if_heterogeneous(
    groups: Mapping[str, Counts], decide: Callable[[Mapping[str, Counts]], Decision], *, alpha: float
) -> Decision:
    """Apply ``decide`` to pooled counts, or to each seed run when pooling is not justified.

    Groups with no or one seed run take part in every run with all their counts
    (e.g. one untrained baseline). Runs decide alone; the combined outcome is the
    runs' common outcome when they all agree on supported or refuted, else
    inconclusive. Heterogeneity tests and between-seed SDs go into the evidence.
    """
    pooled = {name: pool_seeds(name, c, alpha) for name, c in groups.items()}
    het_tests = tuple(
        _stat(f"seed heterogeneity of {p.name}", p.heterogeneity) for p in pooled.values() if p.heterogeneity
    )
    seed_extra: dict[str, Any] = {
        "between_seed_sd": {p.name: p.between_seed_sd for p in pooled.values()},
        "seed_runs": {p.name: [list(run) for run in p.counts.per_seed] for p in pooled.values()},
    }
    if all(p.justified for p in pooled.values()):
        decision = decide(groups)
        ev = decision.evidence
        extra = {**ev.extra, **seed_extra, "pooled": True}
        return replace(decision, evidence=replace(ev, tests=ev.tests + het_tests, extra=extra))

    n_runs = _seed_run_count(groups)
    runs = [decide({name: _run(c, i, n_runs) for name, c in groups.items()}) for i in range(n_runs)]
    split = [p for p in pooled.values() if not p.justified]
    return _combine_runs(runs, split, het_tests, {**seed_extra, "pooled": False})


def _combine_runs(
    runs: Sequence[Decision], split: Sequence[PooledCounts], het_tests: tuple[StatTest, ...], extra: dict[str, Any]
) -> Decision:
    """One decision from per-seed-run decisions: decisive only when all runs agree."""
    outcomes = [d.outcome for d in runs]
    agreed = len(set(outcomes)) == 1 and outcomes[0] != Outcome.INCONCLUSIVE
    outcome = outcomes[0] if agreed else Outcome.INCONCLUSIVE
    which = " and ".join(f"{p.name} (p={_p(p.heterogeneity.p_value)})" for p in split if p.heterogeneity)
    listing = ", ".join(f"run {i + 1} {o.value}" for i, o in enumerate(outcomes))
    ending = f"all runs agree: {outcome.value}" if agreed else "they do not all agree on a decisive outcome"
    reason = (
        f"Seed runs differ beyond chance for {which}, so each of the {len(runs)} runs was decided alone "
        f"({listing}) and {ending}."
    )
    pending = [d.n_to_decide for d in runs if d.outcome == Outcome.INCONCLUSIVE]
    n_to_decide = None if agreed else _max_or_none(pending)
    tagged = [(f" [run {i + 1}]", d) for i, d in enumerate(runs)]
    evidence = Evidence(
        estimates=tuple(replace(e, name=e.name + tag) for tag, d in tagged for e in d.evidence.estimates),
        tests=het_tests + tuple(replace(t, name=t.name + tag) for tag, d in tagged for t in d.evidence.tests),
        paper_values=runs[0].evidence.paper_values,
        power=_smallest_power(runs),
        extra={
            **extra,
            "run_decisions": [
                {"run": i + 1, "outcome": d.outcome.value, "reason": d.reason, "n_to_decide": d.n_to_decide}
                for i, d in enumerate(runs)
            ],
        },
    )
    return Decision(outcome, reason, evidence, n_to_decide)


def _seed_run_count(groups: Mapping[str, Counts]) -> int:
    lengths = {name: len(c.per_seed) for name, c in groups.items()}
    n_runs = max(lengths.values())
    odd = {name: k for name, k in lengths.items() if k not in (0, 1, n_runs)}
    if odd:
        raise ValueError(
            f"cannot decide seed by seed: groups have different numbers of seed runs {lengths}; "
            f"give every group {n_runs} runs, or a single pooled count"
        )
    return n_runs


def _run(counts: Counts, i: int, n_runs: int) -> Counts:
    if len(counts.per_seed) == n_runs:
        s, n = counts.per_seed[i]
        return Counts(s, n)
    return Counts(counts.successes, counts.n)


def _smallest_power(runs: Sequence[Decision]) -> Power | None:
    powers = [d.evidence.power for d in runs if d.evidence.power is not None]
    if not powers:
        return None
    least = min(powers, key=lambda p: p.n_per_group)
    return replace(least, note=f"per seed run (smallest run shown): {least.note}")


# ---------------------------------------------------------------------------
# rules
# ---------------------------------------------------------------------------


def equivalent_and_above(
    treatment: Counts,
    reference: Counts,
    baseline: Counts,
    *,
    rule: Mapping[str, Any],
    names: tuple[str, str, str] = ("L1", "L0", "baseline"),
    paper_values: Mapping[str, float] | None = None,
) -> Decision:
    """Treatment about equals the reference, and both are above the baseline.

    Rule keys: ``equivalence_margin`` (required), ``alpha`` (0.05), ``power`` (0.8).
    - supported: treatment and reference each above baseline (one-sided Fisher,
      Holm across the two) and treatment - reference inside +-margin (TOST at alpha);
    - refuted: treatment below reference by more than the margin (one-sided test at
      alpha), or treatment not above baseline while the reference is;
    - inconclusive otherwise, including when neither beats the baseline (the
      training did not demonstrably teach anything, so the comparison says nothing),
      with the n per group that would decide.
    """
    alpha = _rule_number(rule, "alpha", 0.05)
    margin = _rule_number(rule, "equivalence_margin")
    power = _rule_number(rule, "power", 0.8)
    t, r, b = _distinct(names, 3)
    return decide_per_seed_if_heterogeneous(
        {t: treatment, r: reference, b: baseline},
        lambda g: _equivalent_and_above(g[t], g[r], g[b], (t, r, b), alpha, margin, power, paper_values),
        alpha=alpha,
    )


def _equivalent_and_above(
    T: Counts, R: Counts, B: Counts, names: tuple[str, str, str],
    alpha: float, margin: float, power: float, paper_values: Mapping[str, float] | None,
) -> Decision:
    t, r, b = names
    t_vs_b = stats.fisher(T.successes, T.n, B.successes, B.n, "greater")
    r_vs_b = stats.fisher(R.successes, R.n, B.successes, B.n, "greater")
    adj_t, adj_r = stats.holm([t_vs_b.p_value, r_vs_b.p_value], alpha)
    tost = stats.equivalence_two_proportions(T.successes, T.n, R.successes, R.n, margin, alpha)
    far_below = stats.superiority_by_margin(T.successes, T.n, R.successes, R.n, margin)
    t_above, r_above = adj_t < alpha, adj_r < alpha
    ci_text = f"{_pct(tost.level, 0)} CI [{_pp(tost.ci_low)}, {_pp(tost.ci_high)}]"
    diff_text = f"{t} - {r} = {_pp(tost.diff)}, {ci_text}"
    margin_text = _pp(margin, signed=False)

    n_to_decide = None
    if far_below.p_value < alpha:
        outcome = Outcome.REFUTED
        reason = (
            f"{t} ({T.describe()}) is below {r} ({R.describe()}) by more than the {margin_text} margin "
            f"({diff_text}; one-sided p={_p(far_below.p_value)})."
        )
    elif r_above and not t_above:
        outcome = Outcome.REFUTED
        reason = (
            f"{t} ({T.describe()}) is not significantly above {b} ({B.describe()}; Holm-adjusted one-sided "
            f"Fisher p={_p(adj_t)}) while {r} ({R.describe()}) is (p={_p(adj_r)})."
        )
    elif t_above and r_above and tost.p_value < alpha:
        outcome = Outcome.SUPPORTED
        reason = (
            f"{t} ({T.describe()}) is within {margin_text} of {r} ({R.describe()}) "
            f"({diff_text}; TOST p={_p(tost.p_value)}) and both are above {b} ({B.describe()}; "
            f"Holm-adjusted one-sided Fisher p={_p(adj_t)} and {_p(adj_r)})."
        )
    else:
        outcome = Outcome.INCONCLUSIVE
        missing = []
        needs: list[int | None] = []
        not_above = [(name, c, p) for name, c, p in ((t, T, adj_t), (r, R, adj_r)) if p >= alpha]
        if not_above:
            who = " and ".join(f"{name} ({c.describe()}, adjusted p={_p(p)})" for name, c, p in not_above)
            missing.append(f"{who} not significantly above {b} ({B.describe()})")
            # Holm's first step tests at alpha/2: the conservative n
            needs += [stats.n_per_group_for(c.rate, B.rate, alpha / 2, power, "greater") for _, c, _ in not_above]
        if tost.p_value >= alpha:
            missing.append(f"{diff_text} is not inside +-{margin_text} (TOST p={_p(tost.p_value)})")
            needs.append(_n_to_settle_margin(T.rate, R.rate, margin, alpha, power))
        reason = f"Undecided at n={min(T.n, R.n, B.n)} per group: {'; '.join(missing)}."
        n_to_decide = _max_or_none(needs)

    n_used = min(T.n, R.n)
    power_rec = Power(
        n_per_group=n_used,
        alpha=alpha,
        power=power,
        detectable_difference=stats.detectable_difference(R.rate, n_used, alpha, power, "less"),
        n_needed_per_group=stats.n_for_equivalence(T.rate, R.rate, margin, alpha, power),
        note=(
            f"detectable_difference: smallest drop of {t} below {r} that a one-sided test at alpha={alpha:g} "
            f"finds with power {power:g} at n={n_used} per group; n_needed_per_group: samples per group for "
            f"TOST to show |{t} - {r}| < {margin:g} at the observed rates (Chow, Shao & Wang 4.2; "
            "None when the observed difference is outside the margin)"
        ),
    )
    evidence = Evidence(
        estimates=(
            _estimate(t, T, alpha), _estimate(r, R, alpha), _estimate(b, B, alpha),
            Estimate(f"{t} - {r}", tost.diff, tost.ci_low, tost.ci_high,
                     f"{stats.DIFF_METHOD} {100 * tost.level:g}% (TOST)", min(T.n, R.n)),
        ),
        tests=(
            _stat(f"{t} > {b}", t_vs_b, adj_t),
            _stat(f"{r} > {b}", r_vs_b, adj_r),
            StatTest(f"|{t} - {r}| < {margin:g}", tost.p_value, tost.diff, None, tost.method, "equivalence"),
            _stat(f"{r} - {t} > {margin:g}", far_below),
        ),
        paper_values=dict(paper_values or {}),
        power=power_rec,
        extra={"alpha": alpha, "equivalence_margin": margin, "holm_family": [f"{t} > {b}", f"{r} > {b}"]},
    )
    return Decision(outcome, reason, evidence, n_to_decide)


def _n_to_settle_margin(p_t: float, p_r: float, margin: float, alpha: float, power: float) -> int | None:
    """n that would show equivalence (inside the margin) or refute (below by more than it)."""
    n = stats.n_for_equivalence(p_t, p_r, margin, alpha, power)  # None outside the margin
    return n if n is not None else stats.n_for_superiority_by_margin(p_t, p_r, margin, alpha, power)


def proportion_at_least(
    counts: Counts,
    *,
    threshold: float,
    alpha: float = 0.05,
    power: float = 0.8,
    name: str = "rate",
    paper_values: Mapping[str, float] | None = None,
) -> Decision:
    """A rate reaches a threshold: decided by its exact (Clopper-Pearson) 1-alpha interval.

    Supported when the lower bound is >= threshold, refuted when the upper bound is
    below it, inconclusive otherwise with the n that would settle it at the observed rate.
    """
    stats.check_probability(threshold, "threshold")
    return decide_per_seed_if_heterogeneous(
        {name: counts},
        lambda g: _proportion_at_least(g[name], threshold, alpha, power, name, paper_values),
        alpha=alpha,
    )


def _proportion_at_least(
    c: Counts, threshold: float, alpha: float, power: float, name: str, paper_values: Mapping[str, float] | None
) -> Decision:
    est = _estimate(name, c, alpha)
    assert est.low is not None and est.high is not None
    above = stats.binomial_test(c.successes, c.n, threshold, "greater")
    below = stats.binomial_test(c.successes, c.n, threshold, "less")
    bounds = f"{name} {c.describe()}, exact {_pct(1 - alpha, 0)} CI [{_pct(est.low)}, {_pct(est.high)}]"
    n_to_decide = None
    if est.low >= threshold:
        outcome = Outcome.SUPPORTED
        reason = f"{bounds}: the lower bound is at or above the threshold {_pct(threshold)}."
    elif est.high < threshold:
        outcome = Outcome.REFUTED
        reason = f"{bounds}: the upper bound is below the threshold {_pct(threshold)}."
    else:
        outcome = Outcome.INCONCLUSIVE
        reason = f"{bounds} contains the threshold {_pct(threshold)}."
        n_to_decide = _n_one_sample(c.rate, threshold, alpha, power)
    evidence = Evidence(
        estimates=(est,),
        tests=(_stat(f"{name} > {threshold:g}", above), _stat(f"{name} < {threshold:g}", below)),
        paper_values=dict(paper_values or {}),
        power=Power(
            n_per_group=c.n,
            alpha=alpha,
            power=power,
            detectable_difference=stats.detectable_difference(
                threshold, c.n, alpha / 2, power, "greater", ratio=0
            ),
            n_needed_per_group=_n_one_sample(c.rate, threshold, alpha, power),
            note=(
                f"detectable_difference: how far above {threshold:g} the true rate must be for the exact "
                f"lower bound to clear it with power {power:g} at n={c.n}; n_needed_per_group: samples for "
                "the interval to exclude the threshold at the observed rate (normal approximation, arcsine "
                "effect size)"
            ),
        ),
        extra={"alpha": alpha, "threshold": threshold},
    )
    return Decision(outcome, reason, evidence, n_to_decide)


def _n_one_sample(rate: float, threshold: float, alpha: float, power: float) -> int | None:
    if rate == threshold:
        return None
    side = "greater" if rate > threshold else "less"
    # each side of a two-sided 1-alpha interval holds alpha/2
    return stats.n_per_group_for(rate, threshold, alpha / 2, power, side, ratio=0)


def ordered_decreasing(
    groups: Mapping[str, Counts],
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    weak_first_pair: bool = True,
    paper_values: Mapping[str, float] | None = None,
) -> Decision:
    """Rates fall in the order given, e.g. L0 >= L1 > L2 > L3.

    - supported: a decreasing Cochran-Armitage trend (one-sided, alpha) and every
      strict adjacent pair significantly decreasing (one-sided Fisher, Holm across
      the strict pairs). With ``weak_first_pair`` the first pair is ">=": it only
      must not be reversed;
    - refuted: any adjacent pair significantly reversed (one-sided Fisher the other
      way, Holm across all adjacent pairs);
    - inconclusive otherwise.
    """
    names = _distinct(tuple(groups), 2, exactly=False)
    return decide_per_seed_if_heterogeneous(
        dict(groups),
        lambda g: _ordered_decreasing([(k, g[k]) for k in names], alpha, power, weak_first_pair, paper_values),
        alpha=alpha,
    )


def _ordered_decreasing(
    items: Sequence[tuple[str, Counts]], alpha: float, power: float, weak_first_pair: bool,
    paper_values: Mapping[str, float] | None,
) -> Decision:
    pairs = list(zip(items, items[1:]))
    strict = pairs[1:] if weak_first_pair else pairs
    signs = [">=" if weak_first_pair and i == 0 else ">" for i in range(len(pairs))]
    order = items[0][0] + "".join(f" {sign} {name}" for sign, (name, _) in zip(signs, items[1:]))
    trend = stats.trend([c.successes for _, c in items], [c.n for _, c in items], alternative="decreasing")
    down = [stats.fisher(a.successes, a.n, b.successes, b.n, "greater") for (_, a), (_, b) in strict]
    down_adj = stats.holm([x.p_value for x in down], alpha)
    up = [stats.fisher(a.successes, a.n, b.successes, b.n, "less") for (_, a), (_, b) in pairs]
    up_adj = stats.holm([x.p_value for x in up], alpha)
    rates = ", ".join(f"{name} {c.describe()}" for name, c in items)

    n_to_decide = None
    reversed_pairs = [(pair, p) for pair, p in zip(pairs, up_adj) if p < alpha]
    if reversed_pairs:
        ((a, _), (b, _)), p = min(reversed_pairs, key=lambda x: x[1])
        outcome = Outcome.REFUTED
        reason = (
            f"{b} is significantly above {a} (Holm-adjusted one-sided Fisher p={_p(p)}), "
            f"against the order {order} ({rates})."
        )
    elif trend.p_value < alpha and all(p < alpha for p in down_adj):
        outcome = Outcome.SUPPORTED
        pair_ps = ", ".join(_p(p) for p in down_adj)
        reason = (
            f"Rates fall in the order {order} ({rates}): decreasing trend p={_p(trend.p_value)}"
            + (f", adjacent pairs Holm-adjusted p={pair_ps}." if strict else ".")
        )
    else:
        outcome = Outcome.INCONCLUSIVE
        unsettled = [(pair, p) for pair, p in zip(strict, down_adj) if p >= alpha]
        open_pairs = [f"{a} > {b} (adjusted p={_p(p)})" for ((a, _), (b, _)), p in unsettled]
        parts = [f"trend p={_p(trend.p_value)}"] if trend.p_value >= alpha else []
        parts += [f"not shown: {', '.join(open_pairs)}"] if open_pairs else []
        reason = f"The order {order} is neither shown nor reversed ({rates}; {'; '.join(parts)})."
        # Holm's first step tests at alpha / (number of strict pairs): the conservative n
        needs = [
            stats.n_per_group_for(a.rate, b.rate, alpha / len(strict), power, "greater")
            for ((_, a), (_, b)), _ in unsettled
        ]
        n_to_decide = _max_or_none(needs)

    n_used = min(c.n for _, c in items)
    closest = min(strict, key=lambda pr: pr[0][1].rate - pr[1][1].rate) if strict else pairs[0]
    (top_name, top), (low_name, _) = closest
    family = max(1, len(strict))
    evidence = Evidence(
        estimates=tuple(_estimate(name, c, alpha) for name, c in items),
        tests=(_stat(f"decreasing trend {' > '.join(n for n, _ in items)}", trend),)
        + tuple(_stat(f"{a} > {b}", x, p) for ((a, _), (b, _)), x, p in zip(strict, down, down_adj))
        + tuple(_stat(f"{b} > {a} (reversal)", x, p) for ((a, _), (b, _)), x, p in zip(pairs, up, up_adj)),
        paper_values=dict(paper_values or {}),
        power=Power(
            n_per_group=n_used,
            alpha=alpha,
            power=power,
            detectable_difference=stats.detectable_difference(top.rate, n_used, alpha / family, power, "less"),
            n_needed_per_group=n_to_decide,
            note=(
                f"detectable_difference: smallest drop below {top_name} ({_pct(top.rate)}), the upper rate of "
                f"the closest pair {top_name} > {low_name}, that a one-sided test at alpha/{family} (Holm's "
                f"first step) finds with power {power:g} at n={n_used}; n_needed_per_group: samples per group "
                "for the unsettled pairs at the observed rates (None when settled or unreachable)"
            ),
        ),
        extra={"alpha": alpha, "order": order, "weak_first_pair": weak_first_pair},
    )
    return Decision(outcome, reason, evidence, n_to_decide)


def lower_than(
    treatment: Counts,
    baseline: Counts,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    names: tuple[str, str] = ("treatment", "baseline"),
    paper_values: Mapping[str, float] | None = None,
) -> Decision:
    """Treatment's rate is below the baseline's.

    Supported by a significant one-sided Fisher test treatment < baseline, refuted
    by a significant one in the other direction, else inconclusive with the n per
    group that would reach ``power`` at the observed rates.
    """
    t, b = _distinct(names, 2)
    return decide_per_seed_if_heterogeneous(
        {t: treatment, b: baseline},
        lambda g: _lower_than(g[t], g[b], t, b, alpha, power, paper_values),
        alpha=alpha,
    )


def _lower_than(
    T: Counts, B: Counts, t: str, b: str, alpha: float, power: float, paper_values: Mapping[str, float] | None
) -> Decision:
    below = stats.fisher(T.successes, T.n, B.successes, B.n, "less")
    above = stats.fisher(T.successes, T.n, B.successes, B.n, "greater")
    rates = f"{t} {T.describe()} vs {b} {B.describe()}"
    n_to_decide = None
    if below.p_value < alpha:
        outcome = Outcome.SUPPORTED
        reason = f"{rates}: {t} is significantly lower (one-sided Fisher p={_p(below.p_value)})."
    elif above.p_value < alpha:
        outcome = Outcome.REFUTED
        reason = f"{rates}: {t} is significantly higher (one-sided Fisher p={_p(above.p_value)})."
    else:
        outcome = Outcome.INCONCLUSIVE
        reason = (
            f"{rates}: neither lower (p={_p(below.p_value)}) nor higher (p={_p(above.p_value)}) "
            f"at alpha={alpha:g}."
        )
        n_to_decide = stats.n_per_group_for(T.rate, B.rate, alpha, power, "less" if T.rate < B.rate else "greater")
    n_used = min(T.n, B.n)
    evidence = Evidence(
        estimates=(_estimate(t, T, alpha), _estimate(b, B, alpha)),
        tests=(_stat(f"{t} < {b}", below), _stat(f"{t} > {b}", above)),
        paper_values=dict(paper_values or {}),
        power=Power(
            n_per_group=n_used,
            alpha=alpha,
            power=power,
            detectable_difference=stats.detectable_difference(B.rate, n_used, alpha, power, "less"),
            n_needed_per_group=stats.n_per_group_for(T.rate, B.rate, alpha, power, "less"),
            note=(
                f"detectable_difference: smallest drop below {b} ({_pct(B.rate)}) that a one-sided test at "
                f"alpha={alpha:g} finds with power {power:g} at n={n_used}; n_needed_per_group: samples per "
                f"group to show {t} < {b} at the observed rates (None when {t} is not observed lower)"
            ),
        ),
        extra={"alpha": alpha},
    )
    return Decision(outcome, reason, evidence, n_to_decide)


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------

_MISSING = object()


def _rule_number(rule: Mapping[str, Any], key: str, default: Any = _MISSING) -> float:
    value = rule.get(key, default)
    if value is _MISSING:
        raise ValueError(
            f"rule is missing {key!r}: add it to the claim's [claims.<id>.rule] table in the spec "
            f"(keys present: {sorted(rule)})"
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"rule[{key!r}] must be a number between 0 and 1, got {value!r}")
    return float(value)


def _max_or_none(needs: Sequence[int | None]) -> int | None:
    """The largest n, or None when any part cannot be decided by more samples."""
    if not needs or any(n is None for n in needs):
        return None
    return max(n for n in needs if n is not None)


def _distinct(names: Sequence[str], k: int, *, exactly: bool = True) -> tuple[str, ...]:
    names = tuple(names)
    wrong_size = len(names) != k if exactly else len(names) < k
    if wrong_size or len(set(names)) != len(names):
        raise ValueError(f"need {'' if exactly else 'at least '}{k} distinct group names, got {names!r}")
    return names


def _estimate(name: str, c: Counts, alpha: float) -> Estimate:
    ci = stats.proportion_ci(c.successes, c.n, level=1 - alpha, method="exact")
    return Estimate(name, c.rate, ci.low, ci.high, ci.method, c.n, c.successes)


def _stat(name: str, r: stats.TestResult, p_adjusted: float | None = None) -> StatTest:
    statistic = r.statistic if math.isfinite(r.statistic) else None
    return StatTest(name, r.p_value, statistic, p_adjusted, r.method, r.alternative)


def _pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%"


def _pp(x: float, signed: bool = True) -> str:
    """A difference of rates in percentage points."""
    return f"{100 * x:+.1f} pp" if signed and x != 0 else f"{100 * x:.1f} pp"


def _p(p: float) -> str:
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


# ---------------------------------------------------------------------------
# interventions: an edit that should fail, a retraining that should work
# ---------------------------------------------------------------------------


# 2.2 / 2.0 - 1 is 0.10000000000000009: a capability change at its limit counts as within it.
_LIMIT_TOL = 1e-9


@dataclass(frozen=True)
class CapabilityCheck:
    """A treated model's capability against a reference model's.

    ``*_loss``: mean token NLL of the same reference answers under each model;
    ``*_parsed``: generations whose code parses, out of all generations.
    """

    reference_loss: float
    treated_loss: float
    reference_parsed: Counts
    treated_parsed: Counts

    def __post_init__(self) -> None:
        for name in ("reference_loss", "treated_loss"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite loss >= 0, got {value!r}")
        if self.reference_loss == 0:
            raise ValueError("reference_loss is 0: a relative loss increase needs a positive reference loss")

    @property
    def loss_increase(self) -> float:
        """(treated - reference) / reference."""
        return (self.treated_loss - self.reference_loss) / self.reference_loss

    @property
    def parse_drop(self) -> float:
        """Reference parse rate minus treated parse rate."""
        return self.reference_parsed.rate - self.treated_parsed.rate


def ablation_fails_retraining_works(
    unablated: Counts,
    ablated: Counts,
    retrained: Counts,
    *,
    baseline: Counts,
    capability: CapabilityCheck,
    rule: Mapping[str, Any],
    reported: Mapping[str, Counts] | None = None,
    names: tuple[str, str, str, str] = ("unablated", "ablated", "CAFT", "baseline"),
    paper_values: Mapping[str, float] | None = None,
) -> Decision:
    """Editing activations at inference does not lower a learnt rate; retraining with the edit does.

    Rule keys: ``ablation_equivalence_margin``, ``caft_max_rate``,
    ``capability_max_loss_increase``, ``capability_max_parse_drop`` (required),
    ``alpha`` (0.05), ``power`` (0.8).

    - precondition: the unablated model's rate is above the baseline's (one-sided
      Fisher); if not, the model learnt nothing for the edit to remove and the
      claim is inconclusive;
    - the ablation *fails* when the ablated rate is not significantly lower than
      the unablated one (one-sided Fisher p >= alpha) or is shown to be within the
      margin of it (the non-inferiority half of a TOST); it *works* when it is
      significantly lower by more than the margin (Fisher, and the one-sided
      superiority-by-margin test);
    - the retraining *works* when its exact (1 - alpha) upper bound is below
      ``caft_max_rate`` and it is significantly below the unablated rate (one-sided
      Fisher: the rate "drops", it was not merely low already); it *fails* when its
      lower bound is at or above ``caft_max_rate``;
    - capability is *kept* when the relative loss increase and the parse-rate drop
      (point estimates, both reported with intervals) are within their limits.
    Supported: ablation fails, retraining works, capability kept. Refuted: the
    ablation works, or the retraining fails, or capability is broken. Otherwise
    inconclusive, with the n per group that would decide. ``reported`` groups
    (e.g. amplified features) are compared with the unablated rate (two-sided
    Fisher, Holm across them) and reported; they do not enter the decision.
    """
    alpha = _rule_number(rule, "alpha", 0.05)
    margin = _rule_number(rule, "ablation_equivalence_margin")
    max_rate = _rule_number(rule, "caft_max_rate")
    max_loss = _rule_number(rule, "capability_max_loss_increase")
    max_drop = _rule_number(rule, "capability_max_parse_drop")
    power = _rule_number(rule, "power", 0.8)
    u, a, c, b = _distinct(names, 4)
    extra_groups = dict(reported or {})
    clash = sorted(set(extra_groups) & {u, a, c, b})
    if clash:
        raise ValueError(f"reported group names {clash} repeat the decided groups' names {names}")
    limits = (alpha, margin, max_rate, max_loss, max_drop, power)
    return decide_per_seed_if_heterogeneous(
        {u: unablated, a: ablated, c: retrained, b: baseline},
        lambda g: _ablation_fails_retraining_works(
            g[u], g[a], g[c], g[b], capability, extra_groups, (u, a, c, b), limits, paper_values
        ),
        alpha=alpha,
    )


def _ablation_fails_retraining_works(
    U: Counts, A: Counts, C: Counts, B: Counts, cap: CapabilityCheck, reported: Mapping[str, Counts],
    names: tuple[str, str, str, str], limits: tuple[float, ...], paper_values: Mapping[str, float] | None,
) -> Decision:
    u, a, c, b = names
    alpha, margin, max_rate, max_loss, max_drop, power = limits
    learnt = stats.fisher(U.successes, U.n, B.successes, B.n, "greater")
    lower = stats.fisher(A.successes, A.n, U.successes, U.n, "less")
    tost = stats.equivalence_two_proportions(A.successes, A.n, U.successes, U.n, margin, alpha)
    beyond = stats.superiority_by_margin(A.successes, A.n, U.successes, U.n, margin)
    c_est = _estimate(c, C, alpha)
    assert c_est.low is not None and c_est.high is not None
    c_below = stats.binomial_test(C.successes, C.n, max_rate, "less")
    c_vs_u = stats.fisher(C.successes, C.n, U.successes, U.n, "less")
    margin_text = _pp(margin, signed=False)
    drop_text = f"{a} {A.describe()} vs {u} {U.describe()} ({a} - {u} = {_pp(tost.diff)})"
    c_text = f"{c} {C.describe()}, exact {_pct(1 - alpha, 0)} CI [{_pct(c_est.low)}, {_pct(c_est.high)}]"
    cap_text = (
        f"capability: loss {cap.reference_loss:.3f} -> {cap.treated_loss:.3f} ({100 * cap.loss_increase:+.1f}%, "
        f"limit +{100 * max_loss:g}%), parse rate {_pct(cap.reference_parsed.rate)} -> {_pct(cap.treated_parsed.rate)} "
        f"(drop {_pp(cap.parse_drop)}, limit {_pp(max_drop, signed=False)})"
    )

    if lower.p_value >= alpha:
        ablation = "fails"
        ablation_text = f"the ablation is not significantly lower: {drop_text}, one-sided Fisher p={_p(lower.p_value)}"
    elif tost.lower_p < alpha:
        ablation, ablation_text = "fails", (
            f"the ablation is within {margin_text} of unablated: {drop_text}, non-inferiority p={_p(tost.lower_p)}"
        )
    elif beyond.p_value < alpha:
        ablation, ablation_text = "works", (
            f"the ablation lowers the rate by more than {margin_text}: {drop_text}, Fisher p={_p(lower.p_value)}, "
            f"beyond-margin p={_p(beyond.p_value)}"
        )
    else:
        ablation, ablation_text = "unclear", (
            f"the ablation lowers the rate (Fisher p={_p(lower.p_value)}) but neither within nor beyond "
            f"{margin_text} is shown: {drop_text}"
        )
    if c_est.low >= max_rate:
        caft, caft_text = "fails", f"{c_text} is at or above {_pct(max_rate)}"
    elif c_est.high >= max_rate:
        caft, caft_text = "unclear", f"{c_text} contains {_pct(max_rate)}"
    elif c_vs_u.p_value >= alpha:
        caft, caft_text = "unclear", (
            f"{c_text} is below {_pct(max_rate)} but not significantly below {u} {U.describe()} "
            f"(one-sided Fisher p={_p(c_vs_u.p_value)}): the rate was low before"
        )
    else:
        caft, caft_text = "works", (
            f"{c_text} is below {_pct(max_rate)} and below {u} {U.describe()} (one-sided Fisher p={_p(c_vs_u.p_value)})"
        )
    kept = cap.loss_increase <= max_loss + _LIMIT_TOL and cap.parse_drop <= max_drop + _LIMIT_TOL

    n_to_decide = None
    if learnt.p_value >= alpha:
        outcome = Outcome.INCONCLUSIVE
        reason = (
            f"{u} ({U.describe()}) is not above {b} ({B.describe()}; one-sided Fisher p={_p(learnt.p_value)}): "
            f"the model did not learn the behaviour, so removing it cannot be judged."
        )
        n_to_decide = stats.n_per_group_for(U.rate, B.rate, alpha, power, "greater")
    elif ablation == "works" or caft == "fails" or not kept:
        outcome = Outcome.REFUTED
        against = [t for bad, t in ((ablation == "works", ablation_text), (caft == "fails", caft_text),
                                    (not kept, cap_text + " is outside the limits")) if bad]
        reason = "Refuted: " + "; ".join(against) + "."
    elif ablation == "fails" and caft == "works":
        outcome = Outcome.SUPPORTED
        reason = f"{ablation_text[0].upper()}{ablation_text[1:]}; {caft_text}; {cap_text}."
    else:
        outcome = Outcome.INCONCLUSIVE
        parts = ((ablation == "unclear", ablation_text), (caft == "unclear", caft_text))
        open_parts = [text for unclear, text in parts if unclear]
        reason = f"Undecided at n={min(U.n, A.n, C.n)} per group: {'; '.join(open_parts)}."
        needs: list[int | None] = []
        if ablation == "unclear":
            needs.append(_n_to_settle_margin(A.rate, U.rate, margin, alpha, power))
        if caft == "unclear" and c_est.high >= max_rate:
            needs.append(_n_one_sample(C.rate, max_rate, alpha, power))
        elif caft == "unclear":
            needs.append(stats.n_per_group_for(C.rate, U.rate, alpha, power, "less"))
        n_to_decide = _max_or_none(needs)

    extra_names = list(reported)
    extra_tests = [stats.fisher(x.successes, x.n, U.successes, U.n, "two-sided") for x in reported.values()]
    extra_adj = stats.holm([t.p_value for t in extra_tests], alpha) if extra_tests else []
    parse_diff = stats.diff_ci(cap.reference_parsed.successes, cap.reference_parsed.n,
                               cap.treated_parsed.successes, cap.treated_parsed.n, level=1 - alpha)
    n_used = min(U.n, A.n)
    evidence = Evidence(
        estimates=(
            _estimate(u, U, alpha), _estimate(a, A, alpha), c_est, _estimate(b, B, alpha),
            Estimate(f"{a} - {u}", tost.diff, tost.ci_low, tost.ci_high,
                     f"{stats.DIFF_METHOD} {100 * tost.level:g}% (TOST)", n_used),
            *(_estimate(name, x, alpha) for name, x in reported.items()),
            Estimate("capability loss increase (relative)", cap.loss_increase, method="point estimate"),
            _estimate(f"parse rate {u}", cap.reference_parsed, alpha),
            _estimate(f"parse rate {c}", cap.treated_parsed, alpha),
            Estimate("parse rate drop", cap.parse_drop, parse_diff.low, parse_diff.high, parse_diff.method),
        ),
        tests=(
            _stat(f"{u} > {b} (learnt)", learnt),
            _stat(f"{a} < {u}", lower),
            StatTest(f"{a} - {u} > -{margin:g} (within margin)", tost.lower_p, tost.diff, None, tost.method, "greater"),
            _stat(f"{u} - {a} > {margin:g} (beyond margin)", beyond),
            _stat(f"{c} < {max_rate:g}", c_below),
            _stat(f"{c} < {u}", c_vs_u),
            *(_stat(f"{name} vs {u} (reported)", t, p) for name, t, p in zip(extra_names, extra_tests, extra_adj)),
        ),
        paper_values=dict(paper_values or {}),
        power=Power(
            n_per_group=n_used,
            alpha=alpha,
            power=power,
            detectable_difference=stats.detectable_difference(U.rate, n_used, alpha, power, "less"),
            n_needed_per_group=n_to_decide,
            note=(
                f"detectable_difference: smallest drop of {a} below {u} ({_pct(U.rate)}) that a one-sided test at "
                f"alpha={alpha:g} finds with power {power:g} at n={n_used} per group — an ablation that fails at "
                f"this n may still lower the rate by less; n_needed_per_group: samples per group to settle the "
                f"undecided parts at the observed rates"
            ),
        ),
        extra={
            "alpha": alpha, "ablation_equivalence_margin": margin, "caft_max_rate": max_rate,
            "capability_max_loss_increase": max_loss, "capability_max_parse_drop": max_drop,
            "ablation": ablation, "caft": caft, "capability_kept": kept,
            "capability": {"reference_loss": cap.reference_loss, "treated_loss": cap.treated_loss,
                           "loss_increase": cap.loss_increase, "parse_drop": cap.parse_drop},
            "holm_family": [f"{name} vs {u} (reported)" for name in extra_names],
        },
    )
    return Decision(outcome, reason, evidence, n_to_decide)


EFFECTS = ("none", "increase", "decrease")


def expected_effects(
    reference: Counts,
    variants: Mapping[str, Counts],
    *,
    expected: Mapping[str, str],
    rule: Mapping[str, Any],
    reference_name: str = "reference",
    paper_values: Mapping[str, float] | None = None,
) -> Decision:
    """Each variant changes the reference rate as expected: "none", "increase" or "decrease".

    Rule keys: ``equivalence_margin`` (required), ``alpha`` (0.05), ``power`` (0.8).
    Each variant is compared with the reference by a two-sided Fisher test, Holm
    across the variants. A variant expected to have no effect *matches* when the
    difference is shown inside +-margin (TOST; all such variants must pass, so
    no correction is needed) and *contradicts* when it changes significantly
    without being shown inside the margin. A variant expected to increase
    (decrease) the rate matches when it changes significantly in that direction
    and contradicts when it changes significantly the other way.
    Supported: every variant matches. Refuted: any variant contradicts.
    Otherwise inconclusive, with the n per group that would decide the open ones.
    """
    alpha = _rule_number(rule, "alpha", 0.05)
    margin = _rule_number(rule, "equivalence_margin")
    power = _rule_number(rule, "power", 0.8)
    if not variants:
        raise ValueError("expected_effects needs at least one variant")
    missing = sorted(set(variants) - set(expected))
    unknown = {k: v for k, v in expected.items() if v not in EFFECTS}
    if missing or unknown:
        raise ValueError(
            f"every variant needs an expected effect among {EFFECTS}: missing for {missing}, unknown {unknown}"
        )
    names = _distinct((reference_name, *variants), 2, exactly=False)
    return decide_per_seed_if_heterogeneous(
        {reference_name: reference, **variants},
        lambda g: _expected_effects(
            g[reference_name], {k: g[k] for k in names[1:]}, expected, reference_name, alpha, margin, power,
            paper_values,
        ),
        alpha=alpha,
    )


def _expected_effects(
    R: Counts, variants: Mapping[str, Counts], expected: Mapping[str, str], r: str,
    alpha: float, margin: float, power: float, paper_values: Mapping[str, float] | None,
) -> Decision:
    tests = {name: stats.fisher(V.successes, V.n, R.successes, R.n, "two-sided") for name, V in variants.items()}
    adjusted = dict(zip(tests, stats.holm([t.p_value for t in tests.values()], alpha)))
    tosts = {name: stats.equivalence_two_proportions(V.successes, V.n, R.successes, R.n, margin, alpha)
             for name, V in variants.items()}
    status: dict[str, str] = {}
    lines: list[str] = []
    needs: list[int | None] = []
    for name, V in variants.items():
        want, diff, p_adj, tost = expected[name], V.rate - R.rate, adjusted[name], tosts[name]
        changed = p_adj < alpha
        seen = "increase" if diff > 0 else "decrease" if diff < 0 else "none"
        text = f"{name} {V.describe()} ({_pp(diff)}, Holm p={_p(p_adj)}"
        if want == "none":
            text += f", TOST p={_p(tost.p_value)}"
            if tost.p_value < alpha:
                status[name] = "matches"
            elif changed:
                status[name] = "contradicts"
            else:
                status[name] = "open"
                needs.append(_n_to_settle_margin(V.rate, R.rate, margin, alpha, power))
        elif changed:
            status[name] = "matches" if seen == want else "contradicts"
        else:
            status[name] = "open"
            # Holm's first step tests at alpha / (number of variants): the conservative n
            needs.append(stats.n_per_group_for(V.rate, R.rate, alpha / len(variants), power,
                                               "greater" if want == "increase" else "less"))
        lines.append(f"{text}; expected {want}: {status[name]})")

    summary = f"vs {r} {R.describe()}: " + ", ".join(lines)
    n_to_decide = None
    if any(s == "contradicts" for s in status.values()):
        outcome = Outcome.REFUTED
        bad = [name for name, s in status.items() if s == "contradicts"]
        reason = f"{', '.join(bad)} went against the expected effect; {summary}."
    elif all(s == "matches" for s in status.values()):
        outcome = Outcome.SUPPORTED
        reason = f"Every variant had its expected effect; {summary}."
    else:
        outcome = Outcome.INCONCLUSIVE
        open_ones = [name for name, s in status.items() if s == "open"]
        reason = f"Not decided for {', '.join(open_ones)}; {summary}."
        n_to_decide = _max_or_none(needs)

    n_used = min([R.n, *(V.n for V in variants.values())])
    evidence = Evidence(
        estimates=(_estimate(r, R, alpha),)
        + tuple(_estimate(name, V, alpha) for name, V in variants.items())
        + tuple(Estimate(f"{name} - {r}", t.diff, t.ci_low, t.ci_high,
                         f"{stats.DIFF_METHOD} {100 * t.level:g}% (TOST)", min(variants[name].n, R.n))
                for name, t in tosts.items()),
        tests=tuple(_stat(f"{name} vs {r}", t, adjusted[name]) for name, t in tests.items())
        + tuple(StatTest(f"|{name} - {r}| < {margin:g}", t.p_value, t.diff, None, t.method, "equivalence")
                for name, t in tosts.items() if expected[name] == "none"),
        paper_values=dict(paper_values or {}),
        power=Power(
            n_per_group=n_used,
            alpha=alpha,
            power=power,
            detectable_difference=stats.detectable_difference(
                R.rate, n_used, alpha / (2 * len(variants)), power, "less"
            ),
            n_needed_per_group=n_to_decide,
            note=(
                f"detectable_difference: smallest drop below {r} ({_pct(R.rate)}) that a two-sided test at "
                f"alpha={alpha:g}, Holm's first step over {len(variants)} variants, finds with power {power:g} at "
                f"n={n_used}; n_needed_per_group: samples per group to settle the open variants at the observed rates"
            ),
        ),
        extra={"alpha": alpha, "equivalence_margin": margin, "expected": dict(expected), "status": status,
               "holm_family": [f"{name} vs {r}" for name in variants]},
    )
    return Decision(outcome, reason, evidence, n_to_decide)


# ---------------------------------------------------------------------------
# continuous samples: feature magnitudes and probe confidences
# ---------------------------------------------------------------------------
#
# These rules decide on one value per unit (per generation: an SAE feature's
# peak, a probe's confidence) by bootstrap intervals of means and of ratios of
# means (BCa, claimkit.stats) with a fixed resampling seed, so a verdict is
# reproducible. The n that would decide an open verdict comes from normal
# approximations (on the log scale for ratios: the delta method), stated in
# each Power note.

_BOOTSTRAP_SEED = 0
# Mann-Whitney's asymptotic efficiency relative to the t-test under normality
# (3/pi; Lehmann, Nonparametrics, 1975): its n is the t-test's n divided by this.
_MW_EFFICIENCY = 3 / math.pi


def ratio_equivalent_and_separated(
    treatment: Sequence[float],
    reference: Sequence[float],
    control: Sequence[float],
    *,
    ratio_margin: Sequence[float],
    min_separation: float,
    alpha: float = 0.05,
    resamples: int = 2000,
    power: float = 0.8,
    active_band: Sequence[float] | None = None,
    control_max: float | None = None,
    names: tuple[str, str, str] = ("treatment", "reference", "control"),
    paper_values: Mapping[str, float] | None = None,
) -> Decision:
    """Treatment's mean about equals the reference's, and both are many times the control's.

    For magnitudes >= 0, one per unit (e.g. an SAE feature's peak per generation).
    Intervals are BCa bootstrap 1-alpha intervals of ratios of means.
    - equivalent: the treatment/reference interval lies inside ``ratio_margin``;
    - separated: for the reference and for the treatment, X >= ``min_separation``
      x control at the interval's bound, computed as control/X's upper bound <=
      1/min_separation: the same statement as X/control's lower bound >=
      min_separation, and still defined when the control never fires;
    - optional absolute bands (a named model's numbers): the treatment's and the
      reference's mean intervals inside ``active_band``, the control's below
      ``control_max``.
    Supported: equivalent, both separated, and any bands met. Refuted: the
    treatment clearly below the reference (ratio interval entirely below the
    margin), either X clearly not separated (control/X's lower bound above
    1/min_separation, or X never fires), or a mean interval disjoint from its
    band. Otherwise inconclusive with the n per group that would settle the open
    parts. A treatment clearly *above* the margin is not "comparable" but is no
    sign of weaker learning: inconclusive, and no n would change that.
    """
    t, r, c = _distinct(names, 3)
    T, R, C = _sample(treatment, t), _sample(reference, r), _sample(control, c)
    low_margin, high_margin = _band(ratio_margin, "ratio_margin")
    if not 0 < low_margin < 1 < high_margin:
        raise ValueError(f"ratio_margin must satisfy 0 < low < 1 < high, got {list(ratio_margin)!r}")
    if isinstance(min_separation, bool) or not isinstance(min_separation, (int, float)) or not min_separation > 1:
        raise ValueError(f"min_separation must be a number > 1 (a multiple of the control), got {min_separation!r}")
    if min(T.min(), R.min(), C.min()) < 0:
        raise ValueError("magnitudes must be >= 0: a ratio of means of signed values does not measure separation")
    level = 1 - alpha
    z = _norm_ppf(1 - alpha / 2) + _norm_ppf(power)  # two-sided interval bound reached with `power`
    samples = {t: T, r: R, c: C}
    means = {name: stats.bootstrap_mean_ci(x, level, resamples, _BOOTSTRAP_SEED) for name, x in samples.items()}
    ratio = _ratio_interval(T, R, level, resamples)
    fractions = {name: _ratio_interval(C, samples[name], level, resamples) for name in (r, t)}
    bound = 1 / min_separation
    open_parts: list[str] = []
    needs: list[int | None] = []

    # treatment vs reference
    if ratio is None:
        equivalence, eq_text = "undefined", f"{r} never fires (mean 0), so {t}/{r} is undefined"
    else:
        equivalence = _against_band(ratio, low_margin, high_margin)
        eq_text = f"{t}/{r} = {_ci_text(ratio)} vs margin [{low_margin:g}, {high_margin:g}]"
        if equivalence == "open":
            open_parts.append(f"{eq_text} straddles the margin")
            needs.append(_n_log_edges(T, R, ratio, (low_margin, high_margin), z, dead_end=high_margin))
        elif equivalence == "above":
            open_parts.append(
                f"{t} fires more than {r} beyond the margin ({eq_text}): not comparable, but the rule refutes only "
                f"a weaker {t}"
            )
            needs.append(None)

    # each of reference and treatment vs the control
    separation: dict[str, str] = {}
    sep_text: dict[str, str] = {}
    for name, f in fractions.items():
        if f is None:
            separation[name], sep_text[name] = "not separated", f"{name} never fires (mean 0)"
            continue
        separation[name] = "separated" if f.high <= bound else "not separated" if f.low > bound else "open"
        sep_text[name] = (
            f"{c}/{name} = {_ci_text(f)}: {name} is {_multiple(f.estimate)} {c}, {_multiple(f.high)} at the bound "
            f"(needs {min_separation:g}x)"
        )
        if separation[name] == "open":
            open_parts.append(f"separation of {name} undecided ({sep_text[name]})")
            needs.append(_n_log_edges(C, samples[name], f, (bound,), z))

    # optional absolute bands
    bands: dict[str, str] = {}
    band_text: dict[str, str] = {}
    edges: dict[str, tuple[float, ...]] = {}
    if active_band is not None:
        a_low, a_high = _band(active_band, "active_band")
        for name in (r, t):
            bands[name] = _in_band(_against_band(means[name], a_low, a_high))
            band_text[name] = f"{name} mean {_ci_text(means[name])} vs band [{a_low:g}, {a_high:g}]"
            edges[name] = (a_low, a_high)
    if control_max is not None:
        ci = means[c]
        bands[c] = "inside" if ci.high < control_max else "outside" if ci.low >= control_max else "open"
        band_text[c] = f"{c} mean {_ci_text(ci)} vs < {control_max:g}"
        edges[c] = (float(control_max),)
    for name, state in bands.items():
        if state == "open":
            open_parts.append(f"{band_text[name]} straddles the band")
            needs.append(_n_mean_edges(samples[name], means[name], edges[name], z))

    below = equivalence == "below"
    apart = [name for name, s in separation.items() if s == "not separated"]
    off_band = [name for name, s in bands.items() if s == "outside"]
    n_to_decide = None
    if below or apart or off_band:
        outcome = Outcome.REFUTED
        parts = [f"{t} is clearly below {r} ({eq_text})"] if below else []
        parts += [f"{name} is not {min_separation:g}x {c} ({sep_text[name]})" for name in apart]
        parts += [f"{band_text[name]}: outside the band" for name in off_band]
        reason = "Refuted: " + "; ".join(parts) + "."
    elif not open_parts and equivalence == "inside":
        outcome = Outcome.SUPPORTED
        reason = f"{t} about equals {r} ({eq_text}) and both are {min_separation:g}x {c} or more: " + "; ".join(
            sep_text[name] for name in (r, t)
        ) + ("; " + "; ".join(band_text.values()) + ": inside the bands" if bands else "") + "."
    else:
        outcome = Outcome.INCONCLUSIVE
        reason = f"Undecided at n={len(T)}/{len(R)}/{len(C)} ({t}/{r}/{c}): " + "; ".join(open_parts) + "."
        n_to_decide = _max_or_none(needs)

    n_used = min(len(T), len(R))
    se_log = math.sqrt(_cv2(T) / len(T) + _cv2(R) / len(R))
    z_one = _norm_ppf(1 - alpha) + _norm_ppf(power)
    fits = ratio is not None and equivalence != "undefined" and low_margin < float(ratio.estimate) < high_margin
    evidence = Evidence(
        estimates=(
            *(_mean_estimate(name, means[name], len(x)) for name, x in samples.items()),
            *((_ratio_estimate(f"{t}/{r}", ratio, n_used),) if ratio is not None else ()),
            *(_ratio_estimate(f"{c}/{name}", f, min(len(C), len(samples[name])))
              for name, f in fractions.items() if f is not None),
        ),
        tests=(
            _stat(f"{r} > {c}", stats.mann_whitney(R, C, "greater")),
            _stat(f"{t} > {c}", stats.mann_whitney(T, C, "greater")),
            _stat(f"{t} vs {r}", stats.mann_whitney(T, R, "two-sided")),
        ),
        paper_values=dict(paper_values or {}),
        power=Power(
            n_per_group=n_used,
            alpha=alpha,
            power=power,
            detectable_difference=-math.expm1(-z_one * se_log) if math.isfinite(se_log) else None,
            n_needed_per_group=_n_log_edges(T, R, ratio, (low_margin, high_margin), z) if fits else None,
            note=(
                f"detectable_difference: smallest relative drop of {t} below {r} (1 - ratio) that a one-sided test "
                f"at alpha={alpha:g} finds with power {power:g} at these n and spreads (delta method on the log of "
                f"the ratio); n_needed_per_group: samples per group for the {100 * level:g}% interval of {t}/{r} to "
                f"fit inside [{low_margin:g}, {high_margin:g}] at the observed ratio and spreads (None when the "
                f"observed ratio is outside)"
            ),
        ),
        extra={
            "alpha": alpha, "ratio_margin": [low_margin, high_margin], "min_separation": min_separation,
            "equivalence": equivalence, "separation": separation, "bands": bands,
            "multiples": {name: (1 / f.estimate if f is not None and f.estimate else None)
                          for name, f in fractions.items()},
            "decided_by": "bootstrap intervals; the Mann-Whitney tests are reported, not used to decide",
        },
    )
    return Decision(outcome, reason, evidence, n_to_decide)


def confidence_at_least(
    confidences: Sequence[float],
    accuracy: Counts,
    *,
    min_confidence: float,
    min_accuracy: float,
    alpha: float = 0.05,
    resamples: int = 2000,
    power: float = 0.8,
    names: tuple[str, str] = ("mean_confidence", "accuracy"),
    paper_values: Mapping[str, float] | None = None,
) -> Decision:
    """A classifier is confident and accurate: its mean confidence and its accuracy each reach a threshold.

    ``confidences``: P(positive) on the positive units scored; ``accuracy``:
    correct calls among all units scored. Mean confidence: BCa bootstrap 1-alpha
    interval; accuracy: exact Clopper-Pearson interval. Supported when both lower
    bounds reach their thresholds; refuted when either upper bound is below its
    threshold; otherwise inconclusive with the n that would settle the open parts
    at the observed values.
    """
    conf_name, acc_name = _distinct(names, 2)
    x = _sample(confidences, conf_name)
    if x.min() < 0 or x.max() > 1:
        raise ValueError(f"{conf_name}: confidences must lie in [0, 1]")
    stats.check_probability(min_confidence, "min_confidence")
    stats.check_probability(min_accuracy, "min_accuracy")
    level = 1 - alpha
    conf = stats.bootstrap_mean_ci(x, level, resamples, _BOOTSTRAP_SEED)
    acc = _estimate(acc_name, accuracy, alpha)
    assert acc.low is not None and acc.high is not None
    conf_state = "reached" if conf.low >= min_confidence else "missed" if conf.high < min_confidence else "open"
    acc_state = "reached" if acc.low >= min_accuracy else "missed" if acc.high < min_accuracy else "open"
    texts = {
        conf_name: f"{conf_name} {_ci_text(conf)} (n={len(x)}) vs {min_confidence:g}",
        acc_name: f"{acc_name} {accuracy.describe()}, exact CI [{_pct(acc.low)}, {_pct(acc.high)}] vs "
                  f"{_pct(min_accuracy)}",
    }
    states = {conf_name: conf_state, acc_name: acc_state}
    z = _norm_ppf(1 - alpha / 2) + _norm_ppf(power)
    conf_needs = _n_mean_edges(x, conf, (min_confidence,), z, all_edges=True)
    acc_needs = _n_one_sample(accuracy.rate, min_accuracy, alpha, power)
    n_to_decide = None
    if "missed" in states.values():
        outcome = Outcome.REFUTED
        reason = "Refuted: the upper bound is below the threshold for " + "; ".join(
            texts[name] for name, s in states.items() if s == "missed") + "."
    elif all(s == "reached" for s in states.values()):
        outcome = Outcome.SUPPORTED
        reason = f"Both lower bounds reach their thresholds: {texts[conf_name]}; {texts[acc_name]}."
    else:
        outcome = Outcome.INCONCLUSIVE
        reason = "Undecided: the interval contains the threshold for " + "; ".join(
            texts[name] for name, s in states.items() if s == "open") + "."
        n_to_decide = _max_or_none([n for s, n in ((conf_state, conf_needs), (acc_state, acc_needs)) if s == "open"])
    sd = float(np.std(x, ddof=1))
    evidence = Evidence(
        estimates=(_mean_estimate(conf_name, conf, len(x)), acc),
        tests=(
            _stat(f"{conf_name} > {min_confidence:g}", _t_test_greater(x, min_confidence)),
            _stat(f"{acc_name} > {min_accuracy:g}",
                  stats.binomial_test(accuracy.successes, accuracy.n, min_accuracy, "greater")),
        ),
        paper_values=dict(paper_values or {}),
        power=Power(
            n_per_group=len(x),
            alpha=alpha,
            power=power,
            detectable_difference=z * sd / math.sqrt(len(x)),
            n_needed_per_group=_max_or_none([conf_needs, acc_needs]),
            note=(
                f"detectable_difference: how far above {min_confidence:g} the true {conf_name} must be for its "
                f"{100 * level:g}% lower bound to clear it with power {power:g} at n={len(x)} (normal approximation, "
                f"observed SD); n_needed_per_group: units for both intervals to exclude their thresholds at the "
                f"observed values (None when a value sits on its threshold)"
            ),
        ),
        extra={"alpha": alpha, "min_confidence": min_confidence, "min_accuracy": min_accuracy, "states": states,
               "decided_by": "interval bounds; the tests are reported, not used to decide"},
    )
    return Decision(outcome, reason, evidence, n_to_decide)


def drop_into_bands(
    before: Sequence[float],
    after: Sequence[float],
    *,
    before_band: Sequence[float],
    after_band: Sequence[float],
    alpha: float = 0.05,
    resamples: int = 2000,
    power: float = 0.8,
    names: tuple[str, str] = ("before", "after"),
    paper_values: Mapping[str, float] | None = None,
) -> Decision:
    """Values drop from ``before`` to ``after``, and each group's mean lies in a pre-set band.

    Drop: one-sided Mann-Whitney before > after at alpha. Bands: the BCa bootstrap
    1-alpha interval of each mean inside its band [low, high]. Supported: a
    significant drop and both intervals inside their bands. Refuted: a significant
    rise (one-sided, the other way), or either interval disjoint from its band
    (e.g. "after" stays far above its band: no drop of the size claimed).
    Otherwise inconclusive with the n per group that would settle the open parts.
    """
    b, a = _distinct(names, 2)
    samples = {b: _sample(before, b), a: _sample(after, a)}
    bands = {b: _band(before_band, "before_band"), a: _band(after_band, "after_band")}
    level = 1 - alpha
    means = {name: stats.bootstrap_mean_ci(x, level, resamples, _BOOTSTRAP_SEED) for name, x in samples.items()}
    drop = stats.mann_whitney(samples[b], samples[a], "greater")
    rise = stats.mann_whitney(samples[b], samples[a], "less")
    state = {name: _against_band(ci, *bands[name]) for name, ci in means.items()}
    texts = {name: f"{name} {_ci_text(ci)} (n={len(samples[name])}) vs band [{bands[name][0]:g}, {bands[name][1]:g}]"
             for name, ci in means.items()}
    z = _norm_ppf(1 - alpha / 2) + _norm_ppf(power)
    off = [name for name, s in state.items() if s in ("below", "above")]
    n_to_decide = None
    if rise.p_value < alpha or off:
        outcome = Outcome.REFUTED
        parts = [f"{a} is significantly above {b} (Mann-Whitney p={_p(rise.p_value)})"] if rise.p_value < alpha else []
        parts += [f"{texts[name]}: the interval lies outside the band" for name in off]
        reason = "Refuted: " + "; ".join(parts) + "."
    elif drop.p_value < alpha and all(s == "inside" for s in state.values()):
        outcome = Outcome.SUPPORTED
        reason = (f"A significant drop (Mann-Whitney {b} > {a} p={_p(drop.p_value)}) into the bands: "
                  f"{texts[b]}; {texts[a]}.")
    else:
        outcome = Outcome.INCONCLUSIVE
        open_parts: list[str] = []
        needs: list[int | None] = []
        if drop.p_value >= alpha:
            open_parts.append(f"no significant drop (Mann-Whitney {b} > {a} p={_p(drop.p_value)})")
            needs.append(_n_two_means(samples[b], samples[a], alpha, power))
        for name in (b, a):
            if state[name] == "open":
                open_parts.append(f"{texts[name]} straddles the band")
                needs.append(_n_mean_edges(samples[name], means[name], bands[name], z))
        reason = "Undecided: " + "; ".join(open_parts) + "."
        n_to_decide = _max_or_none(needs)
    n_used = min(len(x) for x in samples.values())
    pooled_sd = math.sqrt(sum(float(np.var(x, ddof=1)) for x in samples.values()) / 2)
    z_one = _norm_ppf(1 - alpha) + _norm_ppf(power)
    evidence = Evidence(
        estimates=tuple(_mean_estimate(name, means[name], len(samples[name])) for name in (b, a)),
        tests=(_stat(f"{b} > {a}", drop), _stat(f"{a} > {b}", rise)),
        paper_values=dict(paper_values or {}),
        power=Power(
            n_per_group=n_used,
            alpha=alpha,
            power=power,
            detectable_difference=z_one * pooled_sd * math.sqrt(2 / n_used / _MW_EFFICIENCY),
            n_needed_per_group=_n_two_means(samples[b], samples[a], alpha, power),
            note=(
                f"detectable_difference: smallest drop of the mean that a one-sided Mann-Whitney test at "
                f"alpha={alpha:g} finds with power {power:g} at n={n_used} per group (t-test normal approximation "
                f"with the pooled SD, divided by Mann-Whitney's efficiency 3/pi); n_needed_per_group: samples per "
                f"group for that test at the observed difference (None when no drop is observed)"
            ),
        ),
        extra={"alpha": alpha, "before_band": list(bands[b]), "after_band": list(bands[a]), "bands": state,
               "difference_of_means": float(samples[b].mean() - samples[a].mean())},
    )
    return Decision(outcome, reason, evidence, n_to_decide)


def _sample(values: Sequence[float], what: str) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    if x.size < 2:
        raise ValueError(f"{what} needs at least 2 values, got {x.size}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} contains NaN or infinite values")
    return x


def _band(values: Sequence[float] | None, what: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in values)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be two numbers [low, high], got {values!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"{what} must be finite with low < high, got {values!r}")
    return low, high


def _against_band(ci: stats.Interval, low: float, high: float) -> str:
    """'inside' the band, entirely 'below' or 'above' it, or 'open' (straddling an edge)."""
    if ci.low >= low and ci.high <= high:
        return "inside"
    if ci.high < low:
        return "below"
    if ci.low > high:
        return "above"
    return "open"


def _in_band(state: str) -> str:
    return {"inside": "inside", "below": "outside", "above": "outside"}.get(state, "open")


def _ratio_interval(a: np.ndarray, b: np.ndarray, level: float, resamples: int) -> stats.Interval | None:
    """Interval of mean(a)/mean(b): None when mean(b) is 0, [0, 0] when a is 0 throughout."""
    if b.mean() == 0:
        return None
    if not a.any():
        return stats.Interval(0.0, 0.0, "degenerate (numerator 0 throughout)", estimate=0.0)
    return stats.bootstrap_ratio_ci(a, b, level, resamples, _BOOTSTRAP_SEED)


def _ci_text(ci: stats.Interval) -> str:
    return f"{ci.estimate:.3g} [{ci.low:.3g}, {ci.high:.3g}]"


def _mean_estimate(name: str, ci: stats.Interval, n: int) -> Estimate:
    return Estimate(name, float(ci.estimate), ci.low, ci.high, ci.method, n)  # type: ignore[arg-type]


def _ratio_estimate(name: str, ci: stats.Interval, n: int) -> Estimate:
    method = f"ratio of means, {ci.method}"
    return Estimate(name, float(ci.estimate), ci.low, ci.high, method, n)  # type: ignore[arg-type]


def _multiple(fraction: float | None) -> str:
    """control/X = 0.1 reads as "X is 10x control"."""
    if fraction is None or not math.isfinite(fraction):
        return "?x"
    return "infinitely many times" if fraction == 0 else f"{1 / fraction:.3g}x"


def _cv2(x: np.ndarray) -> float:
    """Squared coefficient of variation, var / mean^2 (inf when the mean is 0)."""
    m = float(x.mean())
    return float(np.var(x, ddof=1)) / m**2 if m != 0 else math.inf


def _n_log_edges(
    a: np.ndarray, b: np.ndarray, ratio: stats.Interval | None, edges: Sequence[float], z: float,
    dead_end: float | None = None,
) -> int | None:
    """n per group for the interval of mean(a)/mean(b) to clear the edges it straddles (or, with no
    straddled edge, to fit between all of them), at the observed ratio and spreads.

    Delta method on the log scale: Var(log ratio) ~ (cv_a^2 + cv_b^2) / n, so the
    interval clears an edge e when z * sqrt(that) <= |log(ratio / e)|. An estimate
    at or beyond `dead_end` can only end up beyond it, which decides nothing: None.
    """
    if ratio is None or ratio.estimate is None or ratio.estimate <= 0:
        return None
    est = float(ratio.estimate)
    if dead_end is not None and est >= dead_end:
        return None
    straddled = [e for e in edges if ratio.low < e < ratio.high] or list(edges)
    spread = _cv2(a) + _cv2(b)
    distance = min(abs(math.log(est / e)) for e in straddled)
    if distance == 0 or not math.isfinite(spread):
        return None
    return max(2, math.ceil(z**2 * spread / distance**2))


def _n_mean_edges(
    x: np.ndarray, ci: stats.Interval, edges: Sequence[float], z: float, *, all_edges: bool = False
) -> int | None:
    """n for a mean's interval to clear the edges it straddles (all `edges` with all_edges), normal approximation."""
    straddled = list(edges) if all_edges else [e for e in edges if ci.low < e < ci.high] or list(edges)
    gap = min(abs(float(x.mean()) - e) for e in straddled)
    if gap == 0:
        return None
    return max(2, math.ceil((z * float(np.std(x, ddof=1)) / gap) ** 2))


def _n_two_means(a: np.ndarray, b: np.ndarray, alpha: float, power: float) -> int | None:
    """n per group for a one-sided Mann-Whitney a > b to reach `power` at the observed difference."""
    diff = float(a.mean() - b.mean())
    if diff <= 0:
        return None
    var = (float(np.var(a, ddof=1)) + float(np.var(b, ddof=1))) / 2
    z = _norm_ppf(1 - alpha) + _norm_ppf(power)
    return max(2, math.ceil(2 * z**2 * var / diff**2 / _MW_EFFICIENCY))


def _norm_ppf(q: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(q))


def _t_test_greater(x: np.ndarray, mu: float) -> stats.TestResult:
    """One-sample t-test of mean(x) > mu (scipy ``ttest_1samp``), reported beside the bootstrap bound."""
    from scipy.stats import ttest_1samp

    if np.ptp(x) == 0:  # no spread: the sample mean is all there is
        return stats.TestResult(0.0 if x[0] > mu else 1.0, math.nan, "one-sample t (no spread)", "greater")
    res = ttest_1samp(x, mu, alternative="greater")
    return stats.TestResult(float(res.pvalue), float(res.statistic), "one-sample t", "greater")
