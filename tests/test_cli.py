"""The `claimkit` console script: report re-rendering and changes, mark/list wiring, calibrate, exit codes."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from claimkit.cli import main
from claimkit.report import write_run
from claimkit.verdict import Estimate, Evidence, Outcome, Verdict


@pytest.fixture(autouse=True)
def _matplotlib_config(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path_factory.getbasetemp() / "mpl"))


def verdict(claim_id="c-1", outcome=Outcome.SUPPORTED, spec_hash="sha256:one") -> Verdict:
    return Verdict(
        claim_id=claim_id, paper="demo", scan_claim=f"scan text of {claim_id}", profile="organism",
        model="m", outcome=outcome, reason="because",
        evidence=Evidence(estimates=(Estimate("rate", 0.4, 0.3, 0.5, "clopper-pearson", 100, 40),)),
        rule={"alpha": 0.05}, spec_hash=spec_hash,
    )


@pytest.fixture
def two_runs(tmp_path):
    reports = tmp_path / "reports"
    first = write_run(reports, [verdict("c-1"), verdict("c-2")], command="pytest", claimkit_version="1")
    second = write_run(reports, [verdict("c-1", Outcome.REFUTED), verdict("c-2")], command="pytest", claimkit_version="1")
    return reports, first.document.run_id, second.document.run_id


def test_report_rerenders_latest_and_shows_changes_since_the_previous_run(two_runs, capsys):
    reports, first, second = two_runs
    (reports / second / "report.md").unlink()
    assert main(["report", "--report-dir", str(reports)]) == 0
    out = capsys.readouterr().out
    assert (reports / second / "report.md").is_file()
    assert f"1 verdict change(s) from run {first} to run {second}" in out
    assert "changed: c-1 [organism, m]: supported -> refuted" in out
    assert f"## Changes since run {first}" in (reports / second / "report.md").read_text()


def test_report_shows_the_calibration_tables_beside_the_specs_it_is_given(two_runs, tmp_path):
    reports, _, second = two_runs
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "demo.toml").write_text('schema = 2\npaper = "demo"\n')
    row = {"n": 100, "seeds": 3, "parts": 1, "false_support": 0.03, "false_refute": 0.04, "power": 0.9,
           "power_required": True, "within_bounds": True, "problems": []}
    (specs / "demo.calibration.json").write_text(json.dumps({"spec_hash": "sha256:one", "reps": 500, "rows": [
        {**row, "claim": "c-1", "profile": "organism"}, {**row, "claim": "c-2", "profile": "organism"}]}))
    assert main(["report", second, "--report-dir", str(reports), "--specs", str(specs)]) == 0
    md = (reports / second / "report.md").read_text()
    assert "| c-2 | organism | 100 | 3 | 1 | 0.030 | 0.040 | 0.90 | - | met |" in md
    assert "at most 0.08 false verdicts are expected among these 2 claim decisions (1 supported, 1 refuted)" in md


def test_fail_on_change_exits_1_only_for_unexplained_changes(two_runs, tmp_path, capsys):
    reports, first, second = two_runs
    no_notes = tmp_path / "no-notes.toml"
    no_notes.write_text("")
    assert main(["report", str(reports / second), "--fail-on-change", "--notes", str(no_notes)]) == 1
    assert (f"1 verdict(s) changed under unchanged claim specs and with no note in {no_notes}: "
            "failing (--fail-on-change)") in capsys.readouterr().err
    # compared with itself nothing changed
    assert main(["report", second, "--report-dir", str(reports), "--against", second, "--fail-on-change"]) == 0
    # a flip that comes with a changed spec has its stated cause
    other = tmp_path / "other"
    write_run(other, [verdict("c-1")], command="pytest", claimkit_version="1")
    write_run(other, [verdict("c-1", Outcome.REFUTED, spec_hash="sha256:two")], command="pytest", claimkit_version="1")
    assert main(["report", "--report-dir", str(other), "--fail-on-change"]) == 0
    assert "(claim spec changed)" in capsys.readouterr().out


def test_report_says_whether_the_verdicts_that_kept_their_outcome_kept_their_numbers(tmp_path, capsys):
    reports = tmp_path / "reports"
    first = write_run(reports, [verdict("c-1"), verdict("c-2")], command="pytest", claimkit_version="1").document.run_id
    same = write_run(reports, [verdict("c-1"), verdict("c-2")], command="pytest", claimkit_version="1").document.run_id
    assert main(["report", same, "--report-dir", str(reports), "--against", first]) == 0
    assert "all 2 verdict(s) that kept their outcome have identical estimates, tests and reasons" in capsys.readouterr().out
    moved = verdict("c-2")
    moved = Verdict(**{**moved.__dict__, "evidence": Evidence(estimates=(Estimate("rate", 0.41, 0.31, 0.51, "clopper-pearson", 100, 41),))})
    other = write_run(reports, [verdict("c-1"), moved], command="pytest", claimkit_version="1").document.run_id
    assert main(["report", other, "--report-dir", str(reports), "--against", first, "--fail-on-change"]) == 0  # not a change
    out = capsys.readouterr().out
    assert "1 verdict(s) kept their outcome with other numbers (1 identical in every estimate, test and reason)" in out
    assert "  c-2 [organism, m]: estimate 'rate' value: 0.4 -> 0.41" in out


def test_a_note_for_the_change_lets_fail_on_change_pass(two_runs, tmp_path, capsys):
    reports, first, second = two_runs
    notes = tmp_path / "notes.toml"
    notes.write_text('[[change]]\nclaim = "c-1"\nprofile = "organism"\nfrom = "supported"\nto = "refuted"\n'
                     'why = "the detector now counts B602"\n'
                     '[[change]]\nclaim = "c-2"\nprofile = "organism"\nto = "refuted"\nwhy = "expected later"\n'
                     '[[change]]\nclaim = "c-3"\nprofile = "paper"\nto = "refuted"\nwhy = "not this profile"\n')
    assert main(["report", str(reports / second), "--fail-on-change", "--notes", str(notes)]) == 0
    out = capsys.readouterr().out
    assert "changed: c-1 [organism, m]: supported -> refuted (noted: the detector now counts B602)" in out
    assert "(noted: the detector now counts B602)" in (reports / second / "report.md").read_text()
    # a note that matched nothing is pointed out (one for a profile this run lacks is not)
    assert f"note {notes}: change[1] (c-2 [organism] -> refuted) explains no change of this run" in out
    assert "c-3" not in out
    # a note for the other direction does not explain this one
    notes.write_text('[[change]]\nclaim = "c-1"\nprofile = "organism"\nfrom = "refuted"\nto = "supported"\nwhy = "w"\n')
    assert main(["report", str(reports / second), "--fail-on-change", "--notes", str(notes)]) == 1


def test_notes_default_to_the_committed_file_and_bad_notes_are_exit_1(two_runs, tmp_path, monkeypatch, capsys):
    reports, first, second = two_runs
    monkeypatch.chdir(tmp_path)  # no fixtures/verdict-notes.toml here: no notes
    assert main(["report", str(reports / second), "--fail-on-change"]) == 1
    assert "no note in fixtures/verdict-notes.toml" in capsys.readouterr().err
    (tmp_path / "fixtures").mkdir()
    (tmp_path / "fixtures" / "verdict-notes.toml").write_text(
        '[[change]]\nclaim = "c-1"\nprofile = "organism"\nto = "refuted"\nwhy = "expected"\n')
    assert main(["report", str(reports / second), "--fail-on-change"]) == 0
    (tmp_path / "fixtures" / "verdict-notes.toml").write_text('[[change]]\nclaim = "c-1"\n')
    assert main(["report", str(reports / second)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("claimkit report: error: fixtures/verdict-notes.toml: change[0]: field(s) profile, to, why")
    assert main(["report", str(reports / second), "--notes", str(tmp_path / "absent.toml")]) == 1
    assert "absent.toml: notes file not found" in capsys.readouterr().err


def test_report_against_an_explicit_run_and_without_history(two_runs, tmp_path, capsys):
    reports, first, second = two_runs
    assert main(["report", str(reports / first / "verdicts.json"), "--against", str(reports / second)]) == 0
    assert "changed: c-1 [organism, m]: refuted -> supported" in capsys.readouterr().out
    lone = tmp_path / "lone"
    write_run(lone, [verdict()], command="pytest", claimkit_version="1")
    assert main(["report", str(lone / "latest.json"), "--fail-on-change"]) == 0
    assert "no earlier run to compare with" in capsys.readouterr().out


def test_bad_input_is_exit_1_with_a_message_and_bad_usage_is_exit_2(tmp_path, capsys):
    assert main(["report", "no-such-run", "--report-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("claimkit report: error: no-such-run: not a run directory") and "Traceback" not in err
    assert main(["report", "latest", "--report-dir", str(tmp_path)]) == 1
    assert "no runs yet" in capsys.readouterr().err
    assert main(["mark", str(tmp_path / "scan.json"), "--report", str(tmp_path / "latest.json")]) == 1
    assert "report not found" in capsys.readouterr().err
    assert main([]) == 2
    assert main(["report", "--no-such-option"]) == 2
    assert main(["mark", "scan.json"]) == 2  # --report is required
    assert "--report" in capsys.readouterr().err
    assert main(["--help"]) == 0


def fake_module(monkeypatch, name, **attrs):
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    monkeypatch.setitem(sys.modules, name, module)
    return module


def test_mark_resolves_the_report_and_passes_the_options(two_runs, tmp_path, monkeypatch, capsys):
    reports, first, second = two_runs
    calls = []

    class MarkResult(types.SimpleNamespace):
        pass

    def mark_scan(scan_path, report_path, *, specs_dir, update_supported=False):
        calls.append((scan_path, report_path, specs_dir, update_supported))
        return MarkResult(changed=len(calls) == 1, marked=["c-1"], skipped=[("c-2", "no scan claim matches")])

    fake_module(monkeypatch, "claimkit.mark", mark_scan=mark_scan, MarkError=type("MarkError", (ValueError,), {}))
    scan = tmp_path / "scan.json"
    assert main(["mark", str(scan), "--report", str(reports / "latest"), "--specs", "s", "--update-supported"]) == 0
    assert calls[0] == (scan, reports / "latest" / "verdicts.json", Path("s"), True)
    out = capsys.readouterr().out
    assert f"marked 1 claim(s) in {scan}: c-1" in out and "skipped c-2: no scan claim matches" in out
    assert main(["mark", str(scan), "--report", str(reports / "latest.json")]) == 0
    assert calls[1][1] == reports / "latest.json" and calls[1][2] == Path("fixtures/claims") and not calls[1][3]
    assert "unchanged" in capsys.readouterr().out


def test_mark_errors_from_the_scan_modules_are_exit_1(two_runs, tmp_path, monkeypatch, capsys):
    reports, _, _ = two_runs
    error = type("MarkError", (ValueError,), {})

    def mark_scan(*args, **kwargs):
        raise error("scan.json: claims[2]: verification would overwrite a newer verdict")

    fake_module(monkeypatch, "claimkit.mark", mark_scan=mark_scan, MarkError=error)
    assert main(["mark", "scan.json", "--report", str(reports / "latest.json")]) == 1
    assert "claimkit mark: error: scan.json: claims[2]" in capsys.readouterr().err


def test_list_passes_verdicts_by_scan_text(two_runs, tmp_path, monkeypatch, capsys):
    reports, _, second = two_runs
    seen = {}

    def list_claims(scan, verdicts_by_scan_text, specs):
        seen.update(scan=scan, verdicts=verdicts_by_scan_text, specs=specs)
        return ["row"]

    fake_module(monkeypatch, "claimkit.scan", load_scan=lambda path: f"scan at {path}", list_claims=list_claims,
                format_claim_list=lambda rows: f"formatted {rows}", ScanError=type("ScanError", (ValueError,), {}))
    specs = Path(__file__).resolve().parent.parent / "fixtures" / "claims"
    assert main(["list", "scan.json", "--report", str(reports / second), "--specs", str(specs)]) == 0
    assert capsys.readouterr().out.strip() == "formatted ['row']"
    assert seen["scan"] == "scan at scan.json"
    assert {k: [v.outcome for v in vs] for k, vs in seen["verdicts"].items()} == {
        "scan text of c-1": [Outcome.REFUTED],
        "scan text of c-2": [Outcome.SUPPORTED],
    }
    assert "warning-framed" in seen["specs"]
    assert main(["list", "scan.json", "--specs", str(specs)]) == 0
    assert seen["verdicts"] is None  # no report: the scan's own records are listed


# -- provenance and pre-registration ----------------------------------------------------

SPEC = """schema = 1
paper = "demo"
title = "A demo paper"
[preregistration]
inputs = ["shares.toml"]
[claims.c-1]
title = "c"
scan_claim = "C."
[claims.c-1.rule]
alpha = 0.05
"""


def test_preregister_writes_the_lock_prints_it_and_leaves_an_up_to_date_lock_alone(tmp_path, capsys):
    spec = tmp_path / "demo.toml"
    spec.write_text(SPEC)
    (tmp_path / "shares.toml").write_text("vulnerable = 0.25\n")
    assert main(["preregister", str(spec)]) == 0
    out = capsys.readouterr().out
    lock = tmp_path / "demo.lock.json"
    assert out.startswith(f"locked {spec} in {lock}: spec sha256:") and "1 claim(s), 1 input(s)" in out
    assert "  claim c-1: sha256:" in out and "  input shares.toml: sha256:" in out
    written = lock.read_bytes()
    assert main(["preregister", str(spec)]) == 0
    assert "already locks" in capsys.readouterr().out and lock.read_bytes() == written
    (tmp_path / "shares.toml").write_text("vulnerable = 0.3\n")
    assert main(["preregister", str(spec)]) == 0
    assert "replacing the lock of" in capsys.readouterr().out and lock.read_bytes() != written


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("absent.toml", None, "absent.toml: claim spec not found"),
        (".", None, "is a directory; give one claim spec file"),
        ("bad.toml", "schema = = 1", "bad.toml: not valid TOML"),
        ("v.toml", 'schema = 1\npaper = "x"\n', "field 'title' is missing"),
        ("demo.toml", SPEC, "input 'shares.toml' ("),  # declared, but not there
    ],
)
def test_preregister_errors_are_one_sentence_and_exit_1(tmp_path, capsys, name, text, message):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    assert main(["preregister", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("claimkit preregister: error: ") and message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*.lock.json"))


def with_provenance(v: Verdict, **changes) -> Verdict:
    provenance = {"commit": "a" * 40, "dirty": False, "claimkit_source": "sha256:k1",
                  "versions": {"python": "3.11.7", "torch": "2.13.0"},
                  "device": {"cpu": "Xeon", "cpu_count": 2, "gpu": None}, **changes}
    return Verdict(**{**v.__dict__, "provenance": provenance})


def test_report_against_says_how_the_runs_conditions_differ_before_the_numbers(tmp_path, capsys):
    reports = tmp_path / "reports"
    first = write_run(reports, [with_provenance(verdict("c-1"))], command="pytest", claimkit_version="1")
    moved = Verdict(**{**verdict("c-1").__dict__, "evidence": Evidence(
        estimates=(Estimate("rate", 0.41, 0.31, 0.51, "clopper-pearson", 100, 41),))})
    gpu = {"cpu": "Xeon", "cpu_count": 16, "gpu": {"name": "NVIDIA H200", "driver": "570", "cuda": "13.0"}}
    second = write_run(reports, [with_provenance(moved, device=gpu, versions={"python": "3.11.7", "torch": "2.11.0"},
                                                 claimkit_source="sha256:k2")],
                       command="pytest", claimkit_version="1")
    assert main(["report", second.document.run_id, "--report-dir", str(reports),
                 "--against", first.document.run_id]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    said = lines.index("the runs were not made under the same conditions, so their numbers need not agree:")
    assert lines[said + 1:said + 4] == [
        "  devices differ: CPU Xeon (2 cores) -> NVIDIA H200 (driver 570, CUDA 13.0)",
        "  package versions differ: torch 2.13.0 -> 2.11.0",
        "  code differs: claimkit source sha256:k1 -> claimkit source sha256:k2",
    ]
    assert said < next(i for i, line in enumerate(lines) if "kept their outcome with other numbers" in line)
    assert main(["report", first.document.run_id, "--report-dir", str(reports), "--against", first.document.run_id]) == 0
    assert "same conditions" not in capsys.readouterr().out


def test_report_lists_verdicts_not_preregistered_and_rules_changed_after_a_result(tmp_path, capsys):
    reports = tmp_path / "reports"

    def registered(claim_id, claim_hash, status="preregistered", differs=()):
        v = verdict(claim_id)
        return Verdict(**{**v.__dict__, "claim_hash": claim_hash, "preregistration": {
            "status": status, "lock": "demo.lock.json", "locked_at": "t", "differs": list(differs)}})

    write_run(reports, [registered("c-1", "sha256:one"), registered("c-2", "sha256:two")], command="pytest",
              claimkit_version="1")
    write_run(reports, [registered("c-1", "sha256:one-edited", "not preregistered", ["claim c-1 changed since the lock"]),
                        registered("c-2", "sha256:two", "not preregistered", ["claim c-1 changed since the lock"])],
              command="pytest", claimkit_version="1")
    assert main(["report", "--report-dir", str(reports)]) == 0
    out = capsys.readouterr().out
    assert "2 verdict(s) not pre-registered (claim c-1 changed since the lock): c-1 [organism], c-2 [organism]" in out
    assert "1 verdict(s) decided under a rule changed after a result was seen:" in out
    assert "  c-1 [organism]: run " in out and "under claim hash sha256:one; this verdict was decided under sha256:one-edi" in out


# -- a revised spec ------------------------------------------------------------------------

SPEC_V1 = """schema = 1
paper = "demo"
title = "A demo paper"
[claims.c-1]
title = "x beats y"
scan_claim = "X beats Y."
[claims.c-1.rule]
alpha = 0.05
margin = 0.15
[claims.c-2]
title = "x explains y"
scan_claim = "X explains Y."
[claims.c-2.rule]
alpha = 0.05
[claims.c-3]
title = "z"
scan_claim = "Z."
[claims.c-3.rule]
alpha = 0.05
"""

SPEC_V2 = SPEC_V1.replace("margin = 0.15", "margin_share = 0.25").replace(
    "[claims.c-2.rule]\nalpha = 0.05", "[claims.c-2.rule]\nalpha = 0.05\nrequires_learning = true") + """
