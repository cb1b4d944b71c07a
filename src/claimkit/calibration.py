"""Every rule's error rates, simulated at its profile's seeds and sample size before any verdict is seen.

A rule earns trust by its error rates: the chance it supports a false claim, refutes
a true one, and supports a claim that is true at the paper's effect (its power). This
module simulates them for every declared part of every claim of a spec (version 2),
at each profile's n and seeds, from data drawn under known truths with seed and prompt
variance (the shapes' own simulators: `share.simulate_arms`, `level.simulate_level`,
`groups.simulate_groups`), and decides each draw with the very function the claim
test uses (`declared.part_of`).

Truths, per part:
  paper     the claim true at the paper's effect             -> power = P(supported), and P(refuted)
  boundary  the claim just false: the region's edge           -> false support = P(supported)
            (for a conjunction, a part at its edge is the worst case: intersection-union)
  false     clearly false (optional)                          -> P(refuted), what refutation can reach

A claim's row: false support is the largest of its parts' (each tested at alpha);
false refutation is the sum of its parts' refutation rates at the paper's effect and
at the edge, each tested at alpha / parts (Bonferroni); power is the product of its
parts' powers (parts that share arms are positively correlated, so this is a lower
estimate). Variance levels are a grid in the spec (`[calibration.profiles.<p>]`):
the error bounds must hold at every point of it; power is reported at the point the
spec calls expected (measured on earlier runs where there were any).

`claimkit calibrate SPEC` writes the table (`<spec>.calibration.json` beside the
spec, committed), the reports show it beside the verdicts it applies to
(claimkit.report.error_rates), and tests/test_calibration.py fails when a bound is
broken. Rows are independent (every simulated point draws from its own seed, `_seed`),
so they can be simulated in worker processes with the same result as in one.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
from scipy import stats as _st

# The table on disk lives in claimkit.calibration_table (light, for reports); its names are re-exported here.
from claimkit.calibration_table import (  # noqa: F401
    FILE_SUFFIX,
    ROW_FIELDS,
    TABLE_HEADERS,
    CalibrationError,
    markdown_table,
    read_table,
    table_cells,
    table_path,
)
from claimkit.rules import declared, share
from claimkit.rules.groups import simulate_groups
from claimkit.rules.level import simulate_level
from claimkit.spec import PaperSpec, load_spec

DEFAULT_BOUNDS = {"false_support": 0.05, "false_refute": 0.05, "power": 0.8}


@dataclass(frozen=True)
class Rates:
    """How often a simulated rule said each outcome, out of `reps` draws."""

    supported: float
    refuted: float
    reps: int

    @property
    def mc_se(self) -> float:
        """Monte Carlo standard error of a rate near 0.05 (the bound that matters)."""
        return math.sqrt(0.05 * 0.95 / self.reps)


@dataclass(frozen=True)
class PartCalibration:
    claim: str
    part: str
    profile: str
    truth: str  # paper | boundary | boundary-high | false
    theta: float
    levels: Mapping[str, float]
    rates: Rates


@dataclass(frozen=True)
class ClaimRow:
    """One claim on one profile: the table's row."""

    claim: str
    profile: str
    n: int
    seeds: int
    parts: int
    false_support: float  # worst over the variance grid
    false_refute: float  # worst over the variance grid
    power: float  # at the expected variance levels
    power_required: bool
    within_bounds: bool
    problems: tuple[str, ...] = ()
    details: tuple[PartCalibration, ...] = field(default=(), repr=False)
    power_exempt: str = ""  # why neither outcome can be reached on this profile at any feasible n ([calibration] unreachable)
    refute_power: float | None = None  # P(refuted) when a part is clearly false (its `false` truth), the hardest part


@dataclass(frozen=True)
class RowDone:
    """One row simulated, for a progress line: which, how long it took, how many of how many are done."""

    row: ClaimRow
    seconds: float
    done: int
    total: int


# ---------------------------------------------------------------------------
# simulating one part
# ---------------------------------------------------------------------------


def part_truths(part: Mapping[str, Any]) -> list[tuple[str, float]]:
    """The truths a part is simulated at (module docstring), as (name, value of the part's parameter)."""
    cal = part.get("calibration") or {}
    shape = part["shape"]
    if "paper" not in cal:
        raise CalibrationError(f"part {part['name']!r}: its calibration needs 'paper' (the value at the paper's effect)")
    truths = [("paper", float(cal["paper"]))]
    if shape in ("share", "group_ratio"):
        region = share.Region.from_rule(part["region"])
        if region.low is not None:
            truths.append(("boundary", region.low))
        if region.high is not None:
            truths.append(("boundary-high" if region.low is not None else "boundary", region.high))
    elif shape in ("level", "group_mean", "auroc"):
        truths.append(("boundary", float(part["threshold"])))
    elif shape == "ordering":
        truths.append(("boundary", 0.0))  # one strict step flat
    if "false" in cal:
        truths.append(("false", float(cal["false"])))
    return truths


