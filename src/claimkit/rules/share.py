"""A ratio of arm effects lies in a region: "L1 learns about as much as L0", "CAFT leaves little".

The shape: theta = (T - C) / (R - C), the share of the reference arm's effect over a
comparator that the treatment arm shows (with C = none, a ratio of rates T / R). The
scale is the profile's own: a 135M model that learns 30 points and a 3B model that
learns 67 points are held to the same share, which is what "about as well" means.

Arms are seeds x prompts tables of outcomes (`claimkit.crossed`), paired by seed and
prompt; every test is a one-sided test of the linear form T - C - theta0 (R - C) with
crossed seed and prompt variance (Fieller), so the interval holds both.

Regions (`Region`):
  between lo, hi   support: theta > lo and theta < hi (both one-sided at alpha: TOST)
                   refute: theta < lo or theta > hi (one-sided at alpha)
  at_least lo      support: theta > lo;  refute: theta < lo
  at_most hi       support: theta < hi;  refute: theta > hi

The reference effect R - C must be positive for a share to mean anything; when it is
not shown (one-sided at alpha) the part cannot be decided and says so.

`simulate_arms` draws such tables from known truths, so the rule's error rates can
be simulated at a profile's seeds and prompts (claimkit.calibration).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import optimize, special

from claimkit import crossed
from claimkit.rules.declaration import KINDS, Region  # noqa: F401  (Region is this shape's, declared lightly)
from claimkit.rules.parts import Part
from claimkit.verdict import Estimate, StatTest

# Gauss-Hermite nodes for the marginal rate of a logit-normal outcome (simulation only).
_HERMITE = np.polynomial.hermite_e.hermegauss(61)


@dataclass(frozen=True)
class Share:
    """What a share part needs: which arm is the treatment, the reference and the comparator."""

    treatment: str
    reference: str
    comparator: str | None  # None: a ratio of rates T / R

    def numerator(self) -> dict[str, float]:
        return {self.treatment: 1.0} | ({self.comparator: -1.0} if self.comparator else {})

    def denominator(self) -> dict[str, float]:
        return {self.reference: 1.0} | ({self.comparator: -1.0} if self.comparator else {})

    def describe(self) -> str:
        if self.comparator is None:
            return f"{self.treatment} / {self.reference}"
        return f"({self.treatment} - {self.comparator}) / ({self.reference} - {self.comparator})"


def share_part(
    name: str,
    arms: Mapping[str, np.ndarray],
    share: Share,
    region: Region,
    *,
    alpha: float,
    interval: bool = True,
) -> Part:
    """Measure theta and test it against `region` (module docstring); `interval=False` skips Fieller's bounds."""
    what = share.describe()
    den = crossed.contrast(arms, share.denominator())
    den_p = den.p_value(0.0, "greater")
    den_name = f"{share.reference} - {share.comparator}" if share.comparator else share.reference
    den_test = StatTest(f"{name}: {den_name} > 0 (the reference effect exists)", den_p, den.estimate / den.se
                        if den.se else None, method="crossed seeds x prompts t", alternative="greater")
    tests_at = _tests(arms, share, region, alpha)
    estimate = _ratio(arms, share)
    bounds = _bounds(arms, share, alpha) if interval else (math.nan, math.nan)
    rates = {a: crossed.crossed_mean(arms[a]) for a in dict.fromkeys([share.treatment, share.reference,
                                                                       *([share.comparator] if share.comparator else [])])}
    estimates = (
        Estimate(f"{name}: share {what}", estimate, bounds[0], bounds[1],
                 f"Fieller, crossed seeds x prompts, {100 * (1 - 2 * alpha):g}%", rates[share.treatment].prompts),
        *(_rate_estimate(f"{name}: {a}", m, alpha) for a, m in rates.items()),
    )
    per_seed = _per_seed(arms, share)
    extra = {"share": what, "region": region.describe(), "estimate": estimate, "interval": list(bounds),
             "per_seed": per_seed, "reference_effect": {"estimate": den.estimate, "se": den.se, "df": den.df},
             "rates": {a: {"estimate": m.estimate, "se": m.se, "per_seed": list(m.per_seed)} for a, m in rates.items()}}
    summary = f"share {what} = {estimate:.3g}" + (f" [{bounds[0]:.3g}, {bounds[1]:.3g}]" if interval else "") + \
              f", per seed {', '.join('-' if v is None else f'{v:.3g}' for v in per_seed)}"
    if den_p >= alpha:
        return Part(name, 1.0, 1.0, f"share {region.describe()}", f"share outside {region.describe()}",
                    f"{summary}; the reference effect {den_name} = {den.estimate:+.3g} is not shown positive "
                    f"(p={den_p:.2g}), so no share can be judged", estimates, (den_test,), extra, None)
    support_p, refute_p, support_test, refute_test = tests_at
    return Part(name, support_p, refute_p, support_test, refute_test, summary, estimates, (den_test,), extra,
                _n_to_decide(arms, share, region, alpha))