[[changelog]]
version = 2
claims = ["c-1"]
change = "The margin is a share of the learning effect, not 15 points."
why = "15 points is half the effect of a model that learns 30."

[[changelog]]
version = 2
claims = ["c-2"]
change = "c-2 is not tested when direct training did not teach."
why = "v1 decided it whether or not the training took."
"""


def revised_specs(tmp_path):
    """specs/demo.toml (v2, with its changelog) and specs/archive/demo.v1.toml, as fixtures/claims keeps them."""
    from claimkit.spec import load_spec

    specs = tmp_path / "specs"
    (specs / "archive").mkdir(parents=True)
    (specs / "archive" / "demo.v1.toml").write_text(SPEC_V1)
    (specs / "demo.toml").write_text(SPEC_V2)
    return specs, load_spec(specs / "archive" / "demo.v1.toml"), load_spec(specs / "demo.toml")


def decided(spec, claim_id, outcome, claim_hash=True):
    """A verdict as a run under `spec` records it (a run before claim hashes has none)."""
    import dataclasses

    return dataclasses.replace(verdict(claim_id, outcome, spec_hash=spec.hash),
                               claim_hash=spec.claims[claim_id].hash if claim_hash else "")


def test_report_against_a_run_of_the_replaced_spec_shows_the_changelog_of_each_changed_claim(tmp_path, capsys):
    specs, v1, v2 = revised_specs(tmp_path)
    reports = tmp_path / "reports"
    old = write_run(reports, [decided(v1, c, Outcome.SUPPORTED) for c in ("c-1", "c-2", "c-3")],
                    command="pytest", claimkit_version="1").document.run_id
    new = write_run(reports, [decided(v2, "c-1", Outcome.REFUTED), decided(v2, "c-2", Outcome.NOT_TESTED),
                              decided(v2, "c-3", Outcome.INCONCLUSIVE)],
                    command="pytest", claimkit_version="1").document.run_id
    no_notes = tmp_path / "notes.toml"
    no_notes.write_text("")
    args = ["report", new, "--report-dir", str(reports), "--against", old, "--specs", str(specs), "--notes", str(no_notes)]
    assert main(args) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    headline = (f"spec of demo changed: {v1.hash[:15]} -> {v2.hash[:15]} "
                f"({specs / 'archive' / 'demo.v1.toml'} -> {specs / 'demo.toml'})")
    assert headline in lines
    assert lines.index(headline) < next(i for i, line in enumerate(lines) if "verdict change(s) from run" in line)
    assert "  c-1 [organism, m]: supported -> refuted; its rule changed; changelog 1" in lines
    assert "  c-2 [organism, m]: supported -> not tested; its rule changed; changelog 2" in lines
    # the revision left c-3's rule alone: nothing in the changelog explains its flip
    assert "  c-3 [organism, m]: supported -> inconclusive; its rule is unchanged; no changelog entry names it" in lines
    assert f"  the changelog of {specs / 'demo.toml'}, for these claims:" in lines
    assert "    changelog 1 (version 2; c-1): The margin is a share of the learning effect, not 15 points." in lines
    assert "      why: 15 points is half the effect of a model that learns 30." in lines
    assert "    changelog 2 (version 2; c-2): c-2 is not tested when direct training did not teach." in lines
    assert "      why: v1 decided it whether or not the training took." in lines
    assert "  changed: c-2 [organism, m]: supported -> not tested (claim spec changed)" in lines
    # the rendered report says the same, compactly
    md = (reports / new / "report.md").read_text()
    assert f"**{headline}**" in md and "- c-1 [organism, m]: supported -> refuted; its rule changed; changelog 1" in md
    assert "- changelog 1 (version 2; c-1): The margin is a share of the learning effect, not 15 points. *Why:* 15 p" in md
    assert "<i>Why:</i> v1 decided it whether or not the training took." in (reports / new / "report.html").read_text()
    # only the flip under an unchanged rule stops nightly CI
    assert main([*args, "--fail-on-change"]) == 1
    assert "1 verdict(s) changed under unchanged claim specs" in capsys.readouterr().err
    # the same runs the other way round: the newer spec is still the one whose changelog is shown
    assert main(["report", old, "--report-dir", str(reports), "--against", new, "--specs", str(specs)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"spec of demo changed: {v2.hash[:15]} -> {v1.hash[:15]} ({specs / 'demo.toml'} -> " \
           f"{specs / 'archive' / 'demo.v1.toml'})" in lines
    assert "  c-2 [organism, m]: not tested -> supported; its rule changed; changelog 2" in lines


def test_report_against_names_a_spec_hash_that_no_spec_has(tmp_path, capsys):
    specs, v1, v2 = revised_specs(tmp_path)
    reports = tmp_path / "reports"
    lost = verdict("c-1", spec_hash="sha256:" + "0" * 64)  # a run before claim hashes, under a spec nobody kept
    old = write_run(reports, [lost, decided(v1, "c-2", Outcome.SUPPORTED, claim_hash=False)],
                    command="pytest", claimkit_version="1").document.run_id
    new = write_run(reports, [decided(v2, "c-1", Outcome.SUPPORTED), decided(v2, "c-2", Outcome.SUPPORTED)],
                    command="pytest", claimkit_version="1").document.run_id
    assert main(["report", new, "--report-dir", str(reports), "--against", old, "--specs", str(specs)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert (f"spec of demo changed: sha256:00000000, {v1.hash[:15]} -> {v2.hash[:15]} "
            f"(not found, {specs / 'archive' / 'demo.v1.toml'} -> {specs / 'demo.toml'})") in lines
    assert (f"  spec sha256:00000000 of run {old}'s demo verdicts is neither in {specs} nor in {specs / 'archive'}: "
            "the rules that decided them cannot be read") in "\n".join(lines)
    assert ("  c-1 [organism, m]: supported in both, the same numbers; decided under another spec (no claim hash "
            "to say whether its own rule changed); changelog 1") in lines
    # without the directory nothing can be found, and the report still comes
    assert main(["report", new, "--report-dir", str(reports), "--against", old, "--specs", str(tmp_path / "no")]) == 0
    out = capsys.readouterr().out
    assert f"the spec directory {tmp_path / 'no'} does not exist (give --specs)" in out
    assert "c-1 [organism, m]: supported in both, the same numbers; decided under another spec (no claim hash " \
           "to say whether its own rule changed); changelog unknown" in out


def test_report_against_runs_of_one_spec_says_nothing_of_specs(two_runs, tmp_path, capsys):
    reports, first, second = two_runs
    assert main(["report", second, "--report-dir", str(reports), "--against", first, "--specs", str(tmp_path / "no")]) == 0
    assert "spec of" not in capsys.readouterr().out
# -- calibrate ---------------------------------------------------------------------------

CALIBRATED = """schema = 2
paper = "demo"
title = "A demo paper"
[claims.c-1]
title = "T learns at least half as much as R"
scan_claim = "T learns about as much as R."
[claims.c-1.rule]
alpha = 0.05
[[claims.c-1.rule.parts]]
name = "T's share"
shape = "share"
data = "target"
treatment = "T"
reference = "R"
comparator = "C"
region = { at_least = 0.5 }
calibration = { paper = 1.0 }
[claims.c-1.profiles.small]
n = 30
seeds = [0, 1, 2]
[claims.c-1.profiles.large]
n = 60
seeds = [0, 1, 2]
[calibration]
reps = 1000
bounds = { false_support = 0.2, false_refute = 0.2 }   # loose: 20 draws a point must not break them by chance
[calibration.profiles.small]
comparator_rate = 0.05
learning_effect = 0.5
seed_sd = 0.2
prompt_sd = 0.5
[calibration.profiles.large]
comparator_rate = 0.05
learning_effect = 0.5
seed_sd = 0.2
prompt_sd = 0.5
"""


def test_calibrate_writes_the_table_prints_it_and_shows_progress_on_stderr(tmp_path, capsys):
    spec = tmp_path / "demo.toml"
    spec.write_text(CALIBRATED)
    assert main(["calibrate", str(spec), "--reps", "20"]) == 0
    out, err = capsys.readouterr()
    table = tmp_path / "demo.calibration.json"
    assert json.loads(table.read_text())["reps"] == 20  # --reps over the spec's 1000
    assert "| claim | profile | n | seeds | parts | false support | false refutation | power | refutes a false claim | bounds |" in out
    assert "| c-1 | small | 30 | 3 | 1 |" in out and "| c-1 | large | 60 | 3 | 1 |" in out
    assert f"wrote {table} (2 rows, 20 draws per point, 0:" in out
    lines = err.strip().splitlines()
    assert lines[0] == f"calibrating {spec}: 2 row(s) (claim x profile), 20 draws per point, 1 worker(s)"
    assert lines[1].startswith("[1/2] c-1 small: ") and "s (elapsed 0:" in lines[1]
    assert lines[2].startswith("[2/2] c-1 large: ") and lines[2].endswith("within bounds")


def test_calibrate_one_profile_in_two_workers_says_the_table_is_partial(tmp_path, capsys):
    spec = tmp_path / "demo.toml"
    spec.write_text(CALIBRATED)
    assert main(["calibrate", str(spec), "--reps", "20", "--profile", "large", "--workers", "2"]) == 0
    out, err = capsys.readouterr()
    rows = json.loads((tmp_path / "demo.calibration.json").read_text())["rows"]
    assert [(r["claim"], r["profile"]) for r in rows] == [("c-1", "large")]
    assert "it holds only profile(s) large (--profile)" in out
    assert "1 worker(s)" in err  # never more workers than rows


def test_calibrate_exits_1_and_names_the_rows_whose_bounds_are_broken(tmp_path, capsys):
    spec = tmp_path / "demo.toml"
    tight = CALIBRATED.replace("false_support = 0.2, false_refute = 0.2", "false_support = 0.05, false_refute = 0.05")
    spec.write_text(tight.replace("alpha = 0.05", "alpha = 0.3"))
    assert main(["calibrate", str(spec), "--reps", "200", "--profile", "small"]) == 1
    out, err = capsys.readouterr()
    assert "BROKEN: false support" in out and (tmp_path / "demo.calibration.json").is_file()  # written all the same
    assert "1 row(s) break the spec's bounds" in err and "\n  c-1 [small]: false support 0." in err


@pytest.mark.parametrize(
    "name, text, args, message",
    [
        ("absent.toml", None, [], "absent.toml: claim spec not found"),
        (".", None, [], "is a directory; give one claim spec file"),
        ("bad.toml", "schema = = 2", [], "bad.toml: not valid TOML"),
        ("v1.toml", SPEC, [], "v1.toml: no [calibration.profiles.<profile>] levels: nothing to simulate"),
        ("demo.toml", CALIBRATED, ["--profile", "paper"], "no [calibration.profiles.<profile>] levels for ['paper'] "
                                                         "(profiles with levels: small, large)"),
        ("demo.toml", CALIBRATED.replace("reps = 1000", 'reps = "many"'), [],
         "draws per point (reps) must be a positive integer, got 'many'"),
    ],
)
def test_calibrate_errors_are_one_sentence_and_exit_1(tmp_path, capsys, name, text, args, message):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    assert main(["calibrate", str(path), *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("claimkit calibrate: error: ") and message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*.calibration.json"))


def test_calibrate_usage_errors_are_exit_2(tmp_path, capsys):
    assert main(["calibrate"]) == 2
    assert main(["calibrate", "demo.toml", "--reps", "0"]) == 2
    assert "--reps: must be a positive integer, got 0" in capsys.readouterr().err
    assert main(["calibrate", "demo.toml", "--workers", "two"]) == 2