def simulate_part(
    part: Mapping[str, Any], truth: str, theta: float, *, n: int, seeds: int, levels: Mapping[str, Any],
    alpha: float, refute_alpha: float, reps: int, seed: int,
) -> Rates:
    """Draw `reps` datasets under the truth, decide each with `declared.part_of`, count the outcomes."""
    rng = np.random.default_rng(seed)
    draw = _drawer(part, truth, theta, n=n, seeds=seeds, levels=levels)
    supported = refuted = 0
    for _ in range(reps):
        result = declared.part_of(part, draw(rng), alpha=alpha, interval=False)
        supported += result.support_p < alpha
        refuted += result.refute_p < refute_alpha
    return Rates(supported / reps, refuted / reps, reps)


def _drawer(part: Mapping[str, Any], truth: str, theta: float, *, n: int, seeds: int,
            levels: Mapping[str, Any]) -> Callable[[np.random.Generator], declared.ClaimData]:
    cal = dict(part.get("calibration") or {})
    shape, data = part["shape"], part["data"]
    seed_sd, prompt_sd = float(levels["seed_sd"]), float(levels["prompt_sd"])

    if shape == "share":
        s = share.Share(part["treatment"], part["reference"], part.get("comparator"))
        if s.comparator:
            effect = float(levels["learning_effect"]) * float(cal.get("effect_scale", 1.0))
            rates = share.rates_for_share(s, theta, comparator_rate=float(levels["comparator_rate"]),
                                          reference_effect=effect)
        else:
            reference = float(levels[cal.get("reference_rate", "comparator_rate")])
            rates = share.rates_for_share(s, theta, comparator_rate=0.0, reference_effect=reference)
        return lambda rng: declared.ClaimData(tables={data: share.simulate_arms(
            rng, rates, seeds=seeds, prompts=n, seed_sd=seed_sd, prompt_sd=prompt_sd)})

    if shape == "level":
        rate = min(max(theta, 1e-3), 1 - 1e-3)
        if truth.startswith("boundary"):  # the least favourable false case: one run at the edge, the others at the paper's rate
            paper = min(max(float(cal["paper"]), 1e-3), 1 - 1e-3)
            rates = [rate] + [paper] * (seeds - 1)
            return lambda rng: declared.ClaimData(tables={data: {part["arm"]: np.vstack([simulate_level(
                rng, r, seeds=1, prompts=n, seed_sd=0.0, prompt_sd=prompt_sd) for r in rates])}})
        return lambda rng: declared.ClaimData(tables={data: {part["arm"]: simulate_level(
            rng, rate, seeds=seeds, prompts=n, seed_sd=seed_sd, prompt_sd=prompt_sd)}})

    if shape == "ordering":
        from claimkit.rules.ordering import order_steps

        names, strict = order_steps(part["order"])
        shares = dict(cal["shares"])  # arm -> share of the learning effect at the paper's values
        if truth == "boundary":  # the closest strict step made flat: the worst case for support
            k = min((i for i, st in enumerate(strict) if st), key=lambda i: shares[names[i]] - shares[names[i + 1]])
            shares[names[k]] = shares[names[k + 1]] = (shares[names[k]] + shares[names[k + 1]]) / 2
        effect, base = float(levels["learning_effect"]), float(levels["comparator_rate"])
        rates = {a: base + shares[a] * effect for a in names}
        if part.get("comparator"):
            rates[part["comparator"]] = base
        return lambda rng: declared.ClaimData(tables={data: share.simulate_arms(
            rng, rates, seeds=seeds, prompts=n, seed_sd=seed_sd, prompt_sd=prompt_sd)})

    sizes = {g: int(round(v * n)) if isinstance(v, float) and v <= 1 else int(v)
             for g, v in dict(levels["group_sizes"]).items()}
    within = dict(cal.get("sd", {}))
    group_seed_sd = float(cal.get("seed_sd", levels.get("group_seed_sd", 0.0)))
    if shape == "auroc":
        d = math.sqrt(2) * float(_st.norm.ppf(min(theta, 0.999)))
        pos, neg = part["positive"], part["negative"]

        def draw_auroc(rng: np.random.Generator) -> declared.ClaimData:
            out = []
            for _ in range(seeds):
                shift = d + rng.normal(0.0, group_seed_sd)
                out.append({pos: rng.normal(shift, 1.0, sizes[pos]), neg: rng.normal(0.0, 1.0, sizes[neg])})
            return declared.ClaimData(groups={data: out})

        return draw_auroc
    means = {g: float(v) for g, v in dict(cal["means"]).items()}
    if shape == "group_mean":
        means[part["group"]] = theta
    else:  # group_ratio: the group `moves` takes the mean that puts the ratio at theta
        moved = cal["moves"]
        num, den = dict(part["numerator"]), dict(part["denominator"])
        d_val = sum(w * means[g] for g, w in den.items())
        rest = sum(w * means[g] for g, w in num.items() if g != moved)
        means[moved] = (theta * d_val - rest) / num[moved]
    return lambda rng: declared.ClaimData(groups={data: simulate_groups(
        rng, means, {g: sizes[g] for g in means}, seeds=seeds, within_sd={g: float(within.get(g, 1.0)) for g in means},
        seed_sd=group_seed_sd)})


