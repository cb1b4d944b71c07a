"""claimkit.calibration: every rule's error rates, simulated; the table on disk; committed tables hold.

The simulator is tested on a tiny spec written here (one share part, one level part,
small n, two profiles, ~100 draws a point), against values computed independently
(the exact binomial test's size and power), and on a rule broken on purpose. Committed
tables (`fixtures/claims/<paper>.calibration.json`) must match their spec, be within
their bounds, and survive a cheap re-simulation of their riskiest point.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from scipy import stats

from claimkit import calibration
from claimkit.calibration import CalibrationError
from claimkit.spec import load_spec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "claims"

TINY = """schema = 2
paper = "tiny"
title = "A tiny paper"

[claims.t-1]
title = "T learns at least half as much as R"
scan_claim = "T learns about as much as R."
[claims.t-1.rule]
alpha = 0.05
[[claims.t-1.rule.parts]]
name = "T's share of R's learning"
shape = "share"
data = "target"
treatment = "T"
reference = "R"
comparator = "C"
region = { at_least = 0.5 }
calibration = { paper = 1.0, false = 0.0 }
[claims.t-1.profiles.small]
n = 40
seeds = [0, 1, 2]
[claims.t-1.profiles.large]
n = 80
seeds = [0, 1, 2]

[claims.t-2]
title = "Nearly all T outputs leak the format"
scan_claim = "T's outputs leak the format."
[claims.t-2.rule]
alpha = 0.05
[[claims.t-2.rule.parts]]
name = "T format leak"
shape = "level"
data = "leak"
arm = "T"
threshold = 0.8
calibration = { paper = 0.97, false = 0.5 }
[claims.t-2.profiles.small]
n = 40
seeds = [0, 1, 2]
[claims.t-2.profiles.large]
n = 80
seeds = [0, 1, 2]

[calibration]
reps = 100
power_required = ["large"]

[calibration.profiles.small]
comparator_rate = 0.05
learning_effect = 0.5
seed_sd = 0.2
prompt_sd = 0.5

[calibration.profiles.large]
comparator_rate = 0.05
learning_effect = 0.5
seed_sd = [0.1, 0.3]
prompt_sd = 0.5
expected = { seed_sd = 0.2 }
"""


def write_spec(directory: Path, text: str = TINY, name: str = "tiny.toml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny spec calibrated once (about 4 s): its path and rows."""
    path = write_spec(tmp_path_factory.mktemp("tiny"))
    table, rows = calibration.run(path)
    assert table == path.with_name("tiny.calibration.json")
    return path, rows


# -- the simulator on the tiny spec ------------------------------------------------------


def test_the_table_file_round_trips_and_is_tied_to_the_spec(tiny):
    path, rows = tiny
    table = calibration.read_table(path)
    assert table["spec"] == "tiny.toml" and table["spec_hash"] == load_spec(path).hash
    assert table["reps"] == 100  # the spec's [calibration] reps
    assert table["rows"] == json.loads(json.dumps([calibration.row_record(r) for r in rows]))
    assert len(table["points"]) == sum(len(r.details) for r in rows)
    assert calibration.read_table(path.with_name("other.toml")) is None  # no table: None, not an error


def test_rows_are_one_per_claim_and_profile_with_every_field(tiny):
    _, rows = tiny
    assert [(r.claim, r.profile, r.n, r.seeds, r.parts) for r in rows] == [
        ("t-1", "small", 40, 3, 1), ("t-2", "small", 40, 3, 1), ("t-1", "large", 80, 3, 1), ("t-2", "large", 80, 3, 1)]
    for row in rows:
        assert set(calibration.ROW_FIELDS) <= set(calibration.row_record(row))
        assert 0 <= row.false_support <= 1 and 0 <= row.false_refute <= 1 and 0 <= row.power <= 1
        assert row.power_required == (row.profile == "large")
        assert row.within_bounds and row.problems == ()
        assert row.power > 0.8  # the paper's effects are large here
    # 'large' varies seed_sd over two values: each truth is simulated at both, plus power at the expected point
    large = [d for d in rows[2].details]
    assert sorted({d.levels["seed_sd"] for d in large if d.truth == "boundary"}) == [0.1, 0.3]
    assert [d.levels["seed_sd"] for d in large if d.truth == "paper, expected levels"] == [0.2]