def _tests(arms: Mapping[str, np.ndarray], share: Share, region: Region, alpha: float) -> tuple[float, float, str, str]:
    def p(null: float, alternative: crossed.OneSided) -> float:
        return crossed.ratio_of_contrasts(arms, share.numerator(), share.denominator(), null=null,
                                          alternative=alternative, alpha=alpha, interval=False).p_value

    if region.kind == "between":
        p_above_low, p_below_high = p(region.low, "greater"), p(region.high, "less")
        p_below_low, p_above_high = p(region.low, "less"), p(region.high, "greater")
        return (max(p_above_low, p_below_high), min(p_below_low, p_above_high),
                f"share > {region.low:g} and < {region.high:g}", f"share < {region.low:g} or > {region.high:g}")
    if region.kind == "at_least":
        return p(region.low, "greater"), p(region.low, "less"), f"share > {region.low:g}", f"share < {region.low:g}"
    return p(region.high, "less"), p(region.high, "greater"), f"share < {region.high:g}", f"share > {region.high:g}"


def _ratio(arms: Mapping[str, np.ndarray], share: Share) -> float:
    num = sum(w * float(np.mean(arms[a])) for a, w in share.numerator().items())
    den = sum(w * float(np.mean(arms[a])) for a, w in share.denominator().items())
    return num / den if den != 0 else math.copysign(math.inf, num or 1.0)


def _bounds(arms: Mapping[str, np.ndarray], share: Share, alpha: float) -> tuple[float, float]:
    return crossed.ratio_of_contrasts(arms, share.numerator(), share.denominator(), null=0.0,
                                      alternative="greater", alpha=alpha).interval


def _per_seed(arms: Mapping[str, np.ndarray], share: Share) -> list[float | None]:
    seeds = crossed.as_table(arms[share.treatment]).shape[0]
    out: list[float | None] = []
    for s in range(seeds):
        one = {a: np.asarray(arms[a], dtype=float)[s : s + 1] for a in share.numerator() | share.denominator()}
        value = _ratio(one, share)
        out.append(value if math.isfinite(value) else None)
    return out


def _rate_estimate(name: str, m: crossed.CrossedMean, alpha: float) -> Estimate:
    low, high = m.interval(1 - 2 * alpha)
    return Estimate(name, m.estimate, max(0.0, low), min(1.0, high), "crossed seeds x prompts t", m.seeds * m.prompts)


def _n_to_decide(arms: Mapping[str, np.ndarray], share: Share, region: Region, alpha: float) -> int | None:
    """Prompts per seed at which the nearer region edge would be cleared, if prompt variance dominates.

    None when the seed component dominates (more prompts would not decide it: more seeds would).
    """
    edges = [e for e in (region.low, region.high) if e is not None]
    estimate = _ratio(arms, share)
    if not math.isfinite(estimate):
        return None
    edge = min(edges, key=lambda e: abs(estimate - e))
    linear = crossed.contrast(arms, {a: share.numerator().get(a, 0.0) - edge * share.denominator().get(a, 0.0)
                                     for a in share.numerator() | share.denominator()})
    if linear.estimate == 0 or linear.se == 0:
        return None
    c = linear.components
    if c["seed"] > c["prompt"]:
        return None
    t_needed = 1.96 + 0.84  # one-sided 0.05 (normal) plus 80% power
    factor = (t_needed * linear.se / abs(linear.estimate)) ** 2
    n = linear.prompts
    return int(math.ceil(n * factor)) if factor > 1 else None


# ---------------------------------------------------------------------------
# simulation
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def logit_location(rate: float, spread: float) -> float:
    """The logit location mu whose logit-normal outcome with SD `spread` has marginal mean `rate` (memoised: simulations ask often)."""
    if not 0 < rate < 1:
        raise ValueError(f"rate must lie in (0, 1), got {rate}")
    if spread == 0:
        return float(special.logit(rate))
    nodes, weights = _HERMITE
    weights = weights / weights.sum()

    def marginal(mu: float) -> float:
        return float(np.sum(weights * special.expit(mu + spread * nodes))) - rate

    return float(optimize.brentq(marginal, -40.0, 40.0, xtol=1e-10))


def simulate_arms(
    rng: np.random.Generator,
    rates: Mapping[str, float],
    *,
    seeds: int,
    prompts: int,
    seed_sd: float,
    prompt_sd: float,
) -> dict[str, np.ndarray]:
    """Binary seeds x prompts tables with marginal rates `rates`, from a crossed logit-normal model.

    logit p[a, s, i] = mu_a + u[a, s] + b[i]: a seed effect per arm and seed (each arm's
    training runs vary on their own), a prompt effect shared by every arm (a hard prompt
    is hard for all). mu_a is set so each arm's marginal rate is exactly `rates[a]`, so a
    truth like "the share is 0.75" holds in the simulated population, not only roughly.
    """
    spread = math.hypot(seed_sd, prompt_sd)
    prompt_effect = rng.normal(0.0, prompt_sd, prompts)
    out = {}
    for arm, rate in rates.items():
        mu = logit_location(rate, spread)
        seed_effect = rng.normal(0.0, seed_sd, seeds)
        p = special.expit(mu + seed_effect[:, None] + prompt_effect[None, :])
        out[arm] = (rng.random((seeds, prompts)) < p).astype(float)
    return out


def rates_for_share(share: Share, theta: float, *, comparator_rate: float, reference_effect: float) -> dict[str, float]:
    """Marginal rates under which the share is exactly `theta`: C, R = C + effect, T = C + theta * effect."""
    c = comparator_rate if share.comparator else 0.0
    rates = {share.reference: c + reference_effect, share.treatment: c + theta * reference_effect}
    if share.comparator:
        rates[share.comparator] = comparator_rate
    bad = {a: r for a, r in rates.items() if not 0 < r < 1}
    if bad:
        raise ValueError(f"a share of {theta} of an effect of {reference_effect} over {c} gives rates outside (0, 1): {bad}")
    return rates