# ---------------------------------------------------------------------------
# a spec's table
# ---------------------------------------------------------------------------


def level_grid(profile_levels: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every point of the profile's variance grid (list-valued keys vary, scalars stay)."""
    keys = [k for k, v in profile_levels.items() if isinstance(v, list)]
    for values in itertools.product(*(profile_levels[k] for k in keys)):
        point = {k: v for k, v in profile_levels.items() if k not in keys and k != "expected"}
        point.update(dict(zip(keys, values)))
        yield point


def expected_levels(profile_levels: Mapping[str, Any]) -> dict[str, Any]:
    """The grid point the spec calls expected (its `expected` table), for power."""
    point = next(level_grid(profile_levels))
    point.update(dict(profile_levels.get("expected", {})))
    return point


def calibrate_spec(
    spec: PaperSpec, *, reps: int | None = None, profiles: Sequence[str] | None = None,
    claims: Sequence[str] | None = None, progress: Callable[[RowDone], None] | None = None, workers: int = 1,
) -> list[ClaimRow]:
    """Simulate every declared claim of `spec` on every profile with calibration levels (module docstring).

    `workers` > 1 simulates rows in that many processes; the rows are the same as a
    serial run's, in the same order. `progress` is called as each row is done.
    """
    reps = settings_reps(spec, reps)
    jobs = plan_rows(spec, profiles=profiles, claims=claims)
    if workers < 1:
        raise CalibrationError(f"workers must be at least 1, got {workers}")
    done: dict[tuple[str, str], ClaimRow] = {}

    def finished(job: tuple[str, str], row: ClaimRow, seconds: float) -> None:
        done[job] = row
        if progress:
            progress(RowDone(row, seconds, len(done), len(jobs)))

    if workers == 1 or len(jobs) < 2:
        for job in jobs:
            finished(job, *_timed_row(spec, *job, reps))
    else:
        pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)))
        try:
            futures = {pool.submit(_timed_row, spec, *job, reps): job for job in jobs}
            for future in as_completed(futures):
                finished(futures[future], *future.result())
        finally:  # after an error, rows not yet started are dropped rather than waited for
            pool.shutdown(wait=True, cancel_futures=True)
    return [done[job] for job in jobs]


def plan_rows(
    spec: PaperSpec, *, profiles: Sequence[str] | None = None, claims: Sequence[str] | None = None,
) -> list[tuple[str, str]]:
    """The (claim, profile) rows `calibrate_spec` simulates, in table order; CalibrationError for an unknown profile."""
    levels = dict(_settings(spec)["profiles"])
    unknown = [p for p in profiles or () if p not in levels]
    if unknown:
        raise CalibrationError(f"{spec.path}: no [calibration.profiles.<profile>] levels for {unknown} "
                               f"(profiles with levels: {', '.join(levels) or 'none'})")
    return [(claim.id, profile) for profile in levels if not profiles or profile in profiles
            for claim in spec.claims.values()
            if (not claims or claim.id in claims) and "parts" in claim.rule and profile in claim.profiles]


def settings_reps(spec: PaperSpec, reps: int | None = None) -> int:
    """Draws per simulated point: `reps` if given, else the spec's `[calibration] reps` (default 1000)."""
    value = reps if reps is not None else _settings(spec).get("reps", 1000)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise CalibrationError(f"{spec.path}: draws per point (reps) must be a positive integer, got {value!r}")
    return value