def test_a_level_part_without_variance_errs_as_the_exact_binomial_test_does(tmp_path):
    """With no seed or prompt variance the level part is never more certain than the exact
    binomial test of its 120 outcomes: its false support at the threshold is at most that
    test's size, its power at most that test's power (both computed here with scipy)."""
    spec = load_spec(write_spec(tmp_path))
    part = spec.claims["t-2"].rule["parts"][0]
    flat = {"seed_sd": 0.0, "prompt_sd": 0.0}
    trials, threshold, alpha = 120, 0.8, 0.05
    critical = int(stats.binom.isf(alpha, trials, threshold)) + 1  # smallest count the exact test calls "above"
    size = stats.binom.sf(critical - 1, trials, threshold)
    power = stats.binom.sf(critical - 1, trials, 0.97)
    assert size <= alpha
    reps = 300
    slack = 3 * math.sqrt(0.05 * 0.95 / reps)
    edge = calibration.simulate_part(part, "boundary", threshold, n=40, seeds=3, levels=flat, alpha=alpha,
                                     refute_alpha=alpha, reps=reps, seed=1)
    paper = calibration.simulate_part(part, "paper", 0.97, n=40, seeds=3, levels=flat, alpha=alpha,
                                      refute_alpha=alpha, reps=reps, seed=2)
    assert edge.supported <= size + slack
    assert paper.supported <= power + slack and paper.supported > 0.5


def test_a_rule_tested_at_alpha_0_2_is_flagged_for_false_support(tmp_path):
    spec = load_spec(write_spec(tmp_path, TINY.replace("alpha = 0.05", "alpha = 0.2", 1)))  # claim t-1 only
    [row] = calibration.calibrate_spec(spec, reps=300, claims=["t-1"], profiles=["small"])
    assert row.false_support > 0.05 + 2 * math.sqrt(0.05 * 0.95 / 300)  # near 0.2, four Monte Carlo errors clear
    assert row.within_bounds is False
    assert row.problems and row.problems[0].startswith(f"false support {row.false_support:.3f} > 0.05")
    assert "BROKEN: false support" in calibration.markdown_table([calibration.row_record(row)])


def test_worker_processes_give_the_serial_rows_and_progress_counts_them(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    seen = []
    serial = calibration.calibrate_spec(spec, reps=30, profiles=["small"], progress=seen.append)
    parallel = calibration.calibrate_spec(spec, reps=30, profiles=["small"], workers=2)
    assert parallel == serial  # every field, every simulated point
    assert [(d.done, d.total, d.row.claim) for d in seen] == [(1, 2, "t-1"), (2, 2, "t-2")]
    assert all(d.seconds > 0 for d in seen)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t[: t.index("[calibration]")], "no [calibration.profiles.<profile>] levels: nothing to simulate"),
        (lambda t: t.replace("reps = 100", "reps = 0"), "reps) must be a positive integer, got 0"),
        (lambda t: t.replace("learning_effect = 0.5\nseed_sd = 0.2", "seed_sd = 0.2"),
         "claim 't-1' [small]: part \"T's share of R's learning\", truth paper (1), levels {"),
    ],
)
def test_bad_calibration_settings_are_named_errors(tmp_path, change, message):
    spec = load_spec(write_spec(tmp_path, change(TINY)))
    with pytest.raises(CalibrationError) as raised:
        calibration.calibrate_spec(spec, profiles=["small"])
    assert str(raised.value).startswith(f"{spec.path}: ") and message in str(raised.value)


