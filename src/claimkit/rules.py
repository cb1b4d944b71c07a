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