def _timed_row(spec: PaperSpec, claim_id: str, profile: str, reps: int) -> tuple[ClaimRow, float]:
    """One row and the seconds it took; a module-level function, so a worker process can run it."""
    settings = _settings(spec)
    bounds = {**DEFAULT_BOUNDS, **dict(settings.get("bounds", {}))}
    required = profile in set(settings.get("power_required", []))
    started = time.perf_counter()
    try:
        row = _claim_row(spec, spec.claims[claim_id], profile, dict(settings["profiles"])[profile], reps, bounds,
                         required)
    except CalibrationError as exc:
        raise CalibrationError(f"{spec.path}: claim {claim_id!r} [{profile}]: {exc}") from None
    return row, time.perf_counter() - started


def _claim_row(spec: PaperSpec, claim: Any, profile: str, levels: Mapping[str, Any], reps: int,
               bounds: Mapping[str, float], power_required: bool) -> ClaimRow:
    plan = claim.plan(profile)
    parts = declared.check_parts(claim.rule, f"{spec.path}: claim {claim.id!r}")
    alpha = float(claim.rule.get("alpha", 0.05))
    k = len(parts)
    details: list[PartCalibration] = []
    worst_fs, worst_fr, power = 0.0, 0.0, 1.0
    refute_powers: list[float] = []
    points_fs = points_fr = 0
    for index, part in enumerate(parts):
        part_fs = part_fr = 0.0
        n = _part_n(part, plan)
        for truth, theta in part_truths(part):
            if not _possible(part, theta, levels):  # e.g. a share that would need a rate above 1: it cannot happen
                continue
            for point in level_grid(levels):
                rates = _simulate(part, truth, theta, n, len(plan.seeds), point, alpha, alpha / k, reps,
                                  _seed(claim.id, profile, index, truth, point))
                details.append(PartCalibration(claim.id, part["name"], profile, truth, theta, point, rates))
                if truth.startswith("boundary"):  # at the edge the claim is as false as it is true
                    part_fs, part_fr = max(part_fs, rates.supported), max(part_fr, rates.refuted)
                    points_fs += 1
                    points_fr += 1
                elif truth == "paper":
                    part_fr = max(part_fr, rates.refuted)
                    points_fr += 1
            if truth in ("paper", "false"):
                at = expected_levels(levels)
                rates = _simulate(part, truth, theta, n, len(plan.seeds), at, alpha, alpha / k, reps,
                                  _seed(claim.id, profile, index, f"expected {truth}", at))
                details.append(PartCalibration(claim.id, part["name"], profile, f"{truth}, expected levels", theta,
                                               at, rates))
                if truth == "paper":
                    power *= rates.supported
                else:
                    refute_powers.append(rates.refuted)
        worst_fs = max(worst_fs, part_fs)
        worst_fr += part_fr
    # A row's rate is the largest of several Monte Carlo estimates (parts x edges x grid points); a rule of
    # exactly the right size would often cross bound + 2 SE by chance, so the tolerance is the one-sided
    # quantile with Bonferroni over the points compared (a sum over k parts adds their errors).
    se = math.sqrt(0.05 * 0.95 / reps)
    problems = []
    if worst_fs > bounds["false_support"] + _z(points_fs) * se:
        problems.append(f"false support {worst_fs:.3f} > {bounds['false_support']}")
    if worst_fr > bounds["false_refute"] + _z(points_fr) * se * math.sqrt(k):
        problems.append(f"false refutation {worst_fr:.3f} > {bounds['false_refute']}")
    refute_power = min(refute_powers) if refute_powers else None
    exempt = dict(_settings(spec).get("unreachable", {})).get(claim.id, {}).get(profile)
    if refute_power is not None and refute_power < bounds["false_support"] and not exempt:
        problems.append(f"refutation unreachable: a clearly false part is refuted {refute_power:.2f} of the time")
    if power_required and exempt:
        power_required = False
    if power_required and power < bounds["power"]:
        problems.append(f"power {power:.2f} < {bounds['power']}")
    return ClaimRow(claim.id, profile, int(plan.n), len(plan.seeds), k, worst_fs, worst_fr, power, power_required,
                    not problems, tuple(problems), tuple(details), exempt or "", refute_power)


def _possible(part: Mapping[str, Any], theta: float, levels: Mapping[str, Any]) -> bool:
    """Whether a share part's truth gives rates inside (0, 1) at the profile's levels (other shapes: always)."""
    if part["shape"] != "share":
        return True
    cal = dict(part.get("calibration") or {})
    s = share.Share(part["treatment"], part["reference"], part.get("comparator"))
    point = expected_levels(levels)
    try:
        if s.comparator:
            share.rates_for_share(s, theta, comparator_rate=float(point["comparator_rate"]),
                                  reference_effect=float(point["learning_effect"]) * float(cal.get("effect_scale", 1.0)))
        else:
            share.rates_for_share(s, theta, comparator_rate=0.0,
                                  reference_effect=float(point[cal.get("reference_rate", "comparator_rate")]))
    except ValueError:
        return False
    except KeyError:  # a missing level: the simulation says which, by name
        return True
    return True