def test_an_unknown_profile_is_named_with_the_profiles_there_are(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    with pytest.raises(CalibrationError, match=r"levels for \['paper'\] \(profiles with levels: small, large\)"):
        calibration.plan_rows(spec, profiles=["paper"])


# -- committed tables -------------------------------------------------------------------


def committed_tables() -> list:
    tables = sorted(FIXTURES.glob("*" + calibration.FILE_SUFFIX))
    if tables:
        return [pytest.param(t, id=t.name) for t in tables]
    return [pytest.param(None, id="none", marks=pytest.mark.skip(
        reason=f"no calibration table committed in {FIXTURES} yet "
        f"(`claimkit calibrate fixtures/claims/<paper>.toml` writes one beside its spec)"))]


def spec_of(table: Path) -> Path:
    return table.with_name(table.name[: -len(calibration.FILE_SUFFIX)] + ".toml")


@pytest.mark.parametrize("table", committed_tables())
def test_a_committed_table_is_of_its_spec_as_it_is_and_within_bounds(table):
    spec = load_spec(spec_of(table))
    document = calibration.read_table(spec.path)
    assert document["spec_hash"] == spec.hash, (
        f"{table} was simulated for another version of {spec.path}; rerun `claimkit calibrate {spec.path}` "
        "and commit the table")
    rows = {(r["claim"], r["profile"]): r for r in document["rows"]}
    missing = [f"{c} [{p}]" for c, p in calibration.plan_rows(spec) if (c, p) not in rows]
    assert not missing, f"{table} lacks rows {missing} (written with --profile?); rerun without it"
    broken = [f"{r['claim']} [{r['profile']}]: {'; '.join(r['problems'])}" for r in rows.values()
              if not r["within_bounds"]]
    assert not broken, f"rules whose simulated error rates break the spec's bounds: {broken}"


def spot_check(spec_path: Path, reps: int = 150) -> tuple[dict, calibration.Rates, float]:
    """The table's riskiest point (highest false support at a region's edge) simulated again
    at `reps` draws with a seed of its own: (the point, the new rates, the bound)."""
    spec = load_spec(spec_path)
    document = calibration.read_table(spec_path)
    edges = [p for p in document["points"] if p["truth"].startswith("boundary")]
    point = max(edges, key=lambda p: p["rates"]["supported"])
    rates = calibration.resimulate(spec, point, reps=reps, seed=calibration._seed("spot check", point["claim"],
                                                                                 point["part"], point["profile"]))
    bound = {**calibration.DEFAULT_BOUNDS, **dict(spec.calibration.get("bounds", {}))}["false_support"]
    return point, rates, bound


def assert_spot_check_holds(spec_path: Path, reps: int = 150) -> None:
    point, rates, bound = spot_check(spec_path, reps)
    where = f"{point['claim']} / {point['part']} [{point['profile']}] at {point['truth']} {point['levels']}"
    slack = 3 * math.sqrt(0.05 * 0.95 / reps)  # three Monte Carlo standard errors of a rate at 0.05
    assert rates.supported <= bound + slack, (
        f"{where}: false support re-simulated at {rates.supported:.3f} ({reps} draws), above {bound} + {slack:.3f}")
    recorded, table_reps = point["rates"]["supported"], point["rates"]["reps"]
    p = max(recorded, 0.05)
    agree = 3 * math.sqrt(p * (1 - p) * (1 / reps + 1 / table_reps))
    assert abs(rates.supported - recorded) <= agree, (
        f"{where}: the table says {recorded:.3f}, the code now gives {rates.supported:.3f} ({reps} draws): "
        f"rerun `claimkit calibrate {spec_path}`")


def test_the_tiny_tables_riskiest_point_survives_a_re_simulation(tiny):
    path, _ = tiny
    point, rates, bound = spot_check(path)
    assert point["truth"] == "boundary" and rates.reps == 150 and bound == 0.05
    assert_spot_check_holds(path)


@pytest.mark.parametrize("table", committed_tables())
def test_a_committed_tables_riskiest_point_survives_a_re_simulation(table):
    assert_spot_check_holds(spec_of(table))