def _z(points: int) -> float:
    """The one-sided normal quantile at 0.05 / points (Bonferroni over the points a row takes the largest of)."""
    return float(_st.norm.ppf(1 - 0.05 / max(points, 1)))


def resimulate(spec: PaperSpec, point: Mapping[str, Any], *, reps: int, seed: int) -> Rates:
    """A point of a table (an entry of its "points") simulated again with the code as it is now.

    A committed table is only as good as the code it was simulated with; a cheap
    re-simulation of one point, at fewer draws, shows whether it still holds.
    """
    claim = spec.claims[point["claim"]]
    parts = declared.check_parts(claim.rule, f"{spec.path}: claim {claim.id!r}")
    part = next(p for p in parts if p["name"] == point["part"])
    plan, alpha = claim.plan(point["profile"]), float(claim.rule.get("alpha", 0.05))
    return _simulate(part, point["truth"], float(point["theta"]), _part_n(part, plan), len(plan.seeds), point["levels"],
                     alpha, alpha / len(parts), reps, seed)


def _simulate(part, truth, theta, n, seeds, point, alpha, refute_alpha, reps, seed) -> Rates:
    try:
        return simulate_part(part, truth, theta, n=n, seeds=seeds, levels=point, alpha=alpha,
                             refute_alpha=refute_alpha, reps=reps, seed=seed)
    except (KeyError, ValueError) as exc:
        what = f"no {exc} among the levels or the part's calibration" if isinstance(exc, KeyError) else str(exc)
        raise CalibrationError(f"part {part['name']!r}, truth {truth} ({theta:g}), levels {point}: {what}") from exc


def _part_n(part: Mapping[str, Any], plan: Any) -> int:
    """The prompts per seed a part reads: the plan's n, or another key of the plan it names (capability tasks)."""
    key = (part.get("calibration") or {}).get("n_from_plan")
    if key is None:
        return int(plan.n)
    if key not in plan.extra:
        raise CalibrationError(f"part {part['name']!r}: calibration n_from_plan names {key!r}, which the profile's "
                               f"sample plan lacks (it has: n, seeds, {', '.join(plan.extra) or 'nothing else'})")
    return int(plan.extra[key])


def _seed(*parts: Any) -> int:
    import hashlib

    text = json.dumps([str(p) if not isinstance(p, Mapping) else sorted(p.items()) for p in parts], default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _settings(spec: PaperSpec) -> Mapping[str, Any]:
    settings = spec.calibration
    if not settings or "profiles" not in settings:
        raise CalibrationError(f"{spec.path}: no [calibration.profiles.<profile>] levels: nothing to simulate")
    profiles = settings["profiles"]
    if not isinstance(profiles, Mapping) or not all(isinstance(v, Mapping) for v in profiles.values()):
        raise CalibrationError(f"{spec.path}: [calibration.profiles] must hold one table of levels per profile")
    return settings


# ---------------------------------------------------------------------------
# the table on disk
# ---------------------------------------------------------------------------


def row_record(row: ClaimRow) -> dict[str, Any]:
    """A row as the table file holds it: every field but the simulated points (kept apart, under "points")."""
    return {k: v for k, v in asdict(row).items() if k != "details"}


def write_table(spec: PaperSpec, rows: Sequence[ClaimRow], reps: int, seconds: float) -> Path:
    """`<spec>.calibration.json`: the spec's hash, the rows and every simulated point."""
    document = {
        "spec": spec.path.name, "spec_hash": spec.hash, "reps": reps, "seconds": round(seconds, 1),
        "rows": [row_record(r) for r in rows],
        "points": [asdict(d) for r in rows for d in r.details],
    }
    path = table_path(spec.path)
    path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


def run(spec_path: str | Path, *, reps: int | None = None, profiles: Sequence[str] | None = None,
        progress: Callable[[RowDone], None] | None = None, workers: int = 1) -> tuple[Path, list[ClaimRow]]:
    """Calibrate the spec at `spec_path` and write its table beside it; the table's path and the rows."""
    spec = load_spec(spec_path)
    started = time.perf_counter()
    rows = calibrate_spec(spec, reps=reps, profiles=profiles, progress=progress, workers=workers)
    return write_table(spec, rows, settings_reps(spec, reps), time.perf_counter() - started), rows
